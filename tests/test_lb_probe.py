"""The apiservers' drain and rolling restarts follow the load balancer's probe timings, on every cloud, and the
local LB can probe with a cloud's timings (kthw:localLbProbe) and the stack's cluster domain."""
from __future__ import annotations

import re

import pytest

from components.infra import LB_PROBES
from harness import evaluate, run_program
from test_rendered_identical import local_program

ADMIN = ["203.0.113.7/32"]
GCP = {"cloud": "gcp", "adminCidrs": ADMIN, "gcp:project": "kthw-test-project", "gcp:region": "us-central1",
       "zones": ["us-central1-a"]}


def apiserver_step(graph, node: str = "controller-1") -> str:
    return graph.named(f"kthw-control-plane-{node}-kube-apiserver").input("create")


def drain(graph) -> int:
    return int(re.search(r"--shutdown-delay-duration=(\d+)s", apiserver_step(graph)).group(1))


def readmit(graph) -> int:
    return int(re.search(r"sleep (\d+) # until the LB sends to it again", apiserver_step(graph)).group(1))


def test_azure_and_gcp_drain_for_their_probes():
    azure = run_program({"cloud": "azure", "adminCidrs": ADMIN}, stack="azure")
    gcp = run_program(GCP, stack="gcp")
    # Azure probes every 5 s and takes 2 failures; GCP every 5 s and takes 3: each apiserver keeps serving that
    # long (and a margin) after its /readyz goes red, and a rolling restart waits for the LB to take it back.
    assert (drain(azure), readmit(azure)) == (5 * 2 + 5, 5 * 2)
    assert (drain(gcp), readmit(gcp)) == (5 * 3 + 5, 5 * 2)
    probe = azure.named("kthw-lb").input("probes")[0]
    assert (probe["intervalInSeconds"], probe["probeThreshold"]) == (5, 2)
    check = gcp.named("kthw-api-health")
    assert (check.input("checkIntervalSec"), check.input("unhealthyThreshold")) == (5, 3)


@pytest.mark.parametrize("profile", ["haproxy", "azure", "gcp"])
def test_the_local_lb_takes_a_clouds_timings(profile, tmp_path, monkeypatch):
    program, _ = local_program(tmp_path, monkeypatch)
    graph = evaluate(program, {"cloud": "local", "localLbProbe": profile, "clusterDomain": "k8s.internal",
                               "healthCheck": "http-healthz-proxy"}, stack="local")
    probe = LB_PROBES[profile]
    haproxy = graph.named("kthw-lb").input("stdin")
    assert (f"default-server inter {probe.interval_seconds}s fall {probe.unhealthy_threshold} "
            f"rise {probe.healthy_threshold}") in haproxy
    assert f"timeout check {probe.timeout_seconds}s" in haproxy
    assert "hdr Host kubernetes.default.svc.k8s.internal" in haproxy  # what nginx's site answers on
    assert drain(graph) == probe.drain_seconds and readmit(graph) == probe.readmit_seconds


def test_local_lb_probe_is_checked():
    graph = run_program({"cloud": "local", "localLbProbe": "aws"}, stack="local", expect_error=True)
    assert "kthw:localLbProbe must be one of azure, gcp, haproxy" in str(graph.error)
    graph = run_program({"cloud": "azure", "adminCidrs": ADMIN, "localLbProbe": "gcp"}, stack="azure",
                        expect_error=True)
    assert "kthw:localLbProbe is for the local stack only" in str(graph.error)
