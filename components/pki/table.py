"""The cluster's PKI as one table, like kubeadm's certificate list (cmd/kubeadm/app/phases/certs/certlist.go).

Each row is a key pair and certificate: its name, what it is for, its signer, subject, usages, whether each
controller gets its own, and which SANs it carries. `FILES` then places every certificate, key, kubeconfig and
config on the controllers: its path, which components read it, its mode. `components.pki.component` turns rows
into pulumi-tls resources, `components.host_files` the placements into each node's files; tests iterate both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pulumi

from components.paths import HOST

SERVER = ("digital_signature", "key_encipherment", "server_auth")
CLIENT = ("digital_signature", "key_encipherment", "client_auth")
SERVER_AND_CLIENT = ("digital_signature", "key_encipherment", "server_auth", "client_auth")
CA_USES = ("cert_signing", "crl_signing", "digital_signature", "key_encipherment")


@dataclass(frozen=True)
class SanContext:
    """What SANs are made from: the cluster's names and addresses, and the node a per-node cert is for."""

    cluster_domain: str
    service_ip: str
    controller_names: Sequence[str]
    controller_ips: Sequence[pulumi.Input[str]]
    public_address: pulumi.Input[str]
    extra: Sequence[pulumi.Input[str]] = ()
    node_name: Optional[str] = None
    node_ip: Optional[pulumi.Input[str]] = None


@dataclass(frozen=True)
class Sans:
    dns: Sequence[pulumi.Input[str]] = ()
    ips: Sequence[pulumi.Input[str]] = ()
    # Values only known at deploy time that may be either a name or an address (e.g. the LB's address).
    either: Sequence[pulumi.Input[str]] = ()


def apiserver_sans(ctx: SanContext) -> Sans:
    """Every name a client may use for the apiserver (kubeadm's GetAPIServerAltNames)."""
    return Sans(
        dns=["kubernetes", "kubernetes.default", "kubernetes.default.svc",
             f"kubernetes.default.svc.{ctx.cluster_domain}", "localhost", *ctx.controller_names],
        ips=[ctx.service_ip, "127.0.0.1", *ctx.controller_ips],
        either=[ctx.public_address, *ctx.extra],
    )


def etcd_member_sans(ctx: SanContext) -> Sans:
    """An etcd member's names: its hostname, localhost and its addresses (kubeadm's etcd server/peer)."""
    return Sans(dns=[ctx.node_name or "", "localhost"], ips=[ctx.node_ip or "", "127.0.0.1", "::1"])


@dataclass(frozen=True)
class CaSpec:
    name: str
    doc: str
    common_name: str


@dataclass(frozen=True)
class CertSpec:
    name: str
    doc: str
    signer: str  # a CaSpec name
    common_name: str  # "{node}" is replaced by the node's name for per-node certs
    organization: Optional[str]
    usages: Sequence[str]
    per_node: bool = False
    sans: Optional[Callable[[SanContext], Sans]] = None
    short_lived: bool = False  # kthw:adminCertValidityHours instead of kthw:certValidityHours (not revocable)


CAS: tuple[CaSpec, ...] = (
    CaSpec("ca", "Kubernetes general CA: signs the apiserver's serving cert and every client of it", "kubernetes"),
    CaSpec("etcd-ca", "etcd's own CA: members, peers, and the clients that may talk to etcd", "etcd-ca"),
    CaSpec("front-proxy-ca", "Aggregation layer CA: the apiserver proves itself to extension apiservers",
           "front-proxy-ca"),
)

CERTS: tuple[CertSpec, ...] = (
    CertSpec("apiserver", "kube-apiserver's serving certificate", "ca", "kube-apiserver", None, SERVER,
             sans=apiserver_sans),
    CertSpec("apiserver-kubelet-client", "kube-apiserver's client cert to kubelets (logs, exec, port-forward)",
             "ca", "kube-apiserver-kubelet-client", None, CLIENT),
    CertSpec("apiserver-etcd-client", "kube-apiserver's client cert to etcd", "etcd-ca",
             "kube-apiserver-etcd-client", None, CLIENT),
    CertSpec("front-proxy-client", "kube-apiserver's client cert to aggregated apiservers", "front-proxy-ca",
             "front-proxy-client", None, CLIENT),
    CertSpec("etcd-server", "an etcd member's serving cert for clients", "etcd-ca", "{node}", None,
             SERVER_AND_CLIENT, per_node=True, sans=etcd_member_sans),
    CertSpec("etcd-peer", "an etcd member's cert for peer traffic", "etcd-ca", "{node}", None,
             SERVER_AND_CLIENT, per_node=True, sans=etcd_member_sans),
    CertSpec("etcd-healthcheck-client", "etcdctl's client cert for health checks and backups", "etcd-ca",
             "kube-etcd-healthcheck-client", None, CLIENT),
    CertSpec("controller-manager", "kube-controller-manager's client cert", "ca",
             "system:kube-controller-manager", None, CLIENT),
    CertSpec("scheduler", "kube-scheduler's client cert", "ca", "system:kube-scheduler", None, CLIENT),
    CertSpec("admin", "the cluster administrator; has rights through the kubeadm:cluster-admins binding", "ca",
             "kubernetes-admin", "kubeadm:cluster-admins", CLIENT, short_lived=True),
    CertSpec("super-admin", "break-glass system:masters credential; stays on the controllers", "ca",
             "kubernetes-super-admin", "system:masters", CLIENT),
)

