"""The CIS Kubernetes Benchmark on a controller: kube-bench (the toolchain's) runs inside a one-controller local
stack and its JSON report is read check by check; scripts/cis-report then runs on the same stack and must print
the same totals.

kube-bench's config for kthw's layout (`kthw_config`, `CHECK_PATHS`), the report's parser and its totals live in
scripts/cis.py, which scripts/cis-report runs on every controller of a stack (its docstring says how kube-bench is
pointed at kthw's paths). The controllers run no kubelet: the `node` target is out of scope.

Every FAIL must be in EXPECTED_FAILURES (why it fails today, what fixes it); an expected failure that no longer
fails is an error too, so the table stays true. The parser is tested on a real report (tests/data: the run of
2026-11-29, the templates of commit e200eee; re-record with KTHW_CIS_REPORT=<file>).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from components.paths import HOST

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from cis import (BENCHMARK, RUN, RUN_DIR, STATUSES, TARGETS, UPLOAD, Check, ReportError, bench_files,  # noqa: E402
                 findings, kthw_checks, listing, parse_report, totals)

DATA = ROOT / "tests" / "data" / "kube-bench-cis-1.12.json"
NODE_CIDR = "198.18.0.32/27"  # the checksums suite's subnet: the suites run one after the other
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


# --- the report against the table ----------------------------------------------------------------------------------

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
    with pytest.raises(ReportError, match="not cis-1.12"):
        parse_report(other)
    wrong = copy.deepcopy(recorded)
    wrong["Totals"]["total_fail"] += 1
    with pytest.raises(ReportError, match="FAIL"):
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
    """kube-bench, its cfg/ (CHECK_PATHS applied), kthw's config and run.sh (scripts/cis.py's `bench_files`, as
    scripts/cis-report copies them) into controller-0 through its root directory."""
    root = stack.layout().hosts[0].dir / "root"
    dest = root / BENCH_DIR.lstrip("/")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2((toolchain / "bin/kube-bench").resolve(), dest / "kube-bench")
    for name, data in bench_files(toolchain / "share/kube-bench/cfg").items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)
    (dest / RUN).chmod(0o755)


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
    result = stack.host(0, f"{BENCH_DIR}/{RUN}", timeout=360, check=False)
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"kube-bench printed no JSON (exit {result.returncode}): "
                             f"{result.stdout[-2000:]}{result.stderr[-3000:]}") from None


def run_cis_report(stack, *extra: str) -> subprocess.CompletedProcess:
    label, start = " ".join(("cis-report", *extra)), time.monotonic()
    result = subprocess.run([str(stack.script("cis-report")), "--stack", stack.name, *extra], env=stack.env,
                            text=True, capture_output=True, timeout=900, stdin=subprocess.DEVNULL)
    stack.timings[label] = round(time.monotonic() - start, 1)
    stack.logs[f"{len(stack.logs)}: {label}"] = result.stdout + result.stderr
    return result


def check_cis_report(stack, checks: list[Check]) -> None:
    """scripts/cis-report on the stack (over SSH, as a user runs it) prints the totals the test's own run parsed,
    exits 0 without a FAIL (1 with one), lists every FAIL, says the same with --json, and leaves nothing behind."""
    expected = totals(checks)
    failures = [c for c in checks if c.status == "FAIL"]
    for extra in ((), ("--json",)):
        result = run_cis_report(stack, *extra)
        assert result.returncode == (1 if failures else 0), f"{result.stdout}{result.stderr[-3000:]}"
        assert secret_shaped(result.stdout + result.stderr) == []
        if extra:
            (controller,) = json.loads(result.stdout)["controllers"]
            assert controller == {"name": "controller-0", "totals": expected, "inactive": [], "error": None,
                                  "notApplicable": [],
                                  "failures": [{"id": c.id, "target": c.target, "text": c.text} for c in failures]}
        else:
            lines = result.stdout.splitlines()
            line = (f"controller-0: PASS {expected['PASS']}, FAIL {expected['FAIL']}, WARN {expected['WARN']}, "
                    f"INFO {expected['INFO']}")
            assert line in lines, result.stdout
            assert [l.split()[1] for l in lines if l.startswith("  FAIL ")] == [c.id for c in failures], lines
        label = " ".join(("cis-report", *extra))
        print(f"[scripts/{label}: exit {result.returncode}, {stack.timings[label]} s]\n{result.stdout}")
    left = stack.host(0, f"ls -d {RUN_DIR}.* /home/*/{UPLOAD}.* /root/{UPLOAD}.* 2>/dev/null || true").stdout
    assert left == "", f"cis-report left {left}"


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
        check_cis_report(stack, checks)
    finally:
        stack.cleanup()
