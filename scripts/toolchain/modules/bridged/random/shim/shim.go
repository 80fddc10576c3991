// Package shim exposes the Terraform random provider (an internal package of its module) to the bridge.
// It lives at github.com/terraform-providers/terraform-provider-random/shim, inside the provider's module path,
// which is what lets it import the provider's internal packages; scripts/toolchain/build writes its go.mod.
package shim

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"
	randomprovider "github.com/terraform-providers/terraform-provider-random/internal/provider"
)

// NewProvider returns the Terraform Plugin Framework provider of terraform-providers/terraform-provider-random.
func NewProvider() provider.Provider { return randomprovider.New() }
