"""The parser of the engine's own count of changes (tests/e2e_lib.py), fed the CLI's real output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e_lib import CHANGING, latest_update_changes

DATA = Path(__file__).parent / "data"


def test_reads_the_latest_update_of_a_real_history():
    # tests/data/stack-history-failed-up.json: `pulumi stack history --json --page-size 1` of a real local stack
    # whose first `up` failed (54 resources created).
    real = (DATA / "stack-history-failed-up.json").read_text()
    with pytest.raises(AssertionError, match="not a succeeded update"):
        latest_update_changes(real)
    entries = json.loads(real)
    entries[0]["result"] = "succeeded"
    changes = latest_update_changes(json.dumps(entries))
    assert changes == {"create": 54}
    assert sum(changes.get(k, 0) for k in CHANGING) == 54  # a change is seen, not parsed away


def test_an_empty_history_is_an_error():
    with pytest.raises(AssertionError, match="not a succeeded update"):
        latest_update_changes("[]")
