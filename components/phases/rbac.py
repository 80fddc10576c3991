"""Cluster-wide RBAC (the apiserver's access to kubelets, the admins' group binding), applied once from the
first controller with the break-glass credential that stays on the controllers."""
from __future__ import annotations

from typing import Sequence

import pulumi
from pulumi_command import remote

from components.infra import ControllerHost
from components.phases.remote import POLL_SECONDS, RemoteSteps
from components.render import content_hash, render, script

APPLY_SECONDS = 180


def rbac(run: RemoteSteps, host: ControllerHost, depends_on: Sequence[pulumi.Resource]) -> remote.Command:
    manifest = script("rbac/rbac.yaml")
    body = render("rbac/apply.sh.j2", manifest=manifest.rstrip("\n"), manifest_hash=content_hash(manifest),
                  seconds=APPLY_SECONDS, poll=POLL_SECONDS)
    return run.run(host, "rbac", body, render("rbac/remove.sh.j2"), depends_on=depends_on)
