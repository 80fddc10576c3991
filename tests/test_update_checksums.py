"""scripts/update-checksums reads published checksum files (served here on loopback) into the table."""
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve(directory: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_fills_every_digest_of_a_version(tmp_path):
    releases = tmp_path / "k8s/v1.99.0/bin/linux/amd64"
    releases.mkdir(parents=True)
    expected = {}
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        expected[name] = hashlib.sha256(name.encode()).hexdigest()
        (releases / f"{name}.sha256").write_text(expected[name])
    (tmp_path / "etcd/v3.9.0").mkdir(parents=True)
    etcd_sum = hashlib.sha256(b"etcd").hexdigest()
    (tmp_path / "etcd/v3.9.0/SHA256SUMS").write_text(
        f"{'0' * 64}  etcd-v3.9.0-darwin-arm64.zip\n{etcd_sum}  etcd-v3.9.0-linux-amd64.tar.gz\n")
    # Work on a copy of the project so the real table is untouched.
    project = tmp_path / "project"
    shutil.copytree(ROOT / "components", project / "components")
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=shutil.ignore_patterns("toolchain"))
    server = serve(tmp_path)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        env = {**os.environ, "KTHW_K8S_RELEASES": f"{base}/k8s", "KTHW_ETCD_RELEASES": f"{base}/etcd"}
        result = subprocess.run([sys.executable, str(project / "scripts/update-checksums"), "v1.99.0", "v3.9.0"],
                                env=env, text=True, capture_output=True, timeout=60)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    table = json.loads((project / "components/releases.json").read_text())
    assert table["kubernetes"]["v1.99.0"] == expected
    assert table["etcd"]["v3.9.0"] == etcd_sum


def test_refuses_a_bad_version():
    result = subprocess.run([sys.executable, str(ROOT / "scripts/update-checksums"), "latest"],
                            text=True, capture_output=True, timeout=60)
    assert result.returncode == 2


def test_refuses_a_checksum_file_the_stack_would_refuse(tmp_path):
    """The table is filled through the digests resource's strict parser: a `.sha256` holding two digests (the
    old scan took the first) writes nothing."""
    releases = tmp_path / "k8s/v1.99.0/bin/linux/amd64"
    releases.mkdir(parents=True)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        (releases / f"{name}.sha256").write_text(hashlib.sha256(name.encode()).hexdigest())
    (releases / "kube-scheduler.sha256").write_text(f"{'a' * 64}\n{'b' * 64}\n")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "components", project / "components")
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=shutil.ignore_patterns("toolchain"))
    before = (project / "components/releases.json").read_text()
    server = serve(tmp_path)
    try:
        env = {**os.environ, "KTHW_K8S_RELEASES": f"http://127.0.0.1:{server.server_port}/k8s"}
        result = subprocess.run(["python3", str(project / "scripts/update-checksums"), "v1.99.0"],
                                env=env, text=True, capture_output=True, timeout=60)
    finally:
        server.shutdown()
    assert result.returncode != 0 and "must hold one digest" in result.stderr, result.stderr[-2000:]
    assert (project / "components/releases.json").read_text() == before
