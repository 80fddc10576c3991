"""The services kthw runs on every controller, as one table (kubespray's roles, kubeadm's static pods).

Each row: the systemd unit and its template under scripts/, how its health is checked, how it first starts, how it
restarts, how it is removed, and the release binaries it runs. The files it reads are the PKI file table's rows that name it
as a reader (`components.pki.table.FILES`); a change of any of them, of its unit or of the release versions
restarts it. Its binaries and files are staged on each node first and go live with its start, or with its restart:
restarts of a running service are rolling, one node at a time under a cluster-wide etcd lock, each healthy again
before the next goes down; a first start takes no lock, so a fresh install starts every node at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.infra import ControllerHost
from components.paths import HOST
from components.render import render

# TLS 1.2+ with forward-secret AEAD suites only, on every serving port (CIS 1.2.29, 2.x); TLS 1.3's suites are
# not configurable and all fine.
TLS_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)
APISERVER_READY = f"curl -fsS --max-time 3 --cacert {HOST.kubernetes}/ca.pem https://127.0.0.1:6443/readyz"
# The local member answers a linearizable read (it has joined and sees a leader: a quorum is up).
ETCD_HEALTHY = (f"etcdctl --endpoints=https://127.0.0.1:2379 --command-timeout=3s --cacert={HOST.etcd}/ca.pem "
                f"--cert={HOST.etcd}/healthcheck-client.pem --key={HOST.etcd}/healthcheck-client-key.pem "
                "endpoint health")
# controller-manager and scheduler serve /healthz with a self-signed cert on loopback only.
CONTROLLER_MANAGER_HEALTHY = "curl -fsSk --max-time 3 https://127.0.0.1:10257/healthz"
SCHEDULER_HEALTHY = "curl -fsSk --max-time 3 https://127.0.0.1:10259/healthz"


@dataclass(frozen=True)
class Component:
    unit: str
    template: str  # the unit's template under scripts/; every one takes the values `phases.service.units` passes
    health: str  # a command that succeeds once it serves (a rolling restart waits for it before the next node)
    first_start: str  # "wait-healthy": start, wait for `health`; "no-block": start (etcd members need each other:
    #                   their quorum wait is its own phase)
    delete: str  # the template that removes it (its variables: unit, node_name, endpoints, members: every node's name)
    binaries: tuple[str, ...] = ()  # the release binaries it runs: staged, switched with its restart
    lb_backend: bool = False  # the API's LB sends to it: a rolling restart waits until the LB does again
    health_seconds: int = 180  # how long a start or restart may take to become healthy
    restart: str = "rolling"  # under the etcd lock, one node at a time (see the module docstring)


_REMOVE = "common/remove-service.sh.j2"

COMPONENTS: tuple[Component, ...] = (
    #          unit                        template                                       health
    Component("etcd",                    "etcd/etcd.service.j2",                         ETCD_HEALTHY,
              first_start="no-block", delete="etcd/remove.sh.j2", binaries=("etcd",)),
    Component("kube-apiserver",          "kube-apiserver/kube-apiserver.service.j2",     APISERVER_READY,
              first_start="wait-healthy", delete="kube-apiserver/remove.sh.j2", binaries=("kube-apiserver",),
              lb_backend=True),
    Component("kube-controller-manager", "kube-controller-manager/kube-controller-manager.service.j2",
              CONTROLLER_MANAGER_HEALTHY, first_start="wait-healthy", delete=_REMOVE,
              binaries=("kube-controller-manager",)),
    Component("kube-scheduler",          "kube-scheduler/kube-scheduler.service.j2",     SCHEDULER_HEALTHY,
              first_start="wait-healthy", delete=_REMOVE, binaries=("kube-scheduler",)),
)


SERVICE_BINARIES = tuple(b for c in COMPONENTS for b in c.binaries)


def component(unit: str) -> Component:
    return next(c for c in COMPONENTS if c.unit == unit)


def render_unit(row: Component, host: ControllerHost, **values: Any) -> str:
    """The row's unit for `host`: every unit template takes the same values (see `phases.service.units`)."""
    return render(row.template, node_name=host.name, **values)
