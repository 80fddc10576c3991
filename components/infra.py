"""What every infra component (azure, gcp, local) is and outputs; the control plane depends only on it."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Protocol, Sequence

import pulumi

if TYPE_CHECKING:
    from components.config import StackConfig

API_PORT = 6443


class HealthCheckStyle(str, Enum):
    """How the load balancer decides that a controller is healthy (kthw:healthCheck); which of them a cloud's
    load balancer can run, and its default, is that cloud's `Infra.health_checks`."""

    HTTPS_READYZ = "https-readyz"  # HTTPS GET /readyz on 6443
    TCP = "tcp"  # TCP connect on 6443
    HTTP_HEALTHZ_PROXY = "http-healthz-proxy"  # HTTP GET /healthz on 80, nginx's proxy to the apiserver


@dataclass(frozen=True)
class HealthChecks:
    """The health checks one cloud's load balancer can run, its default first, and why it cannot run the others."""

    cloud: str
    allowed: tuple[HealthCheckStyle, ...]
    why: str = ""

    @property
    def default(self) -> HealthCheckStyle:
        return self.allowed[0]

    def pick(self, chosen: Optional[HealthCheckStyle]) -> HealthCheckStyle:
        """The style kthw:healthCheck chose, or this cloud's default."""
        return chosen or self.default

    def problem(self, chosen: Optional[HealthCheckStyle]) -> Optional[str]:
        """Why kthw:healthCheck's `chosen` cannot run on this cloud, naming the ones that can; or None."""
        if chosen is None or chosen in self.allowed:
            return None
        names = [f"{s.value} (the default)" if s is self.default else s.value for s in self.allowed]
        *others, last = names
        can = f"{', '.join(others)} or {last}" if others else last
        return f"must be {can} on {self.cloud}: {self.why}, got {chosen.value!r}"


@dataclass(frozen=True)
class LbProbe:
    """How often the load balancer probes a controller and how many results flip it (down, or back up)."""

    interval_seconds: int
    unhealthy_threshold: int
    healthy_threshold: int
    timeout_seconds: int

    @property
    def drain_seconds(self) -> int:
        """How long an apiserver that is going down keeps serving while its /readyz fails: until the LB has
        stopped sending to it (interval x unhealthy threshold), plus a margin of one interval (3 s at least)."""
        return self.interval_seconds * self.unhealthy_threshold + max(self.interval_seconds, 3)

    @property
    def readmit_seconds(self) -> int:
        """How long the LB takes to send to a controller again once it is healthy."""
        return self.interval_seconds * self.healthy_threshold


# Each LB's probe timings: the clouds' as their load balancers are configured (components/azure/loadbalancer.py,
# components/gcp/lb.py), the local HAProxy's own; the local LB can take a cloud's (kthw:localLbProbe).
LB_PROBES: dict[str, LbProbe] = {
    "azure": LbProbe(interval_seconds=5, unhealthy_threshold=2, healthy_threshold=2, timeout_seconds=5),
    "gcp": LbProbe(interval_seconds=5, unhealthy_threshold=3, healthy_threshold=2, timeout_seconds=3),
    "haproxy": LbProbe(interval_seconds=1, unhealthy_threshold=2, healthy_threshold=2, timeout_seconds=2),
}


@dataclass
class ControllerHost:
    """One controller as the bootstrap reaches it over SSH."""

    name: str  # hostname, known before any resource exists (e.g. "controller-0")
    private_ip: pulumi.Input[str]
    ssh_host: pulumi.Input[str]
    ssh_port: pulumi.Input[int]
    ssh_user: pulumi.Input[str]
    ssh_private_key: pulumi.Input[str]  # always a Pulumi secret
    # The host key its SSH clients accept, one OpenSSH line (components/host_keys.py); None: not pinned (yet).
    ssh_host_key: Optional[pulumi.Input[Optional[str]]] = None
    # Changes when the machine is re-created (VM id, container boot id): every step on it runs again.
    instance_id: Optional[pulumi.Input[str]] = None
    machine_urn: Optional[pulumi.Input[str]] = None  # its machine resource (scripts/replace-controller replaces it)


