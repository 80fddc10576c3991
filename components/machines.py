"""A controller's machine is replaced one at a time, never all at once.

What a machine is built from (its image, zone, first-boot data: its *spec*) is the same config for every
controller, so a change to it would replace them all in one `up`, and etcd's quorum and data with them. Each infra
therefore builds its machines so that a spec change is ignored (`ignore_changes`) except on the controller named
by kthw:replaceController, which is replaced (delete first: its name, NIC and address are fixed), and
`MachineSpecs` records the spec each machine was built from: while one differs from the config's (a replacement
is pending), every preview fails, naming the one-at-a-time command, `scripts/replace-controller NAME`.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.render import content_hash

COMMAND = "scripts/replace-controller"


def spec(*parts: Any) -> str:
    """A machine spec's fingerprint."""
    return content_hash(*(str(p) for p in parts))


def spec_output(*parts: pulumi.Input[Any]) -> pulumi.Output[str]:
    """The fingerprint of parts that are Outputs, not secret even where a part is (the first-boot data holds the
    host key): a hash reveals nothing of it, and the host keys pinned by it are stack outputs in clear."""
    return pulumi.Output.unsecret(pulumi.Output.all(*parts).apply(lambda values: spec(*values)))


def pending(built: Mapping[str, str], specs: Mapping[str, str], replacing: Optional[str]) -> list[str]:
    """The controllers whose machine was built from another spec than the config's, and that are not being
    replaced now."""
    return sorted(n for n, s in specs.items() if n in built and built[n] != s and n != replacing)


def refusal(names: Sequence[str]) -> str:
    return (f"the machines of {', '.join(names)} were built from another image, zone or first-boot data than the "
            f"config now asks for; replacing them in one `up` would take etcd's quorum with them. Replace them one "
            f"at a time: {' ; '.join(f'{COMMAND} {n}' for n in names)} (or put the config back)")


class _SpecsProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("machine-specs", {**props, "built": dict(props["specs"])})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        built = olds.get("built") or {}
        waiting = pending(built, news["specs"], news.get("replacing"))
        if waiting and not news.get("replacing"):
            raise ValueError(refusal(waiting))
        return DiffResult(changes=self._built(built, news) != built, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**news, "built": self._built(olds.get("built") or {}, news)})

    @staticmethod
    def _built(built: Mapping[str, str], news: Mapping[str, Any]) -> dict[str, str]:
        """A new controller, or the one replaced now, records the config's spec; the others keep theirs."""
        return {n: s if n not in built or n == news.get("replacing") else built[n] for n, s in news["specs"].items()}


class MachineSpecs(pulumi.dynamic.Resource):
    """specs: {controller: spec} as the config asks; built: as each machine was built."""

    built: pulumi.Output[dict]

    def __init__(self, name: str, specs: Mapping[str, pulumi.Input[str]], replacing: Optional[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_SpecsProvider(), name, {"specs": dict(specs), "replacing": replacing, "built": None}, opts)


def machine_options(host: str, replacing: Optional[str], spec_paths: Sequence[str], parent: pulumi.Resource,
                    **kwargs: Any) -> pulumi.ResourceOptions:
    """A controller's machine: deleted before it is replaced (its name, NIC and address are fixed); a spec change
    is ignored unless it is the controller being replaced, where it replaces the machine."""
    if host == replacing:
        return pulumi.ResourceOptions(parent=parent, delete_before_replace=True, replace_on_changes=list(spec_paths),
                                      **kwargs)
    return pulumi.ResourceOptions(parent=parent, delete_before_replace=True, ignore_changes=list(spec_paths),
                                  **kwargs)
