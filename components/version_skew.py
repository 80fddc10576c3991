"""Version-skew gate: refuse a Kubernetes or etcd version change that their skew policies do not allow.

Kubernetes and etcd upgrade one minor version at a time and do not downgrade across minors. What counts is what
the controllers *run*, not what the stack last asked for: an upgrade that failed half-way leaves some hosts on
the old version, and then the honest rollback (back to the lowest running minor) must be allowed and a further
jump refused. So `VersionGate` (every bootstrap step depends on it), when a version changes, asks every reachable
controller's apiserver and etcd which version they run (GET /version on each, over the drift probe's pinned SSH
client, all at once):

- in the preview and at `up` (`diff`): a refusal fails the preview, naming the key; where no controller answers,
  it refuses only what is refused both from what the last `up` saw running and from what it asked for;
- at `up` (`update`, before any host is touched): again, from what runs then; a refusal fails the `up` right
  there.

It reads nothing on refresh and nothing while the versions stay as they are: the everyday preview and `up` take
one SSH session per host, the drift probe's.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional, Sequence

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.paths import HOST
from components.releases import minor

# (config key, gate input) of each versioned component.
VERSIONED = (("kubernetesVersion", "kubernetes"), ("etcdVersion", "etcd"))
PROBE_TIMEOUT_SECONDS = 10
# What each controller runs: its apiserver's and its etcd member's own /version (JSON), one tagged line each (run by
# the drift probe's client when asked: components/drift.py).
RUNNING_VERSIONS = (
    "printf 'kthw-running kubernetes %s\\n' \"$(curl -fsS --max-time 3 --cacert "
    f"{HOST.kubernetes}/ca.pem https://127.0.0.1:6443/version 2>/dev/null | tr -d '\\n')\"\n"
    "printf 'kthw-running etcd %s\\n' \"$(curl -fsS --max-time 3 --cacert "
    f"{HOST.etcd}/ca.pem --cert {HOST.etcd}/healthcheck-client.pem --key {HOST.etcd}/healthcheck-client-key.pem "
    "https://127.0.0.1:2379/version 2>/dev/null | tr -d '\\n')\"\n")
_VERSION_KEYS = {"kubernetes": "gitVersion", "etcd": "etcdserver"}


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
    """{"kubernetes": gitVersion, "etcd": "v" + etcdserver} from `RUNNING_VERSIONS`' lines among others; a service
    that does not answer is left out."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        tag, _, rest = line.partition(" ")
        field, _, body = rest.partition(" ")
        if tag != "kthw-running" or field not in _VERSION_KEYS or not body.strip():
            continue
        try:
            value = json.loads(body).get(_VERSION_KEYS[field])
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, str) and value:
            found[field] = value if value.startswith("v") else f"v{value}"
    return found


def _running_on(host: Mapping[str, Any]) -> dict[str, str]:
    """What one controller runs now, through the drift probe's SSH client (its pinned host key); nothing when it
    does not answer (it runs nothing we can see)."""
    from components import drift

    try:
        return drift.probe_host({**host, "expected": {}}, attempts=1, timeout=PROBE_TIMEOUT_SECONDS,
                                versions=True)["running"]
    except Exception:  # noqa: BLE001
        return {}


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
    """Checks the step from what runs to what is asked (see the module docstring); holds nothing else. It reads
    nothing on refresh (a refresh's one SSH session per host is the drift probe's): the hosts are asked only when
    a version changes."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("versions", {**props, "running": {}})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A changed version is checked against what the controllers run now (read here, in the preview too);
        where no controller answers, refused only when refused both from what the last `up` saw running and
        from what it asked for. An unchanged one has nothing to decide, and nothing is read."""
        changed = [(key, field) for key, field in VERSIONED if olds.get(field) != news.get(field)]
        if not changed:
            return DiffResult(changes=False, replaces=[], delete_before_replace=False)
        running = observe_running([h for h in news.get("hosts") or [] if isinstance(h, Mapping)])
        problems = []
        for key, field in changed:
            seen = running.get(field)
            candidates = [seen] if seen else [(olds.get("running") or {}).get(field), olds.get(field)]
            found = [skew_problem(key, c, news.get(field, "")) for c in candidates if c]
            if found and all(found):
                problems.append(found[-1])
        if problems:
            raise ValueError("; ".join(problems))
        return DiffResult(changes=True, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """At `up`, before any host is touched: what the controllers run now decides."""
        running = observe_running(news.get("hosts") or [])
        problems = []
        for key, field in VERSIONED:
            seen = running.get(field) or [olds.get(field)]  # nothing answers: what the last `up` asked for
            problem = skew_problem(key, seen, news[field])
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError("; ".join(problems))
        return UpdateResult({**news, "running": running})


class VersionGate(pulumi.dynamic.Resource):
    """The asked Kubernetes and etcd versions, checked against the skew policy from what the hosts run."""

    kubernetes: pulumi.Output[str]
    etcd: pulumi.Output[str]

    def __init__(self, name: str, kubernetes: str, etcd: str, hosts: Sequence[Any] = (),
                 opts: Optional[pulumi.ResourceOptions] = None):
        """`hosts`: the controllers (`components.infra.ControllerHost`) whose running versions are read when a
        version changes."""
        reach = [{"name": h.name, "host": h.ssh_host, "port": h.ssh_port, "user": h.ssh_user,
                  "host_key": h.ssh_host_key, "private_key": pulumi.Output.secret(h.ssh_private_key)} for h in hosts]
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["hosts"]))
        super().__init__(_GateProvider(), name, {"kubernetes": kubernetes, "etcd": etcd, "hosts": reach,
                                                 "running": None}, opts)
