"""The parser of the engine's structured summary (tests/e2e_lib.py), fed the CLI's real `up --json` output."""
from __future__ import annotations

from pathlib import Path

import pytest

from e2e_lib import CHANGING, engine_changes

DATA = Path(__file__).parent / "data"


def test_reads_the_summary_of_a_real_up():
    # tests/data/up-create-events.jsonl: lines of a real `pulumi up --json` of the local stack (bench/bringup.py).
    changes = engine_changes((DATA / "up-create-events.jsonl").read_text())
    assert changes == {"create": 109}
    assert sum(changes.get(k, 0) for k in CHANGING) == 109  # a change is seen, not parsed away


def test_output_without_a_summary_is_an_error():
    with pytest.raises(AssertionError, match="no summaryEvent"):
        engine_changes("Updating (local):\n Resources:\n    100 unchanged\n")
