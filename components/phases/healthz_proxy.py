"""The load balancer's health check where it can only speak plain HTTP (GCP's legacy HTTP health check): nginx on
port 80 answers /healthz by asking the local apiserver's /readyz over TLS."""
from __future__ import annotations

from typing import Sequence

import pulumi
from pulumi_command import remote

from components.config import StackConfig
from components.infra import ControllerHost, HealthCheckStyle, InfraOutputs
from components.phases.remote import RemoteSteps
from components.paths import HOST
from components.render import render


def wanted(infra: InfraOutputs) -> bool:
    return infra.health_check == HealthCheckStyle.HTTP_HEALTHZ_PROXY


def site(cfg: StackConfig, infra: InfraOutputs) -> str:
    """The nginx site (the drift probe compares it too)."""
    return render("nginx/kubernetes-healthz.conf.j2", cluster_domain=cfg.cluster_domain,
                  listen_port=80, upstream_port=infra.api_port, ca_path=f"{HOST.kubernetes}/ca.pem")


def healthz_proxy(cfg: StackConfig, infra: InfraOutputs, run: RemoteSteps, host: ControllerHost,
                  depends_on: Sequence[pulumi.Resource]) -> remote.Command:
    body = render("nginx/install.sh.j2", site=site(cfg, infra), probe_host=f"kubernetes.default.svc.{cfg.cluster_domain}")
    return run.run(host, "nginx-healthz", body, render("nginx/remove.sh.j2"), depends_on=depends_on)
