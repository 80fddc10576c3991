"""In-host drift detection: a dynamic resource per controller that looks inside the host on refresh.

A remote command's state never looks at the host again, so an edited unit, a deleted cert or a stopped
service would go unseen. `HostState` records what the bootstrap manages on one host: per group (a step of
the bootstrap), the sha256 of each file and the units that must be active. On `refresh` its `read` asks the
host for all of it in one SSH round trip (paramiko) and stores what it saw; `drift` lists every difference
("kube-apiserver: /etc/systemd/system/kube-apiserver.service changed", "kube-scheduler: kube-scheduler is
inactive"). Its input `drift` is always empty, so a refreshed drift shows as a diff naming the host's resource
and each drifted item, and `preview --refresh --expect-no-changes` fails. `pulumi up` then updates it: the
drifted groups' `repairs` counters go up (the host is probed again first, so a refresh's transient SSH failure
repairs nothing that did not drift), and the bootstrap steps that embed their group's counter run again and put
the host back.

The probe's SSH client pins the host's key where the stack has one (components/host_keys.py): another key is
refused at once, without retries, and named as the host's drift; `up` cannot repair it (every step refuses that
host too) until the machine is what the stack made or is replaced.

Nothing secret is reachable from the provider object (it is pickled into the state): the SSH key arrives as
a (secret) input on each call.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from components import ssh
from components.paths import HOST
from components.render import script
from components.version_skew import RUNNING_VERSIONS, parse_running

PROBE_TIMEOUT_SECONDS = 30
PROBE_ATTEMPTS = 3
PROBE_SETTLE_SECONDS = 15


def probe_command(expected: Mapping[str, Mapping[str, Any]], versions: bool = False,
                  digest_cache: str = HOST.probe_digests) -> str:
    """One shell command that prints every managed file's sha256 and every unit's state, as JSON lines (and with
    `versions`, what the apiserver and etcd answer to GET /version: the version gate's reading).

    One digest program and one `systemctl` call for everything keep the probe to a fraction of a second. The
    digests come from scripts/common/digests.py, which reads again only the files whose stat key changed since the
    previous probe (`digest_cache`); without python3 on the host, OpenSSL (or sha256sum) reads every file.
    """
    paths = sorted({path for group in expected.values() for path in group.get("files", {})})
    units = sorted({unit for group in expected.values() for unit in group.get("units", [])})
    lines = ["set +e"]
    if paths:
        quoted = " ".join(shlex.quote(p) for p in paths)
        program = script("common/digests.py")
        if "\nKTHW_DIGESTS\n" in f"\n{program}\n":
            raise ValueError("scripts/common/digests.py must not contain the line KTHW_DIGESTS")
        lines.append(f"if command -v python3 >/dev/null; then python3 - {shlex.quote(digest_cache)} {quoted}"
                     f" 2>/dev/null <<'KTHW_DIGESTS'\n{program.rstrip()}\nKTHW_DIGESTS\nelse")
        lines.append(script("common/sha256-of.sh").rstrip())
        lines.append(f"sha256_of {quoted}"
                     " | while read -r h f; do printf '{\"file\":\"%s\",\"sha256\":\"%s\"}\\n' \"$f\" \"$h\"; done")
        lines.append("fi")
    modes = sorted({path for group in expected.values() for path in group.get("modes", {})})
    if modes:
        lines.append("stat -c '{\"stat\":\"%n\",\"mode\":\"%a\",\"owner\":\"%U\"}' -- "
                     f"{' '.join(shlex.quote(p) for p in modes)} 2>/dev/null")
    if units:
        names = " ".join(shlex.quote(u) for u in units)
        # A unit restarting on its own (e.g. a scheduler that lost its lease) settles within seconds; one that
        # keeps "activating" for PROBE_SETTLE_SECONDS is crash-looping, and that is drift.
        lines.append(f"for _ in $(seq {PROBE_SETTLE_SECONDS}); do systemctl is-active {names} 2>/dev/null"
                     " | grep -qx activating || break; sleep 1; done")
        lines.append(f"paste -d' ' <(printf '%s\\n' {names}) <(systemctl is-active {names} 2>/dev/null)"
                     " | while read -r u st; do printf '{\"unit\":\"%s\",\"state\":\"%s\"}\\n' \"$u\" \"${st:-unknown}\"; done")
    lines.append(f"printf '{{\"probed\":%s}}\\n' {shlex.quote(json.dumps(paths))}")
    return "\n".join(lines) + "\n" + (RUNNING_VERSIONS if versions else "")


def parse_probe(output: str) -> dict[str, dict[str, str]]:
    """{"files": {path: sha256|missing}, "units": {unit: state}, "modes": {path: "<octal mode> <owner>"},
    "running": {"kubernetes"|"etcd": version}} from `probe_command`'s output."""
    observed: dict[str, dict[str, str]] = {"files": {}, "units": {}, "modes": {}, "running": parse_running(output)}
    probed: list[str] = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        item = json.loads(line)
        if "file" in item:
            observed["files"][item["file"]] = item["sha256"]
        elif "unit" in item:
            observed["units"][item["unit"]] = item["state"]
        elif "stat" in item:
            observed["modes"][item["stat"]] = f"{item['mode']} {item['owner']}"
        elif "probed" in item:
            probed = item["probed"]
    for path in probed:  # the digest prints nothing for a file that is not there
        observed["files"].setdefault(path, "missing")
    return observed


def compare(expected: Mapping[str, Mapping[str, Any]], observed: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """Per group, what differs between what the bootstrap put there and what the host has now."""
    drift: dict[str, list[str]] = {}
    for group, want in sorted(expected.items()):
        found = []
        for path, digest in sorted(want.get("files", {}).items()):
            actual = observed.get("files", {}).get(path)
            if actual is None:
                continue  # not probed (host unreachable is reported by read, not here)
            if actual == "missing":
                found.append(f"{path} is missing")
            elif actual != digest:
                found.append(f"{path} changed")
        for path, mode in sorted(want.get("modes", {}).items()):
            actual = observed.get("modes", {}).get(path)
            if actual is not None and actual != mode:  # a missing file is named above
                found.append(f"{path} is {actual} (want {mode})")
        for unit in want.get("units", []):
            state = observed.get("units", {}).get(unit)
            if state is not None and state != "active":
                found.append(f"{unit} is {state}")
        if found:
            drift[group] = found
    return drift


def drift_lines(drift: Mapping[str, Sequence[str]]) -> list[str]:
    return [f"{group}: {item}" for group, items in sorted(drift.items()) for item in items]


def _debug(message: str) -> None:
    """Append to $KTHW_PROBE_LOG when set (the provider's own output is not shown by the engine)."""
    import os
    import time

    path = os.environ.get("KTHW_PROBE_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {message}\n")


def probe_host(props: Mapping[str, Any], attempts: int = PROBE_ATTEMPTS, timeout: float = PROBE_TIMEOUT_SECONDS,
               versions: bool = False) -> dict[str, dict[str, str]]:
    """Run the probe on the host over SSH: one connection, one command, bounded in time and attempts."""
    import time

    import paramiko

    error: Exception = RuntimeError("no attempt")
    for attempt in range(attempts):
        try:
            client = ssh.client(props["host"], props["port"], props["user"], props["private_key"],
                                timeout=timeout, host_key=props.get("host_key"), name=props.get("name"))
        except ssh.HostKeyMismatch:
            raise  # not transient: refused at once, nothing sent
        except (paramiko.SSHException, OSError) as exc:
            error = exc
        else:
            try:
                _, out, _ = ssh.run_as_root(client, probe_command(props["expected"], versions), "probe",
                                            timeout=timeout)
                return parse_probe(out.decode())
            except (paramiko.SSHException, OSError) as exc:
                error = exc
            finally:
                client.close()
        _debug(f"probe {props['host']} attempt {attempt + 1}: {type(error).__name__}: {error}")
        if attempt + 1 < attempts:
            time.sleep(2 * (attempt + 1))
    raise error


class HostStateProvider(ResourceProvider):
    """Records the expected state on create; observes the host on read; repairs by bumping counters."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = {**props, "observed": {}, "drift": [], "repairs": {g: 0 for g in props["expected"]}}
        return CreateResult(id_=f"{props['host']}:{int(props['port'])}/{props['name']}", outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            observed = probe_host(props)
        except ssh.HostKeyMismatch as exc:
            return ReadResult(id_, {**props, "observed": {}, "drift": [f"host: {exc}"]})
        except Exception as exc:  # noqa: BLE001 - an unreachable host is drift too
            return ReadResult(id_, {**props, "observed": {}, "drift": [f"host: unreachable ({type(exc).__name__}: {exc})"]})
        drift = compare(props["expected"], observed)
        return ReadResult(id_, {**props, "observed": observed, "drift": drift_lines(drift)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = bool(olds.get("drift")) or any(olds.get(k) != news.get(k) for k in ("expected", "host", "port", "user", "host_key"))
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Bump the repair counter of each group that drifted, as the host shows it now: a probe that failed on
        refresh (a transient SSH error) is taken again, so it repairs only what really drifted; a host that is
        still unreachable gets every group repaired once it answers."""
        repairs = dict(olds.get("repairs") or {})
        observed = olds.get("observed", {})
        unreachable = any(line.startswith("host:") for line in olds.get("drift", []))
        if olds.get("drift"):
            try:
                observed, unreachable = probe_host(news), False
            except Exception as exc:  # noqa: BLE001 - decided below: all groups if it was unreachable before
                _debug(f"probe {news.get('host')} during update: {type(exc).__name__}: {exc}")
        drifted = compare(news.get("expected", {}), observed)
        for group in news["expected"]:
            repairs.setdefault(group, 0)
            if group in drifted or unreachable:
                repairs[group] += 1
        return UpdateResult(outs={**news, "observed": {}, "drift": [], "repairs": repairs})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


@dataclass
class HostStateArgs:
    name: str
    host: pulumi.Input[str]
    port: pulumi.Input[int]
    user: pulumi.Input[str]
    private_key: pulumi.Input[str]
    expected: pulumi.Input[Mapping[str, Any]]  # group -> {"files": {path: sha256}, "units": [unit]}
    host_key: Optional[pulumi.Input[Optional[str]]] = None  # the pinned SSH host key (components/host_keys.py)


class HostState(pulumi.dynamic.Resource):
    """The managed state of one host, observed on every refresh. `repairs[group]` drives the repairs."""

    repairs: pulumi.Output[dict]
    drift: pulumi.Output[list]

    def __init__(self, name: str, args: HostStateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        props = {"name": args.name, "host": args.host, "port": args.port, "user": args.user,
                 "private_key": pulumi.Output.secret(args.private_key), "expected": args.expected,
                 "host_key": args.host_key,
                 "drift": [], "repairs": None, "observed": None}
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        super().__init__(HostStateProvider(), name, props, opts)
