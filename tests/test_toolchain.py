"""The toolchain that scripts/toolchain/build makes from Go modules and the official release sources: versions,
manifest, the release mirror's layout, the CLI, the official plugins and kube-bench.

Skipped when the cache (${KTHW_CACHE:-~/.cache/kthw}/toolchain) has no built toolchain, unless
KTHW_REQUIRE_TOOLCHAIN=1 (CI after the build), which turns that into a failure. A piece that the build recorded
as failed in toolchain/status.json (e.g. a provider module the Go module proxy does not serve) is skipped with
the build's error as the reason, so the gap stays visible.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.toolchain

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KTHW_CACHE") or Path.home() / ".cache" / "kthw")
TOOLCHAIN = CACHE / "toolchain"
BIN = TOOLCHAIN / "bin"
MANIFEST = TOOLCHAIN / "manifest.json"
STATUS = TOOLCHAIN / "status.json"
REQUIRE = os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1"

KUBE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
PROVIDERS = {"command": "pulumi-command", "tls": "pulumi-tls", "random": "pulumi-random"}
PULUMI_ENV = {"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true", "PULUMI_SKIP_UPDATE_CHECK": "true"}


def _pin(name: str) -> str:
    text = (ROOT / "requirements.txt").read_text()
    match = re.search(rf"^{re.escape(name)}==([^\s;#]+)", text, re.M)
    assert match, f"no {name} pin in requirements.txt"
    return match.group(1)


def _constant(path: Path, name: str) -> str:
    """A module-level string constant, read from the source as scripts/toolchain/build reads it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return node.value.value
    raise AssertionError(f"no {name} in {path}")


K8S_VERSION = _constant(ROOT / "components" / "releases.py", "DEFAULT_KUBERNETES")
K8S_NEXT_VERSION = _constant(ROOT / "components" / "releases.py", "NEXT_KUBERNETES")
ETCD_VERSION = _constant(ROOT / "components" / "releases.py", "DEFAULT_ETCD")
PULUMI_VERSION = os.environ.get("KTHW_PULUMI_VERSION") or _pin("pulumi")


def _shell_constant(path: Path, name: str) -> str:
    """A NAME=value line of a shell script (scripts/toolchain/build's own pins)."""
    match = re.search(rf"^{re.escape(name)}=(\S+)$", path.read_text(), re.M)
    assert match, f"no {name}= in {path}"
    return match.group(1)


KUBE_BENCH_VERSION = _shell_constant(ROOT / "scripts" / "toolchain" / "build", "KUBE_BENCH_VERSION")
KUBE_BENCH_CFG = TOOLCHAIN / "share" / "kube-bench" / "cfg"
UPSTREAM = Path(os.environ.get("KTHW_UPSTREAM") or ROOT.parent / "shared" / "upstream")


@pytest.fixture(scope="module")
def manifest() -> list[dict]:
    if not MANIFEST.exists():
        message = f"no built toolchain in {TOOLCHAIN} (run scripts/toolchain/build)"
        if REQUIRE:
            pytest.fail(message + "; KTHW_REQUIRE_TOOLCHAIN=1")
        pytest.skip(message)
    return json.loads(MANIFEST.read_text())


def skip_unless_required(message: str) -> None:
    """Skip, or fail when the toolchain is required (CI): a test that skips there proves nothing."""
    if REQUIRE:
        pytest.fail(message + "; KTHW_REQUIRE_TOOLCHAIN=1")
    pytest.skip(message)


def _status() -> dict:
    return json.loads(STATUS.read_text()) if STATUS.exists() else {}


def require_piece(piece: str) -> None:
    """Skip (with the build's recorded error) when the build could not make this piece."""
    entry = _status().get(piece, {})
    if entry.get("status") == "failed":
        error = entry.get("error", "").strip().splitlines()
        message = f"scripts/toolchain/build could not build {piece} {entry.get('version')}: " + " | ".join(error[-4:])
        if REQUIRE:
            pytest.fail(message + "; KTHW_REQUIRE_TOOLCHAIN=1")
        pytest.skip(message)
    if entry.get("status") != "ok":
        message = f"{piece} has not been built (toolchain/status.json: {entry or 'no entry'})"
        if REQUIRE:
            pytest.fail(message + "; KTHW_REQUIRE_TOOLCHAIN=1")
        pytest.skip(message)


