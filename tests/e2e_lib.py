"""Drive a real local stack with the toolchain's Pulumi CLI, in a scratch copy of the project.

The scratch copy has its own stack file (so the checkout's Pulumi.local.yaml is never touched), its own
state dir (Pulumi backend, passphrase, host state) and its own node subnet, so it can run beside a user's
`local` stack. Every command is bounded in time.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KTHW_CACHE", Path.home() / ".cache/kthw"))
TOOLCHAIN_BIN = CACHE / "toolchain/bin"
LINKED = ("__main__.py", "Pulumi.yaml", "requirements.txt", "components", "scripts", ".venv")


def toolchain_ready() -> Optional[str]:
    """None when the toolchain and the local stack can run here, else why not."""
    for name in ("pulumi", "pulumi-language-python", "pulumi-resource-command", "pulumi-resource-tls",
                 "pulumi-resource-random", "kubectl", "etcdctl"):
        if not (TOOLCHAIN_BIN / name).exists():
            return f"{TOOLCHAIN_BIN / name} is missing: run scripts/toolchain/build"
    if not (CACHE / "toolchain/manifest.json").exists():
        return "no toolchain manifest: run scripts/toolchain/build"
    if os.geteuid() != 0:
        return "the local stack needs root (network namespaces, containers)"
    return None


def new_stack(name: str, node_cidr: str, controllers: int = 3, env: Optional[dict[str, str]] = None) -> "LocalStack":
    """A fresh scratch stack of `controllers` in `node_cidr` (`env`: extra environment for its commands); skips
    (or fails, with KTHW_REQUIRE_TOOLCHAIN=1) when the local stack cannot run here."""
    import tempfile

    import pytest

    reason = toolchain_ready()
    if reason:
        if os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix=f"kthw-{name}-", dir="/tmp"))
    stack = LocalStack(name, workdir, {"cloud": "local", "nodeCidr": node_cidr, "controllerCount": str(controllers)},
                       extra_env=env or {})
    stack.init()
    return stack


@dataclass
class LocalStack:
    """One scratch local stack: `pulumi` runs it, `host` runs commands inside its controllers."""

    name: str
    workdir: Path
    config: dict[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)
    destroyed: bool = False  # a test destroyed the stack itself
    timings: dict[str, float] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)  # every command's output, for the secrets check

    def __post_init__(self) -> None:
        self.project = self.workdir / "project"
        self.state = self.workdir / "state"
        self.project.mkdir(parents=True, exist_ok=True)
        for name in LINKED:
            link = self.project / name
            if not link.exists():
                link.symlink_to(ROOT / name)
        self.write_config()

    # -- configuration -----------------------------------------------------------------------------
    def write_config(self) -> None:
        base = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text()) or {}
        path = self.project / f"Pulumi.{self.name}.yaml"
        existing = yaml.safe_load(path.read_text()) if path.exists() else {}
        # Keys a script set in the stack file (e.g. secrets by scripts/rotate-encryption-key) stay.
        config = {**(existing or {}).get("config", {}), **base.get("config", {}),
                  **{k if ":" in k else f"kthw:{k}": v for k, v in self.config.items()}}
        document = {**(existing or {}), "config": config}
        path.write_text(yaml.safe_dump(document, sort_keys=True))

    def set_config(self, **values: str) -> None:
        self.config.update(values)
        self.write_config()

    # -- pulumi ------------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KTHW_STATE": str(self.state), "KTHW_PROJECT_DIR": str(self.project),
                "PULUMI_CONFIG_PASSPHRASE": "kthw-e2e", "CI": "true", **self.extra_env}

    def pulumi(self, *args: str, timeout: float = 1800, check: bool = True,
               label: Optional[str] = None) -> subprocess.CompletedProcess:
        if args and args[0] in ("up", "destroy"):
            (self.workdir / "admin.kubeconfig").unlink(missing_ok=True)  # a new CA may come with the new stack
        start = time.monotonic()
        result = subprocess.run([str(ROOT / "scripts/pulumi"), *args, "--stack", self.name, "--non-interactive"],
                                env=self.env, text=True, capture_output=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if label:
            self.timings[label] = round(time.monotonic() - start, 1)
        self.logs[f"{len(self.logs)}: pulumi {' '.join(args)}"] = result.stdout + result.stderr
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-6000:]}\n{result.stderr[-4000:]}")
        return result

    def init(self) -> None:
        self.pulumi("stack", "init", timeout=120, check=False)
        self.write_config()  # stack init may have added the encryption salt; keep our config beside it

    def up(self, *extra: str, label: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        return self.pulumi("up", "--yes", "--skip-preview", "--parallel", "32", *extra, label=label, check=check)

    def changes(self) -> dict[str, int]:
        """The engine's own count of each operation ("same", "update", "create", ...) in the stack's latest
        update, from `pulumi stack history --json` (`up --json` would also stream the SDK's debug events, which
        print registered outputs, secrets included, in plaintext)."""
        return latest_update_changes(self.pulumi("stack", "history", "--json", "--page-size", "1", timeout=120).stdout)

    def preview(self, *extra: str) -> "Preview":
        """`preview --refresh --expect-no-changes --json` (one document: steps with op, urn and masked states,
        diagnostics without debug events), read structurally."""
        result = self.pulumi("preview", "--refresh", "--expect-no-changes", "--json", *extra, check=False,
                             label="preview --refresh")
        try:
            document = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"preview printed no JSON: {result.stderr[-4000:]}") from None
        return Preview(result.returncode, document, result.stderr)

    def outputs(self) -> dict:
        result = self.pulumi("stack", "output", "--json", "--show-secrets", timeout=120)
        return json.loads(result.stdout)

    def script(self, name: str) -> Path:
        return ROOT / "scripts" / name

    def gateway(self) -> str:
        return self.layout().gateway

    def ca_pem(self) -> str:
        import base64

        import yaml as _yaml

        config = _yaml.safe_load(self.outputs()["kubeconfig"])
        return base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()

    def kubeconfig(self) -> Path:
        path = self.workdir / "admin.kubeconfig"
        if path.exists():
            return path
        path.write_text(self.outputs()["kubeconfig"])
        path.chmod(0o600)
        return path

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(TOOLCHAIN_BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig()),
                                 "--request-timeout=20s", *args], text=True, capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    # -- hosts -------------------------------------------------------------------------------------
    def layout(self):
        from components.local.layout import LocalLayout

        count = int(self.config.get("controllerCount", 3))
        return LocalLayout.build(self.name, [f"controller-{i}" for i in range(count)],
                                 self.config["nodeCidr"], state_root=self.state, cache_root=CACHE)

    def host(self, index: int, command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run `command` in controller-<index> (enter the container's namespaces through its init process)."""
        host = self.layout().hosts[index]
        pid = host.pidfile.read_text().strip()
        leader = subprocess.run(["pgrep", "-P", pid, "-o"], text=True, capture_output=True).stdout.strip() or pid
        result = subprocess.run(["nsenter", "-t", leader, "-m", "-u", "-i", "-n", "-p", "--", "bash", "-c", command],
                                text=True, errors="replace", capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{host.name}: {command!r} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result

    def cleanup(self) -> None:
        """After the tests: destroy (unless a test already did); if that fails, take every part down with the
        local scripts directly; remove the scratch dir only when nothing of the stack is left mounted."""
        if not self.destroyed:
            result = self.pulumi("destroy", "--yes", "--skip-preview", timeout=900, check=False)
            if result.returncode != 0:
                force_teardown(self.layout())
        if not any(str(self.state) in line for line in Path("/proc/mounts").read_text().splitlines()):
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Preview:
    returncode: int
    document: dict
    stderr: str

    def changes(self) -> dict[str, tuple[str, list[str]]]:
        """name -> (op, drift items of a host's drift resource) of every step that is not "same"/"refresh"."""
        return {s["urn"].rsplit("::", 1)[-1]: (s["op"], list(((s.get("oldState") or {}).get("outputs") or {})
                                                               .get("drift") or []))
                for s in self.document.get("steps") or [] if s["op"] not in ("same", "refresh")}

    def errors(self) -> list[str]:
        return [d["message"] for d in self.document.get("diagnostics") or [] if d["severity"] == "error"]

    def report(self) -> str:
        return "\n".join([f"{op} {name} {drift or ''}" for name, (op, drift) in self.changes().items()]
                         + self.errors()) + "\n" + self.stderr[-2000:]


def latest_update_changes(history: str) -> dict[str, int]:
    """`resourceChanges` of the newest entry of `pulumi stack history --json`, which must be a succeeded update;
    anything else is an error, never "no changes"."""
    entries = json.loads(history)
    if not entries or entries[0].get("kind") != "update" or entries[0].get("result") != "succeeded":
        raise AssertionError(f"the stack's latest operation is not a succeeded update: {history[-1500:]}")
    return dict(entries[0].get("resourceChanges") or {})


CHANGING = ("create", "update", "delete", "replace", "create-replacement", "delete-replaced")


def force_teardown(layout) -> None:
    """Run each local part's `down` (hosts, LB, file server, then the network), as the component would."""
    scripts = ROOT / "scripts/local"
    parts = [("host.sh", layout.host_env(h)) for h in layout.hosts]
    parts += [("lb.sh", layout.lb_env(6443)), ("fileserver.sh", layout.file_server_env(CACHE / "toolchain/mirror")),
              ("network.sh", layout.network_env())]
    for script, env in parts:
        subprocess.run(["bash", str(scripts / script), "down"], env={**os.environ, **env}, capture_output=True,
                       timeout=120)


# What ssh prints when it reached no sshd (none listening yet, or one restarting: cloud-init restarts it on a first
# boot), as opposed to a command that ran and failed.
NOT_REACHED = ("ssh: connect to host", "Connection closed by", "Connection reset by", "kex_exchange_identification")
DIAL_TRIES, DIAL_PAUSE_SECONDS = 60, 1.0  # as the engine's boot wait retries its dial (components/ssh.py)


def dialing(run: Callable[[], subprocess.CompletedProcess], tries: int = DIAL_TRIES,
            pause: float = DIAL_PAUSE_SECONDS) -> subprocess.CompletedProcess:
    """`run` (one ssh), again while it reaches no sshd, at most `tries` times: as pulumi-command's dial does."""
    for _ in range(tries - 1):
        result = run()
        if result.returncode != 255 or not any(sign in result.stderr for sign in NOT_REACHED):
            return result
        time.sleep(pause)
    return run()
