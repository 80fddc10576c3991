"""The shape every infra component (azure, gcp, local) outputs; the control plane depends only on it."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional, Sequence

import pulumi

API_PORT = 6443


class HealthCheckStyle(str, Enum):
    """How the load balancer decides that a controller is healthy."""

    HTTPS_READYZ = "https-readyz"  # HTTPS GET /readyz on 6443 (Azure default, local default)
    TCP = "tcp"  # TCP connect on 6443 (Azure, selectable)
    HTTP_HEALTHZ_PROXY = "http-healthz-proxy"  # HTTP GET /healthz on 80, nginx proxy to the apiserver (GCP)


@dataclass
class ControllerHost:
    """One controller as the bootstrap reaches it over SSH."""

    name: str  # hostname, known before any resource exists (e.g. "controller-0")
    private_ip: pulumi.Input[str]
    ssh_host: pulumi.Input[str]
    ssh_port: pulumi.Input[int]
    ssh_user: pulumi.Input[str]
    ssh_private_key: pulumi.Input[str]  # always a Pulumi secret
    # Changes when the machine is re-created (VM id, container boot id): every step on it runs again.
    instance_id: Optional[pulumi.Input[str]] = None


@dataclass
class ReleaseSource:
    """Where hosts download release artifacts from and the sha256 each must have.

    `base_url` is formatted with `{name}` and `{version}`; `sha256` maps (name, version) to a digest.
    Artifact names: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (binaries) and
    etcd (the `etcd-<version>-linux-amd64.tar.gz` archive holding etcd, etcdctl, etcdutl).
    """

    kubernetes_url: str  # e.g. https://dl.k8s.io/release/{version}/bin/linux/amd64/{name}
    etcd_url: str  # e.g. https://github.com/etcd-io/etcd/releases/download/{version}/etcd-{version}-linux-amd64.tar.gz
    sha256: dict[tuple[str, str], str]


@dataclass
class InfraOutputs:
    """What an infra component hands to the PKI and the control plane, the same on every cloud."""

    hosts: Sequence[ControllerHost]
    public_address: pulumi.Input[str]  # the LB's address clients and the kubeconfig use
    health_check: HealthCheckStyle
    releases: ReleaseSource
    api_port: int = API_PORT
    # Resources the bootstrap must wait for beyond the hosts' own outputs (e.g. VMs booted, LB rules).
    ready: Sequence[pulumi.Resource] = field(default_factory=list)
    # Extra names/IPs for the apiserver certificate (e.g. an internal LB address).
    extra_sans: Sequence[pulumi.Input[str]] = field(default_factory=list)
    # The private subnet the controllers sit in (e.g. 10.240.0.0/24), for CIDR overlap checks.
    node_subnet: Optional[str] = None


def api_server_url(dns_name: Optional[str], public_address: pulumi.Input[str], port: int = API_PORT) -> pulumi.Output[str]:
    """The URL clients use for the API: the stable DNS name if there is one, else the LB's address."""
    return pulumi.Output.concat("https://", pulumi.Output.from_input(dns_name or public_address), f":{port}")
