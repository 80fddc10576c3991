"""Day 2 on the local stack, all by `pulumi up`: a rolling upgrade to the next version, a refused skew, scaling
3 -> 5 -> 3, and an etcd backup restored into a destroyed-and-recreated stack. While each change runs, a probe
loop through the load balancer measures the longest run of failed requests. Tests run in file order."""
from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from components.releases import DEFAULT_KUBERNETES, NEXT_KUBERNETES
from e2e_lib import LocalStack, new_stack
from test_e2e_local import ETCDCTL, backend_states, wait_for

pytestmark = pytest.mark.e2e
NODE_CIDR = "198.18.0.64/26"  # apart from test_e2e_local's 198.18.0.128/25 and a user's own stack
PROBE_INTERVAL = 0.5
GAPS: dict[str, float] = {}
FAILED: dict[str, int] = {}  # failed probes through the LB per operation: each must be 0


@pytest.fixture(scope="module")
def stack():
    s = new_stack("day2", NODE_CIDR)
    yield s
    print("\n[day2 timings, seconds] " + ", ".join(f"{k}: {v}" for k, v in s.timings.items()))
    print("[day2 longest run of failed probes through the LB, seconds] "
          + ", ".join(f"{k}: {v}" for k, v in GAPS.items()))
    s.cleanup()


@contextmanager
def probing(stack: LocalStack, label: str):
    """Probe GET /version through the LB every PROBE_INTERVAL s (bounded: 20 min) while the block runs;
    record the longest run of failures in GAPS[label] (0 when none failed)."""
    results: list[tuple[float, bool]] = []
    stop = threading.Event()
    ctx = ssl.create_default_context(cadata=stack.ca_pem())
    url = f"https://{stack.gateway()}:6443/version"

    def loop() -> None:
        deadline = time.monotonic() + 1200
        while not stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                urllib.request.urlopen(url, context=ctx, timeout=2).read()
                results.append((t, True))
            except Exception:  # noqa: BLE001
                results.append((t, False))
            time.sleep(max(0.0, PROBE_INTERVAL - (time.monotonic() - t)))

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield results
    finally:
        stop.set()
        thread.join(timeout=30)
    longest, run_start = 0.0, None
    for t, ok in results:
        if ok:
            run_start = None
        else:
            run_start = t if run_start is None else run_start
            longest = max(longest, t - run_start + PROBE_INTERVAL)
    GAPS[label] = round(longest, 2)
    failed = FAILED[label] = sum(1 for _, ok in results if not ok)
    print(f"\n[{label}] {len(results)} probes, {failed} failed, longest failure run {longest:.2f} s")
    assert len(results) > 10, "the probe loop did not run"


def members(stack: LocalStack) -> list[str]:
    out = stack.host(0, f"{ETCDCTL} member list").stdout
    return sorted(line.split(", ")[2] for line in out.strip().splitlines())


def test_up_and_write_data(stack):
    # The LB probes with Azure's timings (every 5 s, 2 failures to take a backend out): the apiservers' drain and
    # rolling restarts follow them, and every operation below must lose no request through the LB.
    stack.set_config(localLbProbe="azure")
    stack.up(label="up (3 controllers)")
    assert "default-server inter 5s fall 2 rise 2" in (stack.layout().lb_dir / "haproxy.cfg").read_text()
    stack.kubectl("create", "namespace", "day2")
    stack.kubectl("-n", "day2", "create", "secret", "generic", "before", "--from-literal=token=kept-across-day-2")
    assert stack.kubectl("version", "-o", "json").stdout.count(DEFAULT_KUBERNETES) >= 1


