"""The apiserver's part beyond its service: after every apiserver encrypts with a new key, store every Secret
again with it (once per key; scripts/rotate-encryption-key drives a rotation)."""
from __future__ import annotations

from typing import Sequence

import pulumi
from pulumi_command import remote

from components.infra import ControllerHost
from components.phases.cluster import Cluster
from components.phases.remote import POLL_SECONDS, RemoteSteps
from components.paths import HOST
from components.render import render

REWRITE_SECONDS = 180


def rewrite_secrets(cluster: Cluster, run: RemoteSteps, host: ControllerHost,
                    depends_on: Sequence[pulumi.Resource]) -> remote.Command:
    body = cluster.pki.encryption_key_name.apply(lambda name: render(
        "kube-apiserver/rewrite-secrets.sh.j2", key_name=name, seconds=REWRITE_SECONDS, poll=POLL_SECONDS))
    return run.run(host, "rewrite-secrets", body, f"rm -f {HOST.kubernetes}/.secrets-encrypted-with\n",
                   depends_on=depends_on)
