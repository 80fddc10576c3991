"""The CIS Kubernetes Benchmark on every controller of a kthw stack: kube-bench (the toolchain's), pointed at
kthw's layout, run on each controller over SSH; its JSON report read check by check and totalled.

    scripts/cis-report [--stack STACK] [--json]

For each controller in the stack's outputs (`controllers`, `sshPrivateKeys`; scripts/stacks.py on the Automation
API), over components/ssh.py: kube-bench and its cfg/ (kthw's paths applied: `kthw_config`, `CHECK_PATHS`) are
copied over SFTP into a private directory of the login user's home, moved as root into a fresh root-owned
directory under /opt, run there (`run.sh`: targets master, etcd, controlplane and policies of cis-1.12, --json, a
clean environment and no terminal) and removed, whatever happened. Printed per controller: the PASS, FAIL, WARN
and INFO totals and every FAIL with its id and text (`--json`: the same, structured). WARN are the benchmark's
Manual checks: docs/hardening.md gives kthw's answer to each.

Exit: 0 no FAIL on any controller; 1 a FAIL; 2 a controller could not be checked (unreachable, kube-bench failed:
the report is incomplete), or the stack has no controllers.

kube-bench finds what it audits by process (`ps -C <bin>`, `ps -ef | grep <bin>`) and by path. Its shipped config
knows kubeadm's layout; `kthw_config` gives it kthw's (components/paths.py): units in /etc/systemd/system stand where
kubeadm's static pod manifests stand, kubeconfigs and the PKI in /var/lib/kubernetes and /etc/etcd, etcd's data in
/var/lib/etcd. A few checks of cis-1.12/master.yaml spell kubeadm's paths in their audit (/etc/kubernetes/pki,
admin.conf): `CHECK_PATHS` points them at kthw's files, the same test on the same kind of file. The controllers
run no kubelet: the `node` target is out of scope. tests/test_e2e_cis.py runs the same on a local stack.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))
from components.paths import HOST  # noqa: E402

# The newest CIS Kubernetes Benchmark kube-bench v0.15.6 ships; its version_mapping stops at Kubernetes 1.34, so it
# cannot pick one for 1.36 itself.
BENCHMARK = "cis-1.12"
TARGETS = ("master", "etcd", "controlplane", "policies")
STATUSES = ("PASS", "FAIL", "WARN", "INFO")
CONFIG = "kthw.yaml"  # kthw's config.yaml (the shipped one with kthw's components), beside cfg/
RUN = "run.sh"
# What kube-bench reads its flags from: `ps` lists a stopped component's flags nowhere, and its checks FAIL.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

# Bounds (seconds): kube-bench itself runs under `timeout`; every SSH read, SFTP packet and local command has one.
KUBE_BENCH_SECONDS = 300
SSH_SECONDS = 30  # connect, and each command that is not kube-bench
COPY_SECONDS = 600  # the binary's copy (~55 MB), in all
OUTPUTS_SECONDS = 300  # the stack's outputs through the Automation API

# Directories on the controller: the login user's upload dir (SFTP writes as that user) and root's run dir (what
# runs as root is root's). Matched before any `rm -rf` names them.
UPLOAD = ".kthw-cis-upload"
RUN_DIR = "/opt/kthw-cis"
_UPLOADED = re.compile(rf"^/[A-Za-z0-9._/-]+/{re.escape(UPLOAD)}\.[A-Za-z0-9]{{8}}$")
_RUNS_IN = re.compile(rf"^{re.escape(RUN_DIR)}\.[A-Za-z0-9]{{8}}$")


class ReportError(ValueError):
    """A kube-bench report this module refuses: another benchmark, a duplicate id, totals that do not add up."""


# --- kthw's layout, for kube-bench ------------------------------------------------------------------------------

def _component(bins: list[str], conf: str | None = None, kubeconfig: str | None = None,
               datadir: str | None = None, optional: bool = False) -> dict:
    """One component of kube-bench's config: the process names it looks for and the files it audits."""
    entry: dict = {"bins": bins}
    if optional:
        entry["optional"] = True
    for key, value in (("conf", conf), ("kubeconfig", kubeconfig), ("datadir", datadir)):
        if value:
            entry[{"conf": "confs", "kubeconfig": "kubeconfig", "datadir": "datadirs"}[key]] = [value]
            entry[f"default{key}"] = value
    return entry


