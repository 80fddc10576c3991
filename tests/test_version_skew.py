"""The version-skew policy: one minor up at a time, no minor downgrade, patches either way."""
import pytest

import json
from pathlib import Path

from components.version_skew import _GateProvider, parse_running, skew_problem
from components.releases import DEFAULT_KUBERNETES
from fake_infra import build
from harness import evaluate

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
    """The preview let v1.38 through (the last up asked v1.37.2), but a host still runs v1.36.3: refused at `up`,
    before any host is touched; the rollback to v1.36.3 passes."""
    from components import version_skew

    provider = _GateProvider()
    olds = gate_state("v1.37.2", ["v1.36.3"])
    monkeypatch.setattr(version_skew, "observe_running",
                        lambda hosts: {"kubernetes": ["v1.36.3", "v1.37.2"], "etcd": ["v3.6.14"]})
    provider.diff("versions", olds, {**olds, "kubernetes": "v1.38.0"})  # the preview cannot tell
    with pytest.raises(ValueError, match="v1.36.3, v1.37.2 is deployed, v1.38.0 skips v1.37.x"):
        provider.update("versions", olds, {**olds, "kubernetes": "v1.38.0"})
    rolled_back = provider.update("versions", olds, {**olds, "kubernetes": "v1.36.3"}).outs
    assert rolled_back["running"]["kubernetes"] == ["v1.36.3", "v1.37.2"]


def test_nothing_answering_falls_back_to_what_was_asked(monkeypatch):
    from components import version_skew

    monkeypatch.setattr(version_skew, "observe_running", lambda hosts: {"kubernetes": [], "etcd": []})
    olds = gate_state("v1.36.3", [])
    with pytest.raises(ValueError, match="skips v1.37.x"):
        _GateProvider().update("versions", olds, {**olds, "kubernetes": "v1.38.0"})


def test_running_versions_parse_the_services_own_version_json():
    """tests/data/*-version.json: GET /version from the toolchain's kube-apiserver v1.36.3 and etcd v3.6.14."""
    apiserver = (ROOT / "tests/data/apiserver-version.json").read_text()
    etcd = (ROOT / "tests/data/etcd-version.json").read_text()
    out = apiserver.replace("\n", "") + "\n" + etcd.replace("\n", "") + "\n"
    assert parse_running(out) == {"kubernetes": json.loads(apiserver)["gitVersion"],
                                  "etcd": "v" + json.loads(etcd)["etcdserver"]}
    assert parse_running("\n" + etcd) == {"etcd": "v" + json.loads(etcd)["etcdserver"]}  # apiserver down
    assert parse_running("curl: (7) refused\n\n") == {}


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


def test_a_refresh_sees_what_runs_and_the_preview_decides_from_it(monkeypatch):
    """After a finished upgrade the last up saw v1.36.3 running; a refresh sees v1.37.2 everywhere, so the
    preview itself refuses the downgrade (without a refresh it could not tell and `up` would refuse it)."""
    from components import version_skew

    provider = _GateProvider()
    olds = gate_state("v1.37.2", ["v1.36.3"])
    back = {**olds, "kubernetes": "v1.36.3"}
    assert provider.diff("versions", olds, back).changes  # unrefreshed: allowed here, checked at up
    monkeypatch.setattr(version_skew, "observe_running",
                        lambda hosts: {"kubernetes": ["v1.37.2"], "etcd": ["v3.6.14"]})
    refreshed = provider.read("versions", olds).outs
    with pytest.raises(ValueError, match="cannot go down a minor version"):
        provider.diff("versions", refreshed, back)
    monkeypatch.setattr(version_skew, "observe_running", lambda hosts: {"kubernetes": [], "etcd": []})
    assert provider.read("versions", olds).outs == olds  # nobody answers: nothing learned
    # A failed upgrade (asked v1.37.2, every host still runs v1.36.3): refreshed, a jump to v1.38 is refused in the
    # preview, although it is one minor from what the last up asked.
    monkeypatch.setattr(version_skew, "observe_running",
                        lambda hosts: {"kubernetes": ["v1.36.3"], "etcd": ["v3.6.14"]})
    failed = provider.read("versions", gate_state("v1.37.2", [])).outs
    with pytest.raises(ValueError, match="skips v1.37.x"):
        provider.diff("versions", failed, {**failed, "kubernetes": "v1.38.0"})
