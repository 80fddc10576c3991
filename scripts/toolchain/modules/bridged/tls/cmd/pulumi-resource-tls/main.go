// Command pulumi-resource-tls is the Pulumi resource plugin of the bridged tls provider. It embeds the schema and
// bridge metadata that pulumi-tfgen-tls generated (copied here by scripts/toolchain/build).
package main

import (
	"context"
	_ "embed" // the generated schema and metadata

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	"kthw.local/toolchain/tls/provider"
)

//go:embed schema-embed.json
var schema []byte

//go:embed bridge-metadata.json
var bridgeMetadata []byte

func main() {
	meta := tfbridge.ProviderMetadata{PackageSchema: schema, BridgeMetadata: bridgeMetadata}
	tfbridge.Main(context.Background(), "tls", provider.Provider(), meta)
}
