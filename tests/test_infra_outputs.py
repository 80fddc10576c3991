"""Every infra component registers the same outputs (publicAddress, healthCheck, controllers with name, privateIp
and sshAddress), its cloud's extras under keys of their own, once."""
from __future__ import annotations

from typing import Any

import pytest

from components.infra import Infra

SHARED = {"publicAddress", "healthCheck", "controllers"}
EXTRAS = {
    "azure": {"egressAddress", "zones"},
    "gcp": set(),
    "local": {"bridge", "stateDir", "fileServer", "mirrorCaPem", "netns", "sshPrivateKey"},
}


def build(cloud: str, tmp_path) -> None:
    if cloud == "azure":
        from test_azure import build as build_azure

        assert build_azure().error is None
    elif cloud == "gcp":
        from test_gcp import run as run_gcp

        run_gcp()
    else:
        from test_local_infra import run as run_local

        run_local(tmp_path)


@pytest.mark.parametrize("cloud", sorted(EXTRAS))
def test_every_cloud_registers_the_shared_outputs_once(cloud, tmp_path, monkeypatch):
    registered: list[tuple[str, dict[str, Any]]] = []
    original = Infra.register_outputs

    def record(self, outputs):
        registered.append((self.TYPE, outputs))
        return original(self, outputs)

    monkeypatch.setattr(Infra, "register_outputs", record)
    build(cloud, tmp_path)
    [(type_, outputs)] = registered
    assert type_.startswith(f"kthw:{cloud}:")
    assert set(outputs) == SHARED | EXTRAS[cloud]
    assert [sorted(c) for c in outputs["controllers"]] == [["name", "privateIp", "sshAddress"]] * 3
    assert outputs["healthCheck"] in {"https-readyz", "tcp", "http-healthz-proxy"}


@pytest.mark.parametrize("cloud, names", [
    ("azure", ["kthw-lb-id", *(f"kthw-controller-{i}-vmid" for i in range(3))]),
    ("gcp", ["kthw-api-forwarding-id", *(f"kthw-controller-{i}-instance-id" for i in range(3))]),
])
def test_the_check_through_the_lb_names_every_machine_and_the_lb(cloud, names):
    """A re-created VM (a new VM id) or LB runs the check through the LB again (the local stack: tests/
    test_local_infra.py, generations included)."""
    from harness import run_program

    extra = {"gcp:project": "kthw-test-project", "gcp:region": "us-central1",
             "zones": ["us-central1-a", "us-central1-b", "us-central1-c"]} if cloud == "gcp" else {}
    graph = run_program({"cloud": cloud, "adminCidrs": ["203.0.113.7/32"], **extra}, stack=cloud)
    header = graph.named("kthw-control-plane-verify").input("create").splitlines()[0]
    assert header == f"# kthw verify, after: {', '.join(names)}"
