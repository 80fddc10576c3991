"""Benchmark a real bring-up on the local stack; prints a table and writes JSON (not a test).

Usage: .venv/bin/python bench/bringup.py [--out bench/results] [--quick]
Measures, in one run: `pulumi up` to a working API (first up of a new stack, then again after a destroy with
every cache warm), a no-op up (time and change count), destroy, the same up with controllerCount=1 (ratio of
3 controllers to 1, goal <= 1.5) and with `--parallel 1` (speedup of the default over it, goal >= 2),
program evaluation under mocks at 3, 5 and 7 controllers, and the unit test suite's time. The first up's
engine events (`up --json`) are rendered into a timeline (bench/timeline.py). --quick skips the --parallel 1 run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import timeline  # noqa: E402
from e2e_lib import CHANGING, LocalStack, toolchain_ready  # noqa: E402

NODE_CIDR = "198.18.0.128/25"


def timed(fn) -> tuple[float, object]:
    start = time.monotonic()
    result = fn()
    return round(time.monotonic() - start, 1), result


def bring_up(name: str, workdir: Path, count: int, *extra: str, event_log: Path | None = None) -> LocalStack:
    stack = LocalStack(name, workdir / name, {"cloud": "local", "nodeCidr": NODE_CIDR, "controllerCount": str(count)})
    stack.init()
    # `up --json` streams the engine's events as JSON lines (this CLI has no --event-log flag).
    result = stack.up(*extra, *(["--json"] if event_log else []), label="up")
    if event_log:
        # Without the SDK's debug diagnostics: they print registered outputs, secrets included, in plaintext.
        events = [line for line in result.stdout.splitlines() if '"severity":"debug"' not in line]
        event_log.write_text("\n".join(events) + "\n")
        event_log.chmod(0o600)
    stack.kubectl("get", "--raw", "/readyz")
    return stack


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reason = toolchain_ready()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kthw-bench-", dir="/tmp"))
    results: dict[str, object] = {}

    events = args.out / "up-events.jsonl"
    events.unlink(missing_ok=True)
    stack = bring_up("bench", workdir, 3, event_log=events)
    results["up_first_s"] = stack.timings["up"]
    state = args.out / "up-state.json"
    state.write_text(stack.pulumi("stack", "export", timeout=120).stdout)
    results["timeline"] = timeline.render(events, state, args.out / "timeline")

    seconds, _ = timed(lambda: stack.up())
    summary = stack.changes()  # the engine's own count, from the stack's history
    results["noop_up_s"] = seconds
    results["noop_up_changes"] = sum(summary.get(k, 0) for k in CHANGING)
    results["noop_up_same"] = summary.get("same", 0)
    results["destroy_s"], _ = timed(lambda: stack.pulumi("destroy", "--yes", "--skip-preview"))
    results["up_warm_s"], _ = timed(lambda: stack.up())
    stack.kubectl("get", "--raw", "/readyz")
    stack.pulumi("destroy", "--yes", "--skip-preview")

    single = bring_up("bench1", workdir, 1)
    results["up_1_controller_s"] = single.timings["up"]
    single.pulumi("destroy", "--yes", "--skip-preview")
    results["ratio_3_to_1"] = round(results["up_first_s"] / results["up_1_controller_s"], 2)

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
        if not isinstance(value, (dict, list)):
            print(f"{key:40}{value!s:>12}")
    print(f"timeline: {args.out / 'timeline.png'} (.html, .txt); critical path: "
          + " -> ".join(results["timeline"]["critical_path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
