"""scripts/stacks.py: check-drift's reading of a preview, fed the engine events of real previews of a local stack;
and the defaults it takes from scripts/pulumi.

tests/data/preview-events-*.jsonl.gz are real event streams of one local stack (1 controller), each recorded with
    PULUMI_DEBUG_COMMANDS=true scripts/pulumi preview --stack S --refresh --expect-no-changes --event-log RAW
(the file the CLI writes is what it streams to the Automation API: one function, logJSONEvent in the CLI's
backend/display, serializes both, secrets masked) and then scrubbed by this file (`python tests/test_stacks.py
RAW OUT`): debug diagnostics dropped (the Python SDK's debug events print registered outputs, secrets included,
in plaintext), strings longer than 200 characters elided (scripts, certificates) except in the diagnostics the
CLI prints; nothing else changed.
  clean   the stack as `up` left it
  drift   on the controller: kube-scheduler stopped, apiserver-kubelet-client.pem deleted, a kube-apiserver flag edited
  failed  kthw:kubernetesVersion set to a version the checksum table does not have: the program fails
"""
from __future__ import annotations

import gzip
import io
import json
import os
import sys
import warnings
from pathlib import Path

import pytest
from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(ROOT / "scripts"))

import stacks  # noqa: E402

LONG = 200
DRIFTED = ("files: /var/lib/kubernetes/apiserver-kubelet-client.pem is missing",
           "kube-apiserver: /etc/systemd/system/kube-apiserver.service changed",
           "kube-scheduler: kube-scheduler is inactive")


def scrub(event: dict) -> dict | None:
    """A recorded event as stored here: None for a debug diagnostic, long strings elided (but a diagnostic's
    message, which the CLI prints too)."""
    diagnostic = event.get("diagnosticEvent")
    if diagnostic is not None:
        return None if diagnostic.get("severity") == "debug" else event

    def elide(value):
        if isinstance(value, str) and len(value) > LONG:
            return f"<{len(value)} characters elided>"
        if isinstance(value, list):
            return [elide(v) for v in value]
        if isinstance(value, dict):
            return {k: elide(v) for k, v in value.items()}
        return value
    return elide(event)


def raw_lines(case: str) -> list[str]:
    with gzip.open(DATA / f"preview-events-{case}.jsonl.gz", "rt") as f:
        return f.read().splitlines()


def events(case: str) -> list[auto.EngineEvent]:
    return [auto.EngineEvent.from_json(json.loads(line)) for line in raw_lines(case)]


def read(case: str) -> stacks.PreviewEvents:
    seen = stacks.PreviewEvents()
    for event in events(case):
        seen.add(event)
    return seen


def test_a_drifted_host_is_named_with_each_item():
    seen = read("drift")
    assert seen.summary == {"same": 65, "update": 12} and seen.proposes_changes and not seen.errors
    drifted = [c for c in seen.changes if c.drift]
    assert [(c.op, c.name, c.type) for c in drifted] == [
        ("update", "kthw-control-plane-controller-0-drift", "pulumi-python:dynamic:Resource")]
    assert drifted[0].drift == DRIFTED
    # The engine's other 11 updates: the controller's bootstrap steps that embed the repair counters.
    others = [c for c in seen.changes if not c.drift]
    assert len(others) == 11 and {c.type for c in others} == {"command:remote:Command"}
    assert all(c.op == "update" and sorted(c.diffs) == ["create", "update"] for c in others)
    assert all(c.name.startswith("kthw-control-plane-controller-0-") for c in others)


def test_a_clean_preview_proposes_nothing():
    seen = read("clean")
    # The refresh steps (one per resource) are the refresh's reads, not changes.
    assert sum(1 for e in events("clean") if e.resource_pre_event and e.resource_pre_event.metadata.op == "refresh") == 81
    assert seen.summary == {"same": 77} and not seen.proposes_changes
    assert seen.changes == [] and seen.errors == [] and seen.report() == []


def test_a_failed_preview_is_an_error_not_drift():
    seen = read("failed")
    assert not seen.proposes_changes and seen.changes == []
    assert len(seen.errors) == 1 and seen.errors[0].startswith("Program failed with an unhandled exception")
    assert "kthw:kubernetesVersion must be one of the checksum table's versions" in seen.errors[0]


class ReplayedStack:
    """A stack whose preview replays a recorded event stream and fails as the CLI did (exit 7 for the changes
    --expect-no-changes refused, 1 for the failed program)."""

    def __init__(self, case: str, code: int):
        self.case, self.code = case, code

    def preview(self, on_event, **kwargs):
        assert kwargs["refresh"] is True and kwargs["expect_no_changes"] is True
        for event in events(self.case):
            on_event(event)
        if self.code:
            raise auto.errors.create_command_error(auto.CommandResult("", "error: the CLI's words", self.code))


