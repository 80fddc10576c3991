"""The API's network load balancer: a static address, a legacy HTTP health check, a target pool and
a forwarding rule on the API port (seed 001's design).

A target pool takes only a legacy HTTP health check, which cannot speak HTTPS; nginx on port 80 of every
controller answers it by proxying to the apiserver's https://127.0.0.1:6443/readyz (scripts/nginx).
"""
from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_gcp as gcp

from components.gcp.network import HEALTH_CHECK_PORT
from components.infra import LB_PROBES

GCP_PROBE = LB_PROBES["gcp"]

HEALTH_CHECK_PATH = "/healthz"


def health_check_host(cluster_domain: str) -> str:
    """The Host header the check sends, which nginx's /healthz site answers to."""
    return f"kubernetes.default.svc.{cluster_domain}"


def create_address(name: str, *, project: str, region: str, parent: pulumi.Resource) -> gcp.compute.Address:
    """The static regional external address of the API (known before the VMs, for the certificates)."""
    return gcp.compute.Address(
        f"{name}-api-address", project=project, region=region, address_type="EXTERNAL",
        network_tier="PREMIUM", description="kthw: the Kubernetes API's public address",
        opts=pulumi.ResourceOptions(parent=parent))


def create_load_balancer(name: str, *, project: str, region: str, address: gcp.compute.Address,
                         instances: Sequence[gcp.compute.Instance], cluster_domain: str, api_port: int,
                         parent: pulumi.Resource) -> gcp.compute.ForwardingRule:
    """Health check, target pool of every controller, and the forwarding rule at the static address (returned:
    it depends on the others)."""
    opts = pulumi.ResourceOptions(parent=parent)
    check = gcp.compute.HttpHealthCheck(
        f"{name}-api-health", project=project, description="Kubernetes API readiness through nginx /healthz",
        port=HEALTH_CHECK_PORT, request_path=HEALTH_CHECK_PATH, host=health_check_host(cluster_domain),
        check_interval_sec=GCP_PROBE.interval_seconds, timeout_sec=GCP_PROBE.timeout_seconds,
        healthy_threshold=GCP_PROBE.healthy_threshold, unhealthy_threshold=GCP_PROBE.unhealthy_threshold, opts=opts)
    pool = gcp.compute.TargetPool(
        f"{name}-api-pool", project=project, region=region, session_affinity="NONE",
        instances=[i.self_link for i in instances],
        health_checks=check.self_link, opts=opts)
    rule = gcp.compute.ForwardingRule(
        f"{name}-api-forwarding", project=project, region=region, ip_address=address.address,
        ip_protocol="TCP", port_range=str(api_port), target=pool.self_link,
        load_balancing_scheme="EXTERNAL", network_tier="PREMIUM", opts=opts)
    return rule
