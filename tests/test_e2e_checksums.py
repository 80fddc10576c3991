"""End to end: a release whose published checksum is wrong is never installed.

A one-controller local stack downloads from a mirror that publishes a wrong `kube-scheduler.sha256` (a copy of
the toolchain's mirror, hard-linked, with that one file replaced): the digests resource reads the wrong value over
HTTPS, exactly as a cloud stack reads dl.k8s.io's, and the host's install step refuses every Kubernetes binary.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from e2e_lib import CACHE, ROOT, new_stack

pytestmark = pytest.mark.e2e
NODE_CIDR = "198.18.0.32/27"  # apart from the other e2e stacks (.64/26, .128/25) and a user's own (.1, .10-.16)
K8S = "v1.36.3"


def tampered_cache(root) -> tuple[str, str]:
    """A cache that shares the real one's toolchain and base root but serves a mirror with a wrong
    kube-scheduler.sha256; returns (its path, the real digest). The base root is built in the real cache first
    (once: base-root.sh is cached there): on a cold cache this may be the first stack of the run, and a stack
    cannot build it through the link."""
    from components.local.infra import SSH_USER

    subprocess.run(["bash", str(ROOT / "scripts/local/base-root.sh")], check=True, timeout=1800,
                   env={**os.environ, "KTHW_CACHE": str(CACHE), "KTHW_LOGIN_USER": SSH_USER},
                   stdout=subprocess.DEVNULL)
    toolchain = root / "toolchain"
    toolchain.mkdir(parents=True)
    (root / "rootfs").symlink_to(CACHE / "rootfs")
    (toolchain / "bin").symlink_to(CACHE / "toolchain/bin")
    shutil.copy(CACHE / "toolchain/manifest.json", toolchain)
    subprocess.run(["cp", "-al", str(CACHE / "toolchain/mirror"), str(toolchain / "mirror")], check=True)
    published = toolchain / f"mirror/release/{K8S}/bin/linux/amd64/kube-scheduler.sha256"
    real = published.read_text().strip()
    published.unlink()  # a hard link to the real mirror's file: replace it, never write through it
    published.write_text("0" * 64)
    return str(root), real


def test_a_wrong_published_checksum_installs_nothing(tmp_path):
    cache, real = tampered_cache(tmp_path / "cache")
    stack = new_stack("badsum", NODE_CIDR, controllers=1, env={"KTHW_CACHE": cache})
    try:
        result = stack.up(check=False, label="up with a wrong published checksum")
        out = result.stdout + result.stderr
        assert result.returncode != 0, out[-3000:]
        # Printed by the host at run time (the script's text holds neither the real digest nor this sentence).
        assert f"expected {'0' * 64}, got {real}" in out, out[-5000:]
        assert f"{K8S}/bin/linux/amd64/kube-scheduler: expected" in out
        # Neither in place nor staged for a service step to switch in.
        installed = stack.host(0, "ls /usr/local/bin /var/lib/kthw/staged/bin 2>/dev/null || true").stdout.split()
        assert not {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} & set(installed), installed
        # The wrong value came from the published file, over HTTPS, and is what the state recorded.
        export = json.loads(stack.pulumi("stack", "export", timeout=120).stdout)
        digests = [r for r in export["deployment"]["resources"] if r["urn"].endswith("-release-digests")]
        assert len(digests) == 1
        assert digests[0]["outputs"]["digests"][f"kube-scheduler@{K8S}"] == "0" * 64
    finally:
        stack.cleanup()
