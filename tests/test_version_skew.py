"""The version-skew policy: one minor up at a time, no minor downgrade, patches either way."""
import pytest

import json
from pathlib import Path

from components import drift
from components.version_skew import RUNNING_VERSIONS, _GateProvider, parse_running, skew_problem
from components.releases import DEFAULT_KUBERNETES
from fake_infra import build
from harness import evaluate, run_program, unwrap

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("deployed,wanted", [
    (None, "v1.36.3"), ("v1.36.3", "v1.36.3"), ("v1.36.1", "v1.36.3"), ("v1.36.3", "v1.36.1"),
    ("v1.36.3", "v1.37.2"),
])
def test_allowed_steps(deployed, wanted):
    assert skew_problem("kubernetesVersion", deployed, wanted) is None


@pytest.mark.parametrize("deployed,wanted,words", [
    ("v1.35.2", "v1.37.2", ["one minor version at a time", "v1.36.x"]),
    ("v1.37.2", "v1.36.3", ["cannot go down a minor version", "v1.37.2 is deployed"]),
    ("v1.36.3", "v2.0.0", ["major"]),
])
def test_refused_steps_name_the_key_and_the_way_out(deployed, wanted, words):
    problem = skew_problem("kubernetesVersion", deployed, wanted)
    assert problem and problem.startswith("kthw:kubernetesVersion ")
    for word in words:
        assert word in problem


@pytest.mark.parametrize("running,wanted,refused", [
    (["v1.36.3"], "v1.36.3", False),  # a failed upgrade's honest rollback: nothing restarted on v1.37.2
    (["v1.36.3", "v1.37.2"], "v1.36.3", False),  # ... or some did: back to the lowest running minor
    (["v1.36.3", "v1.37.2"], "v1.37.2", False),  # the retry forward
    (["v1.36.3", "v1.37.2"], "v1.38.0", True),  # a further jump while a host still runs v1.36
    (["v1.37.2"], "v1.36.3", True),  # a finished upgrade does not go back a minor
])
def test_what_runs_decides(running, wanted, refused):
    assert bool(skew_problem("kubernetesVersion", running, wanted)) == refused


def gate_state(asked: str, running: list[str]) -> dict:
    return {"kubernetes": asked, "etcd": "v3.6.14", "hosts": [], "running": {"kubernetes": running, "etcd": []}}


def test_the_preview_refuses_only_what_both_readings_refuse():
    provider = _GateProvider()
    failed_upgrade = gate_state("v1.37.2", ["v1.36.3"])  # the last up asked v1.37.2 and saw v1.36.3 running
    assert provider.diff("versions", failed_upgrade, {**failed_upgrade, "kubernetes": "v1.36.3"}).changes
    assert provider.diff("versions", failed_upgrade, {**failed_upgrade, "kubernetes": "v1.37.2"}).changes is False
    with pytest.raises(ValueError, match="kthw:kubernetesVersion can go up one minor version at a time"):
        provider.diff("versions", gate_state("v1.37.2", ["v1.37.2"]), {**failed_upgrade, "kubernetes": "v1.39.0"})
    with pytest.raises(ValueError, match="kthw:etcdVersion cannot go down a minor version"):
        provider.diff("versions", gate_state("v1.36.3", []), {**failed_upgrade, "etcd": "v3.5.0"})
    fresh = provider.diff("versions", {}, {"kubernetes": "v1.36.3", "etcd": "v3.6.14"})
    assert fresh.changes


def test_up_checks_what_the_hosts_run_now(monkeypatch):
    """The last up asked v1.37.2, but a host still runs v1.36.3: v1.38 is refused in the preview and at `up`,
    before any host is touched; the rollback to v1.36.3 passes."""
    from components import version_skew

    provider = _GateProvider()
    olds = gate_state("v1.37.2", ["v1.36.3"])
    monkeypatch.setattr(version_skew, "observe_running",
                        lambda hosts: {"kubernetes": ["v1.36.3", "v1.37.2"], "etcd": ["v3.6.14"]})
    for check in (provider.diff, provider.update):  # the preview, and `up` again before any host is touched
        with pytest.raises(ValueError, match="v1.36.3, v1.37.2 is deployed, v1.38.0 skips v1.37.x"):
            check("versions", olds, {**olds, "kubernetes": "v1.38.0"})
    rolled_back = provider.update("versions", olds, {**olds, "kubernetes": "v1.36.3"}).outs
    assert rolled_back["running"]["kubernetes"] == ["v1.36.3", "v1.37.2"]


def test_nothing_answering_falls_back_to_what_was_asked(monkeypatch):
    from components import version_skew

    monkeypatch.setattr(version_skew, "observe_running", lambda hosts: {"kubernetes": [], "etcd": []})
    olds = gate_state("v1.36.3", [])
    with pytest.raises(ValueError, match="skips v1.37.x"):
        _GateProvider().update("versions", olds, {**olds, "kubernetes": "v1.38.0"})


