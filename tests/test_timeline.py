"""The timeline renderer: spans from engine events, dependency edges from the state, the critical path."""
import json

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import timeline  # noqa: E402

P = "urn:pulumi:s::kthw::kthw:control_plane:ControlPlane$command:remote:Command::"


def event(kind, urn, t, op="create"):
    return json.dumps({"timestamp": t, kind: {"metadata": {"urn": urn, "op": op, "type": "command:remote:Command"}}})


def test_critical_path_follows_the_latest_dependency(tmp_path):
    a, b, c, d = (P + n for n in ("kthw-controller-0-files", "kthw-controller-1-files",
                                  "kthw-controller-0-etcd", "kthw-verify"))
    events = [event("resourcePreEvent", a, 0), event("resourcePreEvent", b, 0), event("resOutputsEvent", a, 2),
              event("resOutputsEvent", b, 9), event("resourcePreEvent", c, 9), event("resOutputsEvent", c, 12),
              event("resourcePreEvent", d, 12), event("resOutputsEvent", d, 13),
              event("resourcePreEvent", P + "same-one", 0, op="same")]
    state = {"deployment": {"resources": [{"urn": c, "dependencies": [a, b]}, {"urn": d, "dependencies": [c]}]}}
    (tmp_path / "e.jsonl").write_text("\n".join(events))
    (tmp_path / "s.json").write_text(json.dumps(state))
    result = timeline.render(tmp_path / "e.jsonl", tmp_path / "s.json", tmp_path / "out")
    assert result["resources"] == 4 and result["seconds"] == 13
    assert result["critical_path"] == ["kthw-controller-1-files", "kthw-controller-0-etcd", "kthw-verify"]
    text = (tmp_path / "out.txt").read_text()
    assert "controller-0" in text and "critical path" in text
    assert "background:#d62728" in (tmp_path / "out.html").read_text()
