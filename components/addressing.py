"""Where the controllers sit in the node subnet (kthw:nodeCidr): the one rule that the config check, the clouds'
static IPs and the local hosts' addresses share.

Controller i is at <network> + 10 + i, as in Kubernetes The Hard Way. The addresses below .10 stay free for the
network's own uses: the local bridge (gateway and load balancer) at .1, the addresses Azure (.1-.3) and GCP (.1)
reserve in a subnet.
"""
from __future__ import annotations

import ipaddress
from typing import Optional

FIRST_CONTROLLER_HOST = 10


def min_subnet_addresses(count: int) -> int:
    """The size a node subnet needs for `count` controllers: .0 to .9, the controllers from .10, and room at the
    top, where the clouds reserve the last addresses (Azure the broadcast, GCP the last two)."""
    return 16 + count


def subnet_problem(node_cidr: str, count: int) -> Optional[str]:
    """Why `node_cidr` cannot hold `count` controllers, or None."""
    if ipaddress.ip_network(node_cidr).num_addresses < min_subnet_addresses(count):
        return f"is too small for {count} controllers at .{FIRST_CONTROLLER_HOST} and up"
    return None


def controller_ips(node_cidr: str, count: int) -> list[str]:
    """The controllers' static private IPs in the node subnet: .10, .11, ... one per controller."""
    net = ipaddress.ip_network(node_cidr)
    return [str(net[FIRST_CONTROLLER_HOST + i]) for i in range(count)]
