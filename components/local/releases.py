"""The local stack's ReleaseSource: the toolchain's releases/ served by the stack's file server.

The checksum table is the toolchain's manifest.json (a list of {name, version, sha256, size, path, kind};
only kind "release", the files of releases/<version>/, counts) instead
of components/releases.py: the local hosts download the binaries the toolchain built, and verify them
exactly as a cloud VM verifies the official ones.
"""
from __future__ import annotations

import json
from pathlib import Path

from components.infra import ReleaseSource
from components.releases import KUBERNETES_BINARIES

ETCD_ARCHIVE = "etcd-{version}-linux-amd64.tar.gz"


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


def release_source(toolchain_dir: Path, kubernetes_version: str, etcd_version: str, base_url: str) -> ReleaseSource:
    """Build the ReleaseSource for `base_url` (e.g. http://198.18.0.1:8085); raise ManifestError naming
    every missing artifact or file."""
    entries = load_manifest(toolchain_dir)
    releases = toolchain_dir / "releases"
    # Only what releases/ holds counts (kind "release"): the manifest also lists bin/ entries under the same
    # names (e.g. the bare `etcd` binary), whose digests are not the served files'.
    served: dict[tuple[str, str], dict] = {}
    for entry in entries:
        name, version, path = entry.get("name"), entry.get("version"), str(entry.get("path", ""))
        kind = entry.get("kind", "release" if path.startswith("releases/") else "bin")
        if isinstance(name, str) and isinstance(version, str) and kind == "release":
            served[(Path(path).name or name, _v(version))] = entry

    wanted = [(name, kubernetes_version, name) for name in KUBERNETES_BINARIES]
    wanted.append(("etcd", etcd_version, ETCD_ARCHIVE.format(version=_v(etcd_version))))
    sha256: dict[tuple[str, str], str] = {}
    problems = []
    for name, version, file_name in wanted:
        entry = served.get((file_name, _v(version)))
        if entry is None:
            have = sorted(v for (f, v) in served if f == file_name or (name == "etcd" and f.startswith("etcd-")))
            problems.append(f"{file_name} {version} (the manifest's releases have {', '.join(have) or 'no version of it'})")
            continue
        digest = str(entry.get("sha256", "")).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            problems.append(f"{file_name} {version} has no valid sha256 in the manifest")
            continue
        served_path = toolchain_dir / str(entry.get("path", ""))
        if served_path.parent != releases / _v(version) or not served_path.is_file():
            problems.append(f"{file_name} {version}: {releases / _v(version) / file_name} does not exist")
            continue
        sha256[(name, version)] = digest
    if problems:
        raise ManifestError(f"the toolchain in {toolchain_dir} lacks what the local stack serves: "
                            + "; ".join(problems) + ". Run scripts/toolchain/build for these versions.")
    return ReleaseSource(
        kubernetes_url=f"{base_url}/{{version}}/{{name}}",
        etcd_url=f"{base_url}/{{version}}/{ETCD_ARCHIVE}",
        sha256=sha256,
    )