def check_drift(stack: LocalStack) -> subprocess.CompletedProcess:
    result = subprocess.run([str(stack.script("check-drift")), stack.name], env=stack.env, text=True,
                            capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    stack.logs[f"{len(stack.logs)}: check-drift"] = result.stdout + result.stderr
    return result


def test_check_drift_names_a_stopped_service_and_is_clean_after_up(stack):
    """scripts/check-drift (the Automation API, the engine's events): 0 on the stack as `up` left it; 1 naming the
    host's drift resource and the item when a service is stopped; 0 again once `up` repaired it."""
    clean = check_drift(stack)
    assert clean.returncode == 0 and clean.stdout == f"check-drift: stack {stack.name} has no drift\n", clean
    stack.host(2, "systemctl stop kube-scheduler")
    drifted = check_drift(stack)
    assert drifted.returncode == 1, drifted
    lines = drifted.stdout.splitlines()
    assert lines[0] == f"check-drift: stack {stack.name} drifted:"
    assert "  update kthw-control-plane-controller-2-drift [pulumi-python:dynamic:Resource]" in lines, lines
    assert "    kube-scheduler: kube-scheduler is inactive" in lines, lines
    assert not any("controller-0-" in line or "controller-1-" in line for line in lines), lines
    stack.up(label="up (repair: a stopped scheduler)")
    again = check_drift(stack)
    assert again.returncode == 0, again


def secret_value(stack: LocalStack) -> str:
    import base64

    raw = stack.kubectl("-n", "day2", "get", "secret", "before", "-o", "jsonpath={.data.token}").stdout
    return base64.b64decode(raw).decode()


def running_apiserver(stack: LocalStack, index: int) -> str:
    ip = stack.layout().hosts[index].ip
    out = stack.host(index, f"curl -fsS --cacert /var/lib/kubernetes/ca.pem https://{ip}:6443/version").stdout
    return json.loads(out)["gitVersion"]


def test_a_failed_upgrade_can_be_rolled_back_or_run_again(stack):
    """controller-2 cannot download (its curl fails): the upgrade fails there, after the others rolled. Nothing
    new runs on controller-2 (its binaries are staged, never switched outside the roll); the rollback to the
    lowest running version is allowed (a further jump is not: tests/test_version_skew.py); the next test runs the
    upgrade again, to the end."""
    stack.set_config(kubernetesVersion=NEXT_KUBERNETES)
    stack.host(2, "printf '#!/bin/sh\\nexit 7\\n' >/usr/local/sbin/curl && chmod 0755 /usr/local/sbin/curl")
    try:
        with probing(stack, "failed upgrade"):
            failed = stack.up(label="up (upgrade, controller-2 cannot download)", check=False)
    finally:
        stack.host(2, "rm -f /usr/local/sbin/curl")
    assert failed.returncode != 0
    assert running_apiserver(stack, 2) == DEFAULT_KUBERNETES
    live = stack.host(2, "/usr/local/bin/kube-apiserver --version").stdout.strip()
    assert live == f"Kubernetes {DEFAULT_KUBERNETES}", live
    assert FAILED["failed upgrade"] == 0, f"{FAILED['failed upgrade']} probes failed"
    stack.set_config(kubernetesVersion=DEFAULT_KUBERNETES)
    rollback = stack.pulumi("preview", "--json", check=False, timeout=600)
    stack.set_config(kubernetesVersion=NEXT_KUBERNETES)
    assert rollback.returncode == 0, rollback.stdout[-3000:]  # the honest rollback is allowed
    assert not [c for c in json.loads(rollback.stdout).get("diagnostics", []) if c["severity"] == "error"]


def test_rolling_upgrade_keeps_the_api_answering(stack):
    stack.set_config(kubernetesVersion=NEXT_KUBERNETES)
    with probing(stack, "upgrade"):
        stack.up(label=f"up (upgrade to {NEXT_KUBERNETES})")
    assert FAILED["upgrade"] == 0, f"{FAILED['upgrade']} probes failed during the upgrade ({GAPS['upgrade']} s)"
    for i in range(3):
        ip = stack.layout().hosts[i].ip
        version = stack.host(i, f"curl -fsS --cacert /var/lib/kubernetes/ca.pem https://{ip}:6443/version").stdout
        assert f'"gitVersion": "{NEXT_KUBERNETES}"' in version, (i, version)
        for unit in ("kube-controller-manager", "kube-scheduler"):
            running = stack.host(i, f"/proc/$(systemctl show -p MainPID --value {unit})/exe --version").stdout
            assert running.strip() == f"Kubernetes {NEXT_KUBERNETES}", (i, unit, running)
    assert secret_value(stack) == "kept-across-day-2"


def test_a_minor_downgrade_is_refused_in_the_preview(stack):
    stack.set_config(kubernetesVersion=DEFAULT_KUBERNETES)
    try:
        result = stack.pulumi("preview", "--json", check=False, timeout=600)
    finally:
        stack.set_config(kubernetesVersion=NEXT_KUBERNETES)
    assert result.returncode != 0
    # The refusal is the program's own error diagnostic, from the structured preview (not the CLI's display).
    errors = [d["message"] for d in json.loads(result.stdout)["diagnostics"] if d["severity"] == "error"]
    assert any("kthw:kubernetesVersion cannot go down a minor version" in e for e in errors), \
        errors or result.stderr[-3000:]


def scale(stack: LocalStack, before: int, after: int) -> None:
    """controllerCount before -> after by `pulumi up`, probed: etcd's members, the LB's backends (all UP) and
    the data follow, and the API never fails for longer than one probe interval."""
    label = f"scale {before} -> {after}"
    stack.set_config(controllerCount=str(after))
    with probing(stack, label):
        stack.up(label=f"up ({label})")
    names = [f"controller-{i}" for i in range(after)]
    assert members(stack) == names
    assert sorted(backend_states(stack)) == names
    wait_for(f"all {after} backends UP", lambda: set(backend_states(stack).values()) == {"UP"}, 30)
    assert FAILED[label] == 0, f"{FAILED[label]} probes failed ({GAPS[label]} s)"
    assert secret_value(stack) == "kept-across-day-2"


def test_scale_to_five_adds_etcd_members_and_backends(stack):
    """With one etcd member stopped, the scale-up still works: the refresh sees the stopped member (drift), the
    up starts it again, and the joiners wait (bounded) until a quorum of the larger cluster can be kept."""
    stack.host(1, "systemctl stop etcd")
    scale(stack, 3, 5)
    endpoints = stack.host(4, "grep -o 'etcd-servers=[^ ]*' /etc/systemd/system/kube-apiserver.service").stdout
    assert endpoints.count(":2379") == 5


def test_scale_back_to_three_removes_members_first(stack):
    scale(stack, 5, 3)
    health = stack.host(0, f"{ETCDCTL} endpoint health --cluster")
    assert health.stdout.count("is healthy") == 3


def test_replacing_a_controllers_machine_keeps_quorum_and_the_api(stack):
    """scripts/replace-controller: controller-0 drained, its machine destroyed and created again (a fresh root),
    it joins etcd as a new member; the API through the LB (Azure's probe timings) loses nothing."""
    def member_id() -> int:
        return json.loads(stack.host(0, f"{ETCDCTL} endpoint status -w json").stdout)[0]["Status"]["header"]["member_id"]
    old_id = member_id()
    with probing(stack, "replace controller-0"):
        result = subprocess.run([str(stack.script("replace-controller")), "controller-0", "--stack", stack.name],
                                env=stack.env, text=True, capture_output=True, timeout=1800, stdin=subprocess.DEVNULL)
    stack.logs[f"{len(stack.logs)}: replace-controller"] = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-4000:]
    assert FAILED["replace controller-0"] == 0, f"{FAILED['replace controller-0']} probes failed"
    assert members(stack) == [f"controller-{i}" for i in range(3)]
    assert member_id() != old_id  # a new member
    health = stack.host(1, f"{ETCDCTL} endpoint health --cluster")
    assert health.stdout.count("is healthy") == 3
    assert secret_value(stack) == "kept-across-day-2"
    assert "replaceController" not in stack.pulumi("config", "--json", timeout=120).stdout


