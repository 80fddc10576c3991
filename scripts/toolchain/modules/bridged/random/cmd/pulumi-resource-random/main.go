// Command pulumi-resource-random is the Pulumi resource plugin of the bridged random provider. It embeds the schema and
// bridge metadata that pulumi-tfgen-random generated (copied here by scripts/toolchain/build).
package main

import (
	"context"
	_ "embed" // the generated schema and metadata

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	"kthw.local/toolchain/random/provider"
)

//go:embed schema-embed.json
var schema []byte

//go:embed bridge-metadata.json
var bridgeMetadata []byte

func main() {
	meta := tfbridge.ProviderMetadata{PackageSchema: schema, BridgeMetadata: bridgeMetadata}
	tfbridge.Main(context.Background(), "random", provider.Provider(), meta)
}