def run(*args: str | Path, env: dict | None = None, cwd: Path | None = None, timeout: int = 120,
        check: bool = True) -> subprocess.CompletedProcess:
    # The caller's SSH agent is not the tests' business (a dead one fails every pulumi-command SSH step).
    inherited = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    full_env = {**inherited, **PULUMI_ENV, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", **(env or {})}
    proc = subprocess.run([str(a) for a in args], env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                    f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def handshake(binary: Path) -> int:
    """Start a plugin the way the engine does and read the gRPC port it prints first; then stop it."""
    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env={**os.environ, **PULUMI_ENV})
    try:
        line = proc.stdout.readline().decode().strip()
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert line.isdigit(), f"{binary.name}: expected a port on stdout, got {line!r}; stderr: {err.decode()[-2000:]}"
    return int(line)


# --- manifest ---------------------------------------------------------------------------------------------------

def test_manifest_shape_and_checksums(manifest):
    assert isinstance(manifest, list) and manifest
    for entry in manifest:
        assert set(entry) == {"name", "version", "sha256", "size", "path", "kind"}, entry
        assert entry["kind"] in ("release", "bin", "data")
        assert entry["path"].split("/")[0] == {"release": "mirror", "bin": "bin", "data": "share"}[entry["kind"]]
        path = TOOLCHAIN / entry["path"]
        assert path.exists(), entry
        assert path.stat().st_size == entry["size"], entry["path"]
        assert sha256(path) == entry["sha256"], entry["path"]


def test_manifest_lists_the_releases_at_the_pinned_versions(manifest):
    releases = {(e["name"], e["version"]): e for e in manifest if e["kind"] == "release"}
    tarball = f"etcd-{ETCD_VERSION}-linux-amd64.tar.gz"
    assert set(releases) == ({(name, v) for name in KUBE for v in (K8S_VERSION, K8S_NEXT_VERSION)}
                             | {(tarball, ETCD_VERSION)})
    for name in KUBE:
        for version in (K8S_VERSION, K8S_NEXT_VERSION):
            assert releases[(name, version)]["path"] == kube_release(name, version)
    assert releases[(tarball, ETCD_VERSION)]["path"] == f"mirror/etcd/{ETCD_VERSION}/{tarball}"


def test_mirror_publishes_checksum_files_as_upstream_does(manifest):
    """dl.k8s.io: <name>.sha256 holds the bare digest; etcd's releases: SHA256SUMS with "<digest>  <file>"."""
    for entry in (e for e in manifest if e["kind"] == "release"):
        path = TOOLCHAIN / entry["path"]
        if entry["name"].startswith("etcd-"):
            sums = (path.parent / "SHA256SUMS").read_text().splitlines()
            assert f"{entry['sha256']}  {path.name}" in sums
        else:
            assert (path.parent / f"{path.name}.sha256").read_text() == entry["sha256"]


def kube_release(name: str, version: str) -> str:
    """Where the mirror keeps a Kubernetes binary, as dl.k8s.io does (relative to toolchain/)."""
    return f"mirror/release/{version}/bin/linux/amd64/{name}"


def test_manifest_lists_the_commands(manifest):
    bins = {e["name"]: e for e in manifest if e["kind"] == "bin"}
    expected = {name: K8S_VERSION for name in KUBE}
    expected |= {name: ETCD_VERSION for name in ("etcd", "etcdctl", "etcdutl")}
    expected |= {name: f"v{PULUMI_VERSION}" for name in (
        "pulumi", "pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python")}
    built = {p for p, e in _status().items() if e.get("status") == "ok"}
    assert {"pulumi", "language-python"} <= built
    for piece, package in PROVIDERS.items():
        if piece in built or REQUIRE:  # required: every provider; else the others' tests skip with the reason
            expected[f"pulumi-resource-{piece}"] = f"v{_pin(package)}"
    for name, version in expected.items():
        assert name in bins, f"{name} missing from the manifest"
        assert bins[name]["version"] == version, name
        assert (BIN / name).exists()


def test_etcd_tarball_has_the_official_layout(manifest):
    require_piece("etcd")
    name = f"etcd-{ETCD_VERSION}-linux-amd64"
    with tarfile.open(TOOLCHAIN / "mirror" / "etcd" / ETCD_VERSION / f"{name}.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {name, f"{name}/etcd", f"{name}/etcdctl", f"{name}/etcdutl"}
        for tool in ("etcd", "etcdctl", "etcdutl"):
            member = members[f"{name}/{tool}"]
            assert member.isfile() and member.mode & 0o111
            data = tar.extractfile(member).read()
            assert hashlib.sha256(data).hexdigest() == sha256(BIN / tool), tool


def test_release_binaries_are_the_built_ones(manifest):
    for name in KUBE:
        assert sha256(TOOLCHAIN / kube_release(name, K8S_VERSION)) == sha256(BIN / name)


# --- versions -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["kube-apiserver", "kube-controller-manager", "kube-scheduler"])
def test_kube_component_version(manifest, name):
    require_piece("kubernetes")
    assert run(BIN / name, "--version").stdout.strip() == f"Kubernetes {K8S_VERSION}"


@pytest.mark.parametrize("name", ["kube-apiserver", "kube-controller-manager", "kube-scheduler"])
def test_upgrade_target_version(manifest, name):
    require_piece("kubernetes-next")
    served = TOOLCHAIN / kube_release(name, K8S_NEXT_VERSION)
    assert run(served, "--version").stdout.strip() == f"Kubernetes {K8S_NEXT_VERSION}"
    assert not (BIN / name).resolve().samefile(served)  # bin/ keeps the default version


def test_kubectl_version(manifest):
    require_piece("kubernetes")
    out = run(BIN / "kubectl", "version", "--client", "-o", "json").stdout
    info = json.loads(out)["clientVersion"]
    assert info["gitVersion"] == K8S_VERSION
    assert (info["major"], info["minor"]) == tuple(K8S_VERSION[1:].split(".")[:2])
    assert info["gitTreeState"] == "clean"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["buildDate"]), info["buildDate"]


def test_etcd_versions(manifest):
    require_piece("etcd")
    bare = ETCD_VERSION.lstrip("v")
    assert f"etcd Version: {bare}" in run(BIN / "etcd", "--version").stdout
    assert f"etcdctl version: {bare}" in run(BIN / "etcdctl", "version").stdout
    assert f"etcdutl version: {bare}" in run(BIN / "etcdutl", "version").stdout


def test_pulumi_version(manifest):
    require_piece("pulumi")
    require_piece("language-python")
    assert run(BIN / "pulumi", "version").stdout.strip() == f"v{PULUMI_VERSION}"
    assert run(BIN / "pulumi-language-python", "-version").stdout.strip() == f"v{PULUMI_VERSION}"


@pytest.mark.parametrize("binary, piece, path, module", [
    ("pulumi-resource-command", "command", "github.com/pulumi/pulumi-command/provider/cmd/pulumi-resource-command",
     "github.com/pulumi/pulumi-command/provider"),
    ("pulumi-language-python", "language-python", "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3",
     "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3"),
])
def test_official_plugins_are_built_from_the_official_modules(manifest, binary, piece, path, module):
    """`go version -m`: the plugin's main package and module are upstream's, not a project's own."""
    require_piece(piece)
    info = run("go", "version", "-m", (BIN / binary).resolve()).stdout
    fields = [line.split() for line in info.splitlines()]
    assert ["path", path] in [f[:2] for f in fields], info
    assert ["mod", module] in [f[:2] for f in fields], info
    assert not any(f[:1] == ["mod"] and f[1].startswith("kthw.local/") for f in fields if len(f) > 1), info


@pytest.mark.parametrize("piece", sorted(PROVIDERS))
def test_provider_version(manifest, piece):
    require_piece(piece)
    assert plugin_version(BIN / f"pulumi-resource-{piece}") == _pin(PROVIDERS[piece])


def plugin_version(binary: Path) -> str:
    """The version a provider plugin reports to the engine (GetPluginInfo; the official command provider has no
    --version flag)."""
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import provider_pb2_grpc

    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env={**os.environ, **PULUMI_ENV})
    try:
        port = proc.stdout.readline().decode().strip()
        assert port.isdigit(), f"{binary.name}: no port on stdout ({port!r})"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = provider_pb2_grpc.ResourceProviderStub(channel).GetPluginInfo(empty_pb2.Empty(), timeout=30)
        return info.version.lstrip("v")
    finally:
        proc.kill()
        proc.wait(timeout=30)


