"""The API's Standard public IP and the Standard load balancer in front of the controllers' 6443.

The LB only carries inbound API traffic: SSH reaches each controller at its own public IP, and the
controllers' outbound traffic leaves through the subnet's NAT gateway (see network.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native.network as network

from components.azure import regions
from components.azure.config import AzureConfig
from components.azure.publicip import static_public_ip
from components.azure.site import Site
from components.infra import API_PORT, LB_PROBES, HealthCheckStyle

FRONTEND = "api"
BACKEND_POOL = "controllers"
PROBE = "apiserver"
AZURE_PROBE = LB_PROBES["azure"]


def probe_args(style: HealthCheckStyle) -> network.ProbeArgs:
    """The 6443 probe: HTTPS GET /readyz (anonymous by default in the apiserver) or a TCP connect."""
    # Azure's probeThreshold counts consecutive results either way: it is both thresholds.
    common = {"name": PROBE, "port": API_PORT, "interval_in_seconds": AZURE_PROBE.interval_seconds,
              "probe_threshold": AZURE_PROBE.unhealthy_threshold}
    if style is HealthCheckStyle.TCP:
        return network.ProbeArgs(protocol="Tcp", **common)
    return network.ProbeArgs(protocol="Https", request_path="/readyz", **common)


@dataclass
class LoadBalancer:
    public_ip: network.PublicIPAddress
    lb: network.LoadBalancer
    backend_pool_id: pulumi.Output[str]


def create_load_balancer(site: Site, azure: AzureConfig, health_check: HealthCheckStyle) -> LoadBalancer:
    """Standard static public IP (zone-redundant where the region has zones) and the Standard LB."""
    public_ip = static_public_ip(site, "api-ip", regions.zones_of(azure.location))
    lb_name = site.name("lb")
    # Sub-resources refer to each other by ID inside the LB's own body, so build those IDs from its name.
    lb_id = pulumi.Output.concat(site.resource_group_id, "/providers/Microsoft.Network/loadBalancers/", lb_name)

    def ref(kind: str, name: str) -> network.SubResourceArgs:
        return network.SubResourceArgs(id=pulumi.Output.concat(lb_id, f"/{kind}/{name}"))

    lb = network.LoadBalancer(
        lb_name, **site.common(),
        load_balancer_name=lb_name,
        sku=network.LoadBalancerSkuArgs(name="Standard", tier="Regional"),
        frontend_ip_configurations=[network.FrontendIPConfigurationArgs(
            name=FRONTEND, public_ip_address=network.PublicIPAddressArgs(id=public_ip.id))],
        backend_address_pools=[network.BackendAddressPoolArgs(name=BACKEND_POOL)],
        probes=[probe_args(health_check)],
        load_balancing_rules=[network.LoadBalancingRuleArgs(
            name="apiserver", protocol="Tcp", frontend_port=API_PORT, backend_port=API_PORT,
            frontend_ip_configuration=ref("frontendIPConfigurations", FRONTEND),
            backend_address_pool=ref("backendAddressPools", BACKEND_POOL),
            probe=ref("probes", PROBE),
            disable_outbound_snat=True,  # outbound goes through the NAT gateway, never this frontend
            enable_tcp_reset=True, idle_timeout_in_minutes=30,  # long kubectl watches
        )],
        opts=site.opts())

    # The NICs refer to the pool through `lb.id`, so they wait for the LB.
    return LoadBalancer(public_ip=public_ip, lb=lb,
                        backend_pool_id=pulumi.Output.concat(lb.id, f"/backendAddressPools/{BACKEND_POOL}"))
