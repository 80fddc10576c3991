"""The last phase: GET /readyz and /version through the load balancer from where Pulumi runs, trusting only the
cluster CA; again whenever a machine or the LB comes back new."""
from __future__ import annotations

import shlex
from typing import Sequence

import pulumi
from pulumi_command import local

from components.phases.cluster import Cluster
from components.render import script

VERIFY_SECONDS = 90


def verify(cluster: Cluster, depends_on: Sequence[pulumi.Resource]) -> local.Command:
    checker = script("verify-api.py")
    # Its header names the machines and the LB as they run now: one that came back new (rebuilt, re-created) runs
    # the check again, in place, so `up` returns once the API answers through the LB.
    header = pulumi.Output.all(*cluster.infra.incarnations).apply(
        lambda names: f"# kthw verify, after: {', '.join(names) or '-'}\n")
    run = pulumi.Output.concat(header, "python3 -c ", shlex.quote(checker), " ", cluster.api_server_url, " ",
                               cluster.config.kubernetes_version, f" {VERIFY_SECONDS}")
    return local.Command(f"{cluster.prefix}-verify", create=run, update=run, stdin=cluster.pki.cas["ca"].cert_pem,
                         opts=cluster.child(depends_on))
