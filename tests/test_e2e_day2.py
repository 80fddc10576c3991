"""Day 2 on the local stack, all by `pulumi up`: a rolling upgrade to the next version, a refused skew, scaling
3 -> 5 -> 3, and an etcd backup restored into a destroyed-and-recreated stack. While each change runs, a probe
loop through the load balancer measures the longest run of failed requests. Tests run in file order."""
from __future__ import annotations

import os
import ssl
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from components.releases import DEFAULT_KUBERNETES, NEXT_KUBERNETES
from e2e_lib import LocalStack, toolchain_ready
from test_e2e_local import ETCDCTL, backend_states, wait_for

pytestmark = pytest.mark.e2e
NODE_CIDR = "198.18.0.64/26"  # apart from test_e2e_local's 198.18.0.128/25 and a user's own stack
PROBE_INTERVAL = 0.5
GAPS: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack():
    reason = toolchain_ready()
    if reason:
        if os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="kthw-day2-", dir="/tmp"))
    s = LocalStack("day2", workdir, {"cloud": "local", "nodeCidr": NODE_CIDR, "controllerCount": "3"})
    s.init()
    yield s
    print("\n[day2 timings, seconds] " + ", ".join(f"{k}: {v}" for k, v in s.timings.items()))
    print("[day2 longest run of failed probes through the LB, seconds] "
          + ", ".join(f"{k}: {v}" for k, v in GAPS.items()))
    if not getattr(s, "destroyed", False):
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
    failed = sum(1 for _, ok in results if not ok)
    print(f"\n[{label}] {len(results)} probes, {failed} failed, longest failure run {longest:.2f} s")
    assert len(results) > 10, "the probe loop did not run"


def members(stack: LocalStack) -> list[str]:
    out = stack.host(0, f"{ETCDCTL} member list").stdout
    return sorted(line.split(", ")[2] for line in out.strip().splitlines())


def test_up_and_write_data(stack):
    stack.up(label="up (3 controllers)")
    stack.kubectl("create", "namespace", "day2")
    stack.kubectl("-n", "day2", "create", "secret", "generic", "before", "--from-literal=token=kept-across-day-2")
    assert stack.kubectl("version", "-o", "json").stdout.count(DEFAULT_KUBERNETES) >= 1


def secret_value(stack: LocalStack) -> str:
    import base64

    raw = stack.kubectl("-n", "day2", "get", "secret", "before", "-o", "jsonpath={.data.token}").stdout
    return base64.b64decode(raw).decode()


def test_rolling_upgrade_keeps_the_api_answering(stack):
    stack.set_config(kubernetesVersion=NEXT_KUBERNETES)
    with probing(stack, "upgrade"):
        stack.up(label=f"up (upgrade to {NEXT_KUBERNETES})")
    assert GAPS["upgrade"] <= PROBE_INTERVAL, f"the API failed for {GAPS['upgrade']} s during the upgrade"
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
        result = stack.pulumi("preview", check=False, timeout=600)
    finally:
        stack.set_config(kubernetesVersion=NEXT_KUBERNETES)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "kthw:kubernetesVersion cannot go down a minor version" in text, text[-3000:]


def test_scale_to_five_adds_etcd_members_and_backends(stack):
    stack.set_config(controllerCount="5")
    with probing(stack, "scale 3 -> 5"):
        stack.up(label="up (scale 3 -> 5)")
    names = [f"controller-{i}" for i in range(5)]
    assert members(stack) == names
    assert sorted(backend_states(stack)) == names
    wait_for("all five backends UP", lambda: set(backend_states(stack).values()) == {"UP"}, 30)
    assert GAPS["scale 3 -> 5"] <= PROBE_INTERVAL
    assert secret_value(stack) == "kept-across-day-2"
    endpoints = stack.host(4, "grep -o 'etcd-servers=[^ ]*' /etc/systemd/system/kube-apiserver.service").stdout
    assert endpoints.count(":2379") == 5


def test_scale_back_to_three_removes_members_first(stack):
    stack.set_config(controllerCount="3")
    with probing(stack, "scale 5 -> 3"):
        stack.up(label="up (scale 5 -> 3)")
    names = [f"controller-{i}" for i in range(3)]
    assert members(stack) == names
    assert sorted(backend_states(stack)) == names
    assert GAPS["scale 5 -> 3"] <= PROBE_INTERVAL
    assert secret_value(stack) == "kept-across-day-2"
    health = stack.host(0, f"{ETCDCTL} endpoint health --cluster")
    assert health.stdout.count("is healthy") == 3
