"""The local stack's ReleaseSource: the toolchain's mirror/, served over HTTPS by the stack's file server.

The toolchain lays `mirror/` out as the official release sites are (dl.k8s.io's
`release/<version>/bin/linux/amd64/<name>` with `<name>.sha256` beside it, etcd's `<version>/<archive>` with a
`SHA256SUMS` beside it), so the local stack's source differs from a cloud's only in its bases and in the mirror's
own CA: the digests are resolved from the published checksum files (components/release_digests.py), nothing is
pinned. Its manifest.json ({name, version, sha256, size, path, kind}; kind "release" for mirror/) is only checked
here, before any resource exists, for every file the stack will download.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pulumi

from components.infra import ReleaseSource
from components.releases import KUBERNETES_BINARIES

MIRROR = "mirror"  # under the toolchain dir: what the file server serves
ETCD_PATH = "/etcd"  # etcd's releases under the mirror's root, as etcd_base


class ManifestError(RuntimeError):
    """The toolchain manifest is missing or lacks an artifact the stack needs."""


def _v(version: str) -> str:
    return version if version.startswith("v") else f"v{version}"


def load_manifest(toolchain_dir: Path) -> list[dict]:
    path = toolchain_dir / "manifest.json"
    if not path.is_file():
        raise ManifestError(f"toolchain manifest {path} not found: run scripts/toolchain/build first "
                            "(it builds the Pulumi CLI, the plugins and the kube/etcd binaries the local stack serves)")
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ManifestError(f"toolchain manifest {path} is not valid JSON ({err}): rebuild it with scripts/toolchain/build") from err
    if isinstance(data, dict):  # tolerate {"artifacts": [...]}
        data = data.get("artifacts", data.get("entries", []))
    if not isinstance(data, list):
        raise ManifestError(f"toolchain manifest {path} must be a list of {{name, version, sha256, size, path}}")
    return [entry for entry in data if isinstance(entry, dict)]


def release_source(toolchain_dir: Path, kubernetes_version: str, etcd_version: str, base_url: str,
                   ca_pem: Optional[pulumi.Input[str]] = None) -> ReleaseSource:
    """The ReleaseSource of the mirror at `base_url` (e.g. https://198.18.0.1:8443), whose server cert `ca_pem`
    signed; raise ManifestError naming every file of the stack's versions that the mirror lacks (the release
    file or its checksum file)."""
    source = ReleaseSource(kubernetes_base=base_url, etcd_base=f"{base_url}{ETCD_PATH}", pinned={}, ca_pem=ca_pem)
    # Only mirror/ counts (kind "release"): the manifest also lists bin/ entries under the same names (e.g. the
    # bare `etcd` binary), whose files are not the served ones.
    served = {str(entry.get("path", "")) for entry in load_manifest(toolchain_dir) if entry.get("kind") == "release"}

    def local_path(url: str, base: str, under: str = "") -> str:
        return f"{MIRROR}{under}{url[len(base):]}"

    k8s, etcd = _v(kubernetes_version), _v(etcd_version)
    wanted = [(local_path(source.kubernetes_url(name, k8s), source.kubernetes_base),
               local_path(source.kubernetes_checksum_url(name, k8s), source.kubernetes_base))
              for name in KUBERNETES_BINARIES]
    wanted.append((local_path(source.etcd_url(etcd), source.etcd_base, ETCD_PATH),
                   local_path(source.etcd_checksum_url(etcd), source.etcd_base, ETCD_PATH)))
    problems = []
    for path, checksum in wanted:
        if path not in served:
            have = sorted(p for p in served if Path(p).name == Path(path).name
                          or (Path(path).name.startswith("etcd-") and Path(p).name.startswith("etcd-")))
            problems.append(f"{path} is not in the manifest (it has {', '.join(have) or 'no version of it'})")
            continue
        problems += [f"{toolchain_dir / p} does not exist" for p in (path, checksum) if not (toolchain_dir / p).is_file()]
    if problems:
        raise ManifestError(f"the toolchain in {toolchain_dir} lacks what the local stack serves "
                            f"(kubernetes {k8s}, etcd {etcd}): " + "; ".join(problems)
                            + ". Run scripts/toolchain/build for these versions.")
    return source
