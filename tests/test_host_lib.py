"""The host scripts' shared helpers (scripts/common/lib.sh.j2), run for real with bash: waits end at their deadline
in seconds however long each try takes, and the quorum count reads etcdctl's real JSON output."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from components.render import render

TOOLCHAIN_BIN = Path(os.environ.get("KTHW_CACHE", Path.home() / ".cache/kthw")) / "toolchain/bin"


def bash(body: str, timeout: float = 30) -> subprocess.CompletedProcess:
    script = "set -euo pipefail\n" + render("common/lib.sh.j2") + "\n" + body
    return subprocess.run(["bash", "-c", script], text=True, capture_output=True, timeout=timeout,
                          env={**os.environ, "PATH": f"{TOOLCHAIN_BIN}:{os.environ['PATH']}"})


def test_wait_until_ends_at_its_deadline_however_long_each_try_takes():
    start = time.monotonic()
    result = bash("slow() { sleep 0.7; false; }\nwait_until 2 0.1 'slow thing' slow || echo gave-up")
    elapsed = time.monotonic() - start
    assert "gave-up" in result.stdout, result.stderr
    assert "not ready within 2s" in result.stderr
    assert 1 <= elapsed < 2 + 0.7 + 1.0, elapsed  # the deadline (bash counts whole seconds), plus at most one try


def test_wait_until_returns_as_soon_as_the_command_succeeds():
    result = bash("n=0\nsoon() { n=$((n + 1)); ((n >= 3)); }\nwait_until 10 0.05 'soon' soon && echo ok")
    assert result.stdout.strip() == "ok" and "soon: ok after 3 tries" in result.stderr, result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def etcd(tmp_path):
    """One real etcd member on loopback (plain HTTP: the count only reads etcdctl's output)."""
    binary = TOOLCHAIN_BIN / "etcd"
    if not binary.exists():
        if os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(f"{binary} is missing: run scripts/toolchain/build")
        pytest.skip("etcd is not built: run scripts/toolchain/build")
    client, peer = _free_port(), _free_port()
    proc = subprocess.Popen([str(binary), "--data-dir", str(tmp_path / "data"), "--name", "m0",
                             "--listen-client-urls", f"http://127.0.0.1:{client}",
                             "--advertise-client-urls", f"http://127.0.0.1:{client}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-cluster", f"m0=http://127.0.0.1:{peer}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{client}"
        ready = bash(f"wait_until 20 0.1 etcd etcdctl --endpoints={url} endpoint health")
        assert ready.returncode == 0, ready.stderr
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.toolchain
def test_healthy_count_reads_etcdctls_real_json(etcd):
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    raw = subprocess.run([str(TOOLCHAIN_BIN / "etcdctl"), f"--endpoints={etcd},{dead}", "--dial-timeout=1s",
                          "--command-timeout=2s", "endpoint", "health", "-w", "json"],
                         text=True, capture_output=True, timeout=30)
    assert raw.returncode != 0 and '"health":true' in raw.stdout and '"health":false' in raw.stdout, raw
    assert healthy_count(raw.stdout) == 1
    both = subprocess.run([str(TOOLCHAIN_BIN / "etcdctl"), f"--endpoints={etcd},{etcd}", "endpoint", "health",
                           "-w", "json"], text=True, capture_output=True, timeout=30)
    assert healthy_count(both.stdout) == 2


def healthy_count(etcdctl_json: str) -> int:
    result = subprocess.run(["bash", "-c", render("common/lib.sh.j2") + "\nhealthy_count"], input=etcdctl_json,
                            text=True, capture_output=True, timeout=10)
    return int(result.stdout.strip())
