"""Download, verify (sha256 from the release digests) and install the release binaries: etcd's archive as its
own step, so etcd forms its quorum while the Kubernetes binaries still download."""
from __future__ import annotations

from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from components.phases.cluster import Cluster
from components.phases.components import SERVICE_BINARIES
from components.phases.remote import RemoteSteps
from components.paths import HOST
from components.release_digests import digest_key
from components.releases import ETCD_ARTIFACT, KUBERNETES_BINARIES
from components.render import render


def digest(digests: Optional[dict[str, str]], name: str, version: str) -> str:
    """An artifact's sha256 from the release digests; without one, nothing installs it (fail closed)."""
    found = (digests or {}).get(digest_key(name, version))
    if not found:
        raise ValueError(f"no sha256 for {name} {version}: refusing to install it unverified")
    return found


def install_script(cluster: Cluster, kubernetes: bool = False, etcd: bool = False) -> pulumi.Output[str]:
    """The download-verify-install script for the Kubernetes binaries and/or the etcd archive."""
    k8s_version, etcd_version = cluster.config.kubernetes_version, cluster.config.etcd_version
    releases = cluster.infra.releases

    def script_for(digests: dict[str, str]) -> str:
        def artifact(name: str, version: str, url: str) -> dict[str, str]:
            return {"name": name, "url": url, "sha256": digest(digests, name, version)}

        return render("common/install-binaries.sh.j2", kubernetes_version=k8s_version, services=SERVICE_BINARIES,
                      kubernetes=[artifact(n, k8s_version, releases.kubernetes_url(n, k8s_version))
                                  for n in KUBERNETES_BINARIES] if kubernetes else [],
                      etcd={**artifact(ETCD_ARTIFACT, etcd_version, releases.etcd_url(etcd_version)),
                            "version": etcd_version} if etcd else None)
    return cluster.digests.apply(script_for)


def expected_binaries(cluster: Cluster, live: bool = False) -> pulumi.Output[dict[str, str]]:
    """path -> sha256 of every Kubernetes binary as the binaries step leaves it (staged service binaries, live
    tools), or, with `live`, of the service binaries in place (the drift probe's expectations)."""
    version = cluster.config.kubernetes_version

    def where(name: str) -> str:
        return HOST.staged_binary(name) if name in SERVICE_BINARIES and not live else HOST.binary(name)
    names = [n for n in KUBERNETES_BINARIES if not live or n in SERVICE_BINARIES]
    return cluster.digests.apply(lambda digests: {where(n): digest(digests, n, version) for n in names})


def binaries(cluster: Cluster, run: RemoteSteps, depends_on: Sequence[pulumi.Resource]
             ) -> tuple[dict[str, remote.Command], dict[str, remote.Command]]:
    """(etcd's binaries, the Kubernetes binaries) per node."""
    install_etcd, install_kubernetes = install_script(cluster, etcd=True), install_script(cluster, kubernetes=True)
    etcd = {h.name: run.run(h, "etcd-binaries", install_etcd, render("common/remove-etcd-binaries.sh.j2"),
                            depends_on=depends_on) for h in cluster.hosts}
    kubernetes = {h.name: run.run(h, "binaries", install_kubernetes, render("common/remove-binaries.sh.j2"),
                                  depends_on=depends_on) for h in cluster.hosts}
    return etcd, kubernetes
