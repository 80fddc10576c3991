"""The CIS Kubernetes Benchmark on a controller: kube-bench (the toolchain's) runs inside a one-controller local
stack and its JSON report is read check by check.

kube-bench finds what it audits by process (`ps -C <bin>`, `ps -ef | grep <bin>`) and by path. Its shipped
config knows kubeadm's layout; kthw_config() gives it kthw's (components/paths.py): units in
/etc/systemd/system stand where kubeadm's static pod manifests stand, kubeconfigs and the PKI in
/var/lib/kubernetes and /etc/etcd, etcd's data in /var/lib/etcd. A few checks of cis-1.12/master.yaml spell
kubeadm's paths in their audit (/etc/kubernetes/pki, admin.conf): CHECK_PATHS points them at kthw's files, the
same test on the same kind of file. The controllers run no kubelet: the `node` target is out of scope.

Every FAIL must be in EXPECTED_FAILURES (why it fails today, what fixes it); an expected failure that no longer
fails is an error too, so the table stays true. The parser is tested on a real report (tests/data: the run of
2026-11-29, the templates of commit e200eee; re-record with KTHW_CIS_REPORT=<file>).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from components.paths import HOST

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "kube-bench-cis-1.12.json"
NODE_CIDR = "198.18.0.32/27"  # the checksums suite's subnet: the suites run one after the other
# The newest CIS Kubernetes Benchmark kube-bench v0.15.6 ships; its version_mapping stops at Kubernetes 1.34, so it
# cannot pick one for 1.36 itself.
BENCHMARK = "cis-1.12"
TARGETS = ("master", "etcd", "controlplane", "policies")
STATUSES = ("PASS", "FAIL", "WARN", "INFO")
BENCH_DIR = "/opt/kube-bench"  # where the test puts kube-bench on the controller

# Every FAIL of the real run: check id -> (why it fails today, what fixes it). Keep it true: a new FAIL fails the
# test, and so does an entry that no longer fails (remove it with the fix). docs/hardening.md has the full table.
# Fixed since the recorded run: 1.1.1/1.1.3/1.1.5/1.1.7 (units 0600), 1.1.12 (etcd's own user), 1.2.18
# (--audit-log-maxbackup=10), 1.2.30 (--service-account-extend-token-expiration=false).
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {}

# Which secure ports serve /debug/pprof/ to the admin. kube-bench's profiling checks (1.2.15, 1.3.2, 1.4.1) read
# the --profiling flag only; the port says what the component does. Kept true like EXPECTED_FAILURES.
SECURE_PORTS = {"kube-apiserver": 6443, "kube-controller-manager": 10257, "kube-scheduler": 10259}
PROFILING_SERVED = {
    "kube-apiserver": False,
    "kube-controller-manager": False,
    # With --config the scheduler ignores --profiling: kube-scheduler.yaml.j2 says `enableProfiling: false`.
    "kube-scheduler": False,
}


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
            assert text.count(old) == count, f"{name}: expected {count} x {old!r}, found {text.count(old)}"
            text = text.replace(old, new)
    return text


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
        assert control["version"] == BENCHMARK, f"report of {control['version']}, not {BENCHMARK}"
        for group in control["tests"]:
            for result in group["results"]:
                assert result["status"] in STATUSES, result
                checks.append(Check(id=result["test_number"], text=result["test_desc"], status=result["status"],
                                    scored=bool(result["scored"]), target=control["node_type"],
                                    remediation=result["remediation"].strip(),
                                    actual=(result.get("actual_value") or "").strip()))
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids)), f"duplicate check ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    totals = report["Totals"]
    for status in STATUSES:
        assert totals[f"total_{status.lower()}"] == sum(c.status == status for c in checks), (status, totals)
    return checks


def findings(checks: list[Check]) -> list[Check]:
    """The FAIL and WARN checks."""
    return [c for c in checks if c.status in ("FAIL", "WARN")]


def problems(checks: list[Check], expected: dict[str, tuple[str, str]]) -> list[str]:
    """What differs from the table: a FAIL it does not list, an entry that does not fail (or is not in the report)."""
    by_id = {c.id: c for c in checks}
    out = [f"new FAIL {c.id} [{c.target}] {c.text}: {c.actual[:300]!r}"
           for c in checks if c.status == "FAIL" and c.id not in expected]
    for check_id, (why, _) in expected.items():
        if check_id not in by_id:
            out.append(f"EXPECTED_FAILURES lists {check_id}, which the report does not have")
        elif by_id[check_id].status != "FAIL":
            out.append(f"{check_id} ({why}) is now {by_id[check_id].status}: remove it from EXPECTED_FAILURES")
    return out


def listing(checks: list[Check]) -> str:
    """One line per FAIL and WARN check: status, id, target, text."""
    return "\n".join(f"{c.status} {c.id:7} [{c.target}] {c.text}" for c in findings(checks))


# --- unit tests of the parser, on a real report --------------------------------------------------------------------

# What the recording holds (fixed: the recording does not change when the templates do).
RECORDED = {"PASS": 54, "FAIL": 7, "WARN": 45, "INFO": 0}
RECORDED_FAILURES = {"1.1.1", "1.1.3", "1.1.5", "1.1.7", "1.1.12", "1.2.18", "1.2.30"}
RECORDED_TABLE = {check_id: ("recorded", "-") for check_id in RECORDED_FAILURES}


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(DATA.read_text())


def test_parser_reads_every_check_of_the_recorded_report(recorded):
    checks = parse_report(recorded)
    assert {s: sum(c.status == s for c in checks) for s in STATUSES} == RECORDED
    assert {c.id for c in checks if c.status == "FAIL"} == RECORDED_FAILURES
    assert {c.target for c in checks} == set(TARGETS)
    assert [c.id for c in checks if c.target == "etcd"] == [f"2.{i}" for i in range(1, 8)]
    by_id = {c.id: c for c in checks}
    assert by_id["1.2.16"].text.startswith("Ensure that the --audit-log-path argument is set")
    assert by_id["1.2.16"].status == "PASS" and "--audit-log-path=" in by_id["1.2.16"].actual
    assert by_id["1.2.16"].scored and not by_id["1.2.20"].scored  # Automated vs Manual
    assert {c.status for c in findings(checks)} <= {"FAIL", "WARN"}
    assert listing(checks).count("\n") == len(findings(checks)) - 1


def test_a_new_fail_and_a_fixed_failure_are_both_reported(recorded):
    checks = parse_report(recorded)
    assert problems(checks, RECORDED_TABLE) == []
    passing = next(c for c in checks if c.status == "PASS")
    broken = [replace(c, status="FAIL") if c is passing else c for c in checks]
    assert problems(broken, RECORDED_TABLE) == [
        f"new FAIL {passing.id} [{passing.target}] {passing.text}: {passing.actual[:300]!r}"]
    for now in ("PASS", "WARN"):
        fixed = [replace(c, status=now) if c.id == "1.2.18" else c for c in checks]
        assert problems(fixed, RECORDED_TABLE) == [
            f"1.2.18 (recorded) is now {now}: remove it from EXPECTED_FAILURES"]
    assert problems(checks, {**RECORDED_TABLE, "9.9.9": ("x", "y")}) == [
        "EXPECTED_FAILURES lists 9.9.9, which the report does not have"]
    assert problems(checks, {}) == [f"new FAIL {c.id} [{c.target}] {c.text}: {c.actual[:300]!r}"
                                    for c in checks if c.status == "FAIL"]


def test_the_recording_holds_nothing_secret():
    assert secret_shaped(DATA.read_text()) == []
    assert secret_shaped('{"x": "-----BEGIN EC PRIVATE KEY-----"}') == ["-----BEGIN", "PRIVATE KEY-----"]


def test_parser_refuses_another_benchmark_and_wrong_totals(recorded):
    other = copy.deepcopy(recorded)
    other["Controls"][0]["version"] = "cis-1.10"
    with pytest.raises(AssertionError, match="not cis-1.12"):
        parse_report(other)
    wrong = copy.deepcopy(recorded)
    wrong["Totals"]["total_fail"] += 1
    with pytest.raises(AssertionError, match="FAIL"):
        parse_report(wrong)


def test_the_shipped_checks_take_kthws_paths():
    """CHECK_PATHS applies to the toolchain's cis-1.12/master.yaml as written (also checked on every e2e run)."""
    from e2e_lib import CACHE

    master = CACHE / "toolchain/share/kube-bench/cfg" / BENCHMARK / "master.yaml"
    if not master.exists():
        pytest.skip(f"{master} not built (scripts/toolchain/build --only kube-bench)")
    text = kthw_checks("master.yaml", master.read_text())
    assert "/etc/kubernetes/pki" not in "\n".join(l for l in text.splitlines() if "audit:" in l)
    assert f"find {HOST.kubernetes}/ {HOST.etcd}/ -name '*-key.pem'" in text
    yaml.safe_load(text)