@dataclass
class ReleaseSource:
    """Where hosts download release artifacts from, laid out as the official releases are.

    Kubernetes: `{kubernetes_base}/release/{version}/bin/linux/amd64/{name}`, its digest in `{name}.sha256` beside
    it (dl.k8s.io's layout). etcd: `{etcd_base}/{version}/etcd-{version}-linux-amd64.tar.gz`, its digest in the
    `SHA256SUMS` beside it (etcd's GitHub releases). A cloud's source and the local mirror differ only in the bases
    (and the local mirror's own CA). Artifact names: kube-apiserver, kube-controller-manager, kube-scheduler,
    kubectl (binaries) and etcd (the archive holding etcd, etcdctl, etcdutl).
    `pinned` maps (name, version) to a sha256 that always wins over the published checksum files
    (components/releases.json); the others are resolved from those files once and kept in the stack's state.
    """

    kubernetes_base: str  # e.g. https://dl.k8s.io
    etcd_base: str  # e.g. https://github.com/etcd-io/etcd/releases/download
    pinned: dict[tuple[str, str], str] = field(default_factory=dict)
    ca_pem: Optional[pulumi.Input[str]] = None  # an extra CA (PEM) that the checksum fetches and the hosts trust (local mirror)
    # What must exist before its URLs answer (the local mirror's server); a cloud's official source: nothing. The
    # release digests are read as soon as these are up, while the hosts still boot.
    ready: Sequence[pulumi.Resource] = field(default_factory=list)

    def kubernetes_url(self, name: str, version: str) -> str:
        return f"{self.kubernetes_base}/release/{version}/bin/linux/amd64/{name}"

    def kubernetes_checksum_url(self, name: str, version: str) -> str:
        return f"{self.kubernetes_url(name, version)}.sha256"

    def etcd_archive(self, version: str) -> str:
        return f"etcd-{version}-linux-amd64.tar.gz"

    def etcd_url(self, version: str) -> str:
        return f"{self.etcd_base}/{version}/{self.etcd_archive(version)}"

    def etcd_checksum_url(self, version: str) -> str:
        return f"{self.etcd_base}/{version}/SHA256SUMS"


@dataclass
class InfraOutputs:
    """What an infra component hands to the PKI and the control plane, the same on every cloud."""

    hosts: Sequence[ControllerHost]
    public_address: pulumi.Input[str]  # the LB's address clients and the kubeconfig use
    health_check: HealthCheckStyle
    releases: ReleaseSource
    probe: LbProbe  # the LB's probe timings: the apiservers' drain and rolling restarts follow them
    api_port: int = API_PORT
    # Resources the bootstrap must wait for beyond the hosts' own outputs (e.g. VMs booted, LB rules).
    ready: Sequence[pulumi.Resource] = field(default_factory=list)
    # Extra names/IPs for the apiserver certificate (e.g. an internal LB address).
    extra_sans: Sequence[pulumi.Input[str]] = field(default_factory=list)
    # What names the machines and the LB as they run now (VM ids, a local part's generation): when one changes,
    # a machine or the LB came back new, and the API is verified through the LB again before `up` returns.
    incarnations: Sequence[pulumi.Input[str]] = field(default_factory=list)


class InfraArgs(Protocol):
    """What every infra component's args hold (each cloud adds its own settings)."""

    config: StackConfig


class Infra(pulumi.ComponentResource):
    """The base of every cloud's infra component: `TYPE` is its type token; `_create` registers the cloud's
    children and returns the InfraOutputs and the cloud's own registered outputs. The base registers the
    outputs every cloud has (publicAddress, healthCheck, controllers) with the cloud's, once, last."""

    TYPE: ClassVar[str]  # kthw:<cloud>:<Type>
    health_checks: ClassVar[HealthChecks]  # what the cloud's load balancer can run (its config checks the choice)
    health_check: HealthCheckStyle  # the one it runs: kthw:healthCheck, or the cloud's default
    outputs: InfraOutputs

    def __init__(self, name: str, args: InfraArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(self.TYPE, name, None, opts)
        self.health_check = self.health_checks.pick(args.config.health_check)
        self.outputs, extras = self._create(name, args)
        self.register_outputs({
            "publicAddress": self.outputs.public_address,
            "healthCheck": self.outputs.health_check.value,
            "controllers": [{"name": h.name, "privateIp": h.private_ip, "sshAddress": h.ssh_host}
                            for h in self.outputs.hosts],
            **extras,
        })

    def _create(self, name: str, args: Any) -> tuple[InfraOutputs, dict[str, Any]]:
        """Register the cloud's children (parent `self`, named `{name}-<child>`); return the InfraOutputs and the
        cloud's extra registered outputs, each under a key of its own."""
        raise NotImplementedError


def api_server_url(dns_name: Optional[str], public_address: pulumi.Input[str], port: int = API_PORT) -> pulumi.Output[str]:
    """The URL clients use for the API: the stable DNS name if there is one, else the LB's address."""
    return pulumi.Output.concat("https://", pulumi.Output.from_input(dns_name or public_address), f":{port}")
