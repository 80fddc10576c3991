"""The progress lines of scripts/toolchain/build: each piece's start and done line with its time, and while pieces
build, a periodic line with each running piece's elapsed time against its expected time.

    python3 progress.py watch RUN_DIR --jobs N --pid BUILD_PID [--interval SECONDS]

The build writes into RUN_DIR (a scratch directory of one run):
  plan            one line per piece, in build order: piece, version, "build" or "cached", log file (tab-separated)
  <piece>.start   when a piece's build started (epoch seconds)
  <piece>.done    when it ended: "ok SECONDS", "failed SECONDS", "cached", "checked" or "check-failed"
The watcher prints what it sees on stderr, one line each, with the build's own `[toolchain HH:MM:SS]` prefix, and
ends when every piece of the plan is done or the build (BUILD_PID) is gone. Standard library only (the build runs
it with the system's python3, before any virtualenv exists).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TextIO

# Expected seconds of each piece's build from a cold cache on this 2-core machine with 2 jobs (measured
# 2026-11-29, docs/measurements.md "The toolchain build"): each artifacts/<piece>-<version>/.seconds of that build,
# except pulumi (its artifact was rebuilt later, warm): its share of that run's timestamps, from the build's start
# to tls's (tls took its job slot). language-python and command: the 39 s they took together after the CLI had
# compiled their dependencies. kube-bench: its own cold build (scripts/toolchain/README.md), under load.
# kubernetes-next is built with kubernetes's compile cache warm; on its own it takes about as long as kubernetes.
EXPECTED_SECONDS = {
    "kubernetes": 563,
    "pulumi": 395,
    "tls": 228,
    "etcd": 71,
    "random": 107,
    "command": 39,
    "language-python": 39,
    "kubernetes-next": 486,
    "kube-bench": 182,
}


def duration(seconds: float) -> str:
    """12s, 4m05s, 1h02m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def against(elapsed: float, expected: Optional[float]) -> str:
    """A running or finished piece's time against its expectation; over it, by how much (never a negative rest)."""
    if expected is None:
        return f"{duration(elapsed)} (no expected time)"
    if elapsed > expected:
        return f"{duration(elapsed)}, {duration(elapsed - expected)} over its expected {duration(expected)}"
    return f"{duration(elapsed)} of ~{duration(expected)}"


@dataclass(frozen=True)
class Estimate:
    seconds: float  # until the last piece to build ends, if each takes its expected time
    at_least: bool  # a running piece is past its expected time (or has none): it counts as ending now


def estimate(running: dict[str, float], waiting: list[str], jobs: int,
             expected: dict[str, float] = EXPECTED_SECONDS) -> Estimate:
    """Time left: the running pieces' expected rest, then the waiting ones (to build, in order) each on the first
    job slot to come free, as the build schedules them. A piece past its expected time, or without one, counts
    as ending now: the estimate is then a lower bound."""
    at_least = False
    slots = []
    for piece, elapsed in running.items():
        rest = expected.get(piece)
        if rest is None or elapsed > rest:
            at_least = True
            rest = elapsed
        slots.append(rest - elapsed)
    slots += [0.0] * max(jobs - len(slots), 0)
    slots.sort()
    end = max(slots, default=0.0)
    for piece in waiting:
        if piece not in expected:
            at_least = True
        free = slots.pop(0)
        slots.append(free + expected.get(piece, 0.0))
        slots.sort()
        end = max(end, slots[-1])
    return Estimate(end, at_least)


@dataclass
class Piece:
    name: str
    version: str
    build: bool  # False: its artifacts are up to date (cached)
    log: str
    started: Optional[float] = None
    done: Optional[str] = None


def read_plan(run: Path) -> list[Piece]:
    pieces = []
    for line in (run / "plan").read_text().splitlines():
        name, version, what, log = line.split("\t")
        pieces.append(Piece(name, version, what == "build", log))
    return pieces


def plan_line(pieces: list[Piece], jobs: int, expected: dict[str, float] = EXPECTED_SECONDS) -> str:
    building = [p for p in pieces if p.build]
    cached = [p.name for p in pieces if not p.build]
    if not building:
        return f"every piece is cached ({', '.join(cached)}): re-hashing and re-linking only"
    parts = [f"{p.name} {'~' + duration(expected[p.name]) if p.name in expected else '(no expected time)'}"
             for p in building]
    total = estimate({}, [p.name for p in building], jobs, expected)
    line = (f"to build: {', '.join(parts)}; {'at least' if total.at_least else 'about'} {duration(total.seconds)} "
            f"with {jobs} job{'s' if jobs != 1 else ''} (expected: a cold build on 2 cores, "
            f"scripts/toolchain/progress.py)")
    return line + (f"; cached: {', '.join(cached)}" if cached else "")


