"""The host scripts' shared helpers (scripts/common/lib.sh.j2), run for real with bash: waits end at their deadline
in seconds however long each try takes, and the quorum count reads etcdctl's real JSON output."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from components.paths import HOST
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


def _fake_systemctl(tmp_path: Path) -> Path:
    """A `systemctl` that records its arguments (one line per call) in tmp_path/calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >>{tmp_path}/calls\n')
    fake.chmod(0o755)
    return bin_dir


def test_install_unit_reloads_systemd_once_and_only_when_the_unit_changed(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    lib = render("common/lib.sh.j2", paths=replace(HOST, systemd=str(units)))
    env = {**os.environ, "PATH": f"{_fake_systemctl(tmp_path)}:{os.environ['PATH']}"}

    def install(content: str) -> str:
        done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{lib}\ninstall_unit demo '{content}'"], text=True,
                              capture_output=True, timeout=30, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert install("[Unit]\nDescription=one") == "changed"
    assert (units / "demo.service").read_text() == "[Unit]\nDescription=one\n"
    assert oct((units / "demo.service").stat().st_mode & 0o777) == "0o600"
    assert install("[Unit]\nDescription=one") == ""  # the same content: nothing to reload
    assert install("[Unit]\nDescription=two") == "changed"
    assert (tmp_path / "calls").read_text().splitlines() == ["daemon-reload", "daemon-reload"]


@pytest.mark.parametrize("tool", ["openssl", "sha256sum"])
def test_sha256_of_prints_sha256sums_lines_for_the_files_there_and_skips_a_missing_one(tmp_path, tool):
    files = {tmp_path / "small": b"kthw\n", tmp_path / "big": os.urandom(3 << 20), tmp_path / "with space": b""}
    for path, data in files.items():
        path.write_bytes(data)
    env = dict(os.environ)
    if tool == "sha256sum":  # a host without OpenSSL: a PATH where `openssl` is not found
        shadow = tmp_path / "no-openssl"
        shadow.mkdir()
        for name in ("sha256sum", "sed", "cat"):
            (shadow / name).symlink_to(shutil.which(name))
        env["PATH"] = str(shadow)
    quoted = " ".join(f"'{p}'" for p in [*files, tmp_path / "missing"])
    done = subprocess.run([shutil.which("bash"), "-c", render("common/lib.sh.j2") + f"\nsha256_of {quoted}"], text=True,
                          capture_output=True, timeout=30, env=env)
    assert done.stdout.splitlines() == [f"{hashlib.sha256(data).hexdigest()}  {path}" for path, data in files.items()]


@pytest.mark.toolchain
def test_teardown_marks_count_the_leaving_nodes_in_etcd_under_a_lease(etcd):
    """Every node of three marks itself leaving: only then is everyone leaving, and a mark of a node that is not one
    of them (a stale one, from an earlier scale-down) does not stand in for a missing one; each mark has a lease
    (it ends by itself); against an etcd that does not answer, marking does not fail and nobody is leaving."""
    ctl = f"etcd_ctl() {{ timeout 10 etcdctl --endpoints={etcd} --command-timeout=3s \"$@\"; }}\n"
    nodes = "controller-0 controller-1 controller-2"
    steps = ["mark_leaving controller-3", "mark_leaving controller-0", "mark_leaving controller-1",
             f"all_leaving {nodes} || echo not-yet", "mark_leaving controller-2", f"all_leaving {nodes} && echo everyone",
             f"all_leaving {nodes} controller-4 || echo not-four"]
    done = bash(ctl + "\n".join(steps))
    assert done.returncode == 0 and done.stdout.split() == ["not-yet", "everyone", "not-four"], done
    marks = subprocess.run([str(TOOLCHAIN_BIN / "etcdctl"), f"--endpoints={etcd}", "get", "--prefix", "kthw/leaving/",
                            "-w", "json"], text=True, capture_output=True, timeout=30)
    kvs = json.loads(marks.stdout)["kvs"]
    assert len(kvs) == 4 and all(kv.get("lease") for kv in kvs), kvs
    dead = f"http://127.0.0.1:{_free_port()}"
    down = bash(f"etcd_ctl() {{ timeout 10 etcdctl --endpoints={dead} --dial-timeout=1s --command-timeout=2s \"$@\"; }}\n"
                "mark_leaving controller-0 && echo marked\nall_leaving controller-0 || echo nobody")
    assert down.returncode == 0 and down.stdout.split() == ["marked", "nobody"], down
