"""Every resource the program registers, with every input (each script a host runs, each file it receives), is
byte-identical to the recorded snapshot under tests/data/rendered/: a restructuring changes no host's script.

An intended change re-records the snapshot (`KTHW_RECORD_RENDERED=1 pytest tests/test_rendered_identical.py`)
and the diff of tests/data/rendered/ in the same commit lists each intended difference. Pickled dynamic
providers (`__provider`) are left out: they are code, not inputs, and the dynamic provider ignores them in diffs.
"""
from __future__ import annotations

import difflib
import json
import os
import runpy
from pathlib import Path
from typing import Any, Callable

import pytest

from fake_infra import build, config
from harness import ROOT, Graph, evaluate, run_program
from test_local_infra import make_toolchain

SNAPSHOTS = Path(__file__).parent / "data" / "rendered"
RECORD = os.environ.get("KTHW_RECORD_RENDERED") == "1"
ADMIN = ["203.0.113.7/32"]


def snapshot(graph: Graph, replace: dict[str, str]) -> dict[str, Any]:
    """name -> type, parent, dependencies (names), secret inputs and inputs, with machine paths made stable."""
    by_urn = {r.urn: r.name for r in graph.resources}
    out: dict[str, Any] = {}
    for r in graph.resources:
        inputs = {k: v for k, v in sorted(r.inputs.items()) if k != "__provider"}
        out[r.name] = {
            "type": r.type,
            "parent": by_urn.get(r.parent, ""),
            "dependsOn": sorted(by_urn.get(u, u) for u in r.depends_on()),
            "deleteBeforeReplace": r.delete_before_replace,
            "ignoreChanges": r.ignore_changes,
            "replaceOnChanges": r.replace_on_changes,
            "secretInputs": sorted(k for k in inputs if r.is_secret(k)),
            "inputs": {k: r.input(k) for k in inputs},
        }
    text = json.dumps(out, indent=1, sort_keys=True, default=_asset)
    for path, name in replace.items():
        text = text.replace(path, name)
    return json.loads(text)


def _asset(value: Any) -> str:
    """An asset by what it names (its object's repr holds a memory address)."""
    return f"{type(value).__name__}({getattr(value, 'path', None) or getattr(value, 'text', None)!r})"


def local_program(tmp_path: Path, monkeypatch) -> tuple[Callable[[], Any], dict[str, str]]:
    """The real program on a `local` stack, its toolchain and state dirs under tmp_path."""
    make_toolchain(tmp_path / "cache" / "toolchain")
    monkeypatch.setenv("KTHW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KTHW_STATE", str(tmp_path / "state"))
    return (lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
            {str(tmp_path): "<tmp>", str(ROOT): "<project>"})


def variants(tmp_path: Path, monkeypatch) -> dict[str, Graph]:
    snapshot_file = tmp_path / "etcd.db"
    snapshot_file.write_bytes(b"a recorded etcd snapshot")
    return {
        "azure": (lambda: run_program({"cloud": "azure", "adminCidrs": ADMIN}, stack="azure"), {}),
        "gcp": (lambda: run_program({"cloud": "gcp", "adminCidrs": ADMIN, "gcp:project": "kthw-test-project",
                                     "gcp:region": "us-central1",
                                     "zones": ["us-central1-a", "us-central1-b", "us-central1-c"]},
                                    stack="gcp"), {}),
        # The control plane with every optional part: the nginx health proxy, a DNS name, a restore, a rotation,
        # OIDC login, the admission keys off their defaults.
        "control-plane-options": (lambda: evaluate(lambda: build(config(
            oidcIssuerUrl="https://login.example.com/realms/k8s", oidcClientId="kthw", oidcGroupsClaim="groups",
            eventRateLimit="false", alwaysPullImages="true", podSecurityEnforce="restricted",
            apiServerDnsName="k8s.example.com", healthCheck="http-healthz-proxy", etcdRestoreFrom=str(snapshot_file),
            encryptionKey="a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=",
            encryptionKeyNext="bmV4dG5leHRuZXh0bmV4dG5leHRuZXh0bmV4dG5leHQ=")), {"cloud": "local"}),
            {str(tmp_path): "<tmp>"}),
    }


@pytest.mark.parametrize("variant", ["azure", "gcp", "control-plane-options", "local"])
def test_every_rendered_input_is_unchanged(variant, tmp_path, monkeypatch):
    if variant == "local":
        program, replace = local_program(tmp_path, monkeypatch)
        graph = evaluate(program, {"cloud": "local"}, stack="local")
    else:
        run, replace = variants(tmp_path, monkeypatch)[variant]
        graph = run()
    got = snapshot(graph, replace)
    path = SNAPSHOTS / f"{variant}.json"
    if RECORD:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded tests/data/rendered/{variant}.json (compared on the next run)")
    want = json.loads(path.read_text())
    assert len(got) > 20, "the program registered almost nothing: the snapshot would prove nothing"
    changed = sorted(n for n in set(got) | set(want) if got.get(n) != want.get(n))
    if changed:
        report = [f"{len(changed)} resources differ from tests/data/rendered/{variant}.json: {', '.join(changed)}"]
        for name in changed[:3]:
            before, after = (json.dumps(side.get(name), indent=1, sort_keys=True).replace("\\n", "\n")
                             for side in (want, got))
            report += difflib.unified_diff(before.splitlines(), after.splitlines(), f"recorded {name}",
                                           f"now {name}", lineterm="", n=1)
        pytest.fail("\n".join(report[:120]))
