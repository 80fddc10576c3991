"""Liveness of the local stack's parts: a dynamic resource per long-lived part that looks on refresh.

pulumi-command's `local.Command` cannot notice that the process it started has died (its refresh reads
nothing). So each long-lived part of a local stack (the bridge, each host, the LB, the file server) has a
`PartLiveness` resource, `<infra>-<part>-liveness`, that records what makes the part alive as data (its
`checks`: a pidfile whose process must run with a marker in its command line, paths that must exist, the
host's veth on the bridge, lines its config must hold) and the part's `generation`, the number its command
gets as KTHW_GENERATION. The program only declares them: nothing is read from this machine while it is
evaluated, so `pulumi preview` gives the same result on any machine.

On `refresh` (`pulumi refresh`, `up --refresh`, `preview --refresh`, or this project's `up`: Pulumi.yaml
refreshes always) `read` runs the checks and stores `alive: false` with the `failures` when the part is
dead. Its input `alive` is always true, so a dead part shows as a diff naming its liveness resource and why,
and `preview --refresh --expect-no-changes` fails. `pulumi up` then updates it: `generation` goes up by one,
which changes the part's command's `environment`, so the engine runs its `update`, the same idempotent `up`
script, which rebuilds whatever is missing (namespace, veth, mount, container, process) and records the new
generation in the part's generation file. A plain `up` without a refresh changes nothing.

`create` runs the checks once too, for a stack whose parts were made before these resources existed: a live
part keeps the generation its generation file recorded (its command's environment stays as it was), a dead
one gets the next (1 for a new part); a preview of that first `up` shows those environments as unknown, the
`up` changes only dead parts. A liveness resource depends on nothing, and its part depends on it
(through KTHW_GENERATION): it is created before its part and deleted after it.

The provider holds no state (it is pickled into the state by reference): every path comes in its inputs,
and nothing secret is among them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from components.local.layout import HostLayout, LocalLayout

FIRST_GENERATION = 1
IDENTITY = ("part", "checks", "generation_file")  # inputs that, changed, update the record (never a repair)

# -- the checks: what makes each part alive, as data ---------------------------------------------------------


def running(pidfile: Path, marker: str) -> dict[str, str]:
    """The pidfile names a live (not zombie) process whose command line contains `marker`."""
    return {"kind": "process", "pidfile": str(pidfile), "marker": marker}


def exists(path: str) -> dict[str, str]:
    return {"kind": "exists", "path": path}


def directory(path: Path) -> dict[str, str]:
    return {"kind": "directory", "path": str(path)}


def on_bridge(iface: str, bridge: str) -> dict[str, str]:
    return {"kind": "master", "iface": iface, "bridge": bridge}


def contains(path: Path, text: str) -> dict[str, str]:
    return {"kind": "contains", "path": str(path), "text": text}


def network_checks(layout: LocalLayout) -> list[dict[str, str]]:
    return [exists(f"/sys/class/net/{layout.bridge}")]


def host_checks(layout: LocalLayout, host: HostLayout) -> list[dict[str, str]]:
    return [running(host.pidfile, host.machine), exists(f"/run/netns/{host.netns}"),
            on_bridge(host.veth, layout.bridge), directory(host.dir / "root" / "etc")]


def lb_checks(layout: LocalLayout) -> list[dict[str, str]]:
    return [running(layout.lb_dir / "haproxy.pid", str(layout.lb_dir / "haproxy.cfg"))]


def file_server_checks(layout: LocalLayout, root: Optional[Path] = None) -> list[dict[str, str]]:
    """nginx runs with the stack's config; with `root`, that config serves `root` on the gateway's port."""
    config = layout.file_server_dir / "nginx.conf"
    checks = [running(layout.file_server_dir / "http.pid", f"-c {config}")]
    if root is not None:
        checks += [contains(config, f"root {root};"),
                   contains(config, f"listen {layout.gateway}:{layout.file_server_port} ssl;")]
    return checks


# -- looking: only reads (pidfiles, /proc, /sys/class/net, /run/netns, a config file) ------------------------


def pid_alive(pidfile: Path, marker: str) -> bool:
    """The pidfile's process exists, is not a zombie and its command line contains `marker`."""
    try:
        pid = int(pidfile.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def _master(iface: str) -> Optional[str]:
    try:
        return Path(f"/sys/class/net/{iface}/master").resolve(strict=True).name
    except OSError:
        return None


def failure(check: Mapping[str, str]) -> Optional[str]:
    """Why `check` fails now, or None when it holds."""
    kind = check.get("kind")
    if kind == "process":
        if pid_alive(Path(check["pidfile"]), check["marker"]):
            return None
        return f"no live process from {check['pidfile']} with {check['marker']!r} in its command line"
    if kind == "exists":
        return None if Path(check["path"]).exists() else f"{check['path']} is missing"
    if kind == "directory":
        return None if Path(check["path"]).is_dir() else f"{check['path']} is not a directory"
    if kind == "master":
        master = _master(check["iface"])
        return None if master == check["bridge"] else (
            f"{check['iface']} is not on {check['bridge']} ({'no master' if master is None else 'on ' + master})")
    if kind == "contains":
        try:
            text = Path(check["path"]).read_text()
        except OSError as exc:
            return f"{check['path']} cannot be read ({type(exc).__name__})"
        return None if check["text"] in text else f"{check['path']} lacks {check['text']!r}"
    return f"unknown check {dict(check)!r}"


def failures(checks: Sequence[Mapping[str, str]]) -> list[str]:
    """What is wrong with a part now: one line per failed check (empty: it is alive)."""
    return [line for line in (failure(c) for c in checks) if line is not None]


def alive(checks: Sequence[Mapping[str, str]]) -> bool:
    return not failures(checks)


def read_generation(path: Path) -> int:
    """The generation a part's `up` script recorded last (0 when none)."""
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def generation_env(generation: Any) -> str:
    """KTHW_GENERATION for a part's command: its liveness resource's generation (the first before it has one)."""
    return str(int(generation or FIRST_GENERATION))


# -- the resource ------------------------------------------------------------------------------------------


class LivenessProvider(ResourceProvider):
    """Records a generation on create; looks at the part on read; a dead part's update bumps the generation."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        recorded = read_generation(Path(props["generation_file"]))
        generation = max(FIRST_GENERATION, recorded if alive(props["checks"]) else recorded + 1)
        return CreateResult(id_=props["part"], outs={**props, "alive": True, "failures": [], "generation": generation})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        found = failures(props.get("checks") or [])
        return ReadResult(id_, {**props, "alive": not found, "failures": found})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("alive") is False or any(olds.get(k) != news.get(k) for k in IDENTITY)
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        generation = int(olds.get("generation") or FIRST_GENERATION)
        if olds.get("alive") is False:
            generation += 1  # the part's command runs its `up` again: the repair
        return UpdateResult(outs={**news, "alive": True, "failures": [], "generation": generation})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


@dataclass
class PartLivenessArgs:
    part: str  # what the part is, e.g. "host kthw-local-controller-0" (also the resource's id)
    checks: list[dict[str, str]]  # every one must hold for the part to be alive (see the check functions above)
    generation_file: str  # where the part's `up` script records the generation it ran for


class PartLiveness(pulumi.dynamic.Resource):
    """One part's liveness, observed on every refresh; `generation` is the part's KTHW_GENERATION."""

    generation: pulumi.Output[int]
    alive: pulumi.Output[bool]
    failures: pulumi.Output[list]

    def __init__(self, name: str, args: PartLivenessArgs, opts: Optional[pulumi.ResourceOptions] = None):
        props = {"part": args.part, "checks": args.checks, "generation_file": args.generation_file,
                 "alive": True, "failures": [], "generation": None}
        super().__init__(LivenessProvider(), name, props, opts)

    @property
    def kthw_generation(self) -> pulumi.Output[str]:
        """The part's KTHW_GENERATION (its command depends on this resource through it)."""
        return self.generation.apply(generation_env)


def watch(resource_name: str, part: str, checks: list[dict[str, str]], generation_file: Path,
          parent: pulumi.Resource) -> pulumi.Output[str]:
    """A part's KTHW_GENERATION, from its liveness resource `<resource_name>-liveness` (a child of `parent`)."""
    resource = PartLiveness(f"{resource_name}-liveness", PartLivenessArgs(part, checks, str(generation_file)),
                            pulumi.ResourceOptions(parent=parent))
    return resource.kthw_generation