APISERVER = _component(["kube-apiserver"], conf=HOST.unit("kube-apiserver"))
# ps -C matches the 15-character process name: kube-controller-manager runs as "kube-controller".
CONTROLLER_MANAGER = _component(["kube-controller-manager", "kube-controller"],
                                conf=HOST.unit("kube-controller-manager"),
                                kubeconfig=f"{HOST.kubernetes}/controller-manager.kubeconfig")
SCHEDULER = _component(["kube-scheduler"], conf=HOST.unit("kube-scheduler"),
                       kubeconfig=f"{HOST.kubernetes}/scheduler.kubeconfig")
ETCD = _component(["etcd"], conf=HOST.unit("etcd"), datadir=HOST.etcd_data)
# No kubelet on a controller: named only so that the CNI checks' $kubeletbin has a value (they find nothing).
KUBELET = _component(["kubelet"], optional=True)


def kthw_config(shipped: dict) -> dict:
    """kube-bench's cfg/config.yaml with kthw's components and paths for the targets in scope."""
    config = copy.deepcopy(shipped)
    config["master"] = {"components": ["apiserver", "scheduler", "controllermanager", "etcd", "kubelet"],
                        "apiserver": APISERVER, "scheduler": SCHEDULER, "controllermanager": CONTROLLER_MANAGER,
                        "etcd": ETCD, "kubelet": KUBELET}
    config["etcd"] = {"components": ["etcd"], "etcd": ETCD}
    config["controlplane"] = {"components": ["apiserver"], "apiserver": APISERVER}
    config["policies"] = {"components": []}
    return config


# Audits of cis-1.12/master.yaml that spell kubeadm's paths: (file, kubeadm's text, kthw's, occurrences). kthw names
# certificates <name>.pem and keys <name>-key.pem (components/pki/table.py); etcd's PKI is /etc/etcd (kubeadm's is
# /etc/kubernetes/pki/etcd, under the directory 1.1.20/1.1.21 search); the admin kubeconfigs are admin.kubeconfig
# and super-admin.kubeconfig beside the other kubeconfigs.
_K8S, _ETCD = HOST.kubernetes, HOST.etcd
CHECK_PATHS: tuple[tuple[str, str, str, int], ...] = (
    ("master.yaml", "for adminconf in /etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf;",
     f"for adminconf in {_K8S}/admin.kubeconfig {_K8S}/super-admin.kubeconfig;", 2),  # 1.1.13, 1.1.14
    ("master.yaml", 'audit: "find /etc/kubernetes/pki/ | xargs stat -c %U:%G"',
     f'audit: "find {_K8S}/ | xargs stat -c %U:%G"', 1),  # 1.1.19
    ("master.yaml", """audit: "find /etc/kubernetes/pki/ -name '*.crt' | xargs stat -c permissions=%a\"""",
     f"""audit: "find {_K8S}/ {_ETCD}/ \\\\( -name '*.pem' -o -name '*.pub' \\\\) ! -name '*-key.pem'"""
     """ | xargs stat -c permissions=%a\"""", 1),  # 1.1.20
    ("master.yaml", """audit: "find /etc/kubernetes/pki/ -name '*.key' | xargs stat -c permissions=%a\"""",
     f"""audit: "find {_K8S}/ {_ETCD}/ -name '*-key.pem' | xargs stat -c permissions=%a\"""", 1),  # 1.1.21
)


def kthw_checks(name: str, text: str) -> str:
    """A benchmark file with CHECK_PATHS applied (each where, and as often as, it is expected: a kube-bench upgrade
    that moves them fails here, not silently)."""
    for file, old, new, count in CHECK_PATHS:
        if file == name:
            if text.count(old) != count:
                raise ReportError(f"{name}: expected {count} x {old!r}, found {text.count(old)}")
            text = text.replace(old, new)
    return text


