"""End to end on this machine: the local stack's scripts bring up real hosts, LB and file server, then leave nothing.

Runs scripts/local/*.sh directly (not through Pulumi), with the names and paths LocalLayout gives a test-only
stack, on a free /27 of 198.18.0.0/24 outside the `local` stack's addresses (.1, .10-.16; e.g. 198.18.0.32/27:
bridge .33, hosts .42 and .43), so that it never clashes with a running stack. Needs root, debootstrap, systemd-nspawn, haproxy and ssh; the base root is
built once into the real cache (${KTHW_CACHE:-~/.cache/kthw}/rootfs) and reused. Prints timings.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from components.infra import HealthCheckStyle
from components.local import probe
from components.local.infra import render_haproxy
from components.local.layout import LocalLayout, default_cache_root

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts" / "local"
STACK = "kte2e"
# Apart from the `local` stack's .1 and .10-.16 and from tests/test_e2e_local.py's 198.18.0.128/25.
CANDIDATE_CIDRS = ("198.18.0.32/27", "198.18.0.64/27", "198.18.0.96/27")


def free_cidr() -> str:
    """A candidate subnet whose gateway address no interface of this machine holds yet."""
    import ipaddress

    for cidr in CANDIDATE_CIDRS:
        gateway = str(ipaddress.ip_network(cidr)[1])
        held = subprocess.run(["ip", "-4", "-o", "addr", "show", "to", gateway], capture_output=True, text=True).stdout
        if not held.strip():
            return cidr
    pytest.fail(f"no free test subnet among {CANDIDATE_CIDRS}")
HOSTS = ["controller-0", "controller-1"]
TIMINGS: dict[str, float] = {}


TOOLS = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container", "haproxy": "haproxy",
         "ssh": "openssh-client", "ssh-keygen": "openssh-client", "ip": "iproute2", "curl": "curl"}

if os.geteuid() != 0:
    pytest.skip("the local hosts need root (network namespaces, overlay mounts, systemd-nspawn)",
                allow_module_level=True)


def sh(script: str, *args: str, env: dict | None = None, stdin: str | None = None, timeout: int = 300,
       check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(SCRIPTS / script), *args], input=stdin, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def timed(label: str):
    class _T:
        def __enter__(self):
            self.start = time.monotonic()

        def __exit__(self, *exc):
            TIMINGS[label] = time.monotonic() - self.start
            print(f"[timing] {label}: {TIMINGS[label]:.1f} s")

    return _T()


def ssh(layout: LocalLayout, key: Path, ip: str, command: str, timeout: int = 60) -> subprocess.CompletedProcess:
    start = time.monotonic()
    try:
        return _ssh(key, ip, command, timeout)
    finally:
        if os.environ.get("KTHW_E2E_DEBUG"):
            print(f"[ssh] {ip} {command!r}: {time.monotonic() - start:.1f} s")


def _ssh(key: Path, ip: str, command: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{ip}", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def show_stat(sock: Path) -> list[dict[str, str]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        data = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = [line for line in data.decode().splitlines() if line]
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def backends(layout: LocalLayout) -> dict[str, str]:
    return {r["svname"]: r["status"] for r in show_stat(layout.stats_socket)
            if r["pxname"] == "kube-apiservers" and r["svname"] != "BACKEND"}


def wait_status(layout: LocalLayout, want: dict[str, str], seconds: float = 20) -> bool:
    """Poll HAProxy (bounded) until each named backend's status starts with the wanted word."""
    deadline = time.monotonic() + seconds
    while True:
        got = backends(layout)
        if all(got.get(name, "").startswith(status) for name, status in want.items()):
            return True
        if time.monotonic() > deadline:
            print(f"[lb] wanted {want}, have {got}")
            return False
        time.sleep(0.25)


