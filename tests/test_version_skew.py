"""The version-skew policy: one minor up at a time, no minor downgrade, patches either way."""
import pytest

from components.version_skew import _GateProvider, skew_problem
from components.releases import DEFAULT_KUBERNETES
from fake_infra import build
from harness import evaluate


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


def test_the_provider_check_fails_on_the_deployed_to_asked_step():
    provider = _GateProvider()
    ok = provider.check({"kubernetes": "v1.36.3", "etcd": "v3.6.14"}, {"kubernetes": "v1.37.2", "etcd": "v3.6.15"})
    assert not ok.failures
    bad = provider.check({"kubernetes": "v1.37.2", "etcd": "v3.6.14"}, {"kubernetes": "v1.36.3", "etcd": "v3.5.0"})
    assert [f.property for f in bad.failures] == ["kubernetes", "etcd"]
    assert "kthw:etcdVersion" in bad.failures[1].reason
    fresh = provider.check({}, {"kubernetes": "v1.36.3", "etcd": "v3.6.14"})
    assert not fresh.failures


def test_every_bootstrap_step_waits_for_the_gate():
    graph = evaluate(lambda: build(), {"cloud": "local"})
    gate = graph.named("kthw-control-plane-versions")
    assert gate.inputs["kubernetes"] == DEFAULT_KUBERNETES
    steps = [r for r in graph.resources if r.type == "command:remote:Command"]
    assert len(steps) > 10
    for r in steps:
        assert graph.reaches(r, gate), r.name
