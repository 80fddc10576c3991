"""Version-skew gate: refuse a Kubernetes or etcd version change that their skew policies do not allow.

Kubernetes and etcd upgrade one minor version at a time and do not downgrade across minors. The versions a
stack runs are the inputs of the `VersionGate` resource; its provider's `check` compares the previous inputs
(the deployed versions, from the state) with the new ones, so a bad jump fails in the preview, naming the
key, before any host is touched. Every bootstrap step depends on the gate.
"""
from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.releases import minor

# (config key, gate input) of each versioned component.
VERSIONED = (("kubernetesVersion", "kubernetes"), ("etcdVersion", "etcd"))


def skew_problem(key: str, deployed: Optional[str], wanted: str) -> Optional[str]:
    """Why going from `deployed` to `wanted` is refused, or None when the step is allowed."""
    if not deployed or deployed == wanted:
        return None
    (old_major, old_minor), (new_major, new_minor) = minor(deployed), minor(wanted)
    if new_major != old_major:
        return (f"kthw:{key} cannot change major version ({deployed} is deployed, {wanted} asked); "
                "build a new cluster instead")
    if new_minor > old_minor + 1:
        step = f"v{old_major}.{old_minor + 1}"
        return (f"kthw:{key} can go up one minor version at a time: {deployed} is deployed, {wanted} skips "
                f"{step}.x; upgrade to a {step} release first")
    if new_minor < old_minor:
        return (f"kthw:{key} cannot go down a minor version ({deployed} is deployed, {wanted} asked); "
                "restore an etcd snapshot taken before the upgrade instead (see docs/operations.md, Backup and restore)")
    return None


class _GateProvider(ResourceProvider):
    """Checks the step from the deployed versions (olds) to the asked ones (news); holds nothing else."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        for key, field in VERSIONED:
            problem = skew_problem(key, (olds or {}).get(field), news.get(field, ""))
            if problem:
                failures.append(CheckFailure(field, problem))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("versions", dict(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [field for _, field in VERSIONED if olds.get(field) != news.get(field)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(dict(news))


class VersionGate(pulumi.dynamic.Resource):
    """The deployed Kubernetes and etcd versions; changing them is checked against the skew policy."""

    kubernetes: pulumi.Output[str]
    etcd: pulumi.Output[str]

    def __init__(self, name: str, kubernetes: str, etcd: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_GateProvider(), name, {"kubernetes": kubernetes, "etcd": etcd}, opts)