# --- end to end ---------------------------------------------------------------------------------------------------

def install_kube_bench(stack, toolchain: Path) -> None:
    """kube-bench, its cfg/ (CHECK_PATHS applied) and kthw's config, into controller-0 through its root directory."""
    root = stack.layout().hosts[0].dir / "root"
    dest = root / BENCH_DIR.lstrip("/")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2((toolchain / "bin/kube-bench").resolve(), dest / "kube-bench")
    shutil.copytree(toolchain / "share/kube-bench/cfg", dest / "cfg")
    bench = dest / "cfg" / BENCHMARK
    for name in {file for file, *_ in CHECK_PATHS}:
        (bench / name).write_text(kthw_checks(name, (bench / name).read_text()))
    shipped = yaml.safe_load((dest / "cfg/config.yaml").read_text())
    (dest / "kthw.yaml").write_text(yaml.safe_dump(kthw_config(shipped), sort_keys=False))
    # A script, so that `ps -ef | grep etcd` sees no shell command line naming etcd (kube-bench's own still does,
    # through --targets; the etcd checks look for etcd's own flags). A clean environment and no terminal: `ps -ef`
    # cuts its lines to $COLUMNS (pytest's children get COLUMNS=80 here) or a terminal's width, and with them the
    # flags kube-bench reads: every flag check FAILs.
    (dest / "run.sh").write_text(
        "#!/bin/sh\n"
        f"cd {BENCH_DIR}\n"
        "exec </dev/null\n"
        f"exec env -i HOME=/root LANG=C.UTF-8 KUBECONFIG={HOST.kubernetes}/admin.kubeconfig "
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
        f"timeout 300 ./kube-bench --config-dir cfg --config kthw.yaml run --targets {','.join(TARGETS)} "
        f"--benchmark {BENCHMARK} --json\n")
    (dest / "run.sh").chmod(0o755)


