"""LocalInfra under Pulumi mocks: the resources it registers, their dependencies and the InfraOutputs shape."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pulumi
import pytest

from components import config as stack_config
from components.boot import DEFAULT_ADMIN_USERNAME, user_data
from components.infra import ControllerHost, HealthCheckStyle, InfraOutputs
from components.local import LocalInfra, LocalInfraArgs, LocalLayout, ManifestError, release_source
from components.local.infra import render_haproxy
from components.local.layout import iface_tag
from harness import FakeCloud, contains_secret_marker, evaluate, fake_ssh_key, unwrap

K8S = stack_config.releases.DEFAULT_KUBERNETES
ETCD = stack_config.releases.DEFAULT_ETCD
ARTIFACTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]


def mirror_files(k8s: str = K8S, etcd: str = ETCD) -> list[tuple[str, str, str]]:
    """(name, version, path under mirror/) of every release the local stack serves, as the official sites lay
    them out: dl.k8s.io's release/<v>/bin/linux/amd64/<name>, etcd's <v>/<archive> (under etcd/)."""
    return [(name, k8s, f"release/{k8s}/bin/linux/amd64/{name}") for name in ARTIFACTS] + [
        ("etcd", etcd, f"etcd/{etcd}/etcd-{etcd}-linux-amd64.tar.gz")]


def make_toolchain(root: Path, k8s: str = K8S, etcd: str = ETCD, skip: tuple[str, ...] = (),
                   no_checksum: tuple[str, ...] = ()) -> Path:
    """A toolchain dir as scripts/toolchain/build writes it: mirror/ with each release file, its checksum file
    beside it (<name>.sha256: the bare digest; etcd's SHA256SUMS: `<digest>  <file>` lines), and the manifest,
    whose bin/ entries can share a name with a release (the bare etcd binary) but not its digest."""
    manifest = []
    for name, version, path in mirror_files(k8s, etcd):
        if name in skip:
            continue
        data = f"{name}-{version}".encode()
        file = root / "mirror" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        if name not in no_checksum:
            if name == "etcd":
                (file.parent / "SHA256SUMS").write_text(f"{digest}  {file.name}\n")
            else:
                Path(f"{file}.sha256").write_text(digest)
        manifest.append({"name": file.name, "version": version, "sha256": digest, "size": len(data),
                         "path": f"mirror/{path}", "kind": "release"})
    for name in ("etcd", "kube-apiserver", "pulumi"):
        manifest.append({"name": name, "version": etcd if name == "etcd" else k8s, "sha256": "f" * 64, "size": 1,
                         "path": f"bin/{name}", "kind": "bin"})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def cfg(**raw) -> stack_config.StackConfig:
    values = {"cloud": "local", **raw}
    return stack_config.parse(lambda key: None if values.get(key) is None else str(values[key]), "local")


def run(tmp_path: Path, stack: str = "local", **raw):
    toolchain = make_toolchain(tmp_path / "toolchain")
    holder: dict = {}

    def program() -> None:
        infra = LocalInfra("local", LocalInfraArgs(config=cfg(**raw), stack=stack, state_root=str(tmp_path / "state"),
                                                   cache_root=str(tmp_path / "cache"), toolchain_dir=str(toolchain)))
        holder["infra"] = infra
        pulumi.export("publicAddress", infra.outputs.public_address)
        pulumi.export("hosts", [{"name": h.name, "ssh_host": h.ssh_host, "user": h.ssh_user, "port": h.ssh_port}
                                for h in infra.outputs.hosts])
        pulumi.export("sshKeys", [h.ssh_private_key for h in infra.outputs.hosts])
        pulumi.export("caPem", infra.outputs.releases.ca_pem)

    graph = evaluate(program, {"cloud": "local"})  # the harness's stack; LocalInfra is told its own
    return graph, holder["infra"]


def test_registers_the_expected_resources(tmp_path):
    graph, _ = run(tmp_path)
    component = graph.named("local")
    assert component.type == "kthw:local:LocalInfra"
    children = [r for r in graph.resources if r.parent == component.urn]
    assert sorted(r.name for r in children) == sorted([
        "local-ssh-key", "local-base-root", "local-network", "local-controller-0", "local-controller-1",
        "local-controller-2", "local-lb", "local-file-server",
        *(f"local-controller-{i}-booted" for i in range(3)), *(f"local-controller-{i}-host-key" for i in range(3)),
        "local-mirror-ca-key", "local-mirror-ca", "local-mirror-key", "local-mirror-csr", "local-mirror", "local-machine-specs",
        *(f"local-{part}-liveness" for part in PARTS)])
    assert graph.named("local-ssh-key").type == "tls:index/privateKey:PrivateKey"
    assert graph.named("local-ssh-key").input("algorithm") == "ED25519"
    assert graph.named("local-base-root").input("environment")["KTHW_LOGIN_USER"] == "kthw"
    for r in children:
        if r.type == "command:local:Command":
            assert r.delete_before_replace, f"{r.name} must be deleted before it is replaced"
            assert r.input("create").startswith("bash scripts/local/")
            if r.name != "local-base-root":
                assert r.input("update") == r.input("create")
                assert r.input("delete").endswith(" down")
    assert graph.named("local-base-root").input("delete") is None  # the cached root stays


def test_dependencies(tmp_path):
    graph, _ = run(tmp_path)
    network, base, key = graph.named("local-network"), graph.named("local-base-root"), graph.named("local-ssh-key")
    for i in range(3):
        host = graph.named(f"local-controller-{i}")
        deps = host.depends_on()
        assert {network.urn, base.urn, key.urn} <= deps, f"controller-{i} deps: {deps}"
    for name in ("local-lb", "local-file-server"):
        assert network.urn in graph.named(name).depends_on()
    for i in range(3):  # each host's first-boot wait comes after its own host, not the others'
        booted = graph.named(f"local-controller-{i}-booted")
        assert booted.type == "command:remote:Command"
        assert graph.reaches(booted, graph.named(f"local-controller-{i}"))
        assert not graph.reaches(booted, graph.named(f"local-controller-{(i + 1) % 3}"))
    # Hosts do not wait for each other: they boot in parallel.
    hosts = [graph.named(f"local-controller-{i}") for i in range(3)]
    for a in hosts:
        for b in hosts:
            assert a is b or not graph.reaches(a, b)


def test_host_environment_and_triggers(tmp_path):
    graph, infra = run(tmp_path)
    layout = infra.layout
    host = graph.named("local-controller-1")
    env = host.input("environment")
    assert env["KTHW_IP_CIDR"] == "198.18.0.11/24"
    assert env["KTHW_GATEWAY"] == "198.18.0.1"
    assert env["KTHW_BRIDGE"] == "kt-local-br" == layout.bridge
    assert env["KTHW_NETNS"] == "kthw-local-controller-1"
    assert env["KTHW_VETH"] == "kt-local-1"
    assert env["KTHW_HOST_DIR"] == str(tmp_path / "state" / "stacks" / "local" / "hosts" / "controller-1")
    assert env["KTHW_AUTHORIZED_KEY"].startswith("ssh-ed25519 ")
    # The first boot every infra shares, with this host's key, which the bootstrap pins.
    assert env["KTHW_USER_DATA"] == user_data(*fake_ssh_key("local-controller-1-host-key"))
    assert contains_secret_marker(host.inputs["environment"])
    wait = graph.named("local-controller-1-booted")
    assert unwrap(wait.inputs["connection"])["hostKey"] == fake_ssh_key("local-controller-1-host-key")[1]
    assert env["KTHW_MIRROR_CA"] == "-----BEGIN CERTIFICATE-----\nFAKE-local-mirror-ca\n-----END CERTIFICATE-----\n"
    assert env["KTHW_GENERATION"] == "1"  # nothing runs in an empty state dir: the first generation
    assert "198.18.0.12 controller-2" in env["KTHW_ETC_HOSTS"]
    triggers = host.input("triggers")
    assert "198.18.0.11/24" in triggers
    for name in ("KTHW_GENERATION", "KTHW_SCRIPTS", "KTHW_BASE_ROOT", "KTHW_USER_DATA", "KTHW_MIRROR_CA"):
        assert env[name] not in triggers, f"{name} replaces the host"  # in place (update), not in triggers (replace)


PARTS = ("network", "controller-0", "controller-1", "controller-2", "lb", "file-server")


def test_each_part_gets_its_generation_from_its_liveness_resource(tmp_path):
    """KTHW_GENERATION is an output of the part's own liveness resource (so the part depends on it); the
    liveness resource depends on nothing (not on its part); it is a child of the component."""
    graph, infra = run(tmp_path)
    layout = infra.layout
    component = graph.named("local")
    files = {"network": layout.network_generation_file, "lb": layout.lb_dir / "generation",
             "file-server": layout.file_server_dir / "generation",
             **{h.name: h.generation_file for h in layout.hosts}}
    for part in PARTS:
        watched, watcher = graph.named(f"local-{part}"), graph.named(f"local-{part}-liveness")
        assert watcher.type == "pulumi-python:dynamic:Resource" and watcher.parent == component.urn
        assert watcher.depends_on() == set(), f"{watcher.name} must not wait for anything, its part least of all"
        assert watcher.urn in watched.property_dependencies["environment"], f"{part} does not follow its liveness"
        assert (watcher.input("alive"), watcher.input("failures")) == (True, [])  # expected: alive
        assert watcher.input("generation_file") == str(files[part])
        assert watcher.input("generation") is None  # an output only
        assert not any(watcher.is_secret(k) for k in watcher.inputs if k != "__provider")  # nothing secret to see
    assert graph.named("local-network-liveness").input("checks") == [
        {"kind": "exists", "path": "/sys/class/net/kt-local-br"}]
    host = graph.named("local-controller-1-liveness")
    assert host.input("part") == "host kthw-local-controller-1"
    assert [c["kind"] for c in host.input("checks")] == ["process", "exists", "master", "directory"]
    assert host.input("checks")[0]["marker"] == "kthw-local-controller-1"
    server = graph.named("local-file-server-liveness").input("checks")
    assert {"kind": "contains", "path": str(layout.file_server_dir / "nginx.conf"),
            "text": f"root {tmp_path / 'toolchain' / 'mirror'};"} in server
    # The host's first-boot wait names the generation too (a rebuilt host is waited for again).
    assert graph.reaches(graph.named("local-controller-1-booted"), host)


class Generations(FakeCloud):
    """FakeCloud whose liveness resources answer with given generations (as the engine's state would)."""

    def __init__(self, generations: dict[str, int]):
        super().__init__()
        self.generations = generations

    def new_resource(self, args):
        resource_id, outputs = super().new_resource(args)
        if args.name in self.generations:
            outputs["generation"] = self.generations[args.name]
        return resource_id, outputs


def test_the_generation_comes_from_the_state_and_nothing_is_read_from_this_machine(tmp_path, monkeypatch):
    """Evaluating the program opens or looks at nothing under /proc, /sys, /run/netns or the stack's state dir: a
    recorded generation file and a live-looking state change nothing; the liveness resources' outputs decide."""
    import os
    import sys

    state = tmp_path / "state" / "stacks" / "local"
    (state / "hosts" / "controller-0").mkdir(parents=True)
    (state / "hosts" / "controller-0" / "generation").write_text("4\n")
    (state / "network.generation").write_text("4\n")
    opened: list[str] = []
    watching = {"on": True}

    def note(path) -> None:
        if watching["on"] and isinstance(path, (str, os.PathLike)):
            path = os.fspath(path)
            if path.startswith(("/proc/", "/sys/", "/run/netns", str(state))):
                opened.append(path)

    def audit(event, args):
        if event in ("open", "os.listdir", "os.scandir") and args:
            note(args[0])

    def looked_at(real):  # a stat (Path.exists, is_dir, resolve) raises no audit event
        def call(path, *args, **kwargs):
            note(path)
            return real(path, *args, **kwargs)
        return call

    for name in ("stat", "lstat", "readlink"):
        monkeypatch.setattr(os, name, looked_at(getattr(os, name)))
    sys.addaudithook(audit)  # cannot be removed: switched off below
    try:
        graph, _ = run(tmp_path)
        mocks = Generations({"local-controller-0-liveness": 7, "local-lb-liveness": 3})
        holder = {}
        toolchain = tmp_path / "toolchain"
        other = evaluate(lambda: holder.setdefault("infra", LocalInfra("local", LocalInfraArgs(
            config=cfg(), stack="local", state_root=str(tmp_path / "state"), cache_root=str(tmp_path / "cache"),
            toolchain_dir=str(toolchain)))), {"cloud": "local"}, mocks=mocks)
    finally:
        watching["on"] = False
    assert not opened, f"the program read this machine's state while evaluated: {opened}"
    env = {part: graph.named(f"local-{part}").input("environment")["KTHW_GENERATION"] for part in PARTS}
    assert env == {part: "1" for part in PARTS}  # no generation in the state yet: the first
    env = {part: other.named(f"local-{part}").input("environment")["KTHW_GENERATION"] for part in PARTS}
    assert env == {**{part: "1" for part in PARTS}, "controller-0": "7", "lb": "3"}
    assert "generation 7" in other.named("local-controller-0-booted").input("create")


@pytest.mark.parametrize("health", ["https-readyz", "http-healthz-proxy", "tcp"])
def test_lb_config(tmp_path, health):
    graph, infra = run(tmp_path, healthCheck=health)
    lb = graph.named("local-lb")
    cfg_text = lb.input("stdin")
    assert "bind 198.18.0.1:6443" in cfg_text
    for i in range(3):
        assert f"server controller-{i} 198.18.0.1{i}:6443 check" in cfg_text
    assert "option redispatch" in cfg_text and "retries 3" in cfg_text and "timeout connect 2s" in cfg_text
    assert "default-server inter 1s fall 2 rise 2" in cfg_text
    assert f"stats socket {infra.layout.stats_socket}" in cfg_text
    if health == "https-readyz":
        assert "uri /readyz" in cfg_text and "check-ssl" in cfg_text
    elif health == "http-healthz-proxy":
        assert "uri /healthz hdr Host kubernetes.default.svc.cluster.local" in cfg_text and "check port 80" in cfg_text
    else:
        assert "httpchk" not in cfg_text
    assert infra.outputs.health_check == HealthCheckStyle(health)


def test_infra_outputs_shape(tmp_path):
    graph, infra = run(tmp_path)
    out = infra.outputs
    assert isinstance(out, InfraOutputs)
    assert out.public_address == "198.18.0.1"
    assert out.health_check == HealthCheckStyle.HTTPS_READYZ  # the local default
    assert out.api_port == 6443
    assert [h.name for h in out.hosts] == ["controller-0", "controller-1", "controller-2"]
    assert all(isinstance(h, ControllerHost) for h in out.hosts)
    assert [h.private_ip for h in out.hosts] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    # The bootstrap starts once every host, its first boot (cloud-init done), the LB and the mirror are up.
    assert {r.urn for r in graph.resources if r.name in ("local-lb", "local-file-server")} | {
        graph.named(f"local-controller-{i}{part}").urn for i in range(3) for part in ("", "-booted")} == set(
        _sync_urns(out.ready))
    hosts = graph.stack_outputs["hosts"]
    assert [h["ssh_host"] for h in hosts] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    assert all(h["user"] == "kthw" == DEFAULT_ADMIN_USERNAME and h["port"] == 22 for h in hosts)
    for i in range(3):  # the wait logs in as that user, with the stack's key
        connection = graph.named(f"local-controller-{i}-booted").input("connection")
        assert (connection["host"], connection["port"], connection["user"]) == (f"198.18.0.1{i}", 22, "kthw")
        assert connection["privateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    rel = out.releases
    assert (rel.kubernetes_base, rel.etcd_base, rel.pinned) == ("https://198.18.0.1:8443", "https://198.18.0.1:8443/etcd", {})
    # The mirror serves the toolchain's mirror/ as the official sites lay it out: each URL is a file there.
    mirror = tmp_path / "toolchain" / "mirror"
    for name in ARTIFACTS:
        for url in (rel.kubernetes_url(name, K8S), rel.kubernetes_checksum_url(name, K8S)):
            assert (mirror / url.removeprefix(rel.kubernetes_base + "/")).is_file(), url
    for url in (rel.etcd_url(ETCD), rel.etcd_checksum_url(ETCD)):
        assert (mirror / url.removeprefix("https://198.18.0.1:8443/")).is_file(), url
    assert graph.stack_outputs["caPem"] == "-----BEGIN CERTIFICATE-----\nFAKE-local-mirror-ca\n-----END CERTIFICATE-----\n"


def test_the_mirror_serves_over_https_with_a_cert_of_the_stack_ca(tmp_path):
    graph, infra = run(tmp_path)
    server = graph.named("local-file-server")
    env = server.input("environment")
    assert (env["KTHW_FS_ADDRESS"], env["KTHW_FS_PORT"]) == ("198.18.0.1", "8443")
    assert env["KTHW_FS_ROOT"] == str(tmp_path / "toolchain" / "mirror")
    # The server key travels only on stdin, as a secret, with its cert; nothing of it in the environment.
    assert server.is_secret("stdin")
    assert server.input("stdin") == ("-----BEGIN PRIVATE KEY-----\nFAKE-local-mirror-key\n-----END PRIVATE KEY-----\n"
                                     "-----BEGIN CERTIFICATE-----\nFAKE-local-mirror\n-----END CERTIFICATE-----\n")
    assert not any("PRIVATE KEY" in str(v) for v in env.values())
    ca, csr, cert = graph.named("local-mirror-ca"), graph.named("local-mirror-csr"), graph.named("local-mirror")
    assert ca.input("isCaCertificate") is True
    assert csr.input("ipAddresses") == ["198.18.0.1"] and not csr.input("dnsNames")
    assert "server_auth" in cert.input("allowedUses")
    assert graph.reaches(cert, ca) and graph.reaches(server, cert)
    assert infra.outputs.hosts[0].ssh_user == "kthw"


def test_ssh_key_is_secret(tmp_path):
    from harness import SECRET_SIG, SIG_KEY, unwrap

    graph, _ = run(tmp_path)
    keys = graph.stack_outputs["sshKeys"]
    assert isinstance(keys, dict) and keys.get(SIG_KEY) == SECRET_SIG, "the SSH private key must be a secret"
    assert all(k.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") for k in unwrap(keys))


def _sync_urns(resources):
    from pulumi.runtime.sync_await import _sync_await

    return [_sync_await(r.urn.future()) for r in resources]


def test_manifest_errors(tmp_path):
    base = "https://198.18.0.1:8443"
    with pytest.raises(ManifestError, match="scripts/toolchain/build"):
        release_source(tmp_path / "nothing", K8S, ETCD, base)
    toolchain = make_toolchain(tmp_path / "t", skip=("kube-scheduler",))
    with pytest.raises(ManifestError, match=f"mirror/release/{K8S}/bin/linux/amd64/kube-scheduler is not in the manifest"):
        release_source(toolchain, K8S, ETCD, base)
    toolchain = make_toolchain(tmp_path / "u")
    with pytest.raises(ManifestError, match=f"mirror/etcd/v9.9.9/etcd-v9.9.9-linux-amd64.tar.gz is not in the manifest "
                                            f"\\(it has mirror/etcd/{ETCD}/etcd-{ETCD}-linux-amd64.tar.gz\\)"):
        release_source(toolchain, K8S, "v9.9.9", base)
    # Each checksum file the hosts and the resolver read must be there too, named in the error.
    toolchain = make_toolchain(tmp_path / "v", no_checksum=("kubectl", "etcd"))
    with pytest.raises(ManifestError) as err:
        release_source(toolchain, K8S, ETCD, base)
    assert f"mirror/release/{K8S}/bin/linux/amd64/kubectl.sha256" in str(err.value)
    assert f"mirror/etcd/{ETCD}/SHA256SUMS" in str(err.value) and "kube-apiserver" not in str(err.value)
    # A manifest whose release sits in the old releases/<version>/ layout is not the mirror's.
    manifest = json.loads((toolchain / "manifest.json").read_text())
    (toolchain / "manifest.json").write_text(json.dumps(
        [{**e, "path": f"releases/{K8S}/kubectl"} if e["path"].endswith("/kubectl") else e for e in manifest]))
    with pytest.raises(ManifestError, match="amd64/kubectl is not in the manifest"):
        release_source(toolchain, K8S, ETCD, base)
    source = release_source(make_toolchain(tmp_path / "w"), K8S, ETCD, base, ca_pem="PEM")
    assert (source.kubernetes_base, source.etcd_base, source.pinned, source.ca_pem) == (base, f"{base}/etcd", {}, "PEM")


def test_layout_names_fit_linux_limits():
    layout = LocalLayout.build("a-very-long-stack-name-for-testing", [f"controller-{i}" for i in range(7)],
                               "198.18.0.0/24", state_root=Path("/s"), cache_root=Path("/c"))
    assert len(layout.bridge) <= 15 and all(len(h.veth) <= 15 for h in layout.hosts)
    assert iface_tag("local") == "local"
    assert iface_tag("a-very-long-stack-name-for-testing") != iface_tag("a-very-long-stack-name-for-testinh")
    assert layout.hosts[6].ip == "198.18.0.16"
    with pytest.raises(ValueError, match="too long"):
        LocalLayout.build("x", ["controller-0"], "198.18.0.0/24", state_root=Path("/" + "d" * 120))


def test_rendered_haproxy_config_validates(tmp_path):
    import subprocess

    from system_tools import require

    haproxy = require("haproxy", "haproxy")
    layout = LocalLayout.build("local", ["controller-0", "controller-1", "controller-2"], "198.18.0.0/24",
                               state_root=tmp_path, cache_root=tmp_path)
    for style in HealthCheckStyle:
        path = tmp_path / f"{style.value}.cfg"
        path.write_text(render_haproxy(layout, style))
        result = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_are_shellcheck_clean():
    import subprocess

    from system_tools import require

    shellcheck = require("shellcheck", "shellcheck")
    scripts = sorted(str(p) for p in (Path(__file__).resolve().parent.parent / "scripts" / "local").glob("*.sh"))
    assert len(scripts) >= 6
    result = subprocess.run([shellcheck, "-x", *scripts], capture_output=True, text=True, timeout=120,
                            cwd=Path(scripts[0]).parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_release_digests_need_only_the_mirror_server(tmp_path):
    """The release source is ready once its server is: the digests are read from it while the hosts boot."""
    _, infra = run(tmp_path)
    [server] = infra.outputs.releases.ready
    assert server._name == "local-file-server" and server in infra.outputs.ready  # the bootstrap waits for it too


def test_a_part_that_comes_back_new_is_verified_again_and_nothing_else_runs(tmp_path, monkeypatch):
    """After `up --refresh` rebuilt a host or the LB (its generation went up), the control plane's steps stay as
    they are (the units come back with the machine) but the check through the LB runs again, in place: `up`
    returns once the API answers there."""
    from test_rendered_identical import local_program

    program, _ = local_program(tmp_path, monkeypatch)

    def commands(generations: dict[str, int]) -> dict[str, tuple[str, str]]:
        graph = evaluate(program, {"cloud": "local"}, stack="local", mocks=Generations(generations))
        return {r.name: (r.input("create"), r.input("update")) for r in graph.of_type("command:remote:Command")
                + graph.of_type("command:local:Command") if r.name.startswith("kthw-control-plane")}

    first = commands({})
    verify = "kthw-control-plane-verify"
    for changed in ({"kthw-controller-1-liveness": 2}, {"kthw-lb-liveness": 2}):
        again = commands(changed)
        assert sorted(n for n in first if again[n] != first[n]) == [verify], changed
        assert again[verify][0] == again[verify][1]  # the same check as an update: in place
    header = again[verify][0].splitlines()[0]
    assert header == ("# kthw verify, after: kthw-controller-0-id generation 1, kthw-controller-1-id generation 1, "
                      "kthw-controller-2-id generation 1, kthw-lb-id generation 2")
