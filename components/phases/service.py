"""Install and (re)start one service of the component table on one node (etcd, apiserver, controller-manager,
scheduler): its unit, the hash of its inputs (unit, files, release versions) and its health wait."""
from __future__ import annotations

from typing import Sequence

import pulumi
from pulumi_command import remote

from components import apiserver_config, host_files
from components.host_files import NodeFiles
from components.config import StackConfig
from components.infra import ControllerHost, InfraOutputs
from components.phases.cluster import Cluster, etcd_client_urls
from components.phases.components import COMPONENTS, TLS_CIPHER_SUITES, Component, render_unit
from components.phases.remote import POLL_SECONDS, RemoteSteps
from components.paths import HOST
from components.render import content_hash, render


def units(cfg: StackConfig, infra: InfraOutputs, api_server_url: pulumi.Output[str]
          ) -> dict[str, dict[str, pulumi.Output[str]]]:
    """Every node's rendered unit of every component (the drift probe compares them, the service step installs).
    An apiserver going down keeps serving for as long as the LB's probe takes to stop sending to it."""
    hosts = infra.hosts
    ips = pulumi.Output.all(*[h.private_ip for h in hosts])

    def unit(host: ControllerHost, row: Component) -> pulumi.Output[str]:
        # The service-account issuer is the API's own URL (the LB's address or apiServerDnsName).
        return pulumi.Output.all(host.private_ip, ips, api_server_url).apply(lambda v: render_unit(
            row, host, node_ip=v[0], etcd_servers=etcd_client_urls(v[1]),
            heartbeat_ms=cfg.etcd_heartbeat_ms, election_ms=cfg.etcd_election_ms,
            service_account_issuer=v[2], service_cidr=cfg.service_cidr, cluster_cidr=cfg.cluster_cidr,
            shutdown_delay=f"{infra.probe.drain_seconds}s", tls_cipher_suites=",".join(TLS_CIPHER_SUITES),
            admission_plugins=apiserver_config.admission_plugins(cfg)))
    return {h.name: {row.unit: unit(h, row) for row in COMPONENTS} for h in hosts}


def inputs(row: Component, node: NodeFiles) -> list[dict[str, str]]:
    """What the row's service runs on, on `node`, staged by the files and binaries steps: where each waits, where
    it goes live, its mode and owner."""
    files = [{"staged": HOST.staged_file(f.path), "live": f.path, "mode": f"{f.mode:04o}", "owner": f.owner}
             for f in node.placed if row.unit in f.readers]
    return files + [{"staged": HOST.staged_binary(b), "live": HOST.binary(b), "mode": "0755", "owner": "root"}
                    for b in row.binaries]


def service(cluster: Cluster, run: RemoteSteps, host: ControllerHost, row: Component,
            depends_on: Sequence[pulumi.Resource], prestart: pulumi.Input[str] = "") -> remote.Command:
    """The row's service on `host`: installed, started (first start) or restarted (rolling), then healthy."""
    unit_content = cluster.units[host.name][row.unit]
    staged = inputs(row, cluster.files[host.name])
    files = cluster.files[host.name].read_by(row.unit)
    versions = f"{cluster.config.kubernetes_version} {cluster.config.etcd_version}"
    endpoints = cluster.private_ips().apply(etcd_client_urls)
    body = pulumi.Output.all(unit_content, host_files.fingerprint(files), endpoints, prestart).apply(
        lambda v: render("common/service.sh.j2", unit=row.unit, unit_content=v[0].rstrip("\n"), prestart=v[3],
                         inputs_hash=content_hash(v[0], v[1], versions), no_block=row.first_start == "no-block",
                         health=row.health, health_seconds=row.health_seconds, poll=POLL_SECONDS,
                         lock_endpoints=v[2] if row.restart == "rolling" else "", inputs=staged,
                         readmit_seconds=cluster.infra.probe.readmit_seconds if row.lb_backend else 0))
    members = [h.name for h in cluster.hosts]
    delete = endpoints.apply(lambda e: render(row.delete, unit=row.unit, node_name=host.name, endpoints=e,
                                              members=members))
    return run.run(host, row.unit, body, delete, depends_on=depends_on)
