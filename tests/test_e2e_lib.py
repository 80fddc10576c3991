"""The e2e helpers' readers of Pulumi's structured output, fed its real output.

tests/data/preview-drift.json: `preview --refresh --expect-no-changes --json` of a 1-controller local stack whose
scheduler was stopped and front-proxy-ca.pem deleted (recorded 2026-11-29; kept: each step's op, urn, diffReasons and
a drift resource's old `drift` output, the diagnostics and the summary; certificates and other states dropped).
"""
import json
from pathlib import Path

from e2e_lib import Preview

DATA = Path(__file__).parent / "data" / "preview-drift.json"


def test_preview_names_the_drifted_host_and_its_items():
    preview = Preview(returncode=255, document=json.loads(DATA.read_text()), stderr="")
    changes = preview.changes()
    op, drift = changes["kthw-control-plane-controller-0-drift"]
    assert op == "update"
    assert drift == ["kube-apiserver: /var/lib/kubernetes/front-proxy-ca.pem is missing",
                     "kube-controller-manager: /var/lib/kubernetes/front-proxy-ca.pem is missing",
                     "kube-scheduler: kube-scheduler is inactive"]
    assert changes["kthw-control-plane-controller-0-kube-scheduler"] == ("update", [])  # its repair counter
    assert all(op not in ("same", "refresh") for op, _ in changes.values())
    assert "kthw-control-plane-controller-0-drift" in preview.report()


def test_a_clean_preview_has_no_changes():
    document = json.loads(DATA.read_text())
    document["steps"] = [{**s, "op": "same"} for s in document["steps"]]
    assert Preview(0, document, "").changes() == {}