def run_script() -> str:
    """run.sh, beside kube-bench and cfg/: kube-bench on kthw's config, the JSON report on stdout.

    A script, so that `ps -ef | grep etcd` sees no shell command line naming etcd (kube-bench's own still does,
    through --targets; the etcd checks look for etcd's own flags). A clean environment and no terminal: `ps -ef`
    cuts its lines to $COLUMNS (pytest's children get COLUMNS=80) or a terminal's width, and with them the flags
    kube-bench reads: every flag check FAILs. The 5.1.x audits ask the API with kubectl (`auth can-i --as`): the
    admin kubeconfig is a stack output only, so they use the super-admin's where the host has it (the first
    controller); elsewhere they cannot ask, and WARN (they are Manual)."""
    kubeconfigs = " ".join(f"{HOST.kubernetes}/{name}.kubeconfig" for name in ("admin", "super-admin"))
    return ("#!/bin/sh\n"
            'cd "$(dirname "$0")" || exit 1\n'
            "exec </dev/null\n"
            f'k=; for f in {kubeconfigs}; do [ -e "$f" ] && k=$f && break; done\n'
            'exec env -i HOME=/root LANG=C.UTF-8 KUBECONFIG="$k" '
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
            f"timeout {KUBE_BENCH_SECONDS} ./kube-bench --config-dir cfg --config {CONFIG} run "
            f"--targets {','.join(TARGETS)} --benchmark {BENCHMARK} --json\n")


def bench_files(cfg: Path) -> dict[str, bytes]:
    """What goes beside kube-bench: every file of the shipped cfg/ (under cfg/, CHECK_PATHS applied to the
    benchmark's files), kthw's config (kthw.yaml: `--config` is relative to the working dir) and run.sh; relative
    path -> content."""
    files = {f"cfg/{p.relative_to(cfg)}": p.read_bytes() for p in sorted(cfg.rglob("*")) if p.is_file()}
    for name in sorted({file for file, *_ in CHECK_PATHS}):
        key = f"cfg/{BENCHMARK}/{name}"
        if key not in files:
            raise ReportError(f"{cfg}: no {BENCHMARK}/{name}")
        files[key] = kthw_checks(name, files[key].decode()).encode()
    if "cfg/config.yaml" not in files:
        raise ReportError(f"{cfg}: no config.yaml (is it kube-bench's cfg/?)")
    shipped = yaml.safe_load(files["cfg/config.yaml"])
    files[CONFIG] = yaml.safe_dump(kthw_config(shipped), sort_keys=False).encode()
    files[RUN] = run_script().encode()
    return files


def bench_archive(files: dict[str, bytes]) -> bytes:
    """bench_files as one .tar.gz (one SFTP copy, not hundreds): files 0644, run.sh 0755, owned by root."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755 if name == RUN else 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


# --- the report -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    id: str
    text: str
    status: str  # PASS, FAIL, WARN or INFO
    scored: bool  # the benchmark's "Automated" checks
    target: str  # master, etcd, controlplane, policies
    remediation: str
    actual: str  # what the audit printed


def parse_report(report: dict) -> list[Check]:
    """Every check of kube-bench's --json report, in its order; refuses a report of another benchmark, a duplicate
    id, an unknown status, or totals that do not add up."""
    checks: list[Check] = []
    for control in report["Controls"]:
        if control["version"] != BENCHMARK:
            raise ReportError(f"report of {control['version']}, not {BENCHMARK}")
        for group in control["tests"]:
            for result in group["results"]:
                if result["status"] not in STATUSES:
                    raise ReportError(f"unknown status: {result}")
                checks.append(Check(id=result["test_number"], text=result["test_desc"], status=result["status"],
                                    scored=bool(result["scored"]), target=control["node_type"],
                                    remediation=result["remediation"].strip(),
                                    actual=(result.get("actual_value") or "").strip()))
    ids = [c.id for c in checks]
    if len(ids) != len(set(ids)):
        raise ReportError(f"duplicate check ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    found, stated = totals(checks), report["Totals"]
    for status in STATUSES:
        if stated[f"total_{status.lower()}"] != found[status]:
            raise ReportError(f"{status}: the report's Totals say {stated}, its checks {found}")
    return checks


def totals(checks: list[Check]) -> dict[str, int]:
    """How many checks have each status, every status named (PASS, FAIL, WARN, INFO)."""
    return {s: sum(c.status == s for c in checks) for s in STATUSES}


def findings(checks: list[Check]) -> list[Check]:
    """The FAIL and WARN checks."""
    return [c for c in checks if c.status in ("FAIL", "WARN")]


def listing(checks: list[Check]) -> str:
    """One line per FAIL and WARN check: status, id, target, text."""
    return "\n".join(f"{c.status} {c.id:7} [{c.target}] {c.text}" for c in findings(checks))


# Checks of a file kthw keeps off a host by design: where their audit finds no such file, the concern (that file's
# mode or owner) cannot arise, so they are not applicable there (listed as N/A with this reason, not counted as a
# FAIL). Where the file is there, they are judged as kube-bench judges them.
ABSENT_BY_DESIGN = {
    "1.1.13": "the administrative kubeconfig is on the first controller only (the admin's own is a stack output)",
    "1.1.14": "the administrative kubeconfig is on the first controller only (the admin's own is a stack output)",
}


def not_applicable(check: Check) -> bool:
    """A FAIL of a check whose file kthw keeps off this host by design, and that found no such file."""
    return check.status == "FAIL" and check.id in ABSENT_BY_DESIGN and not check.actual


@dataclass(frozen=True)
class ControllerReport:
    """One controller's outcome: its checks, or why it could not be checked."""
    name: str
    checks: tuple[Check, ...] = ()
    inactive: tuple[str, ...] = ()  # components not running when kube-bench ran (their flag checks FAIL)
    error: Optional[str] = None

    @property
    def totals(self) -> dict[str, int]:
        return totals(list(self.checks))

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL" and not not_applicable(c)]

    @property
    def not_applicable(self) -> list[Check]:
        return [c for c in self.checks if not_applicable(c)]