# --- plugins and the CLI -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("piece", sorted(PROVIDERS))
def test_provider_handshake(manifest, piece):
    require_piece(piece)
    assert handshake(BIN / f"pulumi-resource-{piece}") > 0


def test_language_host_handshake(manifest):
    require_piece("pulumi")
    assert handshake(BIN / "pulumi-language-python") > 0


def test_pulumi_login_file_backend(manifest, tmp_path):
    require_piece("pulumi")
    state = tmp_path / "state"
    state.mkdir()
    env = {"PULUMI_HOME": str(tmp_path / "home")}
    run(BIN / "pulumi", "login", f"file://{state}", env=env)
    assert run(BIN / "pulumi", "whoami", env=env).stdout.strip()
    creds = json.loads((tmp_path / "home" / "credentials.json").read_text())
    assert creds["current"] == f"file://{state}"


def _stack_env(tmp_path: Path) -> dict:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return {"PULUMI_HOME": str(tmp_path / "home"), "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": "test"}


def test_up_and_destroy_with_the_bridged_providers(manifest, tmp_path):
    """The CLI, the language host, the project's venv and the tls/random plugins work together, offline."""
    require_piece("pulumi")
    require_piece("tls")
    require_piece("random")
    venv = ROOT / ".venv"
    if not (venv / "bin" / "python").exists():
        skip_unless_required("no project virtualenv (.venv); run scripts/setup")
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: toolchain-smoke
        runtime:
          name: python
          options:
            toolchain: pip
            virtualenv: {venv}
        """))
    (project / "__main__.py").write_text(textwrap.dedent("""\
        import pulumi
        import pulumi_random as random
        import pulumi_tls as tls

        key = tls.PrivateKey("key", algorithm="ECDSA", ecdsa_curve="P256")
        word = random.RandomPassword("word", length=12, special=False)
        pulumi.export("publicKey", key.public_key_pem)
        pulumi.export("wordLength", word.result.apply(len))
        pulumi.export("setting", pulumi.Config().get("setting"))
        """))
    env = _stack_env(tmp_path)
    run(BIN / "pulumi", "stack", "init", "smoke", cwd=project, env=env)
    run(BIN / "pulumi", "config", "set", "setting", "on", cwd=project, env=env)
    run(BIN / "pulumi", "preview", "--stack", "smoke", "--non-interactive", cwd=project, env=env, timeout=300)
    run(BIN / "pulumi", "up", "--yes", "--stack", "smoke", "--non-interactive", "--skip-preview",
        cwd=project, env=env, timeout=300)
    outputs = json.loads(run(BIN / "pulumi", "stack", "output", "--json", "--show-secrets", "--stack", "smoke",
                             cwd=project, env=env).stdout)
    assert outputs["publicKey"].startswith("-----BEGIN PUBLIC KEY-----")
    assert outputs["wordLength"] == 12
    assert outputs["setting"] == "on"
    run(BIN / "pulumi", "destroy", "--yes", "--stack", "smoke", "--non-interactive", cwd=project, env=env,
        timeout=300)


def _program(tmp_path: Path, name: str, main: str) -> Path:
    venv = ROOT / ".venv"
    if not (venv / "bin" / "python").exists():
        skip_unless_required("no project virtualenv (.venv); run scripts/setup")
    project = tmp_path / name
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        f"name: {name}\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {venv}\n")
    (project / "__main__.py").write_text(textwrap.dedent(main))
    return project


def test_command_provider_lifecycle(manifest, tmp_path):
    """command:local:Command: create, in-place update with the previous stdout, replace on triggers, delete."""
    require_piece("pulumi")
    require_piece("command")
    log = tmp_path / "log"
    project = _program(tmp_path, "command-smoke", f"""\
        import pulumi
        import pulumi_command as command

        cfg = pulumi.Config()
        gen = cfg.get("gen") or "1"
        log = {str(log)!r}
        cmd = command.local.Command("cmd",
            create=f"echo create-{{gen}} >> {{log}}; cat; echo \\ $KTHW_GEN",
            update=f"echo update-{{gen}} prev=$PULUMI_COMMAND_STDOUT >> {{log}}; cat; echo \\ $KTHW_GEN",
            delete=f"echo delete >> {{log}}",
            stdin="in", environment={{"KTHW_GEN": gen}})
        trig = command.local.Command("trig", create=f"echo trig-create >> {{log}}",
                                     delete=f"echo trig-delete >> {{log}}",
                                     triggers=[cfg.get("trigger") or "a"])
        pulumi.export("stdout", cmd.stdout)
        """)
    env = _stack_env(tmp_path)

    def up() -> dict:
        run(BIN / "pulumi", "up", "--yes", "--non-interactive", "--skip-preview", cwd=project, env=env, timeout=300)
        return json.loads(run(BIN / "pulumi", "stack", "output", "--json", cwd=project, env=env).stdout)

    run(BIN / "pulumi", "stack", "init", "smoke", cwd=project, env=env)
    run(BIN / "pulumi", "preview", "--non-interactive", cwd=project, env=env, timeout=300)
    assert not log.exists(), "a preview ran a command"
    assert up()["stdout"] == "in 1"
    assert sorted(log.read_text().split()) == ["create-1", "trig-create"]  # created in parallel
    run(BIN / "pulumi", "config", "set", "gen", "2", cwd=project, env=env)
    run(BIN / "pulumi", "config", "set", "trigger", "b", cwd=project, env=env)
    assert up()["stdout"] == "in 2"
    lines = log.read_text().splitlines()
    assert sorted(lines[2:]) == ["trig-create", "trig-delete", "update-2 prev=in 1"]
    assert lines.index("trig-create", 2) < lines.index("trig-delete"), "replacement is create-before-delete"
    preview = run(BIN / "pulumi", "preview", "--non-interactive", "--expect-no-changes", cwd=project, env=env)
    assert preview.returncode == 0
    run(BIN / "pulumi", "destroy", "--yes", "--non-interactive", cwd=project, env=env, timeout=300)
    assert log.read_text().splitlines()[-2:] in (["delete", "trig-delete"], ["trig-delete", "delete"])


def test_command_provider_remote(manifest, tmp_path):
    """command:remote:Command over SSH to an sshd of the test's own on a loopback port."""
    require_piece("pulumi")
    require_piece("command")
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.access(sshd, os.X_OK) or not shutil.which("ssh-keygen"):
        skip_unless_required("needs openssh-server (sshd) and ssh-keygen on this machine")
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)], check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "sshd_config"
    config.write_text(textwrap.dedent(f"""\
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {tmp_path / "host"}
        AuthorizedKeysFile {tmp_path / "user.pub"}
        PidFile {tmp_path / "sshd.pid"}
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        AcceptEnv KTHW_* PULUMI_COMMAND_*
        StrictModes no
        UsePAM no
        """))
    Path("/run/sshd").mkdir(exist_ok=True)
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        project = _program(tmp_path, "remote-smoke", f"""\
            import os

            import pulumi
            import pulumi_command as command

            conn = command.remote.ConnectionArgs(host="127.0.0.1", port={port}, user=os.environ.get("USER", "root"),
                                                 private_key=open({str(tmp_path / "user")!r}).read(),
                                                 dial_error_limit=5, per_dial_timeout=5)
            cmd = command.remote.Command("cmd", connection=conn, create="cat; echo \\ $KTHW_X",
                                         stdin="remote", environment={{"KTHW_X": "env"}})
            pulumi.export("stdout", cmd.stdout)
            """)
        env = _stack_env(tmp_path)
        run(BIN / "pulumi", "stack", "init", "smoke", cwd=project, env=env)
        # The official provider dials SSH_AUTH_SOCK whenever it is set: a dead agent fails the step at once,
        # although the connection has its own key (why scripts/pulumi unsets it; docs/toolchain.md, "Official plugins").
        dead = tmp_path / "dead-agent.sock"
        with socket.socket(socket.AF_UNIX) as agent:
            agent.bind(str(dead))  # bound, never listening: connections are refused
        failed = run(BIN / "pulumi", "up", "--yes", "--non-interactive", "--skip-preview", cwd=project,
                     env={**env, "SSH_AUTH_SOCK": str(dead)}, timeout=300, check=False)
        assert failed.returncode != 0 and f"dial unix {dead}" in failed.stdout + failed.stderr, failed.stdout[-3000:]
        run(BIN / "pulumi", "up", "--yes", "--non-interactive", "--skip-preview", cwd=project, env=env, timeout=300)
        out = json.loads(run(BIN / "pulumi", "stack", "output", "--json", cwd=project, env=env).stdout)
        assert out["stdout"] == "remote env"
        run(BIN / "pulumi", "destroy", "--yes", "--non-interactive", cwd=project, env=env, timeout=300)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_preview_local_stack_of_this_project(manifest, tmp_path):
    """`pulumi preview --stack local` of this project loads the program and its plugins."""
    for piece in ("pulumi", *PROVIDERS):
        require_piece(piece)
    if not (ROOT / ".venv" / "bin" / "python").exists():
        skip_unless_required("no project virtualenv (.venv); run scripts/setup")
    env = _stack_env(tmp_path)
    # A copy of the project, so the test leaves no state or secrets salt in the checkout's Pulumi.local.yaml.
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache"))
    (project / ".venv").symlink_to(ROOT / ".venv")
    run(BIN / "pulumi", "stack", "init", "local", cwd=project, env=env)
    proc = run(BIN / "pulumi", "preview", "--stack", "local", "--non-interactive", cwd=project, env=env,
               timeout=600, check=False)
    assert proc.returncode == 0, f"preview failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"


