// Package shim exposes the Terraform tls provider (an internal package of its module) to the bridge.
// It lives at github.com/hashicorp/terraform-provider-tls/shim, inside the provider's module path, which is what
// lets it import the provider's internal packages; scripts/toolchain/build writes its go.mod.
package shim

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"
	tlsprovider "github.com/hashicorp/terraform-provider-tls/internal/provider"
)

// NewProvider returns the Terraform Plugin Framework provider of hashicorp/terraform-provider-tls.
func NewProvider() provider.Provider { return tlsprovider.New() }
