"""Version-skew gate: refuse a Kubernetes or etcd version change that their skew policies do not allow.

Kubernetes and etcd upgrade one minor version at a time and do not downgrade across minors. What counts is what
the controllers *run*, not what the stack last asked for: an upgrade that failed half-way leaves some hosts on
the old version, and then the honest rollback (back to the lowest running minor) must be allowed and a further
jump refused. So `VersionGate` (every bootstrap step depends on it) checks twice:

- in the preview and at `up` (`diff`): against the versions the controllers run as the last refresh saw them
  (`read`: the project refreshes before every preview and up), or, without a refresh, as its last `up` saw them
  or the versions it asked for (that `up` may have finished): refused only when refused against both;
- at `up` (`update`, before any host is touched): against the versions every reachable controller's apiserver
  and etcd report now (GET /version on each, over SSH); a refusal fails the `up` right there.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional, Sequence

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from components.paths import HOST
from components.releases import minor

# (config key, gate input) of each versioned component.
VERSIONED = (("kubernetesVersion", "kubernetes"), ("etcdVersion", "etcd"))
PROBE_TIMEOUT_SECONDS = 10
# What each controller runs: its apiserver's and its etcd member's own /version (JSON), one line each.
RUNNING_VERSIONS = (
    f"curl -fsS --max-time 3 --cacert {HOST.kubernetes}/ca.pem https://127.0.0.1:6443/version 2>/dev/null"
    " | tr -d '\\n'; echo\n"
    f"curl -fsS --max-time 3 --cacert {HOST.etcd}/ca.pem --cert {HOST.etcd}/healthcheck-client.pem"
    f" --key {HOST.etcd}/healthcheck-client-key.pem https://127.0.0.1:2379/version 2>/dev/null"
    " | tr -d '\\n'; echo\n")


def skew_problem(key: str, running: Optional[Iterable[str] | str], wanted: str) -> Optional[str]:
    """Why going to `wanted` while the hosts run `running` (one version or several) is refused, or None."""
    versions = sorted({running} if isinstance(running, str) else set(running or ()), key=minor)
    if not versions or versions == [wanted]:
        return None
    lowest, highest = versions[0], versions[-1]
    (old_major, low), (new_major, new_minor) = minor(lowest), minor(wanted)
    shown = ", ".join(versions)
    if new_major != old_major or minor(highest)[0] != new_major:
        return (f"kthw:{key} cannot change major version ({shown} is deployed, {wanted} asked); "
                "build a new cluster instead")
    if new_minor > low + 1:
        step = f"v{old_major}.{low + 1}"
        return (f"kthw:{key} can go up one minor version at a time: {shown} is deployed, {wanted} skips "
                f"{step}.x; upgrade to a {step} release first")
    if new_minor < low:
        return (f"kthw:{key} cannot go down a minor version ({shown} is deployed, {wanted} asked); "
                "restore an etcd snapshot taken before the upgrade instead (see docs/operations.md, Backup and restore)")
    return None


def parse_running(output: str) -> dict[str, str]:
    """{"kubernetes": gitVersion, "etcd": "v" + etcdserver} from `RUNNING_VERSIONS`' two lines; a service that
    does not answer is left out."""
    found: dict[str, str] = {}
    lines = (output.splitlines() + ["", ""])[:2]
    for field, line, key in (("kubernetes", lines[0], "gitVersion"), ("etcd", lines[1], "etcdserver")):
        try:
            value = json.loads(line).get(key) if line.strip() else None
        except ValueError:
            value = None
        if value:
            found[field] = value if value.startswith("v") else f"v{value}"
    return found


def _running_on(host: Mapping[str, Any]) -> dict[str, str]:
    """What one controller runs; nothing when it does not answer (it runs nothing we can see)."""
    from components import ssh

    try:
        client = ssh.client(host["host"], host["port"], host["user"], host["private_key"],
                            timeout=PROBE_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001
        return {}
    try:
        _, out, _ = ssh.run_as_root(client, RUNNING_VERSIONS, "running-versions", timeout=PROBE_TIMEOUT_SECONDS)
        return parse_running(out.decode(errors="replace"))
    except Exception:  # noqa: BLE001
        return {}
    finally:
        client.close()


def observe_running(hosts: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The versions the reachable controllers run now, per component, asked of every controller at once."""
    from concurrent.futures import ThreadPoolExecutor

    running: dict[str, set[str]] = {field: set() for _, field in VERSIONED}
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        for found in pool.map(_running_on, hosts):
            for field, version in found.items():
                running[field].add(version)
    return {field: sorted(versions) for field, versions in running.items()}


class _GateProvider(ResourceProvider):
    """Checks the step from what runs to what is asked (see the module docstring); holds nothing else."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("versions", {**props, "running": {}})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """On refresh: what the controllers run now (kept as it was when no controller answers)."""
        running = observe_running(props.get("hosts") or [])
        if any(running.values()):
            props = {**props, "running": running, "refreshed": True}
        return ReadResult(id_, props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Refuses (fails the preview, naming the key) a step that the skew policy refuses both from the versions
        the last `up` saw running and from the ones it asked for; `update` then checks what runs now."""
        problems = []
        for key, field in VERSIONED:
            running = (olds.get("running") or {}).get(field)
            # Refreshed: what runs decides; else what ran before the last up, or what it asked for.
            candidates = [running] if olds.get("refreshed") and running else [running, olds.get(field)]
            found = [skew_problem(key, c, news.get(field, "")) for c in candidates if c]
            if found and all(found):
                problems.append(found[-1])
        if problems:
            raise ValueError("; ".join(problems))
        changed = [field for _, field in VERSIONED if olds.get(field) != news.get(field)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        running = observe_running(news.get("hosts") or [])
        problems = []
        for key, field in VERSIONED:
            seen = running.get(field) or [olds.get(field)]  # nothing answers: what the last `up` asked for
            problem = skew_problem(key, seen, news[field])
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError("; ".join(problems))
        return UpdateResult({**news, "running": running, "refreshed": False})


class VersionGate(pulumi.dynamic.Resource):
    """The asked Kubernetes and etcd versions, checked against the skew policy from what the hosts run."""

    kubernetes: pulumi.Output[str]
    etcd: pulumi.Output[str]

    def __init__(self, name: str, kubernetes: str, etcd: str, hosts: Sequence[Any] = (),
                 opts: Optional[pulumi.ResourceOptions] = None):
        """`hosts`: the controllers (`components.infra.ControllerHost`) whose running versions `up` reads."""
        reach = [{"host": h.ssh_host, "port": h.ssh_port, "user": h.ssh_user,
                  "private_key": pulumi.Output.secret(h.ssh_private_key)} for h in hosts]
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["hosts"]))
        super().__init__(_GateProvider(), name, {"kubernetes": kubernetes, "etcd": etcd, "hosts": reach,
                                                 "running": None}, opts)
