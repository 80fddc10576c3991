"""scripts/toolchain/progress.py, the progress lines of scripts/toolchain/build: times against the expected ones
(an overrun said as such, never a negative rest), the estimate of the time left, and the watcher driven by fake
pieces (the markers the build writes, with short sleeps). The build itself prints them: tests/test_toolchain.py."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "toolchain"))
import progress  # noqa: E402

EXPECTED = {"kubernetes": 560, "pulumi": 400, "tls": 230, "etcd": 70}


def test_durations():
    assert [progress.duration(s) for s in (0, 59.4, 60, 563, 3599, 3600, 5000)] == [
        "0s", "59s", "1m00s", "9m23s", "59m59s", "1h00m", "1h23m"]


def test_a_time_against_its_expectation_says_when_it_is_over():
    assert progress.against(120, 560) == "2m00s of ~9m20s"
    assert progress.against(600, 560) == "10m00s, 40s over its expected 9m20s"
    assert progress.against(30, None) == "30s (no expected time)"


def test_the_estimate_schedules_the_waiting_pieces_on_the_first_free_slot():
    # kubernetes has 460 s left, pulumi 300 s: tls starts on pulumi's slot (300 + 230 = 530), etcd on
    # kubernetes's (460 + 70 = 530).
    left = progress.estimate({"kubernetes": 100, "pulumi": 100}, ["tls", "etcd"], jobs=2, expected=EXPECTED)
    assert left == progress.Estimate(530, at_least=False)
    # One job: everything in a row.
    assert progress.estimate({}, ["tls", "etcd"], jobs=1, expected=EXPECTED).seconds == 300
    # An idle slot takes the next waiting piece at once.
    assert progress.estimate({"etcd": 10}, ["tls"], jobs=2, expected=EXPECTED).seconds == 230


def test_an_overrun_makes_the_estimate_a_lower_bound_not_negative():
    left = progress.estimate({"etcd": 100}, [], jobs=2, expected=EXPECTED)
    assert left == progress.Estimate(0, at_least=True)
    left = progress.estimate({"etcd": 100}, ["tls"], jobs=1, expected=EXPECTED)
    assert left == progress.Estimate(230, at_least=True)
    assert progress.estimate({"unknown": 5}, [], jobs=2, expected=EXPECTED).at_least


def pieces(*specs: str) -> list[progress.Piece]:
    return [progress.Piece(name, "v1", build == "build", f"/logs/{name}.log")
            for name, build in (spec.split(":") for spec in specs)]


def test_the_running_line():
    ps = pieces("kubernetes:build", "etcd:build", "pulumi:cached", "tls:build")
    ps[0].started, ps[1].started = 1000.0, 1000.0
    line = progress.running_line(ps, now=1100.0, jobs=2, expected=EXPECTED)
    assert line == ("building: kubernetes 1m40s of ~9m20s; etcd 1m40s, 30s over its expected 1m10s; waiting: tls; "
                    "at least 7m40s left (a piece is past its expected time)")
    ps[1].done = "ok 101"
    assert progress.running_line(ps, now=1100.0, jobs=2, expected=EXPECTED) == (
        "building: kubernetes 1m40s of ~9m20s; waiting: tls; about 7m40s left")
    # Past its expected time with nothing after it: no made-up rest (a cold build of the command provider alone).
    ps[0].started, ps[3].done = 500.0, "cached"
    assert progress.running_line(ps, now=1100.0, jobs=2, expected=EXPECTED) == (
        "building: kubernetes 10m00s, 40s over its expected 9m20s; the time left is unknown "
        "(a piece is past its expected time)")


def test_the_plan_and_done_lines():
    ps = pieces("kubernetes:build", "etcd:build", "pulumi:cached")
    assert progress.plan_line(ps, jobs=2, expected=EXPECTED) == (
        "to build: kubernetes ~9m20s, etcd ~1m10s; about 9m20s with 2 jobs (expected: a cold build on 2 cores, "
        "scripts/toolchain/progress.py); cached: pulumi")
    assert progress.plan_line(pieces("etcd:cached"), jobs=2).startswith("every piece is cached (etcd)")
    done = {"ok 75": "etcd v1: built in 1m15s, 5s over its expected 1m10s", "ok 60": "etcd v1: built in 1m00s of ~1m10s",
            "failed 12": "etcd v1: FAILED after 12s (log: /logs/etcd.log)", "cached": "etcd v1: cached (up to date)",
            "checked": "etcd v1: cached (up to date), smoke checks passed",
            "check-failed": "etcd v1: cached, but its smoke checks FAILED (log: /logs/etcd.log)"}
    for marker, line in done.items():
        ps[1].done = marker
        assert progress.done_line(ps[1], expected=EXPECTED) == line


def wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_watcher_follows_fake_pieces_as_the_build_writes_them(tmp_path):
    (tmp_path / "plan").write_text("etcd\tv3\tbuild\t/l/etcd.log\nmystery\tv0\tbuild\t/l/mystery.log\n"
                                   "tls\tv5\tcached\t/l/tls.log\n")
    out = io.StringIO()
    watcher = threading.Thread(target=progress.watch, args=(tmp_path, 2, os.getpid(), 0.1),
                               kwargs={"out": out, "poll": 0.02})
    watcher.start()
    (tmp_path / "tls.done").write_text("cached\n")
    for name in ("etcd", "mystery"):
        (tmp_path / f"{name}.start").write_text(f"{time.time()}\n")
    # A periodic line comes while the two build (waited for, not timed), then they end.
    wait_for(lambda: "building: " in out.getvalue(), "a periodic line")
    (tmp_path / "etcd.done").write_text("ok 2\n")
    time.sleep(0.2)  # the fake piece "mystery" builds on alone for a while
    (tmp_path / "mystery.done").write_text("failed 3\n")
    watcher.join(timeout=30)
    assert not watcher.is_alive(), "the watcher did not end when every piece was done"
    lines = [re.sub(r"^\[toolchain \d\d:\d\d:\d\d\] ", "", line) for line in out.getvalue().splitlines()]
    etcd = progress.duration(progress.EXPECTED_SECONDS["etcd"])
    assert lines[0].startswith(f"to build: etcd ~{etcd}, mystery (no expected time); at least {etcd} with 2 jobs")
    assert lines[0].endswith("; cached: tls")
    assert lines.index("tls v5: cached (up to date)") < lines.index(f"etcd v3: built in 2s of ~{etcd}")
    assert f"etcd v3: building (expected ~{etcd}; log: /l/etcd.log)" in lines
    assert "mystery v0: building (no expected time; log: /l/mystery.log)" in lines
    assert lines[-1] == "mystery v0: FAILED after 3s (log: /l/mystery.log)"
    periodic = [line for line in lines if line.startswith("building: ")]
    assert periodic and all(re.search(r"mystery \d+s \(no expected time\)", line) for line in periodic)
    assert re.search(r"; at least \d+m\d\ds left \(a piece has no expected time\)$", periodic[0]), periodic[0]
    assert all(line.endswith("(a piece has no expected time)") for line in periodic)


def test_the_watcher_ends_when_the_build_is_gone(tmp_path):
    (tmp_path / "plan").write_text("etcd\tv3\tbuild\t/l/etcd.log\n")
    gone = subprocess.Popen(["true"])
    gone.wait()
    out = io.StringIO()
    assert progress.watch(tmp_path, 2, gone.pid, 60, out=out, poll=0.02) == 0
    assert out.getvalue().count("\n") == 1  # the plan, and nothing of a piece that never ran


def test_a_done_file_caught_empty_is_read_again(tmp_path):
    """The build writes `<piece>.done` with a shell redirection: the watcher can see it created but not yet
    written. It waits for the status instead of printing an empty one."""
    (tmp_path / "plan").write_text("tls\tv5\tbuild\t/l/tls.log\n")
    (tmp_path / "tls.start").write_text(f"{time.time()}\n")
    (tmp_path / "tls.done").write_text("")
    out = io.StringIO()
    watcher = threading.Thread(target=progress.watch, args=(tmp_path, 1, os.getpid(), 60),
                               kwargs={"out": out, "poll": 0.02})
    watcher.start()
    wait_for(lambda: "tls v5: building" in out.getvalue(), "the start line")
    time.sleep(0.1)  # several polls see the empty file
    (tmp_path / "tls.done").write_text("ok 1\n")
    watcher.join(timeout=30)
    assert not watcher.is_alive()
    done = [line for line in out.getvalue().splitlines() if "tls v5: built" in line or "tls v5: FAILED" in line]
    assert len(done) == 1 and done[0].endswith(f"tls v5: built in 1s of ~{progress.duration(progress.EXPECTED_SECONDS['tls'])}"), out.getvalue()
