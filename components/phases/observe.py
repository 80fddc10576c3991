"""What the bootstrap manages on each node, for the drift probe (components/drift.py): per step, the sha256 of
each file it puts there and the units that must be active."""
from __future__ import annotations

from typing import Sequence

import pulumi

from components import host_files
from components.drift import HostState, HostStateArgs
from components.infra import ControllerHost
from components.phases import healthz_proxy
from components.phases.binaries import expected_binaries
from components.phases.cluster import Cluster
from components.paths import HOST


def host_state(cluster: Cluster, host: ControllerHost, depends_on: Sequence[pulumi.Resource]) -> HostState:
    expected: dict[str, pulumi.Input] = {
        "files": {"files": host_files.digests(cluster.files[host.name].contents)},
        "binaries": {"files": expected_binaries(cluster)},
    }
    for unit, content in cluster.units[host.name].items():
        expected[unit] = {"files": {HOST.unit(unit): content.apply(
            lambda c: host_files.sha256(c.rstrip("\n") + "\n"))}, "units": [unit]}
    if healthz_proxy.wanted(cluster.infra):
        site = host_files.sha256(healthz_proxy.site(cluster.config, cluster.infra).rstrip("\n") + "\n")
        expected["nginx-healthz"] = {"files": {HOST.healthz_site: site}, "units": ["nginx"]}
    return HostState(f"{cluster.prefix}-{host.name}-drift", HostStateArgs(
        name=host.name, host=host.ssh_host, port=host.ssh_port, user=host.ssh_user,
        private_key=host.ssh_private_key, expected=expected), opts=cluster.child(depends_on))
