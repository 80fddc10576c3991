"""Which etcd members founded the cluster, so a later member joins it instead of bootstrapping a new one.

etcd starts a member one of two ways: with the whole initial cluster (`initial-cluster-state=new`, every member
at once: a fresh install) or by joining a running cluster (`member add`, then `initial-cluster-state=existing`:
a scale-up, or a replaced host). `EtcdMembership` keeps the founders in the state: on create, every member; on
each update, the founders that are still there on the same instance. A member that is not a founder joins.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult


def next_founders(old_founders: list[str], old_members: Mapping[str, str], members: Mapping[str, str]) -> list[str]:
    """The founders after a change of members: those still present on the same instance."""
    return [name for name in old_founders if name in members and members[name] == old_members.get(name)]


class _MembershipProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("etcd-membership", {"members": props["members"], "founders": sorted(props["members"])})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=olds.get("members") != news.get("members"), replaces=[],
                          delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        founders = next_founders(list(olds.get("founders", [])), olds.get("members", {}), news["members"])
        return UpdateResult({"members": news["members"], "founders": founders})


class EtcdMembership(pulumi.dynamic.Resource):
    """members: {name: instance} of the controllers now; founders: the members that bootstrapped the cluster."""

    members: pulumi.Output[dict]
    founders: pulumi.Output[list]

    def __init__(self, name: str, members: pulumi.Input[Mapping[str, str]],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_MembershipProvider(), name, {"members": members, "founders": None}, opts)
