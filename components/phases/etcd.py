"""etcd: who founds the cluster and who joins it (scale-up), the first-start part of each member's service step,
and the quorum wait every apiserver starts after."""
from __future__ import annotations

from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from components.etcd_membership import EtcdMembership
from components.infra import ControllerHost
from components.phases.cluster import Cluster, etcd_client_urls
from components.phases.remote import POLL_SECONDS, RemoteSteps
from components.render import content_hash, render

JOIN_SECONDS = 120  # a joining member waits this long for the running cluster to add it
QUORUM_SECONDS = 300  # every member waits this long for itself and a quorum of the members to be healthy


def founders(cluster: Cluster) -> pulumi.Output[list]:
    """The members that bootstrap etcd together; a member added later joins the running cluster."""
    return EtcdMembership(f"{cluster.prefix}-etcd-membership",
                          {h.name: h.instance_id or h.private_ip for h in cluster.hosts},
                          opts=cluster.child()).founders


def membership(cluster: Cluster, host: ControllerHost, founder_names: pulumi.Output[list],
               restore: Optional[dict[str, str]]) -> pulumi.Output[str]:
    """The first-start part of the etcd step: found the cluster with the other founders, or join it."""
    hosts = cluster.hosts

    def script(args: list) -> str:
        names, ips_now, me = set(args[0] or []), args[1], args[2]
        peers = {h.name: f"https://{ip}:2380" for h, ip in zip(hosts, ips_now)}
        return render("etcd/membership.sh.j2", node_name=host.name, node_ip=me,
                      founder=host.name in names,
                      founders_cluster=",".join(f"{n}={u}" for n, u in peers.items() if n in names),
                      all_members=",".join(f"{n}={u}" for n, u in peers.items()),
                      other_endpoints=etcd_client_urls([ip for h, ip in zip(hosts, ips_now) if h is not host]),
                      join_seconds=JOIN_SECONDS, poll=POLL_SECONDS, restore=restore)
    return pulumi.Output.all(founder_names, cluster.private_ips(), host.private_ip).apply(script)


def quorum(cluster: Cluster, run: RemoteSteps, depends_on: Sequence[pulumi.Resource]
           ) -> dict[str, remote.Command]:
    """On every node, after every member's start: wait until it and a quorum of the members are healthy."""
    def wait(host: ControllerHost) -> pulumi.Output[str]:
        ips = pulumi.Output.all(host.private_ip, *[h.private_ip for h in cluster.hosts])
        return ips.apply(lambda v: render(
            "etcd/wait-cluster.sh.j2", node_ip=v[0], node_name=host.name, seconds=QUORUM_SECONDS, poll=POLL_SECONDS,
            members=len(v) - 1, quorum=(len(v) - 1) // 2 + 1,
            endpoints=etcd_client_urls(v[1:]), members_hash=content_hash(*v[1:])))
    return {h.name: run.run(h, "etcd-ready", wait(h), None, depends_on=depends_on) for h in cluster.hosts}
