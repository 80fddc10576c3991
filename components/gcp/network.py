"""The VPC: a custom-mode network, the controllers' subnet and the three firewall rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_gcp as gcp

# Where Google's legacy HTTP health checks (the ones a target pool uses) come from.
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22")
HEALTH_CHECK_PORT = 80  # nginx's /healthz proxy on each controller
SSH_PORT = 22


@dataclass
class Network:
    subnet: gcp.compute.Subnetwork
    firewalls: list[gcp.compute.Firewall]


def create_network(name: str, *, project: str, region: str, node_cidr: str, cluster_cidr: str,
                   admin_cidrs: Sequence[str], target_tag: str, api_port: int,
                   parent: pulumi.Resource) -> Network:
    """The network, its subnet in `region`, and the internal, external and health-check firewalls."""
    opts = pulumi.ResourceOptions(parent=parent)
    network = gcp.compute.Network(
        f"{name}-network", project=project, auto_create_subnetworks=False, routing_mode="REGIONAL",
        description="kthw: the controllers' network", opts=opts)
    subnet = gcp.compute.Subnetwork(
        f"{name}-subnet", project=project, region=region, network=network.id, ip_cidr_range=node_cidr,
        private_ip_google_access=True, opts=opts)
    net_opts = pulumi.ResourceOptions(parent=parent, depends_on=[subnet])
    internal = gcp.compute.Firewall(
        f"{name}-allow-internal", project=project, network=network.id, direction="INGRESS",
        description="Controllers and pods talk to each other on any port",
        source_ranges=[node_cidr, cluster_cidr],
        allows=[gcp.compute.FirewallAllowArgs(protocol=p) for p in ("tcp", "udp", "icmp")], opts=net_opts)
    external = gcp.compute.Firewall(
        f"{name}-allow-admin", project=project, network=network.id, direction="INGRESS",
        description="SSH and the Kubernetes API from kthw:adminCidrs only (the network LB keeps client addresses)",
        source_ranges=list(admin_cidrs), target_tags=[target_tag],
        allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(SSH_PORT), str(api_port)]),
                gcp.compute.FirewallAllowArgs(protocol="icmp")], opts=net_opts)
    health = gcp.compute.Firewall(
        f"{name}-allow-health-check", project=project, network=network.id, direction="INGRESS",
        description="Google's legacy HTTP health checks reach nginx's /healthz proxy",
        source_ranges=list(HEALTH_CHECK_RANGES), target_tags=[target_tag],
        allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(HEALTH_CHECK_PORT)])], opts=net_opts)
    return Network(subnet=subnet, firewalls=[internal, external, health])
