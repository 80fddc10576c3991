"""LocalInfra under Pulumi mocks: the resources it registers, their dependencies and the InfraOutputs shape."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pulumi
import pytest

from components import config as stack_config
from components.infra import ControllerHost, HealthCheckStyle, InfraOutputs
from components.local import LocalInfra, LocalInfraArgs, LocalLayout, ManifestError, release_source
from components.local.infra import render_haproxy
from components.local.layout import iface_tag
from harness import evaluate

K8S = stack_config.releases.DEFAULT_KUBERNETES
ETCD = stack_config.releases.DEFAULT_ETCD
ARTIFACTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]


def make_toolchain(root: Path, k8s: str = K8S, etcd: str = ETCD, skip: tuple[str, ...] = ()) -> Path:
    releases = root / "releases"
    manifest = []
    files = [(name, k8s, name) for name in ARTIFACTS] + [("etcd", etcd, f"etcd-{etcd}-linux-amd64.tar.gz")]
    # The shape scripts/toolchain/build writes: releases/<version>/<file>, and bin/ entries that can share
    # a name with a release (the bare etcd binary) but not its digest.
    for name, version, file_name in files:
        if name in skip:
            continue
        data = f"{name}-{version}".encode()
        (releases / version).mkdir(parents=True, exist_ok=True)
        (releases / version / file_name).write_bytes(data)
        manifest.append({"name": file_name, "version": version, "sha256": hashlib.sha256(data).hexdigest(),
                         "size": len(data), "path": f"releases/{version}/{file_name}", "kind": "release"})
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

    graph = evaluate(program, {"cloud": "local"})  # the harness's stack; LocalInfra is told its own
    return graph, holder["infra"]


def test_registers_the_expected_resources(tmp_path):
    graph, _ = run(tmp_path)
    component = graph.named("local")
    assert component.type == "kthw:local:LocalInfra"
    children = [r for r in graph.resources if r.parent == component.urn]
    assert sorted(r.name for r in children) == sorted([
        "local-ssh-key", "local-base-root", "local-network", "local-controller-0", "local-controller-1",
        "local-controller-2", "local-lb", "local-file-server"])
    assert graph.named("local-ssh-key").type == "tls:index/privateKey:PrivateKey"
    assert graph.named("local-ssh-key").input("algorithm") == "ED25519"
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
    assert env["KTHW_GENERATION"] == "1"  # nothing runs in an empty state dir: the first generation
    assert "198.18.0.12 controller-2" in env["KTHW_ETC_HOSTS"]
    assert "198.18.0.11/24" in host.input("triggers")
    for name in ("KTHW_GENERATION", "KTHW_SCRIPTS", "KTHW_BASE_ROOT"):
        assert name in env  # in place (update), not in triggers (replace)


def test_generation_follows_the_recorded_one_when_alive(tmp_path, monkeypatch):
    from components.local import probe

    state = tmp_path / "state" / "stacks" / "local" / "hosts" / "controller-0"
    state.mkdir(parents=True)
    (state / "generation").write_text("4\n")
    graph, _ = run(tmp_path)
    assert graph.named("local-controller-0").input("environment")["KTHW_GENERATION"] == "5"  # dead: repair
    monkeypatch.setattr(probe, "host_alive", lambda layout, host: True)
    graph, _ = run(tmp_path)
    assert graph.named("local-controller-0").input("environment")["KTHW_GENERATION"] == "4"  # alive: no diff


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
    assert out.api_port == 6443 and out.node_subnet == "198.18.0.0/24"
    assert [h.name for h in out.hosts] == ["controller-0", "controller-1", "controller-2"]
    assert all(isinstance(h, ControllerHost) for h in out.hosts)
    assert [h.private_ip for h in out.hosts] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    assert {r.urn for r in graph.resources if r.name in ("local-lb", "local-file-server")} | {
        graph.named(f"local-controller-{i}").urn for i in range(3)} == set(
        _sync_urns(out.ready))
    hosts = graph.stack_outputs["hosts"]
    assert [h["ssh_host"] for h in hosts] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    assert all(h["user"] == "root" and h["port"] == 22 for h in hosts)
    rel = out.releases
    assert rel.kubernetes_url.format(name="kubectl", version=K8S) == f"http://198.18.0.1:8085/{K8S}/kubectl"
    assert rel.etcd_url.format(version=ETCD) == f"http://198.18.0.1:8085/{ETCD}/etcd-{ETCD}-linux-amd64.tar.gz"
    assert set(rel.sha256) == {(n, K8S) for n in ARTIFACTS} | {("etcd", ETCD)}
    served = Path(tmp_path / "toolchain" / "releases")
    etcd_archive = served / ETCD / f"etcd-{ETCD}-linux-amd64.tar.gz"
    assert rel.sha256[("etcd", ETCD)] == hashlib.sha256(etcd_archive.read_bytes()).hexdigest()
    assert rel.sha256[("kube-apiserver", K8S)] == hashlib.sha256((served / K8S / "kube-apiserver").read_bytes()).hexdigest()


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
    with pytest.raises(ManifestError, match="scripts/toolchain/build"):
        release_source(tmp_path / "nothing", K8S, ETCD, "http://198.18.0.1:8085")
    toolchain = make_toolchain(tmp_path / "t", skip=("kube-scheduler",))
    with pytest.raises(ManifestError, match="kube-scheduler"):
        release_source(toolchain, K8S, ETCD, "http://198.18.0.1:8085")
    toolchain = make_toolchain(tmp_path / "u")
    with pytest.raises(ManifestError, match="etcd-v9.9.9-linux-amd64.tar.gz v9.9.9"):
        release_source(toolchain, K8S, "v9.9.9", "http://198.18.0.1:8085")


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
