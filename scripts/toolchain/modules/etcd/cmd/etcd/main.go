// Command etcd is the etcd server, built by scripts/toolchain/build from the go.etcd.io/etcd/server/v3 module.
// Upstream's own main package is in etcd's root module, which replaces its siblings with relative paths;
// this wrapper calls the same entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
