"""End to end on the local stack: `pulumi up` builds a real HA control plane here; then it is checked,
previewed, probed, broken, healed and destroyed by Pulumi itself. Tests run in file order on one stack."""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from e2e_lib import LocalStack, toolchain_ready

pytestmark = pytest.mark.e2e
NODE_CIDR = "198.18.0.128/25"  # inside 198.18.0.0/24, apart from a user's own local stack at .10-.12
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack():
    reason = toolchain_ready()
    if reason:
        if os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="kthw-e2e-", dir="/tmp"))
    s = LocalStack("e2e", workdir, {"cloud": "local", "nodeCidr": NODE_CIDR, "controllerCount": "3"})
    s.init()
    yield s
    TIMINGS.update(s.timings)
    print("\n[e2e timings, seconds] " + ", ".join(f"{k}: {v}" for k, v in s.timings.items()))
    if not getattr(s, "destroyed", False):
        s.cleanup()


def wait_for(what: str, check, tries: int = 60, delay: float = 1.0):
    last = None
    for _ in range(tries):
        try:
            last = check()
            if last:
                return last
        except (AssertionError, subprocess.SubprocessError, OSError) as exc:
            last = exc
        time.sleep(delay)
    raise AssertionError(f"{what}: not true after {tries} tries ({last})")


def backend_states(s: LocalStack) -> dict[str, str]:
    """HAProxy's view of the API backends, through its stats socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(s.layout().stats_socket))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    states = {}
    for line in data.decode().splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[1] not in ("FRONTEND", "BACKEND", "svname"):
            states[fields[1]] = fields[17]
    return states


def test_up_from_empty(stack):
    stack.up(label="up (cold)")
    outputs = stack.outputs()
    assert outputs["apiServerUrl"] == "https://198.18.0.129:6443"
    assert [c["name"] for c in outputs["controllers"]] == ["controller-0", "controller-1", "controller-2"]


def test_api_answers_through_the_load_balancer(stack):
    assert stack.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = stack.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.36.3"' in version


def test_leader_leases_have_holders(stack):
    for lease in ("kube-controller-manager", "kube-scheduler"):
        holder = wait_for(f"{lease} lease holder", lambda lease=lease: stack.kubectl(
            "-n", "kube-system", "get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}").stdout.strip())
        assert holder.startswith("controller-")


def test_apiserver_to_kubelet_rbac_exists(stack):
    stack.kubectl("get", "clusterrole", "system:kube-apiserver-to-kubelet")
    binding = stack.kubectl("get", "clusterrolebinding", "system:kube-apiserver", "-o", "jsonpath={.subjects[0].name}")
    assert binding.stdout == "kube-apiserver-kubelet-client"


ETCDCTL = ("etcdctl --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/healthcheck-client.pem "
           "--key=/etc/etcd/healthcheck-client-key.pem --endpoints=https://127.0.0.1:2379")


def test_secrets_are_encrypted_at_rest(stack):
    stack.kubectl("create", "secret", "generic", "e2e-secret", "--from-literal=password=hunter2-e2e")
    raw = stack.host(0, f"{ETCDCTL} get /registry/secrets/default/e2e-secret --print-value-only | head -c 64 | od -c")
    flat = "".join(raw.stdout.split())
    assert "k8s:enc:secretbox:v1:key1" in flat.replace("\\0", "")
    assert "hunter2" not in stack.host(0, f"{ETCDCTL} get /registry/secrets/default/e2e-secret").stdout


def test_every_etcd_member_is_healthy(stack):
    members = stack.host(0, f"{ETCDCTL} member list").stdout.strip().splitlines()
    assert len(members) == 3 and all(", started, " in m for m in members), members
    health = stack.host(0, f"{ETCDCTL} endpoint health --cluster", check=False)
    assert health.returncode == 0 and health.stderr.count("is healthy") + health.stdout.count("is healthy") == 3


def test_every_service_is_active_on_every_host(stack):
    for i in range(3):
        result = stack.host(i, "systemctl is-active etcd kube-apiserver kube-controller-manager kube-scheduler")
        assert result.stdout.split() == ["active"] * 4


def test_https_readyz_probe_follows_the_apiserver(stack):
    assert wait_for("all backends up", lambda: set(backend_states(stack).values()) == {"UP"})
    stack.host(1, "systemctl stop kube-apiserver")
    try:
        wait_for("controller-1 down", lambda: backend_states(stack).get("controller-1", "").startswith("DOWN"), 60)
        assert stack.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"  # the others still answer
    finally:
        stack.host(1, "systemctl start kube-apiserver")
    wait_for("controller-1 up again", lambda: backend_states(stack).get("controller-1") == "UP", 120)


def test_preview_and_second_up_are_clean(stack):
    preview = stack.pulumi("preview", "--refresh", "--expect-no-changes", label="preview --refresh", check=False)
    assert preview.returncode == 0, preview.stdout[-4000:]
    again = stack.up(label="up (no-op)")
    summary = stack.changes(again)
    assert not any(summary.get(k) for k in ("created", "updated", "deleted", "replaced")), summary


def test_http_healthz_proxy_probe_follows_the_apiserver(stack):
    stack.set_config(healthCheck="http-healthz-proxy")
    stack.up(label="up (switch to http-healthz-proxy)")
    assert stack.host(2, "curl -fsS -H 'Host: kubernetes.default.svc.cluster.local' http://127.0.0.1/healthz").stdout
    wait_for("all backends up", lambda: set(backend_states(stack).values()) == {"UP"}, 60)
    stack.host(2, "systemctl stop kube-apiserver")
    try:
        wait_for("controller-2 down", lambda: backend_states(stack).get("controller-2", "").startswith("DOWN"), 60)
    finally:
        stack.host(2, "systemctl start kube-apiserver")
    wait_for("controller-2 up again", lambda: backend_states(stack).get("controller-2") == "UP", 120)


def test_killed_hosts_are_rebuilt_by_up_refresh(stack):
    layout = stack.layout()
    for host in layout.hosts:
        pid = int(host.pidfile.read_text())
        os.kill(pid, 9)
    wait_for("containers gone", lambda: all(not Path(f"/proc/{int(h.pidfile.read_text())}").exists()
                                            for h in layout.hosts if h.pidfile.exists()), 30)
    stack.up("--refresh", label="up --refresh (rebuild killed hosts)")
    assert stack.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_destroy_leaves_nothing(stack):
    layout = stack.layout()
    stack.pulumi("destroy", "--yes", "--skip-preview", label="destroy")
    stack.destroyed = True
    netns = subprocess.run(["ip", "netns", "list"], text=True, capture_output=True).stdout
    assert f"kthw-{layout.id}-" not in netns
    links = subprocess.run(["ip", "-o", "link"], text=True, capture_output=True).stdout
    assert f"kt-{layout.tag}-" not in links
    procs = subprocess.run(["ps", "-eo", "args"], text=True, capture_output=True).stdout
    assert str(layout.state_dir) not in procs
    listening = subprocess.run(["ss", "-Hltn"], text=True, capture_output=True).stdout
    assert layout.gateway not in listening
    mounts = Path("/proc/mounts").read_text()
    assert str(layout.state_dir) not in mounts
    assert not (layout.state_dir / "hosts").exists() or not any((layout.state_dir / "hosts").iterdir())
