// Package provider describes the bridged tls provider: the Terraform provider, its Pulumi package name and the
// rule that names its resources (tls_private_key -> tls:index/privateKey:PrivateKey), as in Pulumi's own.
package provider

import (
	_ "embed" // bridge-metadata.json

	"github.com/hashicorp/terraform-provider-tls/shim"
	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
)

// Version is the provider's version, set by the build (-X) to the pinned pulumi-tls Python SDK's.
var Version = "0.0.0"

// metadata is written by pulumi-tfgen-tls (`schema --out provider`); the build starts it as `{}`.
//
//go:embed bridge-metadata.json
var metadata []byte

// Provider returns the bridge's description of the tls provider.
func Provider() tfbridge.ProviderInfo {
	info := tfbridge.ProviderInfo{
		P:                              pf.ShimProvider(shim.NewProvider()),
		Name:                           "tls",
		Description:                    "A Pulumi package to create TLS resources in Pulumi programs.",
		Keywords:                       []string{"pulumi", "tls"},
		License:                        "Apache-2.0",
		Homepage:                       "https://pulumi.io",
		Repository:                     "https://github.com/pulumi/pulumi-tls",
		GitHubOrg:                      "hashicorp",
		Version:                        Version,
		MetadataInfo:                   tfbridge.NewProviderMetadata(metadata),
		EnableZeroDefaultSchemaVersion: true,
		EnableAccurateBridgePreview:    true,
	}
	info.MustComputeTokens(tokens.SingleModule("tls_", "index", tokens.MakeStandard("tls")))
	return info
}