def exit_status(reports: list[ControllerReport]) -> int:
    """2 when a controller could not be checked (or there are none), else 1 when any check FAILs, else 0."""
    if not reports or any(r.error is not None for r in reports):
        return 2
    return 1 if any(r.failures for r in reports) else 0


NOTHING_FOUND = "(its audit found nothing on this host)"


def totals_line(totals_: dict[str, int]) -> str:
    return ", ".join(f"{s} {totals_[s]}" for s in STATUSES)


def render_text(stack: str, reports: list[ControllerReport]) -> str:
    """The report for people: a line of totals per controller, each FAIL under it, the stack's totals."""
    lines = [f"CIS {BENCHMARK} (kube-bench: {', '.join(TARGETS)}) on stack {stack}:"]
    for r in reports:
        if r.error is not None:
            lines.append(f"{r.name}: not checked: {r.error}")
            continue
        lines.append(f"{r.name}: {totals_line(r.totals)}")
        if r.inactive:
            lines.append(f"  not running: {', '.join(r.inactive)} (kube-bench reads flags from `ps`: "
                         "their checks FAIL)")
        # An audit that printed nothing FAILs (kube-bench finds no value to test): e.g. 1.1.13/1.1.14 on a
        # controller that holds no administrative kubeconfig (docs/hardening.md). Said, not hidden.
        lines += [f"  FAIL {c.id:7} [{c.target}] {c.text}" + ("" if c.actual else f" {NOTHING_FOUND}")
                  for c in r.failures]
        lines += [f"  N/A  {c.id:7} [{c.target}] {c.text} (kube-bench: FAIL; {ABSENT_BY_DESIGN[c.id]})"
                  for c in r.not_applicable]
    checked = [r for r in reports if r.error is None]
    unchecked = len(reports) - len(checked)
    lines.append(f"all {len(checked)} checked: {totals_line(totals([c for r in checked for c in r.checks]))}"
                 + (f"; {unchecked} not checked" if unchecked else ""))
    lines.append("WARN: the benchmark's Manual checks; docs/hardening.md gives kthw's answer to each.")
    return "\n".join(lines) + "\n"


def render_json(stack: str, reports: list[ControllerReport]) -> dict:
    """The report for programs: per controller its totals, its FAILs, what was not running, or its error."""
    checked = [c for r in reports if r.error is None for c in r.checks]
    return {
        "stack": stack, "benchmark": BENCHMARK, "targets": list(TARGETS),
        "controllers": [{"name": r.name, "totals": r.totals if r.error is None else None,
                         "failures": [{"id": c.id, "target": c.target, "text": c.text} for c in r.failures],
                         "notApplicable": [{"id": c.id, "why": ABSENT_BY_DESIGN[c.id]} for c in r.not_applicable],
                         "inactive": list(r.inactive), "error": r.error} for r in reports],
        "totals": totals(checked),
        "exit": exit_status(reports),
    }


