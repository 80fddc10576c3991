"""The e2e helpers' readers of Pulumi's structured output, fed its real output.

tests/data/preview-drift.json: `preview --refresh --expect-no-changes --json` of a 1-controller local stack whose
scheduler was stopped and front-proxy-ca.pem deleted (recorded 2026-11-29; kept: each step's op, urn, diffReasons and
a drift resource's old `drift` output, the diagnostics and the summary; certificates and other states dropped).
"""
import json
from pathlib import Path

from e2e_lib import Preview

DATA = Path(__file__).parent / "data" / "preview-drift.json"


def test_preview_names_the_drifted_host_and_its_items():
    preview = Preview(returncode=255, document=json.loads(DATA.read_text()), stderr="")
    changes = preview.changes()
    op, drift = changes["kthw-control-plane-controller-0-drift"]
    assert op == "update"
    assert drift == ["kube-apiserver: /var/lib/kubernetes/front-proxy-ca.pem is missing",
                     "kube-controller-manager: /var/lib/kubernetes/front-proxy-ca.pem is missing",
                     "kube-scheduler: kube-scheduler is inactive"]
    assert changes["kthw-control-plane-controller-0-kube-scheduler"] == ("update", [])  # its repair counter
    assert all(op not in ("same", "refresh") for op, _ in changes.values())
    assert "kthw-control-plane-controller-0-drift" in preview.report()


def test_a_clean_preview_has_no_changes():
    document = json.loads(DATA.read_text())
    document["steps"] = [{**s, "op": "same"} for s in document["steps"]]
    assert Preview(0, document, "").changes() == {}


def test_dialing_retries_only_what_reached_no_sshd():
    """Fed real ssh output: a refused loopback port (nothing listens there) is dialed again, a bounded number of
    times; a command that ran and failed (or ssh's own usage error) is not."""
    import socket
    import subprocess

    from e2e_lib import NOT_REACHED, dialing

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    calls = []

    def refused() -> subprocess.CompletedProcess:
        calls.append(1)
        return subprocess.run(["ssh", "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                               "kthw@127.0.0.1", "true"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    result = dialing(refused, tries=3, pause=0)
    assert result.returncode == 255 and any(sign in result.stderr for sign in NOT_REACHED), result.stderr
    assert len(calls) == 3
    calls.clear()

    def usage_error() -> subprocess.CompletedProcess:
        calls.append(1)
        return subprocess.run(["ssh", "-o", "NoSuchOption=yes", "kthw@127.0.0.1", "true"], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)

    assert dialing(usage_error, tries=3, pause=0).returncode == 255 and len(calls) == 1
    calls.clear()
    ran = dialing(lambda: calls.append(1) or subprocess.CompletedProcess([], 1, "", "cloud-init: not done"), tries=3)
    assert ran.returncode == 1 and len(calls) == 1
