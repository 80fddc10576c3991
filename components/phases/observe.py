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
from components.phases.components import component
from components.phases.service import inputs
from components.paths import DIRECTORIES, HOST


def host_state(cluster: Cluster, host: ControllerHost, depends_on: Sequence[pulumi.Resource]) -> HostState:
    """The files step answers for the staged files, the binaries step for the staged binaries and live tools, and
    each service's step for its unit, its live files and its live binary (a drifted one is put back with a
    rolling restart)."""
    node = cluster.files[host.name]
    staged = host_files.digests(node.contents).apply(lambda d: {HOST.staged_file(p): h for p, h in d.items()})
    live_binaries = expected_binaries(cluster, live=True)
    expected: dict[str, pulumi.Input] = {
        # The files step makes the directories and puts back their modes and owners (components/paths.py).
        "files": {"files": staged, "modes": {d.path: f"{d.mode:o} {d.owner}" for d in DIRECTORIES}},
        "binaries": {"files": expected_binaries(cluster)},
    }
    for unit, content in cluster.units[host.name].items():
        unit_file = content.apply(lambda c, u=unit: {HOST.unit(u): host_files.sha256(c.rstrip("\n") + "\n")})
        files = pulumi.Output.all(unit_file, host_files.digests(node.read_by(unit)), live_binaries).apply(
            lambda v, u=unit: {**v[0], **v[1], **{p: h for p, h in v[2].items() if p == HOST.binary(u)}})
        # Modes and owners as the step leaves them (CIS: units 0600; etcd's files its own).
        modes = {HOST.unit(unit): "600 root", **{i["live"]: f"{int(i['mode'], 8):o} {i['owner']}"
                                               for i in inputs(component(unit), node)}}
        expected[unit] = {"files": files, "units": [unit], "modes": modes}
    if healthz_proxy.wanted(cluster.infra):
        site = host_files.sha256(healthz_proxy.site(cluster.config, cluster.infra).rstrip("\n") + "\n")
        expected["nginx-healthz"] = {"files": {HOST.healthz_site: site}, "units": ["nginx"]}
    return HostState(f"{cluster.prefix}-{host.name}-drift", HostStateArgs(
        name=host.name, host=host.ssh_host, port=host.ssh_port, user=host.ssh_user,
        private_key=host.ssh_private_key, expected=expected, host_key=host.ssh_host_key), opts=cluster.child(depends_on))