# --- on a controller --------------------------------------------------------------------------------------------

@dataclass
class Bench:
    """What is copied to each controller: the kube-bench binary and the archive of bench_files."""
    binary: Path
    archive: bytes
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256()
        with self.binary.open("rb") as binary:
            for block in iter(lambda: binary.read(1 << 20), b""):
                digest.update(block)
        self.sha256 = digest.hexdigest()


def toolchain_bench() -> Bench:
    """The toolchain's kube-bench (`scripts/toolchain/build --print-bin`) and its cfg (../share/kube-bench/cfg)."""
    result = subprocess.run([str(REPO / "scripts/toolchain/build"), "--print-bin"], text=True, capture_output=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"scripts/toolchain/build --print-bin failed: {result.stderr[-2000:]}")
    bin_dir = Path(result.stdout.strip().splitlines()[-1])
    binary, cfg = bin_dir / "kube-bench", bin_dir.parent / "share/kube-bench/cfg"
    if not binary.exists() or not cfg.is_dir():
        raise SystemExit(f"no {binary} or {cfg}: scripts/toolchain/build --only kube-bench")
    return Bench(binary.resolve(), bench_archive(bench_files(cfg)))


def _login_run(client: Any, command: str, timeout: float = SSH_SECONDS) -> str:
    """Run `command` as the login user (what SFTP writes as); its stdout, or RuntimeError."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read(), stderr.read()
    if stdout.channel.recv_exit_status() != 0:
        raise RuntimeError(f"{command!r}: {err.decode(errors='replace')[-1000:]}")
    return out.decode()


def _root_run(client: Any, body: str, timeout: float = SSH_SECONDS) -> str:
    from components import ssh

    status, out, err = ssh.run_as_root(client, body, "cis", timeout)
    if status != 0:
        raise RuntimeError(f"exit {status}: {err.decode(errors='replace')[-2000:]}")
    return out.decode(errors="replace")


def _copy(client: Any, bench: Bench, upload: str) -> None:
    """kube-bench and the archive into `upload` over SFTP, each packet bounded, the whole copy too."""
    sftp = client.open_sftp()
    try:
        sftp.get_channel().settimeout(SSH_SECONDS)
        end = time.monotonic() + COPY_SECONDS

        def in_time(_sent: int, _total: int) -> None:
            if time.monotonic() > end:
                raise TimeoutError(f"copying kube-bench took more than {COPY_SECONDS} s")
        sftp.put(str(bench.binary), f"{upload}/kube-bench", callback=in_time)
        sftp.putfo(io.BytesIO(bench.archive), f"{upload}/bench.tar.gz", callback=in_time)
    finally:
        sftp.close()


def run_on(client: Any, bench: Bench) -> tuple[dict, tuple[str, ...]]:
    """kube-bench on one controller: (its JSON report, the components that were not running). What it copied is
    removed whatever happens; a failed removal is an error naming what is left."""
    from components import ssh

    upload = run_dir = None
    done = False
    try:
        upload = _login_run(client, f'cd && mktemp -d "$PWD/{UPLOAD}.XXXXXXXX"').strip()
        if not _UPLOADED.match(upload):
            raise RuntimeError(f"unexpected upload dir {upload!r}")
        _copy(client, bench, upload)
        run_dir = _root_run(client, f"mktemp -d {RUN_DIR}.XXXXXXXX").strip()
        if not _RUNS_IN.match(run_dir):
            raise RuntimeError(f"unexpected run dir {run_dir!r}")
        out = _root_run(client, "\n".join([
            "set -eu",
            f"up={shlex.quote(upload)} d={run_dir}",
            'install -m 0700 "$up/kube-bench" "$d/kube-bench"',
            'tar -xzf "$up/bench.tar.gz" -C "$d" --no-same-owner',
            'rm -rf -- "$up"',
            'sha256sum "$d/kube-bench" | cut -d" " -f1',
            f"systemctl is-active {' '.join(COMPONENTS)} || true"])).split()
        upload = None  # removed with the move
        if len(out) != 1 + len(COMPONENTS):
            raise RuntimeError(f"unexpected answer from the controller: {out!r}")
        if out[0] != bench.sha256:
            raise RuntimeError(f"kube-bench's copy has sha256 {out[0]}, not {bench.sha256}")
        inactive = tuple(name for name, state in zip(COMPONENTS, out[1:]) if state != "active")
        # `exec`: the shell that starts it is gone before kube-bench lists the processes.
        status, stdout, stderr = ssh.run_as_root(client, f"exec {run_dir}/{RUN}", "cis", KUBE_BENCH_SECONDS + 60)
        try:
            report = json.loads(stdout)
        except ValueError:
            raise RuntimeError(f"kube-bench printed no JSON (exit {status}): "
                               f"{stdout.decode(errors='replace')[-500:]}{stderr.decode(errors='replace')[-1500:]}"
                               ) from None
        done = True
        return report, inactive
    finally:
        left = [p for p in (upload, run_dir) if p]
        if left:
            try:
                _root_run(client, "rm -rf -- " + " ".join(shlex.quote(p) for p in left))
            except Exception as err:  # noqa: BLE001 - name what is left; an earlier error stays the one raised
                if done:
                    raise RuntimeError(f"could not remove {', '.join(left)}: {err}") from err
                print(f"cis-report: could not remove {', '.join(left)}: {err}", file=sys.stderr)


def check_controller(name: str, connect: Callable[[], Any], bench: Bench) -> ControllerReport:
    """One controller's report; any error (SSH, kube-bench, an unreadable report) is its `error`."""
    try:
        client = connect()
    except Exception as err:  # noqa: BLE001 - the next controller is checked all the same
        return ControllerReport(name, error=f"SSH: {err}")
    try:
        report, inactive = run_on(client, bench)
        return ControllerReport(name, tuple(parse_report(report)), inactive)
    except Exception as err:  # noqa: BLE001
        return ControllerReport(name, error=f"{type(err).__name__}: {err}")
    finally:
        client.close()


