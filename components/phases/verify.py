"""The last phase: GET /version through the load balancer from where Pulumi runs, trusting only the cluster CA."""
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
    run = pulumi.Output.concat("python3 -c ", shlex.quote(checker), " ", cluster.api_server_url, " ",
                               cluster.config.kubernetes_version, f" {VERIFY_SECONDS}")
    return local.Command(f"{cluster.prefix}-verify", create=run, update=run, stdin=cluster.pki.cas["ca"].cert_pem,
                         opts=cluster.child(depends_on))