def profiling_served(stack) -> dict[str, bool]:
    """Ask each secure port for /debug/pprof/ with the admin's client certificate (written to a private temp dir on
    the host, removed after): 200 means profiling is on, 404 off."""
    kubeconfigs = " ".join(f"{HOST.kubernetes}/{name}.kubeconfig" for name in ("admin", "super-admin"))
    probe = "\n".join([
        "set -eu", 'd=$(mktemp -d); trap \'rm -rf "$d"\' EXIT',
        f'k=""; for f in {kubeconfigs}; do [ -e "$f" ] && k=$f && break; done',
        '[ -n "$k" ] || { echo "no admin kubeconfig on the host" >&2; exit 1; }',
        'sed -n "s/^ *client-certificate-data: //p" "$k" | base64 -d >"$d/cert.pem"',
        'sed -n "s/^ *client-key-data: //p" "$k" | base64 -d >"$d/key.pem"',
        *(f'echo "{name} $(curl -sk --max-time 5 --cert "$d/cert.pem" --key "$d/key.pem" -o /dev/null '
          f'-w "%{{http_code}}" https://127.0.0.1:{port}/debug/pprof/)"' for name, port in SECURE_PORTS.items())])
    out = stack.host(0, probe, timeout=60).stdout.split()
    codes = dict(zip(out[::2], out[1::2]))
    assert set(codes) == set(SECURE_PORTS) and set(codes.values()) <= {"200", "404"}, codes
    return {name: code == "200" for name, code in codes.items()}


def secret_shaped(text: str) -> list[str]:
    """Anything in a report that looks like key material (there should be none: it holds flags, modes, owners)."""
    markers = ("-----BEGIN", "PRIVATE KEY-----", "client-key-data", "secret: ")
    return [m for m in markers if m in text]


COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def wait_for_components(stack, seconds: int = 120) -> None:
    """kube-bench reads the components' flags from `ps`: every one must be running (bounded wait)."""
    units = " ".join(COMPONENTS)
    result = stack.host(0, f"end=$((SECONDS + {seconds})); until systemctl is-active --quiet {units}; do "
                           f"((SECONDS < end)) || break; sleep 2; done; systemctl is-active {units}; "
                           "ps -eo pid,etime,args --no-headers | cut -c1-160", timeout=seconds + 30, check=False)
    states = result.stdout.split()[:len(COMPONENTS)]
    assert states == ["active"] * len(COMPONENTS), f"{dict(zip(COMPONENTS, states))}\n{result.stdout}{result.stderr}"


def run_kube_bench(stack) -> dict:
    result = stack.host(0, f"{BENCH_DIR}/run.sh", timeout=360, check=False)
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"kube-bench printed no JSON (exit {result.returncode}): "
                             f"{result.stdout[-2000:]}{result.stderr[-3000:]}") from None


@pytest.mark.e2e
def test_cis_benchmark_on_a_controller():
    from e2e_lib import TOOLCHAIN_BIN, new_stack

    toolchain = TOOLCHAIN_BIN.parent
    if not (toolchain / "bin/kube-bench").exists():
        message = "kube-bench is not built (scripts/toolchain/build --only kube-bench)"
        if os.environ.get("KTHW_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(message)
        pytest.skip(message)
    stack = new_stack("cis", NODE_CIDR, controllers=1)
    try:
        stack.up(label="up")
        install_kube_bench(stack, toolchain)
        wait_for_components(stack)
        report = run_kube_bench(stack)
        text = json.dumps(report, indent=1) + "\n"
        assert secret_shaped(text) == []
        if os.environ.get("KTHW_CIS_REPORT"):  # to re-record tests/data/kube-bench-cis-1.12.json
            Path(os.environ["KTHW_CIS_REPORT"]).write_text(text)
        checks = parse_report(report)
        assert {c.target for c in checks} == set(TARGETS)
        print(f"\n[CIS {BENCHMARK} on controller-0: "
              + ", ".join(f"{s} {sum(c.status == s for c in checks)}" for s in STATUSES) + "]\n" + listing(checks))
        assert problems(checks, EXPECTED_FAILURES) == [], listing(checks)
        assert profiling_served(stack) == PROFILING_SERVED
    finally:
        stack.cleanup()
