// Command pulumi-tfgen-random writes the Pulumi package schema and bridge metadata of the bridged random provider
// (scripts/toolchain/build runs `pulumi-tfgen-random schema --out provider`).
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	"kthw.local/toolchain/random/provider"
)

func main() {
	tfgen.Main("random", provider.Provider())
}