def test_running_versions_parse_what_the_probe_prints_from_the_services_own_version_json(tmp_path):
    """RUNNING_VERSIONS as a host runs it, with a curl that answers with tests/data/*-version.json (GET /version
    from the toolchain's kube-apiserver v1.36.3 and etcd v3.6.14, pretty-printed as they answer)."""
    import subprocess

    apiserver = (ROOT / "tests/data/apiserver-version.json").read_text()
    etcd = (ROOT / "tests/data/etcd-version.json").read_text()
    want = {"kubernetes": json.loads(apiserver)["gitVersion"], "etcd": "v" + json.loads(etcd)["etcdserver"]}

    def probe(answers: str) -> str:
        (tmp_path / "curl").write_text(f"#!/bin/sh\n{answers}\n")
        (tmp_path / "curl").chmod(0o755)
        return subprocess.run(["bash", "-c", RUNNING_VERSIONS], env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=30, check=True).stdout

    both = probe(f'case "$*" in *:6443/*) cat {ROOT}/tests/data/apiserver-version.json ;; '
                 f'*) cat {ROOT}/tests/data/etcd-version.json ;; esac')
    assert parse_running(both) == want
    assert drift.probe_command({}, versions=True).endswith(RUNNING_VERSIONS)
    assert RUNNING_VERSIONS not in drift.probe_command({})  # a refresh's probe does not ask
    assert drift.parse_probe(drift.probe_command({}, versions=True).replace(RUNNING_VERSIONS, both))["running"] == want
    apiserver_down = probe(f'case "$*" in *:6443/*) echo "curl: (7) refused" >&2; exit 7 ;; '
                           f'*) cat {ROOT}/tests/data/etcd-version.json ;; esac')
    assert parse_running(apiserver_down) == {"etcd": want["etcd"]}
    assert parse_running(probe("echo '<html>bad gateway'")) == {}  # not JSON: nothing counted
    assert parse_running("{\"unit\":\"etcd\"}\nkthw-running etcd \n") == {}


def test_every_bootstrap_step_waits_for_the_gate():
    graph = evaluate(lambda: build(), {"cloud": "local"})
    gate = graph.named("kthw-control-plane-versions")
    assert gate.inputs["kubernetes"] == DEFAULT_KUBERNETES
    steps = [r for r in graph.resources if r.type == "command:remote:Command"]
    assert len(steps) > 10
    for r in steps:
        assert graph.reaches(r, gate), r.name


def test_a_controller_that_does_not_answer_runs_nothing_we_count():
    import socket

    from components.version_skew import observe_running

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    hosts = [{"host": "127.0.0.1", "port": closed, "user": "kthw", "private_key": key}]  # refused: not the key
    assert observe_running(hosts) == {"kubernetes": [], "etcd": []}


def test_a_changed_version_is_decided_from_what_runs_now_and_an_unchanged_one_reads_nothing(monkeypatch):
    """After a finished upgrade the last up saw v1.36.3 running; asked to go back, the preview reads the hosts
    (v1.37.2 everywhere) and refuses the downgrade itself. Nothing answering leaves the fallback in force; the
    everyday preview (no version changed) reads nothing."""
    from components import version_skew

    provider = _GateProvider()
    olds = gate_state("v1.37.2", ["v1.36.3"])
    back = {**olds, "kubernetes": "v1.36.3"}
    monkeypatch.setattr(version_skew, "observe_running",
                        lambda hosts: {"kubernetes": ["v1.37.2"], "etcd": ["v3.6.14"]})
    with pytest.raises(ValueError, match="cannot go down a minor version"):
        provider.diff("versions", olds, back)
    monkeypatch.setattr(version_skew, "observe_running", lambda hosts: {"kubernetes": [], "etcd": []})
    assert provider.diff("versions", olds, back).changes  # nothing seen: allowed here, checked at up
    # A failed upgrade (asked v1.37.2, every host still runs v1.36.3): a jump to v1.38 is refused in the preview,
    # although it is one minor from what the last up asked.
    monkeypatch.setattr(version_skew, "observe_running",
                        lambda hosts: {"kubernetes": ["v1.36.3"], "etcd": ["v3.6.14"]})
    failed = gate_state("v1.37.2", [])
    with pytest.raises(ValueError, match="skips v1.37.x"):
        provider.diff("versions", failed, {**failed, "kubernetes": "v1.38.0"})

    def no_reading(hosts):
        raise AssertionError("read the hosts for an unchanged version")
    monkeypatch.setattr(version_skew, "observe_running", no_reading)
    assert not provider.diff("versions", failed, {**failed}).changes


def test_the_gate_reads_nothing_on_refresh_and_pins_the_host_keys():
    """A refresh's one SSH session per host is the drift probe's; the gate's own reading (a version changed) goes
    through the same pinned client."""
    assert "read" not in vars(_GateProvider)
    graph = run_program({"cloud": "azure", "adminCidrs": ["203.0.113.7/32"]}, stack="azure")
    gate = graph.named("kthw-control-plane-versions")
    hosts = unwrap(gate.inputs["hosts"])
    assert [h["name"] for h in hosts] == [f"controller-{i}" for i in range(3)]
    assert all(h["host_key"].startswith("ssh-ed25519 ") for h in hosts)
