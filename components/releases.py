"""Pinned releases and their official sha256 checksums (the clouds' checksum table), keyed by version.

Hosts download each artifact and verify it against this table before installing it (fail closed).
The local stack uses the toolchain's manifest instead (see components/local), in the same shape.
"""
from __future__ import annotations

DEFAULT_KUBERNETES = "v1.36.3"
DEFAULT_ETCD = "v3.6.16"

KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

# version -> binary -> sha256 of https://dl.k8s.io/release/<version>/bin/linux/amd64/<binary>
KUBERNETES: dict[str, dict[str, str]] = {
    "v1.36.3": {},  # FILLED BY the checksum lookup
    "v1.37.2": {},
}

# version -> sha256 of etcd-<version>-linux-amd64.tar.gz (GitHub release of etcd-io/etcd)
ETCD: dict[str, str] = {
    "v3.6.16": "",
}

KUBERNETES_URL = "https://dl.k8s.io/release/{version}/bin/linux/amd64/{name}"
ETCD_URL = "https://github.com/etcd-io/etcd/releases/download/{version}/etcd-{version}-linux-amd64.tar.gz"
