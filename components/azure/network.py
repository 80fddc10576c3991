"""The virtual network, the controllers' subnet, its network security group and its NAT gateway."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi_azure_native.network as network

from components.azure.publicip import static_public_ip
from components.azure.site import Site
from components.config import StackConfig
from components.infra import API_PORT

SUBNET_NAME = "controllers"


@dataclass(frozen=True)
class Rule:
    """One inbound NSG rule (everything else inbound falls to Azure's default DenyAllInBound)."""

    name: str
    priority: int
    protocol: str  # Tcp | *
    sources: Sequence[str]
    port: Optional[int]  # None: every port
    why: str


def inbound_rules(config: StackConfig) -> list[Rule]:
    """The subnet's inbound rules: admins to SSH and the API, the LB probe, and traffic inside the subnet."""
    admins = list(config.admin_cidrs)
    return [
        Rule("allow-ssh-from-admins", 100, "Tcp", admins, 22,
             "SSH for the bootstrap, to each controller's own public IP"),
        Rule("allow-apiserver-from-admins", 110, "Tcp", admins, API_PORT,
             "kubectl and clients through the load balancer"),
        Rule("allow-lb-probe", 120, "Tcp", ["AzureLoadBalancer"], API_PORT,
             "the load balancer's health probe on 6443"),
        Rule("allow-intra-subnet", 130, "*", [config.node_cidr], None,
             "etcd peers, apiserver to etcd, and any controller-to-controller traffic"),
    ]


def _security_rule(rule: Rule, destination: str) -> network.SecurityRuleArgs:
    return network.SecurityRuleArgs(
        name=rule.name, priority=rule.priority, direction="Inbound", access="Allow", protocol=rule.protocol,
        source_address_prefixes=list(rule.sources), source_port_range="*",
        destination_address_prefix=destination,
        destination_port_range="*" if rule.port is None else str(rule.port),
        description=rule.why,
    )


@dataclass
class Network:
    subnet: network.Subnet
    nat_gateway: network.NatGateway
    egress_ip: network.PublicIPAddress


def create_network(site: Site, config: StackConfig) -> Network:
    """VNet with one subnet (config.node_cidr), guarded by the NSG, whose only way out is the NAT gateway."""
    # A NAT gateway takes precedence over the controllers' own public IPs for outbound traffic:
    # one stable egress address. Like its IP it has no zone (Azure picks one).
    egress_ip = static_public_ip(site, "nat-ip", ())
    nat_gateway = network.NatGateway(
        site.name("nat"), **site.common(),
        sku=network.NatGatewaySkuArgs(name="Standard"),
        public_ip_addresses=[network.SubResourceArgs(id=egress_ip.id)],
        idle_timeout_in_minutes=4,
        opts=site.opts())
    nsg = network.NetworkSecurityGroup(
        site.name("nsg"), **site.common(),
        security_rules=[_security_rule(rule, config.node_cidr) for rule in inbound_rules(config)],
        opts=site.opts())
    vnet = network.VirtualNetwork(
        site.name("vnet"), **site.common(),
        address_space=network.AddressSpaceArgs(address_prefixes=[config.node_cidr]),
        opts=site.opts())
    subnet = network.Subnet(
        site.name("subnet"),
        resource_group_name=site.resource_group_name,
        virtual_network_name=vnet.name,
        subnet_name=SUBNET_NAME,
        address_prefix=config.node_cidr,
        network_security_group=network.NetworkSecurityGroupArgs(id=nsg.id),
        nat_gateway=network.SubResourceArgs(id=nat_gateway.id),
        default_outbound_access=False,  # implicit outbound is going away; the NAT gateway is explicit
        opts=site.opts())
    return Network(subnet=subnet, nat_gateway=nat_gateway, egress_ip=egress_ip)
