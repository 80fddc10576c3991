// Command pulumi-tfgen-tls writes the Pulumi package schema and bridge metadata of the bridged tls provider
// (scripts/toolchain/build runs `pulumi-tfgen-tls schema --out provider`).
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	"kthw.local/toolchain/tls/provider"
)

func main() {
	tfgen.Main("tls", provider.Provider())
}
