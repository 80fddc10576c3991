"""Supported releases and the official sha256 of each artifact (the clouds' checksum table).

The table is data (`releases.json`, filled by `scripts/update-checksums` on a machine with internet).
A version is supported when it is a key of the table. A digest the table has is pinned: it always wins. One it
lacks (`null`) is resolved from the release's published checksum files at the first `up` and kept in the
stack's state (components/release_digests.py), unless `kthw:requirePinnedDigests` asks the clouds to refuse
such versions (`missing_official` names them). The local stack's mirror publishes its own checksum files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

TABLE_PATH = Path(__file__).with_name("releases.json")
_TABLE = json.loads(TABLE_PATH.read_text())

DEFAULT_KUBERNETES = "v1.36.3"
DEFAULT_ETCD = "v3.6.14"
# The upgrade target: the next version of the table, which the toolchain also builds for the local stack.
NEXT_KUBERNETES = "v1.37.2"

KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ETCD_ARTIFACT = "etcd"  # the etcd-<version>-linux-amd64.tar.gz archive (etcd, etcdctl, etcdutl)

KUBERNETES: dict[str, dict[str, Optional[str]]] = _TABLE["kubernetes"]
ETCD: dict[str, Optional[str]] = _TABLE["etcd"]

# Where the official releases are (the layouts under them: components.infra.ReleaseSource).
KUBERNETES_BASE = "https://dl.k8s.io"
ETCD_BASE = "https://github.com/etcd-io/etcd/releases/download"


def official_sha256(kubernetes_version: str, etcd_version: str) -> dict[tuple[str, str], str]:
    """The known official digests for one Kubernetes and one etcd version, keyed by (name, version)."""
    digests = {(name, kubernetes_version): digest
               for name, digest in KUBERNETES.get(kubernetes_version, {}).items() if digest}
    if ETCD.get(etcd_version):
        digests[(ETCD_ARTIFACT, etcd_version)] = ETCD[etcd_version]  # type: ignore[assignment]
    return digests


def missing_official(kubernetes_version: str, etcd_version: str) -> list[str]:
    """Artifacts of these versions whose official digest the table lacks (a cloud install would fail)."""
    known = official_sha256(kubernetes_version, etcd_version)
    wanted = [(name, kubernetes_version) for name in KUBERNETES_BINARIES] + [(ETCD_ARTIFACT, etcd_version)]
    return [f"{name} {version}" for name, version in wanted if (name, version) not in known]


def minor(version: str) -> tuple[int, int]:
    """(major, minor) of a version such as v1.36.3."""
    major, minor_, *_ = version.lstrip("v").split(".")
    return int(major), int(minor_)