@pytest.mark.parametrize("case,code,status", [("clean", 0, 0), ("drift", 7, 1), ("failed", 1, 2)])
def test_check_drift_exits_by_what_the_events_say(monkeypatch, case, code, status):
    monkeypatch.setattr(stacks, "select", lambda name: ReplayedStack(case, code))
    out, err = io.StringIO(), io.StringIO()
    assert stacks.check_drift("rec", out, err) == status
    if status == 0:
        assert out.getvalue() == "check-drift: stack rec has no drift\n" and err.getvalue() == ""
    elif status == 1:
        lines = out.getvalue().splitlines()
        assert lines[:5] == ["check-drift: stack rec drifted:",
                             "  update kthw-control-plane-controller-0-drift [pulumi-python:dynamic:Resource]",
                             *(f"    {item}" for item in DRIFTED)]
        assert "  update kthw-control-plane-controller-0-rbac [command:remote:Command] (create, update)" in lines
        assert len(lines) == 1 + 4 + 11 and err.getvalue() == ""
    else:
        assert "the check of stack rec failed" in err.getvalue() and "kubernetesVersion" in err.getvalue()
        assert out.getvalue() == ""


def test_a_preview_that_fails_before_its_summary_is_a_failed_check(monkeypatch):
    class Broken:
        def preview(self, on_event, **kwargs):
            raise auto.errors.create_command_error(auto.CommandResult("", "error: no backend", 255))

    monkeypatch.setattr(stacks, "select", lambda name: Broken())
    err = io.StringIO()
    assert stacks.check_drift("rec", io.StringIO(), err) == 2
    assert "error: no backend" in err.getvalue()


def test_changes_the_events_do_not_name_are_still_drift():
    seen = stacks.PreviewEvents(summary={"same": 3, "delete": 1})
    assert seen.proposes_changes and seen.report() == ["the engine counts changes the events did not name: delete 1"]
    assert not stacks.PreviewEvents(summary={"same": 3, "read": 2}).proposes_changes


def test_an_event_the_sdk_cannot_parse_fails_the_check_without_its_text(capsys):
    def to_stderr(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    seen = stacks.PreviewEvents()
    # As outside pytest (whose own warning capture would swallow a leaked warning): warnings print to stderr.
    with warnings.catch_warnings():
        warnings.showwarning = to_stderr
        with stacks._unparsed_events_are_errors(seen):
            warnings.warn("Failed to parse engine event\nEvent: {\"message\": \"-----BEGIN PRIVATE KEY-----\"}")
            warnings.warn("another warning")
    assert seen.errors == ["an engine event could not be read (Failed to parse engine event)"]
    err = capsys.readouterr().err
    assert "another warning" in err  # other warnings are still printed ...
    assert "PRIVATE" not in err  # ... but never the unparsed event's text


def test_recorded_events_hold_no_key_material():
    for case in ("clean", "drift", "failed"):
        text = "\n".join(raw_lines(case))
        assert "PRIVATE KEY" not in text and "LS0tLS1CRUdJTi" not in text, case  # PEM, and PEM in base64
        assert '"severity":"debug"' not in text.replace(" ", ""), case
        assert all(scrub(json.loads(line)) == json.loads(line) for line in text.splitlines()), case


def test_scrub_drops_debug_diagnostics_and_long_values():
    debug = {"sequence": 1, "diagnosticEvent": {"severity": "debug", "message": "props=... PRIVATE KEY ..."}}
    assert scrub(debug) is None
    step = {"resourcePreEvent": {"metadata": {"op": "same", "new": {"outputs": {"script": "x" * 500, "n": 3}}}}}
    assert scrub(step)["resourcePreEvent"]["metadata"]["new"]["outputs"] == {"script": "<500 characters elided>", "n": 3}


def test_defaults_are_what_scripts_pulumi_prints_and_nothing_runs(tmp_path):
    bin_dir = tmp_path / "cache/toolchain/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pulumi").write_text(f"#!/bin/sh\ntouch {tmp_path}/ran\n")
    (bin_dir / "pulumi").chmod(0o755)
    environ = {**os.environ, "KTHW_CACHE": str(tmp_path / "cache"), "KTHW_STATE": str(tmp_path / "state"),
               "SSH_AUTH_SOCK": str(tmp_path / "agent.sock"), "PULUMI_CONFIG_PASSPHRASE": "x"}
    environ.pop("PULUMI_BACKEND_URL", None)
    environ.pop("PULUMI_HOME", None)
    found = stacks.defaults(environ)
    assert not (tmp_path / "ran").exists()
    assert found.bin == bin_dir and found.work_dir == tmp_path / "state/workspace"
    assert found.unset == ("SSH_AUTH_SOCK",)
    assert found.env["PULUMI_BACKEND_URL"] == f"file://{tmp_path}/state/pulumi"
    assert found.env["PULUMI_HOME"] == f"{tmp_path}/state/pulumi-home"
    assert found.env["PATH"].split(":")[0] == str(bin_dir)
    assert "PULUMI_CONFIG_PASSPHRASE" not in found.env  # the caller's own, unchanged
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in found.env and "KTHW_PRINT_ENV" not in found.env
    assert (tmp_path / "state/workspace/Pulumi.yaml").is_symlink()  # the workspace is ready to run in


if __name__ == "__main__":  # python tests/test_stacks.py RAW_EVENT_LOG OUT.jsonl.gz
    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    kept = [scrub(json.loads(line)) for line in raw.read_text().splitlines() if line.strip()]
    text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in kept if e is not None)
    if "PRIVATE KEY" in text or "LS0tLS1CRUdJTi" in text:
        sys.exit(f"{raw}: key material left after scrubbing; not written")
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write(text.encode())
    print(f"{out}: {len(kept)} events read, {text.count(chr(10))} kept, {out.stat().st_size} bytes")
