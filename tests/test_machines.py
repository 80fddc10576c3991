"""Machines are replaced one controller at a time (components/machines.py): a change that would replace them all
is refused in the preview, naming scripts/replace-controller; the one being replaced goes first (its fixed name,
NIC and address are free again before the new one is created)."""
from __future__ import annotations

import pytest

from components.azure.vms import VM_SPEC
from components.gcp.instances import INSTANCE_SPEC
from components.local.infra import HOST_SPEC

# What each provider re-creates a machine for (its schema: a change to these replaces it), which the specs must
# cover; checked here on their own, not by reading the program's lists back.
MUST_COVER = {
    "azure": {"storageProfile.imageReference", "zones", "osProfile"},
    "gcp": {"bootDisk", "zone"},
    "local": {"environment.KTHW_BASE_ROOT", "environment.KTHW_USER_DATA"},
}
from components.machines import _SpecsProvider
import runpy

from harness import ROOT, FakeCloud, evaluate, fake_public_ip, fake_ssh_key, run_program, unwrap
from test_rendered_identical import local_program

ADMIN = ["203.0.113.7/32"]
AZURE = {"cloud": "azure", "adminCidrs": ADMIN}
GCP = {"cloud": "gcp", "adminCidrs": ADMIN, "gcp:project": "kthw-test-project", "gcp:region": "us-central1",
       "zones": ["us-central1-a", "us-central1-b", "us-central1-c"]}
NAMES = [f"controller-{i}" for i in range(3)]


def test_a_spec_change_for_every_controller_is_refused_until_replaced_one_at_a_time():
    p = _SpecsProvider()
    built = p.create({"specs": {n: "old" for n in NAMES}, "replacing": None}).outs
    everyone = {"specs": {n: "new" for n in NAMES}, "replacing": None}
    with pytest.raises(ValueError) as refused:
        p.diff("id", built, everyone)
    assert "scripts/replace-controller controller-0 ; scripts/replace-controller controller-1" in str(refused.value)
    for name in NAMES:  # scripts/replace-controller NAME, one after the other
        one = {**everyone, "replacing": name}
        assert p.diff("id", built, one).changes
        built = p.update("id", built, one).outs
        assert built["built"][name] == "new"
    assert not p.diff("id", built, everyone).changes  # all replaced: nothing pending, nothing refused


def test_a_new_controller_is_built_from_the_config_and_nothing_is_pending():
    p = _SpecsProvider()
    built = p.create({"specs": {n: "old" for n in NAMES}, "replacing": None}).outs
    five = {"specs": {**{n: "old" for n in NAMES}, "controller-3": "old", "controller-4": "old"}, "replacing": None}
    assert p.diff("id", built, five).changes
    assert p.update("id", built, five).outs["built"]["controller-4"] == "old"


def machines(graph, type_: str) -> dict[str, object]:
    return {r.name: r for r in graph.of_type(type_)}


@pytest.mark.parametrize("cloud,config,type_,spec_paths,names", [
    ("azure", AZURE, "azure-native:compute:VirtualMachine", VM_SPEC, [f"kthw-controller-{i}" for i in range(3)]),
    ("gcp", GCP, "gcp:compute/instance:Instance", INSTANCE_SPEC, [f"kthw-controller-{i}" for i in range(3)]),
])
def test_cloud_machines_go_one_at_a_time_and_first(cloud, config, type_, spec_paths, names):
    assert MUST_COVER[cloud] <= set(spec_paths)
    for replacing in (None, "controller-1"):
        graph = run_program({**config, **({"replaceController": replacing} if replacing else {})}, stack=cloud)
        found = machines(graph, type_)
        assert sorted(found) == names
        for name, machine in found.items():
            # Fixed name, NIC and address: the old machine must be gone before the new one is created.
            assert machine.delete_before_replace, name
            if replacing and name.endswith(replacing):
                assert machine.replace_on_changes == list(spec_paths) and not machine.ignore_changes
            else:
                assert machine.ignore_changes == list(spec_paths) and not machine.replace_on_changes
        specs = graph.named("kthw-machine-specs")
        assert sorted(specs.input("specs")) == NAMES and specs.input("replacing") == replacing
    if cloud == "azure":
        for vm in found.values():  # the NIC outlives its VM: the replacement takes the same NIC, IP and pool
            assert [n["deleteOption"] for n in vm.input("networkProfile")["networkInterfaces"]] == ["Detach"]


def test_local_hosts_go_one_at_a_time(tmp_path, monkeypatch):
    assert MUST_COVER["local"] <= set(HOST_SPEC)
    program, _ = local_program(tmp_path, monkeypatch)
    graph = evaluate(program, {"cloud": "local", "replaceController": "controller-2"}, stack="local")
    for i in range(3):
        host = graph.named(f"kthw-controller-{i}")
        assert host.delete_before_replace
        if i == 2:  # (pulumi-command adds its own triggers[*])
            assert set(HOST_SPEC) <= set(host.replace_on_changes) and not host.ignore_changes
        else:
            assert host.ignore_changes == list(HOST_SPEC) and not set(HOST_SPEC) & set(host.replace_on_changes)


def test_replace_controller_must_name_a_controller():
    graph = run_program({**AZURE, "replaceController": "controller-7"}, stack="azure", expect_error=True)
    assert "kthw:replaceController must name one controller (controller-0 .. controller-2)" in str(graph.error)


class _BuiltBefore(FakeCloud):
    """A stack whose controller-1 machine was built from older first-boot data (before its host key existed)."""

    def new_resource(self, args):
        name, outputs = super().new_resource(args)
        if args.name.endswith("-machine-specs"):
            outputs["built"] = {**outputs["built"], "controller-1": "an-older-spec"}
        return name, outputs


@pytest.mark.parametrize("cloud,config", [("azure", AZURE), ("gcp", GCP)])
def test_a_host_key_is_pinned_only_on_a_machine_built_with_it(cloud, config):
    """A machine from before pinned host keys has keys of its own: every SSH client of the bootstrap pins the
    program's key on the others, and on it only once scripts/replace-controller has rebuilt it."""
    graph = evaluate(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"), config, stack=cloud,
                     mocks=_BuiltBefore())
    remote = [r for r in graph.of_type("command:remote:Command")]
    for i, name in enumerate(NAMES):
        pinned = {unwrap(r.inputs["connection"]).get("hostKey") for r in remote
                  if unwrap(r.inputs["connection"])["host"] in {f"35.0.113.1{i}", fake_public_ip(f"kthw-{name}-ip")}}
        assert pinned == ({None} if name == "controller-1" else {fake_ssh_key(f"kthw-{name}-host-key")[1]}), name
    hosts = {c["name"]: c.get("sshHostKey") for c in unwrap(graph.stack_outputs["controllers"])}
    assert hosts["controller-1"] is None and hosts["controller-0"] == fake_ssh_key("kthw-controller-0-host-key")[1]