# Kubeconfigs: name -> (client cert, user name, which server: "local" apiserver or the "public" endpoint).
KUBECONFIGS: dict[str, tuple[str, str, str]] = {
    "admin": ("admin", "kubernetes-admin", "public"),
    "super-admin": ("super-admin", "kubernetes-super-admin", "local"),
    "controller-manager": ("controller-manager", "system:kube-controller-manager", "local"),
    "scheduler": ("scheduler", "system:kube-scheduler", "local"),
}


def cert(name: str) -> CertSpec:
    return next(spec for spec in CERTS if spec.name == name)


# ---- where each file lands ----------------------------------------------------------------------------------
# Every file the bootstrap puts on a controller: its path, what it holds, which components read it (a change of
# its content restarts them) and its mode. What it holds: `ca:<ca>` / `ca-key:<ca>`, `cert:<cert>` /
# `key:<cert>` (per-node certs: the node's own), `kubeconfig:<name>`, `service-account-public`,
# `service-account-key`, `encryption-config`, or `template:<file under scripts/>` (rendered with the values of
# `components.apiserver_config.template_values`).

@dataclass(frozen=True)
class HostFile:
    path: str
    holds: str
    readers: tuple[str, ...]
    mode: int = 0o644
    owner: str = "root"  # user and group (etcd's own files belong to etcd, which runs as its own user)
    first_only: bool = False  # on the first controller only (removed from the others)

    @property
    def private(self) -> bool:
        return self.mode & 0o077 == 0


def _pair(directory: str, cert_name: str, file_name: str, readers: tuple[str, ...],
          owner: str = "root") -> tuple[HostFile, HostFile]:
    """A certificate and its key, side by side (`<file_name>.pem`, `<file_name>-key.pem`)."""
    return (HostFile(f"{directory}/{file_name}.pem", f"cert:{cert_name}", readers, owner=owner),
            HostFile(f"{directory}/{file_name}-key.pem", f"key:{cert_name}", readers, 0o600, owner))


_ETCD, _K8S, _CONFIG = HOST.etcd, HOST.kubernetes, HOST.config
_APISERVER, _CM, _SCHEDULER = ("kube-apiserver",), ("kube-controller-manager",), ("kube-scheduler",)

FILES: tuple[HostFile, ...] = (
    HostFile(f"{_ETCD}/ca.pem", "ca:etcd-ca", ("etcd",), owner="etcd"),
    *_pair(_ETCD, "etcd-server", "server", ("etcd",), owner="etcd"),
    *_pair(_ETCD, "etcd-peer", "peer", ("etcd",), owner="etcd"),
    *_pair(_ETCD, "etcd-healthcheck-client", "healthcheck-client", ("etcd",)),
    HostFile(f"{_K8S}/ca.pem", "ca:ca", (*_APISERVER, *_CM)),
    HostFile(f"{_K8S}/ca-key.pem", "ca-key:ca", _CM, 0o600),
    HostFile(f"{_K8S}/etcd-ca.pem", "ca:etcd-ca", _APISERVER),
    HostFile(f"{_K8S}/front-proxy-ca.pem", "ca:front-proxy-ca", (*_APISERVER, *_CM)),
    *_pair(_K8S, "apiserver", "apiserver", _APISERVER),
    *_pair(_K8S, "apiserver-kubelet-client", "apiserver-kubelet-client", _APISERVER),
    *_pair(_K8S, "apiserver-etcd-client", "apiserver-etcd-client", _APISERVER),
    *_pair(_K8S, "front-proxy-client", "front-proxy-client", _APISERVER),
    HostFile(f"{_K8S}/service-account.pub", "service-account-public", _APISERVER),
    HostFile(f"{_K8S}/service-account-key.pem", "service-account-key", (*_APISERVER, *_CM), 0o600),
    HostFile(f"{_K8S}/encryption-config.yaml", "encryption-config", _APISERVER, 0o600),
    HostFile(f"{_K8S}/audit-policy.yaml", "template:kube-apiserver/audit-policy.yaml", _APISERVER),
    HostFile(f"{_K8S}/authentication-config.yaml", "template:kube-apiserver/authentication-config.yaml.j2",
             _APISERVER),
    HostFile(f"{_K8S}/admission-config.yaml", "template:kube-apiserver/admission-config.yaml.j2", _APISERVER, 0o600),
    # The break-glass system:masters credential, on the first controller only (RBAC and the Secrets rewrite run
    # there); the admin's own kubeconfig is for users (a stack output), never on a host.
    HostFile(f"{_K8S}/super-admin.kubeconfig", "kubeconfig:super-admin", _APISERVER, 0o600, first_only=True),
    HostFile(f"{_K8S}/controller-manager.kubeconfig", "kubeconfig:controller-manager", _CM, 0o600),
    HostFile(f"{_K8S}/scheduler.kubeconfig", "kubeconfig:scheduler", _SCHEDULER, 0o600),
    HostFile(f"{_CONFIG}/kube-scheduler.yaml", "template:kube-scheduler/kube-scheduler.yaml.j2", _SCHEDULER),
)


def host_file(path: str) -> HostFile:
    return next(f for f in FILES if f.path == path)
