"""The control-plane component: bootstraps etcd, kube-apiserver, controller-manager and scheduler over SSH.

It only knows the infra interface (hosts, API endpoint, health-check style, release source), never the cloud.
The whole order is `ControlPlane._bootstrap`, which wires the phases (components/phases/, one module each);
every step is a `remote.Command` whose create and update are the same idempotent script, so a changed input
re-runs in place what depends on it (content hashes are part of each script), and whose delete removes what it
installed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import local, remote

from components import apiserver_config, host_files
from components.config import StackConfig
from components.infra import InfraOutputs, api_server_url
from components.phases import apiserver, backup, binaries, etcd, files, healthz_proxy, observe, rbac, service, verify
from components.phases.cluster import Cluster
from components.phases.components import component
from components.phases.remote import RemoteSteps
from components.pki import Pki
from components.release_digests import ReleaseDigests
from components.version_skew import VersionGate


@dataclass
class ControlPlaneArgs:
    config: StackConfig
    infra: InfraOutputs
    pki: Pki


class ControlPlane(pulumi.ComponentResource):
    """etcd and the Kubernetes control plane on every controller, in dependency order, nodes in parallel."""

    api_server_url: pulumi.Output[str]
    steps: dict[str, remote.Command]

    def __init__(self, name: str, args: ControlPlaneArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kthw:control_plane:ControlPlane", name, None, opts)
        self.api_server_url = api_server_url(args.config.api_server_dns_name, args.infra.public_address,
                                             args.infra.api_port)
        verified = self._bootstrap(name, args)
        self.register_outputs({"apiServerUrl": self.api_server_url, "verified": verified.stdout})

    def _bootstrap(self, name: str, args: ControlPlaneArgs) -> local.Command:
        """version gate (the release digests are read beside it, while the hosts boot) -> certs + binaries (etcd's
        apart) -> etcd on every node (founding, joining or restoring a snapshot) -> etcd quorum -> snapshot timer;
        and after every etcd start, apiserver on every node -> controller-manager and scheduler (and the LB's health
        proxy) -> RBAC, Secrets rewritten with a new key -> verify through the LB (after the quorum wait too)."""
        cfg, infra, hosts = args.config, args.infra, args.infra.hosts
        # A version change the skew policy refuses fails here (in the preview, and at `up` from what the hosts
        # run), before any host is touched.
        gate = VersionGate(f"{name}-versions", cfg.kubernetes_version, cfg.etcd_version, hosts,
                           opts=pulumi.ResourceOptions(parent=self, depends_on=list(infra.ready)))
        ready = [*infra.ready, gate]
        # Every artifact's sha256: pinned, or read once from the published checksum files into the state, as soon
        # as the release source answers (while the hosts boot). The installs and the drift expectations use it.
        digests = ReleaseDigests(f"{name}-release-digests", infra.releases, cfg.kubernetes_version, cfg.etcd_version,
                                 opts=pulumi.ResourceOptions(parent=self, depends_on=list(infra.releases.ready))
                                 ).digests
        values = apiserver_config.template_values(cfg)
        cluster = Cluster(prefix=name, parent=self, config=cfg, infra=infra, pki=args.pki,
                          api_server_url=self.api_server_url, digests=digests,
                          files={h.name: host_files.node_files(args.pki, h.name, first=h is hosts[0], values=values)
                                 for h in hosts},
                          units=service.units(cfg, infra, self.api_server_url))
        drift = {h.name: observe.host_state(cluster, h, ready) for h in hosts}
        run = RemoteSteps(self, name, repairs={h.name: drift[h.name].repairs for h in hosts})
        self.steps = run.steps

        etcd_binaries, kube_binaries = binaries.binaries(cluster, run, depends_on=ready)
        node_files = {h.name: files.files(cluster, run, h, depends_on=ready) for h in hosts}
        founders = etcd.founders(cluster)
        restore = backup.restore_source(cfg)
        snapshots = backup.copy_snapshot(cluster, restore, depends_on=ready)
        etcd_up = {h.name: service.service(cluster, run, h, component("etcd"),
                                           depends_on=[etcd_binaries[h.name], node_files[h.name],
                                                       *snapshots.get(h.name, [])],
                                           prestart=etcd.membership(cluster, h, founders, restore))
                   for h in hosts}
        quorum = etcd.quorum(cluster, run, depends_on=list(etcd_up.values()))
        timers = backup.snapshot_timers(cluster, run, after=quorum)
        # Every apiserver starts once every etcd member has (re)started, not after the quorum wait: it waits for
        # its storage itself (/readyz), so its start-up overlaps etcd's first election.
        api = {h.name: service.service(cluster, run, h, component("kube-apiserver"),
                                       depends_on=[*etcd_up.values(), kube_binaries[h.name], node_files[h.name]])
               for h in hosts}
        after_api: list[pulumi.Resource] = []
        for h in hosts:
            after_api.append(service.service(cluster, run, h, component("kube-controller-manager"),
                                             depends_on=[api[h.name]]))
            after_api.append(service.service(cluster, run, h, component("kube-scheduler"), depends_on=[api[h.name]]))
            if healthz_proxy.wanted(infra):
                after_api.append(healthz_proxy.healthz_proxy(cfg, infra, run, h, depends_on=[api[h.name]]))
        roles = rbac.rbac(run, hosts[0], depends_on=list(api.values()))
        rewrite = apiserver.rewrite_secrets(cluster, run, hosts[0], depends_on=list(api.values()))
        return verify.verify(cluster, depends_on=[roles, rewrite, *after_api, *timers, *ready])
