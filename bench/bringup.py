"""Benchmark a real bring-up on the local stack; prints a table and writes JSON (not a test).

Usage: .venv/bin/python bench/bringup.py [--out bench/results] [--quick] [--controllers 3,5,7]
Measures, in one run: `pulumi up` to a working API (first up of a new stack, then again after a destroy with
every cache warm), a no-op up (time and change count), destroy, the same up with controllerCount=1 (ratio of
3 controllers to 1, goal <= 1.5) and with `--parallel 1` (speedup of the default over it, goal >= 2),
program evaluation under mocks at 3, 5 and 7 controllers, and the unit test suite's time. The first up's
engine events (`up --json`) are rendered into a timeline (bench/timeline.py). --quick skips the --parallel 1 run.

--controllers 3,5,7 (the scaling mode) measures instead, at each count in turn, on a new stack: `pulumi up` to a
working API, a no-op up (its change summary is the engine's summary event of `up --json`, read through the
Automation API's event types), destroy and (unless --quick) `up --parallel 1`; then one 1-controller up. It prints
each figure per count and its ratio to the first count's, all measured in this run, writes bench/results/
scaling.json and a timeline per count (timeline-c<N>.png/.html/.txt).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT / "scripts")]

import stacks  # noqa: E402
import timeline  # noqa: E402
from e2e_lib import CHANGING, LocalStack, toolchain_ready  # noqa: E402
from pulumi import automation as auto  # noqa: E402

NODE_CIDR = "198.18.0.128/25"
CORES = os.cpu_count() or 1


def timed(fn) -> tuple[float, object]:
    start = time.monotonic()
    result = fn()
    return round(time.monotonic() - start, 1), result


def busy_seconds(proc_stat: str) -> float:
    """The machine's CPU time spent busy (every state but idle and iowait, all CPUs) from /proc/stat's text."""
    fields = next(line for line in proc_stat.splitlines() if line.startswith("cpu ")).split()[1:]
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal (guest is in user)
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cpu_timed(fn) -> tuple[float, float, object]:
    """fn() timed: (wall seconds, CPU seconds the whole machine spent busy meanwhile, result). On this machine,
    where nothing else runs, CPU seconds / cores is the least wall time the same work could take."""
    before = busy_seconds(Path("/proc/stat").read_text())
    wall, result = timed(fn)
    return wall, round(busy_seconds(Path("/proc/stat").read_text()) - before, 1), result


def bring_up(name: str, workdir: Path, count: int, *extra: str, event_log: Path | None = None,
             started: list[LocalStack] | None = None) -> LocalStack:
    """A new stack of `count` controllers, up and answering /readyz; appended to `started` before its up, so
    that a caller can take down whatever a failed run left."""
    stack = LocalStack(name, workdir / name, {"cloud": "local", "nodeCidr": NODE_CIDR, "controllerCount": str(count)})
    if started is not None:
        started.append(stack)
    stack.init()
    # `up --json` streams the engine's events as JSON lines (this CLI has no --event-log flag).
    _, stack.timings["up_cpu"], result = cpu_timed(lambda: stack.up(*extra, *(["--json"] if event_log else []),
                                                                    label="up"))
    if event_log:
        # Without the SDK's debug diagnostics: they print registered outputs, secrets included, in plaintext.
        events = [line for line in result.stdout.splitlines() if '"severity":"debug"' not in line]
        event_log.write_text("\n".join(events) + "\n")
        event_log.chmod(0o600)
    stack.kubectl("get", "--raw", "/readyz")
    return stack


def engine_summary(stdout: str) -> stacks.PreviewEvents:
    """What an `up --json` did, in the engine's own words: its events read as the Automation API reads them
    (`stacks.PreviewEvents`: the changed steps by name, the summary event's count per operation). No summary
    event, or one of a failed or preview run, is an error, never "no changes"."""
    seen = stacks.PreviewEvents()
    summaries = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            raw = json.loads(line)
            seen.add(auto.EngineEvent.from_json(raw))
            if "summaryEvent" in raw:
                summaries.append(raw["summaryEvent"])  # the SDK's SummaryEvent drops isPreview and result
    if len(summaries) != 1:
        raise AssertionError(f"expected one summary event in the engine's events, found {len(summaries)}")
    preview, result = summaries[0].get("isPreview"), summaries[0].get("result")
    if preview is not False or result != "succeeded":
        raise AssertionError(f"the run was not a succeeded update: preview={preview}, result={result}")
    return seen


def count_logins(journal_json: str) -> int:
    """The SSH logins in `journalctl -o json` output of sshd: its "Accepted publickey for ..." messages."""
    return sum(1 for line in journal_json.splitlines() if line.startswith("{")
               and json.loads(line).get("MESSAGE", "").startswith("Accepted publickey for "))


def logins_per_host(stack: LocalStack, count: int, since: int) -> list[int]:
    """How many SSH logins each controller's sshd accepted since `since` (whole epoch seconds); read through
    the host's namespaces (stack.host: nsenter), not over SSH, so the reading is not counted."""
    return [count_logins(stack.host(i, f"journalctl -o json -t sshd -t sshd-session --no-pager --since @{since}"
                                       ).stdout) for i in range(count)]


def sessions_of(stack: LocalStack, count: int, run) -> tuple[float, float, object, list[int]]:
    """`run()` timed (started on a whole second, so that nothing before it is counted): its wall and CPU seconds
    (cpu_timed), its result and the SSH logins it made on each controller."""
    since = int(time.time()) + 1
    time.sleep(max(0.0, since - time.time()))
    seconds, cpu, result = cpu_timed(run)
    time.sleep(1)  # journald's clock granularity and flush: the last login is written
    return seconds, cpu, result, logins_per_host(stack, count, since)


# The scaling mode's figures, in the order printed: key, label, whether a ratio to the first count means growth.
SCALING_FIGURES = (
    ("up_s", "`pulumi up` to a working API (s)", True),
    ("up_cpu_s", "  CPU seconds the machine spent on it", True),
    ("up_floor_s", "  those / cores: its least wall time (s)", True),
    ("critical_path_s", "  first start to last end (timeline, s)", True),
    ("noop_up_s", "no-op `pulumi up` (s)", True),
    ("noop_up_cpu_s", "  CPU seconds the machine spent on it", True),
    ("noop_up_changes", "  its changes (engine summary)", False),
    ("noop_up_same", "  its unchanged resources", True),
    ("noop_up_ssh_per_host", "  its SSH logins per controller (most)", False),
    ("preview_ssh_per_host", "`pulumi preview` (refresh): SSH logins per controller (most)", False),
    ("noop_up_again_s", "the next no-op `pulumi up` (s)", True),
    ("noop_up_again_changes", "  its changes (engine summary)", False),
    ("destroy_s", "`pulumi destroy` (s)", True),
    ("up_parallel_1_s", "`pulumi up --parallel 1` (s)", True),
    ("speedup_default_over_parallel_1", "  speedup of the default over it", False),
    ("ratio_to_1_controller", "`pulumi up` : its 1-controller time", False),
)


def scaling_table(figures: dict[int, dict[str, float]]) -> str:
    """One row per figure, one column per controller count, then each count's ratio to the first count's value
    (the growth, measured in one run); a figure not measured shows '-'."""
    counts = sorted(figures)
    base = counts[0]
    head = f"{'measure':42}" + "".join(f"{f'{n} ctl':>9}" for n in counts)
    head += "".join(f"{f'{n}:{base}':>8}" for n in counts[1:])
    lines = [head]
    for key, label, grows in SCALING_FIGURES:
        values = [figures[n].get(key) for n in counts]
        if all(v is None for v in values):
            continue
        row = f"{label:42}" + "".join(f"{'-' if v is None else v:>9}" for v in values)
        for v in values[1:]:
            first = values[0]
            row += f"{round(v / first, 2) if grows and v is not None and first else '':>8}"
        lines.append(row)
    return "\n".join(lines)


def scaling(args: argparse.Namespace, workdir: Path) -> dict:
    """The scaling mode: the same figures at each of args.controllers, then a 1-controller up (module doc)."""
    figures: dict[int, dict[str, float]] = {}
    changed: dict[int, list[str]] = {}
    live: list[LocalStack] = []

    def destroy(stack: LocalStack) -> float:
        seconds, _ = timed(lambda: stack.pulumi("destroy", "--yes", "--skip-preview"))
        stack.destroyed = True
        return seconds

    try:
        for n in args.controllers:
            events = args.out / f"up-events-c{n}.jsonl"
            events.unlink(missing_ok=True)
            stack = bring_up(f"benchc{n}", workdir, n, event_log=events, started=live)
            f = figures[n] = {"up_s": stack.timings["up"], "up_cpu_s": stack.timings["up_cpu"],
                              "up_floor_s": round(stack.timings["up_cpu"] / CORES, 1)}
            state = args.out / f"up-state-c{n}.json"
            state.write_text(stack.pulumi("stack", "export", timeout=120).stdout)
            drawn = timeline.render(events, state, args.out / f"timeline-c{n}")
            f["critical_path_s"] = round(drawn["seconds"], 1)
            # The no-op up's events stay in memory: the SDK's debug events in them print secrets in plaintext.
            f["noop_up_s"], f["noop_up_cpu_s"], result, logins = sessions_of(stack, n, lambda: stack.up("--json"))
            f["noop_up_ssh_per_host"] = max(logins)
            _, _, _, logins = sessions_of(stack, n, lambda: stack.pulumi("preview", "--json", timeout=600))
            f["preview_ssh_per_host"] = max(logins)
            # The loop as users repeat it: the first refresh after a bring-up read every file's digest, the next
            # ones read only what changed (components/drift.py).
            f["noop_up_again_s"], again = timed(lambda: stack.up("--json"))
            f["noop_up_again_changes"] = sum(engine_summary(again.stdout).summary.get(k, 0) for k in CHANGING)
            seen = engine_summary(result.stdout)
            f["noop_up_changes"] = sum(seen.summary.get(k, 0) for k in CHANGING)
            f["noop_up_same"] = seen.summary.get("same", 0)
            changed[n] = [line for change in seen.changes for line in change.lines()]
            f["destroy_s"] = destroy(stack)
            if not args.quick:
                serial = bring_up(f"benchc{n}p1", workdir, n, "--parallel", "1", started=live)
                f["up_parallel_1_s"] = serial.timings["up"]
                f["speedup_default_over_parallel_1"] = round(f["up_parallel_1_s"] / f["up_s"], 2)
                destroy(serial)
        single = bring_up("benchc1", workdir, 1, started=live)
        destroy(single)
        for n in args.controllers:
            figures[n]["ratio_to_1_controller"] = round(figures[n]["up_s"] / single.timings["up"], 2)
    finally:
        for stack in live:
            if not stack.destroyed:
                stack.cleanup()
    return {"controllers": args.controllers, "up_1_controller_s": single.timings["up"], "figures": figures,
            "noop_up_changed": changed}


def controller_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",")]
    if any(n < 1 or n > 7 or n % 2 == 0 for n in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError("controller counts are distinct odd numbers from 1 to 7, e.g. 3,5,7")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--controllers", type=controller_counts,
                        help="the scaling mode: the same figures at each count, e.g. 3,5,7")
    args = parser.parse_args()
    reason = toolchain_ready()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kthw-bench-", dir="/tmp"))
    if args.controllers:
        try:
            results = scaling(args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # every stack of it was destroyed (or taken down)
        (args.out / "scaling.json").write_text(json.dumps(results, indent=2))
        print(scaling_table(results["figures"]))
        print(f"1 controller: `pulumi up` {results['up_1_controller_s']} s")
        for n, lines in results["noop_up_changed"].items():
            for line in lines:
                print(f"no-op up at {n} controllers changed: {line}")
        print("timelines: " + ", ".join(str(args.out / f"timeline-c{n}.png") for n in args.controllers))
        return 0
    results: dict[str, object] = {}

    events = args.out / "up-events.jsonl"
    events.unlink(missing_ok=True)
    stack = bring_up("bench", workdir, 3, event_log=events)
    results["up_first_s"] = stack.timings["up"]
    results["up_first_cpu_s"] = stack.timings["up_cpu"]
    results["up_first_floor_s"] = round(stack.timings["up_cpu"] / CORES, 1)
    state = args.out / "up-state.json"
    state.write_text(stack.pulumi("stack", "export", timeout=120).stdout)
    results["timeline"] = timeline.render(events, state, args.out / "timeline")

    seconds, cpu, _, logins = sessions_of(stack, 3, lambda: stack.up())
    summary = stack.changes()  # the engine's own count, from the stack's history
    results["noop_up_s"] = seconds
    results["noop_up_cpu_s"] = cpu
    results["noop_up_ssh_logins"] = logins
    _, _, _, results["preview_ssh_logins"] = sessions_of(stack, 3, lambda: stack.pulumi("preview", timeout=600))
    results["noop_up_again_s"], _ = timed(lambda: stack.up())  # the digests read once already (drift.py)
    results["noop_up_changes"] = sum(summary.get(k, 0) for k in CHANGING)
    results["noop_up_same"] = summary.get("same", 0)
    results["destroy_s"], _ = timed(lambda: stack.pulumi("destroy", "--yes", "--skip-preview"))
    results["up_warm_s"], _ = timed(lambda: stack.up())
    stack.kubectl("get", "--raw", "/readyz")
    stack.pulumi("destroy", "--yes", "--skip-preview")

    single = bring_up("bench1", workdir, 1)
    results["up_1_controller_s"] = single.timings["up"]
    results["up_1_controller_cpu_s"] = single.timings["up_cpu"]
    single.pulumi("destroy", "--yes", "--skip-preview")
    results["ratio_3_to_1"] = round(results["up_first_s"] / results["up_1_controller_s"], 2)
    # The least 3:1 ratio this machine allows: the 3-controller up's CPU seconds over its cores, to the 1-controller up.
    results["ratio_3_to_1_floor"] = round(results["up_first_floor_s"] / results["up_1_controller_s"], 2)

    if not args.quick:
        serial = bring_up("benchp1", workdir, 3, "--parallel", "1")
        results["up_parallel_1_s"] = serial.timings["up"]
        serial.pulumi("destroy", "--yes", "--skip-preview")
        results["speedup_default_over_parallel_1"] = round(results["up_parallel_1_s"] / results["up_first_s"], 2)

    mocks = subprocess.run([sys.executable, str(ROOT / "bench/mocks_eval.py"), "--repeat", "3", "--json",
                            str(args.out / "mocks.json")], text=True, capture_output=True, timeout=900)
    results["mocks_eval"] = json.loads((args.out / "mocks.json").read_text()) if mocks.returncode == 0 else mocks.stderr
    results["unit_tests_s"], _ = timed(lambda: subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "not e2e and not toolchain"], cwd=ROOT, capture_output=True,
        timeout=900))

    shutil.rmtree(workdir, ignore_errors=True)  # every stack of it was destroyed above
    (args.out / "bringup.json").write_text(json.dumps(results, indent=2))
    print(f"{'measure':40}{'value':>12}")
    for key, value in results.items():
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            value = ",".join(map(str, value))  # per controller
        if not isinstance(value, (dict, list)):
            print(f"{key:40}{value!s:>12}")
    print(f"timeline: {args.out / 'timeline.png'} (.html, .txt); critical path: "
          + " -> ".join(results["timeline"]["critical_path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