def leftovers(layout: LocalLayout) -> list[str]:
    """Everything of the test stack that is still on the machine."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(f"kthw-{layout.id}-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip().split('@')[0]}" for line in links.splitlines()
              if line.split(":")[1].strip().startswith(f"kt-{layout.tag}-")]
    markers = [f"kthw-{layout.id}-", str(layout.lb_dir), f"--bind {layout.gateway}"]
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (pid_dir / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(m in cmdline for m in markers):
            found.append(f"process {pid_dir.name}: {cmdline.strip()}")
    ports = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    found += [f"listening {line.split()[3]}" for line in ports.splitlines() if f"{layout.gateway}:" in line]
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {line.split()[1]}" for line in mounts.splitlines() if str(layout.state_dir) in line]
    if layout.state_dir.exists():
        found.append(f"state dir {layout.state_dir}: {sorted(str(p) for p in layout.state_dir.rglob('*'))[:10]}")
    return found


def teardown(layout: LocalLayout, releases: Path) -> None:
    sh("lb.sh", "down", env=layout.lb_env(6443), check=False, timeout=60)
    sh("fileserver.sh", "down", env=layout.file_server_env(releases), check=False, timeout=60)
    with ThreadPoolExecutor(len(layout.hosts)) as pool:
        results = list(pool.map(lambda h: sh("host.sh", "down", env=layout.host_env(h), check=False, timeout=120),
                                layout.hosts))
    for result in results:
        print(result.stderr.strip())
    sh("network.sh", "down", env=layout.network_env(), check=False, timeout=60)


@pytest.fixture
def stack(tmp_path):
    from system_tools import require

    for binary, package in TOOLS.items():
        require(binary, package)
    # A short state root: HAProxy's stats socket path must stay under 108 bytes.
    state_root = Path(f"/tmp/kthw-e2e-{os.getpid()}")
    layout = LocalLayout.build(STACK, HOSTS, free_cidr(), state_root=state_root, cache_root=default_cache_root())
    releases = tmp_path / "releases"
    releases.mkdir()
    pre = leftovers(layout)
    assert not pre, f"a previous run left these behind: {pre}"
    try:
        yield layout, releases, tmp_path
    finally:
        if leftovers(layout):
            teardown(layout, releases)
        shutil.rmtree(state_root, ignore_errors=True)
        print("[timing] summary: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def test_local_hosts_up_and_down(stack):
    layout, releases, tmp = stack
    start = time.monotonic()
    first = sh("base-root.sh", timeout=1800, env={"KTHW_CACHE": str(layout.cache_root)})
    label = "base root (cached)" if "cached:" in first.stderr else "base root (cold: debootstrap)"
    TIMINGS[label] = time.monotonic() - start
    print(f"[timing] {label}: {TIMINGS[label]:.1f} s")
    base = first.stdout.strip().splitlines()[-1]
    assert Path(base, ".kthw-complete").is_file()
    with timed("base root (cached, again)"):
        again = sh("base-root.sh", env={"KTHW_CACHE": str(layout.cache_root)}).stdout.strip().splitlines()[-1]
    assert again == base

    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    payload = b"kthw local file server\n" * 100
    (releases / "kubectl").write_bytes(payload)

    def host_env(host, generation: str = "1") -> dict:
        return {**layout.host_env(host), "KTHW_BASE_ROOT": base, "KTHW_AUTHORIZED_KEY": key.with_suffix(".pub").read_text().strip(),
                "KTHW_GENERATION": generation}

    sh("network.sh", "up", env={**layout.network_env(), "KTHW_GENERATION": "1"})
    with timed(f"{len(HOSTS)} hosts boot (parallel, to sshd answering)"):
        with ThreadPoolExecutor(len(layout.hosts)) as pool:
            list(pool.map(lambda h: sh("host.sh", "up", env=host_env(h), timeout=300), layout.hosts))
    for host in layout.hosts:
        assert probe.host_alive(layout, host), host
        assert probe.read_generation(host.generation_file) == 1
    sh("fileserver.sh", "up", env={**layout.file_server_env(releases), "KTHW_GENERATION": "1"})
    assert probe.file_server_alive(layout, releases)

    # Another stack on the same addresses is refused, not silently doubled.
    clash = sh("network.sh", "up", env={**layout.network_env(), "KTHW_BRIDGE": f"kt-{layout.tag}-x",
                                        "KTHW_STATE_DIR": "", "KTHW_GENERATION_FILE": ""}, check=False)
    assert clash.returncode != 0 and "already on interface" in clash.stderr, clash.stderr
    assert subprocess.run(["ip", "link", "show", f"kt-{layout.tag}-x"], capture_output=True).returncode != 0
    clash = sh("fileserver.sh", "up", env={**layout.file_server_env(releases), "KTHW_FS_DIR": str(tmp / "fs2"),
                                           "KTHW_GENERATION_FILE": ""}, check=False)
    assert clash.returncode != 0 and "already in use" in clash.stderr, clash.stderr

    # Each host: systemd fully up, its own hostname, the file server reachable and the bytes intact.
    with timed("hosts reach 'running'"):
        for host in layout.hosts:
            state = ssh(layout, key, host.ip, "timeout 90 systemctl is-system-running --wait", timeout=120)
            assert state.stdout.strip() == "running", (state.stdout, state.stderr,
                                                       ssh(layout, key, host.ip, "systemctl --failed").stdout)
    for host in layout.hosts:
        assert ssh(layout, key, host.ip, "hostname").stdout.strip() == host.name
        got = ssh(layout, key, host.ip, f"curl -fsS --max-time 10 http://{layout.gateway}:{layout.file_server_port}/kubectl | sha256sum")
        assert got.stdout.split()[0] == hashlib.sha256(payload).hexdigest(), got.stderr
        peers = ssh(layout, key, host.ip, "getent hosts controller-0 controller-1; command -v nginx curl tar sudo").stdout
        assert layout.hosts[0].ip in peers and layout.hosts[1].ip in peers and "/usr/sbin/nginx" in peers
        limits = ssh(layout, key, host.ip, "sshd -T | grep -Ei '^(maxstartups|maxsessions) '").stdout.lower()
        assert "maxstartups 100:30:200" in limits and "maxsessions 100" in limits

    # The LB: rendered config validates, both backends are listed, a changed config reloads in place.
    for style in HealthCheckStyle:
        cfg = tmp / f"haproxy-{style.value}.cfg"
        cfg.write_text(render_haproxy(layout, style))
        check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
    lb_env = {**layout.lb_env(6443), "KTHW_GENERATION": "1"}
    c0, c1 = layout.hosts
    with timed("lb start"):
        sh("lb.sh", "up", env=lb_env, stdin=render_haproxy(layout, HealthCheckStyle.HTTPS_READYZ))
    assert probe.lb_alive(layout)
    assert {"controller-0", "controller-1"} <= set(backends(layout)), backends(layout)
    master = (layout.lb_dir / "haproxy.pid").read_text().strip()

    # https-readyz: a TLS server answering 200 on controller-0:6443 (a stand-in apiserver) is UP, and DOWN
    # once it stops; controller-1, with nothing on 6443, stays DOWN.
    fake_apiserver = (
        "cd /run && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=fake "
        "-keyout fake.key -out fake.crt -days 1 2>/dev/null && "
        "systemd-run --unit fake-apiserver openssl s_server -quiet -accept 6443 -www -cert /run/fake.crt -key /run/fake.key")
    assert ssh(layout, key, c0.ip, fake_apiserver).returncode == 0
    assert wait_status(layout, {"controller-0": "UP", "controller-1": "DOWN"})
    assert ssh(layout, key, c0.ip, "systemctl stop fake-apiserver").returncode == 0
    assert wait_status(layout, {"controller-0": "DOWN", "controller-1": "DOWN"})

    # http-healthz-proxy (reloaded in place): only a /healthz for Host kubernetes.default.svc.cluster.local
    # on port 80 counts (nginx's default site answers 404): controller-1 gets such a site, then loses it.
    sh("lb.sh", "up", env=lb_env, stdin=render_haproxy(layout, HealthCheckStyle.HTTP_HEALTHZ_PROXY))
    assert (layout.lb_dir / "haproxy.pid").read_text().strip() == master  # reloaded, not restarted
    site = ("server { listen 80; server_name kubernetes.default.svc.cluster.local; "
            "location = /healthz { return 200 ok; } }")
    assert ssh(layout, key, c1.ip, f"echo '{site}' > /etc/nginx/sites-enabled/kthw-test && systemctl reload nginx").returncode == 0
    assert wait_status(layout, {"controller-0": "DOWN", "controller-1": "UP"})
    assert ssh(layout, key, c1.ip, "rm /etc/nginx/sites-enabled/kthw-test && systemctl reload nginx").returncode == 0
    assert wait_status(layout, {"controller-1": "DOWN"})

    # tcp: a plain connect check.
    sh("lb.sh", "up", env=lb_env, stdin=render_haproxy(layout, HealthCheckStyle.TCP))
    assert (layout.lb_dir / "haproxy.pid").read_text().strip() == master
    assert ssh(layout, key, c0.ip, "systemctl reset-failed fake-apiserver 2>/dev/null; systemd-run --unit fake-apiserver2 "
               "openssl s_server -quiet -accept 6443 -www -cert /run/fake.crt -key /run/fake.key").returncode == 0
    assert wait_status(layout, {"controller-0": "UP", "controller-1": "DOWN"})

    # A host whose processes die (as when the machine's processes are killed) is rebuilt by `up`, with its
    # disk (the overlay's upper dir) kept: what the bootstrap installed survives, like a VM reboot.
    victim = layout.hosts[0]
    assert ssh(layout, key, victim.ip, "echo kept > /root/marker").returncode == 0
    pids = subprocess.run(["ip", "netns", "pids", victim.netns], capture_output=True, text=True).stdout.split()
    nspawn_pid = victim.pidfile.read_text().strip()
    subprocess.run(["kill", "-KILL", nspawn_pid, *pids], check=False)
    for _ in range(50):
        if not probe.host_alive(layout, victim):
            break
        time.sleep(0.1)
    assert not probe.host_alive(layout, victim)
    assert probe.generation(victim.generation_file, probe.host_alive(layout, victim)) == "2"
    with timed("dead host rebuilt"):
        sh("host.sh", "up", env=host_env(victim, "2"), timeout=300)
    assert probe.host_alive(layout, victim) and probe.read_generation(victim.generation_file) == 2
    assert ssh(layout, key, victim.ip, "cat /root/marker").stdout.strip() == "kept"

    for host in layout.hosts:  # keep the hosts' boot logs for a slow shutdown's diagnosis
        shutil.copy(host.dir / "nspawn.log", tmp / f"{host.name}-nspawn.log")
    with timed("teardown"):
        teardown(layout, releases)
    left = leftovers(layout)
    assert not left, f"left behind: {left}"
    for host in layout.hosts:
        assert not host.dir.exists()


def test_component_commands_converge(tmp_path):
    """LocalInfra's own commands, run as the engine would run them: create, a second evaluation asks for no
    change, killed processes ask for an update that brings them back, then delete leaves nothing.

    The program is evaluated under mocks (tests/harness.py); each registered `command:local:Command` is run
    with its recorded `create`/`update`/`delete`, `dir`, `environment` and `stdin` through /bin/sh, in the
    graph's dependency order. (The Pulumi CLI itself is exercised by the stack's own e2e test.)
    """
    from harness import evaluate
    from test_local_infra import cfg, make_toolchain

    from components.local import LocalInfra, LocalInfraArgs
    from system_tools import require

    for binary, package in TOOLS.items():
        require(binary, package)
    toolchain = make_toolchain(tmp_path / "toolchain")
    state_root = Path(f"/tmp/kthw-w-{os.getpid()}")
    stack_name = "ktwire"
    cidr = free_cidr()

    def evaluate_once():
        holder = {}

        def program():
            holder["infra"] = LocalInfra("w", LocalInfraArgs(
                config=cfg(nodeCidr=cidr, healthCheck="tcp", controllerCount=3), stack=stack_name,
                state_root=str(state_root), cache_root=str(default_cache_root()), toolchain_dir=str(toolchain)))

        graph = evaluate(program, {"cloud": "local"})
        commands = {r.name: r for r in graph.of_type("command:local:Command")}
        return graph, holder["infra"].layout, commands

    base_root = sh("base-root.sh", timeout=1800).stdout.strip().splitlines()[-1]

    def run(r, which: str) -> None:
        env = {k: str(v) for k, v in (r.input("environment") or {}).items()}
        if "KTHW_BASE_ROOT" in env:
            env["KTHW_BASE_ROOT"] = base_root  # the mocks do not run base-root.sh; its stdout is this path
        result = subprocess.run(["/bin/sh", "-c", r.input(which)], cwd=r.input("dir"), env={**os.environ, **env},
                                input=r.input("stdin") or "", capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{r.name} {which}:\n{result.stdout}\n{result.stderr}"

    def inputs(commands) -> dict:
        return {name: (r.input("environment"), r.input("stdin"), r.input("triggers"), r.input("create"))
                for name, r in commands.items()}

    order = ["w-network", "w-controller-0", "w-controller-1", "w-controller-2", "w-lb", "w-file-server"]
    graph, layout, commands = evaluate_once()
    assert not leftovers(layout), leftovers(layout)
    try:
        assert all(r.input("environment")["KTHW_GENERATION"] == "1" for n, r in commands.items() if n in order)
        with timed("component create (3 hosts, lb, file server)"):
            run(commands["w-network"], "create")
            hosts = [commands[f"w-controller-{i}"] for i in range(3)]
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda r: run(r, "create"), hosts))
            run(commands["w-lb"], "create")
            run(commands["w-file-server"], "create")
        assert wait_status(layout, {"controller-0": "DOWN", "controller-1": "DOWN", "controller-2": "DOWN"})

        # A second evaluation of a healthy stack asks for nothing: the same inputs, so no diff, no update.
        _, _, again = evaluate_once()
        assert inputs(again) == inputs(commands)

        # Kill the stack's processes (containers, HAProxy, file server) as a machine's cleanup would.
        victims = []
        for host in layout.hosts:
            victims += [host.pidfile.read_text().strip(),
                        *subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True).stdout.split()]
        victims += [(layout.lb_dir / "haproxy.pid").read_text().strip(),
                    (layout.file_server_dir / "http.pid").read_text().strip()]
        subprocess.run(["kill", "-KILL", *victims], check=False)
        for _ in range(50):
            if not any(probe.host_alive(layout, h) for h in layout.hosts) and not probe.lb_alive(layout):
                break
            time.sleep(0.1)
        _, _, after_kill = evaluate_once()
        changed = sorted(n for n in order if inputs(after_kill)[n] != inputs(commands)[n])
        assert changed == sorted(order[1:]), changed  # every host, the LB and the file server; not the bridge
        assert all(after_kill[n].input("environment")["KTHW_GENERATION"] == "2" for n in changed)
        with timed("component repair (update of killed parts)"):
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda n: run(after_kill[n], "update"), [f"w-controller-{i}" for i in range(3)]))
            run(after_kill["w-lb"], "update")
            run(after_kill["w-file-server"], "update")
        assert all(probe.host_alive(layout, h) for h in layout.hosts)
        assert probe.lb_alive(layout) and probe.file_server_alive(layout, toolchain / "releases")
        _, _, settled = evaluate_once()
        assert inputs(settled) == inputs(after_kill)  # the next `up` makes no change
    finally:
        with timed("component delete"):
            for name in ["w-lb", "w-file-server"]:
                run(commands[name], "delete")
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda i: run(commands[f"w-controller-{i}"], "delete"), range(3)))
            run(commands["w-network"], "delete")
        left = leftovers(layout)
        shutil.rmtree(state_root, ignore_errors=True)
    assert not left, f"left behind: {left}"