def served_certificate(stack: LocalStack, index: int) -> str:
    """The PEM the apiserver on controller-<index> serves (fetched from here, not through the LB)."""
    return ssl.get_server_certificate((stack.layout().hosts[index].ip, 6443), timeout=10)


def openssl(*args: str, stdin: str = "") -> str:
    result = subprocess.run(["openssl", *args], input=stdin, text=True, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_renewed_certificates_roll_out_like_an_upgrade(stack, tmp_path):
    before = [openssl("x509", "-noout", "-enddate", stdin=served_certificate(stack, i)) for i in range(3)]
    expiry = stack.outputs()["certificateExpiry"]
    stack.set_config(certValidityHours="4380")
    with probing(stack, "certificate renewal"):
        stack.up(label="up (renew certificates: 8760 h -> 4380 h)")
    assert FAILED["certificate renewal"] == 0, f"{FAILED['certificate renewal']} probes failed"
    renewed = stack.outputs()["certificateExpiry"]
    assert renewed["ca"] == expiry["ca"], "a leaf renewal must not re-issue the CA"
    assert renewed["apiserver"] < expiry["apiserver"] and renewed["etcd-ca"] == expiry["etcd-ca"]
    ca = tmp_path / "ca.pem"
    ca.write_text(stack.ca_pem())
    for i in range(3):
        pem = served_certificate(stack, i)
        assert openssl("x509", "-noout", "-enddate", stdin=pem) != before[i], f"controller-{i} serves the old cert"
        served = tmp_path / f"apiserver-{i}.pem"
        served.write_text(pem)
        assert openssl("verify", "-CAfile", str(ca), str(served)).endswith(": OK")
    assert members(stack) == [f"controller-{i}" for i in range(3)]
    assert secret_value(stack) == "kept-across-day-2"


def stored_prefix(stack: LocalStack) -> str:
    return stack.host(0, f"{ETCDCTL} get /registry/secrets/day2/before --print-value-only | head -c 38").stdout


def test_encryption_key_rotation_keeps_secrets_readable(stack):
    from e2e_lib import ROOT

    old = stored_prefix(stack)
    assert old.startswith("k8s:enc:secretbox:v1:key-"), old
    with probing(stack, "encryption key rotation"):
        result = subprocess.run([str(ROOT / "scripts/rotate-encryption-key"), "--stack", stack.name], env=stack.env,
                                text=True, capture_output=True, timeout=1800, stdin=subprocess.DEVNULL)
    stack.logs[f"{len(stack.logs)}: rotate-encryption-key"] = result.stdout + result.stderr
    (stack.workdir / "admin.kubeconfig").unlink(missing_ok=True)
    assert result.returncode == 0, result.stderr[-5000:]
    print("\n" + "\n".join(line for line in result.stderr.splitlines() if line.startswith("rotation ")))
    assert GAPS["encryption key rotation"] <= PROBE_INTERVAL
    new = stored_prefix(stack)
    assert new.startswith("k8s:enc:secretbox:v1:key-") and new != old, (old, new)
    for i in range(3):
        config = stack.host(i, "grep -c 'secret:' /var/lib/kubernetes/encryption-config.yaml").stdout.strip()
        assert config == "1", f"controller-{i} still has {config} keys"
    assert secret_value(stack) == "kept-across-day-2"


def test_the_snapshot_timer_is_scheduled_and_its_service_takes_a_snapshot(stack):
    for i in range(3):
        assert stack.host(i, "systemctl is-enabled kthw-etcd-backup.timer").stdout.strip() == "enabled"
        assert stack.host(i, "systemctl is-active kthw-etcd-backup.timer").stdout.strip() == "active"
    stack.host(1, "systemctl start kthw-etcd-backup.service", timeout=180)
    listing = stack.host(1, "ls /var/backups/etcd").stdout.split()
    assert any(name.startswith("etcd-controller-1-") and name.endswith(".db") for name in listing), listing
    status = stack.host(1, "etcdutl snapshot status \"$(ls -1t /var/backups/etcd/*.db | head -n1)\" -w json").stdout
    assert '"totalKey"' in status


def test_backup_destroy_up_restore_brings_the_data_back(stack, tmp_path):
    from e2e_lib import ROOT

    def script(name: str, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(ROOT / "scripts" / name), *args, "--stack", stack.name], env=stack.env,
                                text=True, capture_output=True, timeout=1800, stdin=subprocess.DEVNULL)
        stack.logs[f"{len(stack.logs)}: {name}"] = result.stdout + result.stderr
        assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        return result

    stack.kubectl("-n", "day2", "create", "configmap", "marker", "--from-literal=written=before-the-backup")
    snapshot = Path(script("etcd-backup", str(tmp_path)).stdout.strip().splitlines()[-1])
    assert snapshot.is_file() and snapshot.stat().st_size > 0
    key_file = Path(f"{snapshot}.encryption-config.yaml")
    assert key_file.stat().st_mode & 0o077 == 0, "the encryption key must be readable by its owner only"
    stack.kubectl("-n", "day2", "create", "configmap", "after", "--from-literal=written=after-the-backup")

    stack.pulumi("destroy", "--yes", "--skip-preview", label="destroy (before restore)")
    start = time.monotonic()
    script("etcd-restore", str(snapshot))
    stack.timings["restore (up from snapshot + up)"] = round(time.monotonic() - start, 1)
    (stack.workdir / "admin.kubeconfig").unlink(missing_ok=True)  # a new CA came with the new stack

    assert stack.kubectl("get", "namespace", "day2", "-o", "name").stdout.strip() == "namespace/day2"
    assert secret_value(stack) == "kept-across-day-2"
    marker = stack.kubectl("-n", "day2", "get", "configmap", "marker", "-o", "jsonpath={.data.written}").stdout
    assert marker == "before-the-backup"
    after = stack.kubectl("-n", "day2", "get", "configmap", "after", check=False)
    assert after.returncode != 0 and "NotFound" in after.stderr  # the snapshot's data, not the old cluster's
    assert members(stack) == [f"controller-{i}" for i in range(3)]
    # The copied snapshot and its private directory are gone once the restore key is dropped.
    assert stack.host(0, "ls -d /home/*/.kthw-restore /root/.kthw-restore 2>/dev/null || true").stdout.strip() == ""
    export = stack.pulumi("stack", "export", timeout=120).stdout
    assert "etcdRestoreFrom" not in (stack.project / f"Pulumi.{stack.name}.yaml").read_text()
    assert key_file.read_text().split("secret: ")[1].split()[0] not in export


def test_destroy_leaves_nothing(stack):
    from test_e2e_local import test_destroy_leaves_nothing as check

    check(stack)
