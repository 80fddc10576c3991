"""Standard, static IPv4 public addresses (Basic SKU is retired)."""
from __future__ import annotations

from typing import Sequence

import pulumi_azure_native.network as network

from components.azure.site import Site


def static_public_ip(site: Site, child: str, zones: Sequence[str]) -> network.PublicIPAddress:
    """A Standard static public IP: in `zones` (all of a region's zones: zone-redundant), or none."""
    return network.PublicIPAddress(
        site.name(child), **site.common(),
        sku=network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
        public_ip_allocation_method="Static",
        public_ip_address_version="IPv4",
        zones=list(zones) or None,
        opts=site.opts())
