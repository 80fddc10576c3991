"""LocalInfra through the real Pulumi CLI (the toolchain's), alone: up from empty, a no-op second up and
`preview --refresh --expect-no-changes`, the stack's processes killed (unseen by a preview without refresh,
named by the liveness resources with one) then `up --refresh` rebuilding them, and `destroy` leaving nothing.
A scratch project (symlinks to components/ and scripts/, a tiny __main__.py, no `refresh: always`) on a file
backend and its own KTHW_STATE, on a free /27 of 198.18.0.0/24. Prints timings."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from components.local import liveness
from components.local.infra import SSH_USER
from components.local.layout import LocalLayout
from e2e_lib import CHANGING, latest_update_changes
from test_local_hosts import TOOLS, free_cidr, leftovers

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
STACK = "kteng"
MAIN = '''import pulumi
from components import config
from components.local import LocalInfra, LocalInfraArgs

infra = LocalInfra("local", LocalInfraArgs(config=config.load()))
pulumi.export("hosts", [h.ssh_host for h in infra.outputs.hosts])
pulumi.export("sshKey", infra.outputs.hosts[0].ssh_private_key)
'''


def _toolchain_bin() -> Path | None:
    out = subprocess.run([str(ROOT / "scripts/toolchain/build"), "--print-bin"], capture_output=True, text=True,
                         timeout=60)
    bin_dir = Path(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else None
    needed = ("pulumi", "pulumi-language-python", "pulumi-resource-command", "pulumi-resource-tls")
    return bin_dir if bin_dir and all((bin_dir / n).exists() for n in needed) else None


@pytest.fixture
def project(tmp_path):
    if os.geteuid() != 0:
        if os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail("the local hosts need root; KTHW_REQUIRE_TOOLCHAIN=1")
        pytest.skip("the local hosts need root")
    from system_tools import require

    for binary, package in TOOLS.items():
        require(binary, package)
    if _toolchain_bin() is None:
        if os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail("the toolchain (Pulumi CLI and plugins) is missing: run scripts/toolchain/build")
        pytest.skip("the toolchain is not built (scripts/toolchain/build)")
    work = tmp_path / "project"
    work.mkdir()
    (work / "components").symlink_to(ROOT / "components")
    (work / "scripts").symlink_to(ROOT / "scripts")
    (work / "Pulumi.yaml").write_text(
        f"name: kthw\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {ROOT / '.venv'}\n")
    (work / "__main__.py").write_text(MAIN)
    cidr = free_cidr()
    (work / f"Pulumi.{STACK}.yaml").write_text(
        f"config:\n  kthw:cloud: local\n  kthw:controllerCount: 3\n  kthw:nodeCidr: {cidr}\n")
    state = Path(f"/tmp/kthw-eng-{os.getpid()}")
    env = {**os.environ, "KTHW_PROJECT_DIR": str(work), "KTHW_STATE": str(state),
           "PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}", "PULUMI_HOME": str(tmp_path / "home"),
           "PULUMI_CONFIG_PASSPHRASE": "kthw-test"}
    (tmp_path / "backend").mkdir()
    layout = LocalLayout.build(STACK, [f"controller-{i}" for i in range(3)], cidr, state_root=state)
    assert not leftovers(layout)
    try:
        yield work, env, layout
    finally:
        if leftovers(layout):
            pulumi(env, "destroy", "--stack", STACK, "--yes", "--skip-preview", check=False)
        shutil.rmtree(state, ignore_errors=True)


def pulumi(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(ROOT / "scripts/pulumi"), *args], env=env, capture_output=True, text=True,
                            timeout=600, stdin=subprocess.DEVNULL)
    if check:
        assert result.returncode == 0, f"pulumi {' '.join(args)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def changed(env: dict) -> dict[str, int]:
    """The operations that changed something in the stack's latest update, by the engine's own count."""
    history = pulumi(env, "stack", "history", "--json", "--page-size", "1", "--stack", STACK).stdout
    return {op: n for op, n in latest_update_changes(history).items() if op in CHANGING and n}


def timed(label: str, fn):
    start = time.monotonic()
    result = fn()
    print(f"[timing] {label}: {time.monotonic() - start:.1f} s")
    return result


def host_alive(layout: LocalLayout, host) -> bool:
    return liveness.alive(liveness.host_checks(layout, host))


def kill_stack_processes(layout: LocalLayout) -> None:
    victims = [(layout.lb_dir / "haproxy.pid").read_text().strip(),
               (layout.file_server_dir / "http.pid").read_text().strip()]
    for host in layout.hosts:
        victims.append(host.pidfile.read_text().strip())
        victims += subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True).stdout.split()
    subprocess.run(["kill", "-KILL", *victims], check=False)
    for _ in range(50):
        if not any(host_alive(layout, h) for h in layout.hosts) and not liveness.alive(liveness.lb_checks(layout)):
            return
        time.sleep(0.1)


def test_pulumi_up_refresh_destroy(project):
    work, env, layout = project
    pulumi(env, "stack", "init", STACK)
    up = timed("pulumi up (from empty)", lambda: pulumi(env, "up", "--stack", STACK, "--yes", "--skip-preview"))
    assert all(host_alive(layout, h) for h in layout.hosts), up.stdout[-3000:]
    assert liveness.alive(liveness.lb_checks(layout)) and liveness.alive(liveness.file_server_checks(layout))
    again = timed("pulumi up (no-op)", lambda: pulumi(env, "up", "--stack", STACK, "--yes", "--skip-preview"))
    assert changed(env) == {}, again.stdout[-2000:]
    pulumi(env, "preview", "--stack", STACK, "--refresh", "--expect-no-changes")

    key = work / "id"
    key.write_text(pulumi(env, "stack", "output", "sshKey", "--show-secrets", "--stack", STACK).stdout)
    key.chmod(0o600)
    for host in layout.hosts:
        out = subprocess.run(["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                              "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"{SSH_USER}@{host.ip}",
                              "hostname"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert out.stdout.strip() == host.name, out.stderr

    kill_stack_processes(layout)
    # Evaluating the program reads nothing of this machine: without a refresh nothing is seen.
    pulumi(env, "preview", "--stack", STACK, "--expect-no-changes")
    seen = pulumi(env, "preview", "--stack", STACK, "--refresh", "--expect-no-changes", "--diff", check=False)
    assert seen.returncode != 0, seen.stdout[-3000:]
    for part in ("controller-0", "controller-1", "controller-2", "lb", "file-server"):
        assert f"local-{part}-liveness" in seen.stdout, seen.stdout[-3000:]
    assert "local-network-liveness" not in seen.stdout  # the bridge lives on
    assert re.search(r"alive +: true => false", seen.stdout), seen.stdout[-3000:]  # on refresh, and why:
    assert f"no live process from {layout.hosts[0].pidfile}" in seen.stdout, seen.stdout[-3000:]
    repair = timed("pulumi up --refresh (after the stack's processes were killed)",
                   lambda: pulumi(env, "up", "--stack", STACK, "--yes", "--skip-preview", "--refresh"))
    # 5 liveness records go to the next generation, so the 3 hosts, the LB and the file server are rebuilt,
    # and each host's first-boot wait runs again.
    assert changed(env) == {"update": 13}, repair.stdout[-3000:]
    assert all(host_alive(layout, h) for h in layout.hosts) and liveness.alive(liveness.lb_checks(layout))
    assert all(liveness.read_generation(h.generation_file) == 2 for h in layout.hosts)
    pulumi(env, "preview", "--stack", STACK, "--refresh", "--expect-no-changes")

    # The same in two steps: `refresh` records the dead parts, a plain `up` then rebuilds them.
    kill_stack_processes(layout)
    timed("pulumi refresh (after the stack's processes were killed)",
          lambda: pulumi(env, "refresh", "--stack", STACK, "--yes", "--skip-preview"))
    repair = timed("pulumi up (after that refresh)",
                   lambda: pulumi(env, "up", "--stack", STACK, "--yes", "--skip-preview"))
    assert changed(env) == {"update": 13}, repair.stdout[-3000:]
    assert all(host_alive(layout, h) for h in layout.hosts) and liveness.alive(liveness.lb_checks(layout))
    assert all(liveness.read_generation(h.generation_file) == 3 for h in layout.hosts)
    pulumi(env, "preview", "--stack", STACK, "--refresh", "--expect-no-changes")

    kill_stack_processes(layout)  # destroy must also cope with dead parts
    timed("pulumi destroy", lambda: pulumi(env, "destroy", "--stack", STACK, "--yes", "--skip-preview"))
    left = leftovers(layout)
    assert not left, f"left behind: {left}"
