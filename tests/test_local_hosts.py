"""End to end on this machine: the local stack's scripts bring up real hosts, LB and file server, then leave nothing.

Runs scripts/local/*.sh directly (not through Pulumi), with the names and paths LocalLayout gives a test-only
stack, on a free /27 of 198.18.0.0/24 outside the `local` stack's addresses (.1, .10-.16; e.g. 198.18.0.32/27:
bridge .33, hosts .42 and .43), so that it never clashes with a running stack. Needs root, debootstrap, systemd-nspawn, haproxy and ssh; the base root is
built once into the real cache (${KTHW_CACHE:-~/.cache/kthw}/rootfs) and reused. Prints timings.

The hosts boot as the clouds' VMs do: cloud-init applies the shared user data from a NoCloud seed, the bootstrap
logs in as the image's sudo user (never root), and the release mirror is HTTPS with a CA the hosts trust.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import pytest

from components.boot import WAIT_FOR_BOOT, user_data
from harness import ssh_host_key_pair
from components.infra import HealthCheckStyle
from components.local import liveness
from components.local.infra import SSH_USER, render_haproxy
from components.local.layout import LocalLayout, default_cache_root
from components.local.releases import release_source
from e2e_lib import dialing
from test_local_infra import ETCD, K8S

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


@pytest.fixture(autouse=True)
def root():
    """The local hosts need root: skip without it, but fail under KTHW_REQUIRE_TOOLCHAIN=1 (as tests/e2e_lib.py)."""
    if os.geteuid() != 0:
        why = "the local hosts need root (network namespaces, overlay mounts, systemd-nspawn)"
        if os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(why + "; KTHW_REQUIRE_TOOLCHAIN=1")
        pytest.skip(why)


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


def ssh(layout: LocalLayout, key: Path, ip: str, command: str, timeout: int = 60, user: str = SSH_USER,
        root: bool = False) -> subprocess.CompletedProcess:
    """Run `command` on a host as the login user (as the bootstrap does); with `root`, through `sudo -n`."""
    start = time.monotonic()
    try:
        return _ssh(key, ip, f"sudo -n bash -c {shlex.quote(command)}" if root else command, timeout, user)
    finally:
        if os.environ.get("KTHW_E2E_DEBUG"):
            print(f"[ssh] {user}@{ip} {command!r}: {time.monotonic() - start:.1f} s")


def _ssh(key: Path, ip: str, command: str, timeout: int, user: str = SSH_USER) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"{user}@{ip}", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# What a host's boot went through, for a failed wait's message: cloud-init's verdict, what it left, the units that
# failed and their journal, sshd's.
BOOT_REPORT = ("cloud-init status --long; ls -la /var/lib/cloud/instance/ /run/cloud-init/; systemctl --failed "
               "--no-legend; for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1) cloud-init-local "
               "cloud-init cloud-config cloud-final ssh; do journalctl -b --no-pager -n 25 -u \"$u\"; done")


def boot_report(key: Path, ip: str, user: str = SSH_USER) -> str:
    report = _ssh(key, ip, f"sudo -n bash -c {shlex.quote(BOOT_REPORT)} 2>&1", 60, user)
    return f"[boot report of {ip}: exit {report.returncode}]\n{report.stdout}{report.stderr}"


def timestamp(layout: LocalLayout, key: Path, ip: str, unit: str, prop: str) -> int:
    return int(ssh(layout, key, ip, f"systemctl show {unit} -p {prop} --value").stdout.strip())


def first_boot(layout: LocalLayout, key: Path, ip: str) -> dict[str, str]:
    """What a host's first boot left: the login user, cloud-init's verdict, the instance, sshd's effective config."""
    # What components/boot.py runs (cloud-init done, sudo), dialing as the engine does.
    wait = dialing(lambda: ssh(layout, key, ip, WAIT_FOR_BOOT, timeout=200))
    if wait.returncode:  # pytest.fail: the whole report, untruncated
        pytest.fail(f"boot wait on {ip}: exit {wait.returncode} {wait.stdout!r} {wait.stderr!r}\n{boot_report(key, ip)}")
    status = ssh(layout, key, ip, "cloud-init status --long")
    return {
        "user": ssh(layout, key, ip, "id -un; id -u").stdout.split(),
        "status": status.stdout.strip().splitlines()[0] if status.stdout.strip() else status.stderr,
        "status_long": status.stdout,
        "instance": ssh(layout, key, ip, "cat /var/lib/cloud/data/instance-id").stdout.strip(),
        "boot_finished": ssh(layout, key, ip, "test -f /var/lib/cloud/instance/boot-finished && echo yes").stdout.strip(),
        "sshd": ssh(layout, key, ip, "sshd -T", root=True).stdout.lower(),
        "host_key": ssh(layout, key, ip, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip(),
        # The image's own cloud-init judges the user data it booted with against its schema.
        "schema": ssh(layout, key, ip, "cloud-init schema --system 2>&1", root=True).stdout.strip(),
    }


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
    found += [f"cgroup {cg}" for host in layout.hosts for pattern in ("kthw", "*/kthw")  # v2 alone, or v1 and v2
              for cg in Path("/sys/fs/cgroup").glob(f"{pattern}/{host.machine}")]
    if layout.state_dir.exists():
        found.append(f"state dir {layout.state_dir}: {sorted(str(p) for p in layout.state_dir.rglob('*'))[:10]}")
    return found


def teardown(layout: LocalLayout, mirror: Path) -> None:
    sh("lb.sh", "down", env=layout.lb_env(6443), check=False, timeout=60)
    sh("fileserver.sh", "down", env=layout.file_server_env(mirror), check=False, timeout=60)
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
    from test_local_infra import make_toolchain

    toolchain = make_toolchain(tmp_path / "toolchain")  # a fake mirror/ in the official layouts
    pre = leftovers(layout)
    assert not pre, f"a previous run left these behind: {pre}"
    try:
        yield layout, toolchain, tmp_path
    finally:
        if leftovers(layout):
            teardown(layout, toolchain / "mirror")
        shutil.rmtree(state_root, ignore_errors=True)
        print("[timing] summary: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def test_local_hosts_up_and_down(stack):
    from tls_mocks import ca_and_server_cert

    layout, toolchain, tmp = stack
    mirror = toolchain / "mirror"
    base_env = {"KTHW_CACHE": str(layout.cache_root), "KTHW_LOGIN_USER": SSH_USER}
    start = time.monotonic()
    first = sh("base-root.sh", timeout=1800, env=base_env)
    label = "base root (cached)" if "cached:" in first.stderr else "base root (cold: debootstrap)"
    TIMINGS[label] = time.monotonic() - start
    print(f"[timing] {label}: {TIMINGS[label]:.1f} s")
    base = first.stdout.strip().splitlines()[-1]
    assert Path(base, ".kthw-complete").is_file()
    with timed("base root (cached, again)"):
        again = sh("base-root.sh", env=base_env).stdout.strip().splitlines()[-1]
    assert again == base

    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    # The stack's mirror CA (the hosts trust it) and the file server's key and cert for the gateway address.
    ca_pem, server_pem = ca_and_server_cert(f"kthw {STACK} release mirror CA", layout.gateway)
    source = release_source(toolchain, K8S, ETCD, f"https://{layout.gateway}:{layout.file_server_port}", ca_pem)

    host_keys = {h.name: ssh_host_key_pair() for h in layout.hosts}  # each host's own, as the program makes them

    def host_env(host, generation: str = "1", data: Optional[str] = None) -> dict:
        data = user_data(*host_keys[host.name]) if data is None else data
        return {**layout.host_env(host), "KTHW_BASE_ROOT": base, "KTHW_AUTHORIZED_KEY": key.with_suffix(".pub").read_text().strip(),
                "KTHW_USER_DATA": data, "KTHW_MIRROR_CA": ca_pem, "KTHW_GENERATION": generation}

    sh("network.sh", "up", env={**layout.network_env(), "KTHW_GENERATION": "1"})
    booted_at = time.monotonic()
    with timed(f"{len(HOSTS)} hosts boot (parallel, to sshd answering)"):
        with ThreadPoolExecutor(len(layout.hosts)) as pool:
            list(pool.map(lambda h: sh("host.sh", "up", env=host_env(h), timeout=300), layout.hosts))
    for host in layout.hosts:
        assert liveness.failures(liveness.host_checks(layout, host)) == [], host
        assert liveness.read_generation(host.generation_file) == 1
    with ThreadPoolExecutor(len(layout.hosts)) as pool:
        boots = dict(zip(HOSTS, pool.map(lambda h: first_boot(layout, key, h.ip), layout.hosts)))
    TIMINGS[f"{len(HOSTS)} hosts first boot (to cloud-init done)"] = time.monotonic() - booted_at
    print(f"[timing] {len(HOSTS)} hosts first boot (to cloud-init done): {time.monotonic() - booted_at:.1f} s")
    sh("fileserver.sh", "up", env={**layout.file_server_env(mirror), "KTHW_GENERATION": "1"}, stdin=server_pem)
    assert liveness.alive(liveness.file_server_checks(layout, mirror))
    assert oct((layout.file_server_dir / "tls.pem").stat().st_mode & 0o777) == "0o600"

    # Another stack on the same addresses is refused, not silently doubled.
    clash = sh("network.sh", "up", env={**layout.network_env(), "KTHW_BRIDGE": f"kt-{layout.tag}-x",
                                        "KTHW_STATE_DIR": "", "KTHW_GENERATION_FILE": ""}, check=False)
    assert clash.returncode != 0 and "already on interface" in clash.stderr, clash.stderr
    assert subprocess.run(["ip", "link", "show", f"kt-{layout.tag}-x"], capture_output=True).returncode != 0
    clash = sh("fileserver.sh", "up", env={**layout.file_server_env(mirror), "KTHW_FS_DIR": str(tmp / "fs2"),
                                           "KTHW_GENERATION_FILE": ""}, stdin=server_pem, check=False)
    assert clash.returncode != 0 and "already in use" in clash.stderr, clash.stderr

    # Each host: systemd fully up, its own hostname, the file server reachable and the bytes intact.
    with timed("hosts reach 'running'"):
        for host in layout.hosts:
            state = ssh(layout, key, host.ip, "timeout 90 systemctl is-system-running --wait", timeout=120)
            if state.stdout.strip() != "running":
                pytest.fail(f"{host.name}: {state.stdout!r} {state.stderr!r}\n{boot_report(key, host.ip)}")
    # Each container in a cgroup of its own (two systemds in one cgroup fight over it: units fail with 219/CGROUP).
    for host in layout.hosts:
        nspawn = int(host.pidfile.read_text())
        init = int(Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()[0])
        paths = {line.split(":", 2)[2] for line in Path(f"/proc/{init}/cgroup").read_text().splitlines()
                 if line.split(":")[1] in ("name=systemd", "")}
        assert paths == {f"/kthw/{host.machine}/payload/init.scope"}, (host.name, paths)
    # A reboot's window: cloud-init answers `done` from the last boot's status while this boot's marker is not
    # written yet. The boot wait keeps waiting for the marker (here it comes back 3 s later).
    marker = "/var/lib/cloud/instance/boot-finished"
    held = layout.hosts[0]
    ssh(layout, key, held.ip, f"mv {marker} {marker}.held && systemd-run --quiet --on-active=3s mv {marker}.held {marker}",
        root=True)
    waited = time.monotonic()
    wait = ssh(layout, key, held.ip, WAIT_FOR_BOOT, timeout=60)
    assert wait.returncode == 0 and time.monotonic() - waited >= 2, (wait, time.monotonic() - waited)
    for host in layout.hosts:
        boot = boots[host.name]
        # The first boot, as on a cloud VM: cloud-init applied the shared user data and is done.
        assert boot["status"] == "status: done" and "error" not in boot["status_long"].lower(), boot["status_long"]
        assert "DataSourceNoCloud" in boot["status_long"] and boot["boot_finished"] == "yes"
        assert boot["schema"] == "Valid cloud-config: system userdata", boot["schema"]
        # The bootstrap's login: the image's user, not root, with passwordless sudo; root may not log in.
        assert boot["user"][0] == SSH_USER and boot["user"][1] != "0"
        assert ssh(layout, key, host.ip, "sudo -n true").returncode == 0
        as_root = ssh(layout, key, host.ip, "true", user="root")
        assert as_root.returncode != 0 and "Permission denied" in as_root.stderr, as_root
        # sshd runs with the user data's drop-in, and started only once cloud-init had written it.
        assert "maxstartups 100:30:200" in boot["sshd"] and "maxsessions 50" in boot["sshd"]
        assert "permitrootlogin no" in boot["sshd"] and "passwordauthentication no" in boot["sshd"]
        assert timestamp(layout, key, host.ip, "ssh", "ExecMainStartTimestampMonotonic") > \
            timestamp(layout, key, host.ip, "cloud-init", "ExecMainExitTimestampMonotonic") > 0
        assert ssh(layout, key, host.ip, "hostname").stdout.strip() == host.name
        peers = ssh(layout, key, host.ip, "getent hosts controller-0 controller-1; command -v nginx curl tar sudo",
                    root=True).stdout
        assert layout.hosts[0].ip in peers and layout.hosts[1].ip in peers and "/usr/sbin/nginx" in peers
        # Downloads as from the official sites: HTTPS verified by the host's own trust store (no -k, no
        # --cacert), each file checked against the checksum file published beside it.
        for url, checksum in [(source.kubernetes_url(n, K8S), source.kubernetes_checksum_url(n, K8S))
                              for n in ("kubectl", "kube-apiserver")]:
            name = url.rsplit("/", 1)[1]
            got = ssh(layout, key, host.ip, f"cd \"$(mktemp -d)\" && curl -fsSO --max-time 10 {url} && "
                      f"echo \"$(curl -fsS --max-time 10 {checksum})  {name}\" | sha256sum -c")
            assert got.returncode == 0 and f"{name}: OK" in got.stdout, (got.stdout, got.stderr)
        etcd = source.etcd_archive(ETCD)
        got = ssh(layout, key, host.ip, f"cd \"$(mktemp -d)\" && curl -fsSO --max-time 10 {source.etcd_url(ETCD)} && "
                  f"curl -fsS --max-time 10 {source.etcd_checksum_url(ETCD)} | sha256sum -c --ignore-missing")
        assert got.returncode == 0 and f"{etcd}: OK" in got.stdout, (got.stdout, got.stderr)
        # The bytes are the mirror's.
        served = hashlib.sha256((mirror / "release" / K8S / "bin/linux/amd64/kubectl").read_bytes()).hexdigest()
        got = ssh(layout, key, host.ip, f"curl -fsS --max-time 10 {source.kubernetes_url('kubectl', K8S)} | sha256sum")
        assert got.stdout.split()[0] == served, got.stderr
    # Every host is its own instance.
    assert len({boots[h]["instance"] for h in HOSTS}) == len(HOSTS) and all(boots[h]["instance"] for h in HOSTS)
    # What else logs in (the day-2 scripts, the drift probe, the version gate: components/ssh.py) reaches root
    # through sudo, as the login user.
    from components import drift
    from components import ssh as kthw_ssh

    ip = layout.hosts[1].ip
    client = kthw_ssh.client(ip, 22, SSH_USER, key.read_text(), timeout=10)
    try:
        status, out, _ = kthw_ssh.run_as_root(client, "id -u && head -c 5 /etc/shadow", "test", timeout=30)
    finally:
        client.close()
    assert (status, out) == (0, b"0\nroot:")
    # The host offers the key its user data installed, and nothing else: pinned, it is accepted; another is
    # refused before anything is sent, naming the host, by the clients and by the drift probe (no retries).
    kthw_ssh.client(ip, 22, SSH_USER, key.read_text(), timeout=10, host_key=host_keys[layout.hosts[1].name][1],
                    name="controller-1").close()
    impostor = host_keys[layout.hosts[0].name][1]
    with pytest.raises(kthw_ssh.HostKeyMismatch, match=rf"^controller-1 \({ip}:22\) answered with SSH host key "):
        kthw_ssh.client(ip, 22, SSH_USER, key.read_text(), timeout=10, host_key=impostor, name="controller-1")
    with pytest.raises(kthw_ssh.HostKeyMismatch, match="controller-1"):
        drift.probe_host({"name": "controller-1", "host": ip, "port": 22, "user": SSH_USER,
                          "private_key": key.read_text(), "host_key": impostor, "expected": {}})
    observed = drift.probe_host({"host": ip, "port": 22, "user": SSH_USER, "private_key": key.read_text(),
                                 "expected": {"g": {"files": {"/etc/shadow": "-"}, "units": ["ssh"]}}})
    assert observed["files"]["/etc/shadow"] != "missing" and observed["units"] == {"ssh": "active"}, observed

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
    assert liveness.alive(liveness.lb_checks(layout))
    assert {"controller-0", "controller-1"} <= set(backends(layout)), backends(layout)
    master = (layout.lb_dir / "haproxy.pid").read_text().strip()

    # https-readyz: a TLS server answering 200 on controller-0:6443 (a stand-in apiserver) is UP, and DOWN
    # once it stops; controller-1, with nothing on 6443, stays DOWN.
    fake_apiserver = (
        "cd /run && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=fake "
        "-keyout fake.key -out fake.crt -days 1 2>/dev/null && "
        "systemd-run --unit fake-apiserver openssl s_server -quiet -accept 6443 -www -cert /run/fake.crt -key /run/fake.key")
    assert ssh(layout, key, c0.ip, fake_apiserver, root=True).returncode == 0
    assert wait_status(layout, {"controller-0": "UP", "controller-1": "DOWN"})
    assert ssh(layout, key, c0.ip, "systemctl stop fake-apiserver", root=True).returncode == 0
    assert wait_status(layout, {"controller-0": "DOWN", "controller-1": "DOWN"})

    # http-healthz-proxy (reloaded in place): only a /healthz for Host kubernetes.default.svc.cluster.local
    # on port 80 counts (nginx's default site answers 404): controller-1 gets such a site, then loses it.
    sh("lb.sh", "up", env=lb_env, stdin=render_haproxy(layout, HealthCheckStyle.HTTP_HEALTHZ_PROXY))
    assert (layout.lb_dir / "haproxy.pid").read_text().strip() == master  # reloaded, not restarted
    site = ("server { listen 80; server_name kubernetes.default.svc.cluster.local; "
            "location = /healthz { return 200 ok; } }")
    assert ssh(layout, key, c1.ip, f"echo '{site}' > /etc/nginx/sites-enabled/kthw-test && systemctl reload nginx",
               root=True).returncode == 0
    assert wait_status(layout, {"controller-0": "DOWN", "controller-1": "UP"})
    assert ssh(layout, key, c1.ip, "rm /etc/nginx/sites-enabled/kthw-test && systemctl reload nginx",
               root=True).returncode == 0
    assert wait_status(layout, {"controller-1": "DOWN"})

    # tcp: a plain connect check.
    sh("lb.sh", "up", env=lb_env, stdin=render_haproxy(layout, HealthCheckStyle.TCP))
    assert (layout.lb_dir / "haproxy.pid").read_text().strip() == master
    assert ssh(layout, key, c0.ip, "systemctl reset-failed fake-apiserver 2>/dev/null; systemd-run --unit fake-apiserver2 "
               "openssl s_server -quiet -accept 6443 -www -cert /run/fake.crt -key /run/fake.key", root=True).returncode == 0
    assert wait_status(layout, {"controller-0": "UP", "controller-1": "DOWN"})

    # A host whose processes die (as when the machine's processes are killed) is rebuilt by `up --refresh`, with
    # its disk (the overlay's upper dir) kept: what the bootstrap installed survives, like a VM reboot. Its
    # liveness record (as the engine keeps it) sees it die on refresh, and its update asks for generation 2.
    victim = layout.hosts[0]
    provider = liveness.LivenessProvider()
    record = provider.create({"part": f"host {victim.machine}", "checks": liveness.host_checks(layout, victim),
                              "generation_file": str(victim.generation_file), "alive": True, "failures": []})
    assert record.outs["generation"] == 1  # alive, recorded 1: a stack made before the resource keeps it
    assert ssh(layout, key, victim.ip, "echo kept > /root/marker", root=True).returncode == 0
    pids = subprocess.run(["ip", "netns", "pids", victim.netns], capture_output=True, text=True).stdout.split()
    nspawn_pid = victim.pidfile.read_text().strip()
    subprocess.run(["kill", "-KILL", nspawn_pid, *pids], check=False)
    for _ in range(50):
        if not liveness.alive(liveness.host_checks(layout, victim)):
            break
        time.sleep(0.1)
    dead = provider.read(record.id, record.outs).outs
    assert dead["alive"] is False and any("nspawn.pid" in f for f in dead["failures"]), dead["failures"]
    assert provider.diff(record.id, dead, record.outs).changes
    repair = provider.update(record.id, dead, record.outs).outs
    assert repair["generation"] == 2
    with timed("dead host rebuilt"):
        sh("host.sh", "up", env=host_env(victim, str(repair["generation"])), timeout=300)
    assert liveness.failures(liveness.host_checks(layout, victim)) == []
    assert liveness.read_generation(victim.generation_file) == 2
    assert provider.read(record.id, repair).outs["alive"] is True
    # A reboot of the same instance: cloud-init is done again without making it anew (same host keys).
    rebooted = first_boot(layout, key, victim.ip)
    assert ssh(layout, key, victim.ip, "cat /root/marker", root=True).stdout.strip() == "kept"
    assert rebooted["status"] == "status: done" and rebooted["instance"] == boots[victim.name]["instance"]
    assert rebooted["host_key"] == boots[victim.name]["host_key"]

    # New instance data (here: the user data) is a new instance: the host reboots and cloud-init runs it anew.
    with timed("new instance data applied (reboot)"):
        changed = sh("host.sh", "up", env=host_env(victim, "2", data=user_data(*host_keys[victim.name]) + "# a new revision\n"), timeout=300)
    assert "rebooting" in changed.stderr, changed.stderr
    renewed = first_boot(layout, key, victim.ip)
    assert renewed["status"] == "status: done" and renewed["instance"] != boots[victim.name]["instance"]
    assert renewed["host_key"] != boots[victim.name]["host_key"]  # made anew for the new instance, as on a cloud
    assert ssh(layout, key, victim.ip, "tail -n 1 /var/lib/cloud/instance/user-data.txt",
               root=True).stdout.strip() == "# a new revision"

    # Another mirror CA replaces the old one in the trust store (bundle and hashed links), without a reboot.
    other_ca, _ = ca_and_server_cert(f"kthw {STACK} another mirror CA", layout.gateway)
    sh("host.sh", "up", env={**host_env(victim, "2", data=user_data(*host_keys[victim.name]) + "# a new revision\n"), "KTHW_MIRROR_CA": other_ca})
    url = source.kubernetes_checksum_url("kubectl", K8S)
    refused = ssh(layout, key, victim.ip, f"curl -fsS --max-time 10 {url}")
    assert refused.returncode == 60, refused  # the server's cert is the old CA's: no longer trusted
    assert ssh(layout, key, victim.ip, "openssl verify -CApath /etc/ssl/certs /usr/local/share/ca-certificates/"
               "kthw-mirror-ca.crt && openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt "
               "/usr/local/share/ca-certificates/kthw-mirror-ca.crt").returncode == 0

    for host in layout.hosts:  # keep the hosts' boot logs for a slow shutdown's diagnosis
        shutil.copy(host.dir / "nspawn.log", tmp / f"{host.name}-nspawn.log")
    with timed("teardown"):
        teardown(layout, mirror)
    left = leftovers(layout)
    assert not left, f"left behind: {left}"
    for host in layout.hosts:
        assert not host.dir.exists()


def test_component_commands_converge(tmp_path):
    """LocalInfra's own commands, run as the engine would run them: create, a second evaluation asks for no
    change, killed processes are not noticed without a refresh and, with one, ask for an update that brings
    them back, then delete leaves nothing.

    The program is evaluated under mocks (tests/harness.py) whose keys and certificates are real
    (tests/tls_mocks.py) and whose liveness resources run the real provider as the engine would, refresh
    included (tests/test_local_liveness.py's RefreshingMocks); each registered `command:local:Command` is run
    with its recorded `create`/`update`/`delete`, `dir`, `environment` and `stdin` through /bin/sh, and each
    host's first-boot wait (`command:remote:Command`) over SSH with its recorded connection, in the graph's
    dependency order.
    (The Pulumi CLI itself is exercised by the stack's own e2e test.)
    """
    from harness import evaluate
    from test_local_infra import cfg, make_toolchain
    from test_local_liveness import RefreshingMocks

    from components.local import LocalInfra, LocalInfraArgs
    from system_tools import require

    for binary, package in TOOLS.items():
        require(binary, package)
    toolchain = make_toolchain(tmp_path / "toolchain")
    state_root = Path(f"/tmp/kthw-w-{os.getpid()}")
    stack_name = "ktwire"
    cidr = free_cidr()
    mocks = RefreshingMocks()  # one "state": the same keys and certificates, liveness records that persist

    def evaluate_once():
        holder = {}

        def program():
            holder["infra"] = LocalInfra("w", LocalInfraArgs(
                config=cfg(nodeCidr=cidr, healthCheck="tcp", controllerCount=3), stack=stack_name,
                state_root=str(state_root), cache_root=str(default_cache_root()), toolchain_dir=str(toolchain)))

        graph = evaluate(program, {"cloud": "local"}, mocks=mocks)
        commands = {r.name: r for r in graph.of_type("command:local:Command") + graph.of_type("command:remote:Command")}
        return graph, holder["infra"].layout, commands

    def remote(r) -> subprocess.CompletedProcess:
        """A remote command's create, as the engine runs it: over SSH with its connection (user and key)."""
        connection = r.input("connection")
        key = tmp_path / "id"
        key.write_text(connection["privateKey"])
        key.chmod(0o600)
        return dialing(lambda: _ssh(key, connection["host"], r.input("create"), 300, user=connection["user"]))

    def remote_shell(r, command: str) -> subprocess.CompletedProcess:
        """`command` over the connection of remote command `r`."""
        connection = r.input("connection")
        return _ssh(tmp_path / "id", connection["host"], command, 60, user=connection["user"])

    def boot_waits(commands) -> None:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(remote, [commands[f"w-controller-{i}-booted"] for i in range(3)]))
        failed = [f"exit {r.returncode} {r.stdout!r} {r.stderr!r}\n"
                  f"{boot_report(tmp_path / 'id', commands[f'w-controller-{i}-booted'].input('connection')['host'])}"
                  for i, r in enumerate(results) if r.returncode]
        if failed:
            pytest.fail("boot waits failed:\n" + "\n".join(failed))

    graph, layout, commands = evaluate_once()
    base_env = {k: str(v) for k, v in commands["w-base-root"].input("environment").items()}
    base_root = sh("base-root.sh", timeout=1800, env=base_env).stdout.strip().splitlines()[-1]

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
        with timed("component first boot waits (cloud-init done, as the login user)"):
            boot_waits(commands)
        assert wait_status(layout, {"controller-0": "DOWN", "controller-1": "DOWN", "controller-2": "DOWN"})
        # The hosts trust the stack's mirror CA (pulumi-tls, here real): HTTPS to the component's file server.
        url = f"https://{layout.gateway}:{layout.file_server_port}/release/{K8S}/bin/linux/amd64/kubectl.sha256"
        got = remote_shell(commands["w-controller-2-booted"], f"curl -fsS --max-time 10 {url}")
        assert got.returncode == 0, got.stderr
        assert got.stdout == (toolchain / "mirror" / url.split(":8443/", 1)[1]).read_text()

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
            if not any(liveness.alive(liveness.host_checks(layout, h)) for h in layout.hosts) and not liveness.alive(
                    liveness.lb_checks(layout)):
                break
            time.sleep(0.1)
        mocks.refresh = False  # a plain `up`: the program reads nothing of the machine, so nothing changes
        _, _, unrefreshed = evaluate_once()
        assert inputs(unrefreshed) == inputs(commands)
        mocks.refresh = True  # `up --refresh`: the liveness resources look, the dead parts' generations go up
        _, _, after_kill = evaluate_once()
        assert {name: outs["generation"] for name, (_, outs) in mocks.state.items()} == {
            f"{n}-liveness": 1 if n == "w-network" else 2 for n in order}
        changed = sorted(n for n in order if inputs(after_kill)[n] != inputs(commands)[n])
        assert changed == sorted(order[1:]), changed  # every host, the LB and the file server; not the bridge
        assert all(after_kill[n].input("environment")["KTHW_GENERATION"] == "2" for n in changed)
        # Each rebuilt host is waited for again (its wait names the generation), before the bootstrap goes on.
        assert all("generation 2" in after_kill[f"w-controller-{i}-booted"].input("create") for i in range(3))
        with timed("component repair (update of killed parts)"):
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda n: run(after_kill[n], "update"), [f"w-controller-{i}" for i in range(3)]))
            run(after_kill["w-lb"], "update")
            run(after_kill["w-file-server"], "update")
            boot_waits(after_kill)
        assert all(liveness.failures(liveness.host_checks(layout, h)) == [] for h in layout.hosts)
        assert liveness.alive(liveness.lb_checks(layout))
        assert liveness.alive(liveness.file_server_checks(layout, toolchain / "mirror"))
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