# --- kube-bench ---------------------------------------------------------------------------------------------------

def test_kube_bench_version(manifest):
    """The binary reports the release it was built from (the makefile's -X cmd.KubeBenchVersion)."""
    require_piece("kube-bench")
    assert KUBE_BENCH_VERSION == "v0.15.6"  # the release source in ../shared/upstream
    assert run(BIN / "kube-bench", "version").stdout.strip() == KUBE_BENCH_VERSION
    bins = {e["name"]: e for e in manifest if e["kind"] == "bin"}
    assert bins["kube-bench"]["version"] == KUBE_BENCH_VERSION
    assert bins["kube-bench"]["path"] == "bin/kube-bench"


def test_kube_bench_is_built_from_the_official_module(manifest):
    require_piece("kube-bench")
    info = run("go", "version", "-m", (BIN / "kube-bench").resolve()).stdout
    fields = [line.split() for line in info.splitlines()]
    assert ["path", "github.com/aquasecurity/kube-bench"] in [f[:2] for f in fields], info
    assert ["mod", "github.com/aquasecurity/kube-bench"] in [f[:2] for f in fields], info


def test_kube_bench_cfg_is_installed_unmodified_and_in_the_manifest(manifest):
    """share/kube-bench/cfg is the release's cfg/, file for file, and every file is a manifest entry ("data")."""
    require_piece("kube-bench")
    data = {e["path"]: e for e in manifest if e["kind"] == "data"}
    installed = {str(p.relative_to(TOOLCHAIN)) for p in KUBE_BENCH_CFG.rglob("*") if p.is_file()}
    assert installed and set(data) == installed
    for entry in data.values():
        assert entry["version"] == KUBE_BENCH_VERSION
        assert entry["name"] == entry["path"].removeprefix("share/")
    for name in ("config.yaml", *(f"cis-1.12/{t}.yaml" for t in ("master", "etcd", "controlplane", "policies"))):
        assert f"share/kube-bench/cfg/{name}" in data, name
    archive = UPSTREAM / f"kube-bench-{KUBE_BENCH_VERSION}.tar.gz"
    if not archive.exists():
        skip_unless_required(f"{archive} not here to compare with")
    with tarfile.open(archive) as tar:
        shipped = {m.name.split("/", 1)[1]: hashlib.sha256(tar.extractfile(m).read()).hexdigest()
                   for m in tar.getmembers() if m.isfile() and m.name.split("/", 1)[1].startswith("cfg/")}
    assert {f"share/kube-bench/{name}": digest for name, digest in shipped.items()} == {
        path: entry["sha256"] for path, entry in data.items()}