def start_line(piece: Piece, expected: dict[str, float] = EXPECTED_SECONDS) -> str:
    seconds = expected.get(piece.name)
    when = f"expected ~{duration(seconds)}" if seconds is not None else "no expected time"
    return f"{piece.name} {piece.version}: building ({when}; log: {piece.log})"


def done_line(piece: Piece, expected: dict[str, float] = EXPECTED_SECONDS) -> str:
    what, _, seconds = (piece.done or "").partition(" ")
    label = f"{piece.name} {piece.version}"
    if what == "ok":
        return f"{label}: built in {against(float(seconds), expected.get(piece.name))}"
    if what == "failed":
        return f"{label}: FAILED after {duration(float(seconds))} (log: {piece.log})"
    if what == "cached":
        return f"{label}: cached (up to date)"
    if what == "checked":
        return f"{label}: cached (up to date), smoke checks passed"
    if what == "check-failed":
        return f"{label}: cached, but its smoke checks FAILED (log: {piece.log})"
    return f"{label}: ended ({piece.done!r})"


def running_line(pieces: list[Piece], now: float, jobs: int, expected: dict[str, float] = EXPECTED_SECONDS) -> str:
    """The periodic line: each running piece against its expected time, what still waits, the time left."""
    running = {p.name: now - p.started for p in pieces if p.started is not None and p.done is None}
    waiting = [p.name for p in pieces if p.build and p.started is None and p.done is None]
    parts = [f"{name} {against(elapsed, expected.get(name))}" for name, elapsed in running.items()]
    line = "building: " + "; ".join(parts)
    if waiting:
        line += f"; waiting: {', '.join(waiting)}"
    left = estimate(running, waiting, jobs, expected)
    if not left.at_least:
        return line + f"; about {duration(left.seconds)} left"
    over = any(name in expected and elapsed > expected[name] for name, elapsed in running.items())
    why = "a piece is past its expected time" if over else "a piece has no expected time"
    if left.seconds < 1:
        return line + f"; the time left is unknown ({why})"
    return line + f"; at least {duration(left.seconds)} left ({why})"


def log_line(text: str, out: TextIO, clock: Callable[[], float] = time.time) -> None:
    print(f"[toolchain {time.strftime('%H:%M:%S', time.localtime(clock()))}] {text}", file=out, flush=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(run: Path, jobs: int, pid: int, interval: float, out: TextIO = sys.stderr, poll: float = 0.2) -> int:
    """Print the plan, then every start and done line as the build writes them, and the running line every
    `interval` seconds while a piece builds; return when every piece is done (or the build is gone)."""
    pieces = read_plan(run)
    log_line(plan_line(pieces, jobs), out)
    last = time.monotonic()
    while True:
        for piece in pieces:
            start = run / f"{piece.name}.start"
            if piece.started is None and start.exists():
                piece.started = float(start.read_text().strip() or time.time())
                log_line(start_line(piece), out)
            done = run / f"{piece.name}.done"
            status = done.read_text().strip() if piece.done is None and done.exists() else ""
            if status:  # empty: seen between its creation and its write; read again at the next poll
                piece.done = status
                log_line(done_line(piece), out)
        if all(p.done is not None for p in pieces) or not alive(pid):
            return 0
        building = any(p.started is not None and p.done is None for p in pieces)
        if building and time.monotonic() - last >= interval:
            log_line(running_line(pieces, time.time(), jobs), out)
            last = time.monotonic()
        elif not building:
            last = time.monotonic()  # the first running line comes one interval after a build starts
        time.sleep(poll)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch")
    w.add_argument("run", type=Path)
    w.add_argument("--jobs", type=int, required=True)
    w.add_argument("--pid", type=int, required=True)
    w.add_argument("--interval", type=float, default=60.0)
    args = parser.parse_args(argv)
    return watch(args.run, args.jobs, args.pid, args.interval)


if __name__ == "__main__":
    sys.exit(main())
