"""The API's Standard public IP and the Standard load balancer in front of the controllers.

One frontend serves three jobs: the 6443 rule (with its health probe), one inbound NAT rule per controller
for the bootstrap's SSH (frontend port 2200 + i -> 22), and the outbound rule that gives the controllers
internet access (the 6443 rule therefore has `disable_outbound_snat`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native.network as network

from components.azure import regions
from components.azure.config import AzureConfig
from components.azure.site import Site
from components.config import StackConfig
from components.infra import API_PORT, HealthCheckStyle

SSH_PORT_BASE = 2200
FRONTEND = "api"
BACKEND_POOL = "controllers"
PROBE = "apiserver"
OUTBOUND_PORTS_PER_VM = 4096  # a multiple of 8; 7 controllers use 28,672 of the frontend's 64,000


def ssh_port(index: int) -> int:
    """The LB frontend port that reaches controller `index`'s SSH."""
    return SSH_PORT_BASE + index


def probe_args(style: HealthCheckStyle) -> network.ProbeArgs:
    """The 6443 probe: HTTPS GET /readyz (anonymous by default in the apiserver) or a TCP connect."""
    common = {"name": PROBE, "port": API_PORT, "interval_in_seconds": 5, "probe_threshold": 2}
    if style is HealthCheckStyle.TCP:
        return network.ProbeArgs(protocol="Tcp", **common)
    return network.ProbeArgs(protocol="Https", request_path="/readyz", **common)


@dataclass
class LoadBalancer:
    public_ip: network.PublicIPAddress
    lb: network.LoadBalancer
    backend_pool_id: pulumi.Output[str]
    nat_rule_ids: list[pulumi.Output[str]]  # one per controller, in order


def create_load_balancer(site: Site, config: StackConfig, azure: AzureConfig) -> LoadBalancer:
    """Standard static public IP (zone-redundant where the region has zones) and the Standard LB."""
    public_ip = network.PublicIPAddress(
        site.name("api-ip"), **site.common(),
        sku=network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
        public_ip_allocation_method="Static",
        public_ip_address_version="IPv4",
        zones=list(regions.zones_of(azure.location)) or None,
        opts=site.opts())

    lb_name = site.name("lb")
    # Sub-resources refer to each other by ID inside the LB's own body, so build those IDs from its name.
    lb_id = pulumi.Output.concat(site.resource_group_id, "/providers/Microsoft.Network/loadBalancers/", lb_name)

    def ref(kind: str, name: str) -> network.SubResourceArgs:
        return network.SubResourceArgs(id=pulumi.Output.concat(lb_id, f"/{kind}/{name}"))

    frontend, pool = ref("frontendIPConfigurations", FRONTEND), ref("backendAddressPools", BACKEND_POOL)
    nat_rules = [network.InboundNatRuleArgs(
        name=f"ssh-{host}", protocol="Tcp", frontend_ip_configuration=frontend,
        frontend_port=ssh_port(i), backend_port=22, enable_tcp_reset=True, idle_timeout_in_minutes=30,
    ) for i, host in enumerate(config.controller_names)]

    lb = network.LoadBalancer(
        lb_name, **site.common(),
        load_balancer_name=lb_name,
        sku=network.LoadBalancerSkuArgs(name="Standard", tier="Regional"),
        frontend_ip_configurations=[network.FrontendIPConfigurationArgs(
            name=FRONTEND, public_ip_address=network.PublicIPAddressArgs(id=public_ip.id))],
        backend_address_pools=[network.BackendAddressPoolArgs(name=BACKEND_POOL)],
        probes=[probe_args(azure.health_check)],
        load_balancing_rules=[network.LoadBalancingRuleArgs(
            name="apiserver", protocol="Tcp", frontend_port=API_PORT, backend_port=API_PORT,
            frontend_ip_configuration=frontend, backend_address_pool=pool,
            probe=ref("probes", PROBE),
            disable_outbound_snat=True,  # outbound goes through the outbound rule below
            enable_tcp_reset=True, idle_timeout_in_minutes=30,  # long kubectl watches
        )],
        inbound_nat_rules=nat_rules,
        outbound_rules=[network.OutboundRuleArgs(
            name="controllers-outbound", protocol="All", frontend_ip_configurations=[frontend],
            backend_address_pool=pool, allocated_outbound_ports=OUTBOUND_PORTS_PER_VM,
            enable_tcp_reset=True, idle_timeout_in_minutes=4,
        )],
        opts=site.opts())

    # The NICs refer to the pool and NAT rules through `lb.id`, so they wait for the LB.
    return LoadBalancer(
        public_ip=public_ip, lb=lb,
        backend_pool_id=pulumi.Output.concat(lb.id, f"/backendAddressPools/{BACKEND_POOL}"),
        nat_rule_ids=[pulumi.Output.concat(lb.id, f"/inboundNatRules/ssh-{host}")
                      for host in config.controller_names],
    )