def test_kube_bench_runs_a_benchmark_with_its_cfg(manifest, tmp_path):
    """`kube-bench --config-dir <cfg> run --benchmark cis-1.12 --json` answers in its JSON shape (run here on the
    etcd target, whose audits only read `ps`: the results say nothing about this machine)."""
    require_piece("kube-bench")
    out = run(BIN / "kube-bench", "--config-dir", KUBE_BENCH_CFG, "run", "--targets", "etcd", "--benchmark",
              "cis-1.12", "--json", cwd=tmp_path, env={"KUBECONFIG": str(tmp_path / "none")}, timeout=60).stdout
    report = json.loads(out)
    [control] = report["Controls"]
    assert (control["id"], control["version"], control["node_type"]) == ("2", "cis-1.12", "etcd")
    ids = [r["test_number"] for group in control["tests"] for r in group["results"]]
    assert ids == [f"2.{i}" for i in range(1, 8)]
    assert {r["status"] for group in control["tests"] for r in group["results"]} <= {"PASS", "FAIL", "WARN", "INFO"}
    assert set(report["Totals"]) == {"total_pass", "total_fail", "total_warn", "total_info"}


@pytest.mark.parametrize("recorded", [None, {"status": "failed", "version": "v0.15.6", "error": "go: build failed"}])
def test_a_missing_kube_bench_fails_when_the_toolchain_is_required(tmp_path, monkeypatch, recorded):
    """Not built (or failed): skipped with the reason, a failure under KTHW_REQUIRE_TOOLCHAIN=1."""
    status = {"kubernetes": {"status": "ok", "version": K8S_VERSION}}
    if recorded:
        status["kube-bench"] = recorded
    (tmp_path / "status.json").write_text(json.dumps(status))
    monkeypatch.setattr(sys.modules[__name__], "STATUS", tmp_path / "status.json")
    reason = "go: build failed" if recorded else "kube-bench has not been built"
    monkeypatch.setattr(sys.modules[__name__], "REQUIRE", False)
    with pytest.raises(pytest.skip.Exception, match=reason):
        require_piece("kube-bench")
    monkeypatch.setattr(sys.modules[__name__], "REQUIRE", True)
    with pytest.raises(pytest.fail.Exception, match=f"{reason}.*KTHW_REQUIRE_TOOLCHAIN=1"):
        require_piece("kube-bench")


