"""Pieces the real clouds (azure, gcp) share: the official release source and the controllers' addresses."""
from __future__ import annotations

import ipaddress

from components import releases
from components.config import StackConfig
from components.infra import ReleaseSource

FIRST_CONTROLLER_HOST = 10  # controller-0 at .10, controller-1 at .11, ... (as in KTHW)


def official_release_source(config: StackConfig) -> ReleaseSource:
    """Official release URLs (dl.k8s.io, GitHub) with the checksum table's sha256 for the stack's versions.

    A digest the table lacks is left out, so a host asked for that artifact fails closed (and
    `components.clouds` refuses such versions before any resource exists).
    """
    return ReleaseSource(kubernetes_url=releases.KUBERNETES_URL, etcd_url=releases.ETCD_URL,
                         sha256=releases.official_sha256(config.kubernetes_version, config.etcd_version))


def controller_ips(node_cidr: str, count: int) -> list[str]:
    """The controllers' static private IPs in the node subnet: .10, .11, ... one per controller."""
    base = ipaddress.ip_network(node_cidr).network_address
    return [str(base + FIRST_CONTROLLER_HOST + i) for i in range(count)]
