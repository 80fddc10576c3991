"""bench/bringup.py's scaling mode without a stack: the no-op up's change summary read from real engine event
streams (tests/data/preview-events-*.jsonl.gz, see tests/test_stacks.py), the growth table, the counts it takes."""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bringup  # noqa: E402

DATA = Path(__file__).parent / "data"


def stream(case: str, as_update: bool = True) -> str:
    """A recorded preview's events; as_update: its summary event as an update's (isPreview false)."""
    with gzip.open(DATA / f"preview-events-{case}.jsonl.gz", "rt") as f:
        lines = f.read().splitlines()
    if as_update:
        events = [json.loads(line) for line in lines]
        for event in events:
            if "summaryEvent" in event:
                event["summaryEvent"]["isPreview"] = False
        lines = [json.dumps(event) for event in events]
    return "\n".join(lines) + "\n"


def test_a_clean_run_is_counted_by_the_engine():
    seen = bringup.engine_summary(stream("clean"))
    assert seen.summary == {"same": 77} and not seen.changes


def test_changes_are_counted_and_named():
    seen = bringup.engine_summary(stream("drift"))
    assert seen.summary == {"same": 65, "update": 12}
    assert sum(seen.summary.get(k, 0) for k in bringup.CHANGING) == 12
    assert "update kthw-control-plane-controller-0-drift [pulumi-python:dynamic:Resource]" in [
        line for change in seen.changes for line in change.lines()]


@pytest.mark.parametrize("case, as_update, message", [
    ("clean", False, "not a succeeded update: preview=True"),  # a preview is not the up that was asked for
    ("failed", True, "result=failed"),
])
def test_a_preview_or_a_failed_run_is_an_error(case, as_update, message):
    with pytest.raises(AssertionError, match=message):
        bringup.engine_summary(stream(case, as_update))


def test_no_summary_event_is_an_error_not_no_changes():
    lines = [line for line in stream("clean").splitlines() if "summaryEvent" not in line]
    with pytest.raises(AssertionError, match="found 0"):
        bringup.engine_summary("\n".join(lines))


def test_the_table_shows_each_count_and_its_growth_over_the_first():
    figures = {7: {"up_s": 40.0, "noop_up_s": 15.0, "noop_up_changes": 0, "destroy_s": 30.0},
               3: {"up_s": 20.0, "noop_up_s": 10.0, "noop_up_changes": 0, "destroy_s": 15.0},
               5: {"up_s": 30.0, "noop_up_s": 12.5, "noop_up_changes": 0, "destroy_s": 24.0}}
    lines = bringup.scaling_table(figures).splitlines()
    assert lines[0].split() == ["measure", "3", "ctl", "5", "ctl", "7", "ctl", "5:3", "7:3"]
    rows = {line[:42].strip(): line[42:].split() for line in lines[1:]}
    assert rows["`pulumi up` to a working API (s)"] == ["20.0", "30.0", "40.0", "1.5", "2.0"]
    assert rows["no-op `pulumi up` (s)"] == ["10.0", "12.5", "15.0", "1.25", "1.5"]
    assert rows["its changes (engine summary)"] == ["0", "0", "0"]  # a count, not a growth
    assert "`pulumi up --parallel 1` (s)" not in rows  # not measured (--quick): no row of dashes


def test_controller_counts():
    assert bringup.controller_counts("3,5,7") == [3, 5, 7]
    for bad in ("3,4", "9", "3,3", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            bringup.controller_counts(bad)


def test_ssh_logins_are_counted_from_sshds_own_journal():
    """tests/data/sshd-journal.jsonl: `journalctl -o json -t sshd -t sshd-session -n 6` on a local controller
    (Debian 12's OpenSSH 9.2): two logins, each with its PAM lines."""
    journal = (DATA / "sshd-journal.jsonl").read_text()
    assert bringup.count_logins(journal) == 2
    assert bringup.count_logins("") == 0
    first = journal.splitlines()[0]
    assert bringup.count_logins(first.replace("Accepted publickey", "Failed publickey")) == 0


def test_busy_seconds_reads_the_real_proc_stat_and_counts_a_busy_loop():
    """The machine's busy CPU time, from /proc/stat as the kernel writes it: a 0.3 s busy loop of this process adds
    at least 0.2 s (other processes can only add more); the idle and iowait columns are not counted."""
    before = bringup.busy_seconds(Path("/proc/stat").read_text())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert bringup.busy_seconds(Path("/proc/stat").read_text()) - before >= 0.2
    hz = os.sysconf("SC_CLK_TCK")
    line = f"cpu  {hz} 0 {hz} {100 * hz} {50 * hz} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    assert bringup.busy_seconds(line) == 2.0