# --- the build's progress lines (scripts/toolchain/progress.py; its logic: tests/test_toolchain_progress.py) ------

def scratch_cache(tmp_path: Path) -> Path:
    """A cache holding only etcd's artifacts (hard links into the real cache's, or copies on another file system;
    never written through: a file a test changes is replaced, not edited) and the real GOPATH and GOCACHE."""
    require_piece("etcd")
    scratch = tmp_path / "cache"
    (scratch / "artifacts").mkdir(parents=True)
    source = CACHE / "artifacts" / f"etcd-{ETCD_VERSION}"
    linked = subprocess.run(["cp", "-al", str(source), str(scratch / "artifacts")], capture_output=True, timeout=120)
    if linked.returncode != 0:  # another file system: copies
        shutil.rmtree(scratch / "artifacts" / source.name, ignore_errors=True)
        subprocess.run(["cp", "-a", str(source), str(scratch / "artifacts")], check=True, timeout=600)
    for name in ("go", "go-build"):
        (scratch / name).symlink_to(CACHE / name)
    return scratch


def build_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [re.sub(r"^\[toolchain \d\d:\d\d:\d\d\] ", "", line) for line in proc.stderr.splitlines()]


def test_the_build_prints_the_plan_and_each_cached_piece(manifest, tmp_path):
    scratch = scratch_cache(tmp_path)
    proc = run(ROOT / "scripts/toolchain/build", "--only", "etcd", "--check", env={"KTHW_CACHE": str(scratch)},
               timeout=600)
    lines = build_lines(proc)
    assert "every piece is cached (etcd): re-hashing and re-linking only" in lines, proc.stderr
    assert f"etcd {ETCD_VERSION}: cached (up to date), smoke checks passed" in lines, proc.stderr
    assert not [line for line in lines if line.startswith("building: ")]  # nothing built: no running line
    assert proc.stdout.splitlines()[-1] == str(scratch / "toolchain" / "bin")


def test_the_build_says_when_a_cached_piece_fails_its_smoke_check(manifest, tmp_path):
    scratch = scratch_cache(tmp_path)
    etcdctl = scratch / "artifacts" / f"etcd-{ETCD_VERSION}" / "etcdctl"
    etcdctl.unlink()  # the hard link only; the real cache keeps its file
    etcdctl.write_text("#!/bin/sh\necho 'etcdctl version: 0.0.0'\n")
    etcdctl.chmod(0o755)
    proc = run(ROOT / "scripts/toolchain/build", "--only", "etcd", "--check", env={"KTHW_CACHE": str(scratch)},
               timeout=600, check=False)
    assert proc.returncode == 1, proc.stderr
    log = scratch / "logs" / "etcd.log"
    assert f"etcd {ETCD_VERSION}: cached, but its smoke checks FAILED (log: {log})" in build_lines(proc), proc.stderr
    assert "expected version 3.6" in log.read_text()
