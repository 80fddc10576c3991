"""A fake infra for tests: the interface's shape with fixed hosts and no cloud resources."""
from __future__ import annotations

from typing import Optional

import pulumi

from components.config import StackConfig, parse
from components.control_plane import ControlPlane, ControlPlaneArgs
from components.infra import LB_PROBES, ControllerHost, HealthCheckStyle, InfraOutputs, ReleaseSource
from components.pki import Pki, PkiArgs

PUBLIC_ADDRESS = "203.0.113.50"
FAKE_SHA = "ab" * 32
KUBERNETES_BASE = "https://dl.example"
ETCD_BASE = "https://dl.example/etcd"


def fake_infra(cfg: StackConfig, health: HealthCheckStyle = HealthCheckStyle.HTTPS_READYZ) -> InfraOutputs:
    hosts = [ControllerHost(name=name, private_ip=f"10.240.0.{10 + i}", ssh_host=f"192.0.2.{10 + i}", ssh_port=22,
                            ssh_user="kthw", ssh_private_key=pulumi.Output.secret("FAKE SSH KEY"),
                            instance_id=f"vm-{i}")
             for i, name in enumerate(cfg.controller_names)]
    # Pinned as the clouds' table is today: kubectl and etcd; the others come from the "published" files
    # (tests/harness.py's FakeCloud resolves them to `published_digest(checksum URL)`).
    pinned = {("kubectl", cfg.kubernetes_version): FAKE_SHA, ("etcd", cfg.etcd_version): FAKE_SHA}
    releases = ReleaseSource(kubernetes_base=KUBERNETES_BASE, etcd_base=ETCD_BASE, pinned=pinned)
    return InfraOutputs(hosts=hosts, public_address=PUBLIC_ADDRESS, health_check=health, releases=releases,
                        probe=LB_PROBES["haproxy"])


def config(**values) -> StackConfig:
    values.setdefault("cloud", "local")
    return parse({k: str(v) for k, v in values.items()}.get)


def build(cfg: Optional[StackConfig] = None, health: HealthCheckStyle = HealthCheckStyle.HTTPS_READYZ):
    """Register the PKI and the control plane on a fake infra; return the components."""
    cfg = cfg or config()
    infra = fake_infra(cfg, health)
    pki = Pki("kthw-pki", PkiArgs(config=cfg, hosts=infra.hosts, public_address=infra.public_address))
    plane = ControlPlane("kthw-control-plane", ControlPlaneArgs(config=cfg, infra=infra, pki=pki))
    pulumi.export("kubeconfig", pki.kubeconfigs["admin"])
    return infra, pki, plane