def check_stack(outputs: dict, bench: Bench, connect: Optional[Callable[..., Any]] = None) -> list[ControllerReport]:
    """A report for every controller in the stack's outputs, one after the other."""
    if connect is None:
        from components import ssh
        connect = ssh.client
    keys = outputs.get("sshPrivateKeys") or {}
    reports = []
    for c in outputs.get("controllers") or []:
        print(f"cis-report: {c['name']} ...", file=sys.stderr, flush=True)
        if c["name"] not in keys:
            reports.append(ControllerReport(c["name"], error="no SSH key in the stack's outputs"))
            continue
        reports.append(check_controller(c["name"], lambda c=c: connect(
            c["sshHost"], c.get("sshPort", 22), c["sshUser"], keys[c["name"]], timeout=SSH_SECONDS,
            host_key=c.get("sshHostKey"), name=c["name"]), bench))
    return reports


@contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """TimeoutError when the block runs longer than `seconds` (the Automation API's commands have no bound)."""
    def expired(*_: Any) -> None:
        raise TimeoutError(f"{what} took more than {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="cis-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default=os.environ.get("PULUMI_STACK", "local"))
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    import operate
    import stacks
    from pulumi import automation as auto

    try:
        bench = toolchain_bench()
        with deadline(OUTPUTS_SECONDS, "reading the stack's outputs"):
            outputs = operate.outputs(stacks.select(args.stack))
    except (auto.CommandError, auto.StackNotFoundError, ReportError, TimeoutError, OSError,
            subprocess.TimeoutExpired, SystemExit) as error:
        # SystemExit: scripts/pulumi's defaults or the toolchain's kube-bench could not be had (its own words)
        print(f"cis-report: stack {args.stack}: {str(error.code if isinstance(error, SystemExit) else error)[-2000:]}",
              file=sys.stderr)
        return 2
    if not outputs.get("controllers"):
        print(f"cis-report: stack {args.stack} has no controllers (is it up?)", file=sys.stderr)
        return 2
    reports = check_stack(outputs, bench)
    if args.json:
        print(json.dumps(render_json(args.stack, reports), indent=2))
    else:
        print(render_text(args.stack, reports), end="")
    return exit_status(reports)


if __name__ == "__main__":
    sys.exit(main())
