"""The directory Pulumi runs the project in, outside the checkout, so that running a stack never dirties it.

    python3 scripts/workspace.py CHECKOUT WORKSPACE [STACK_FILE ...]

WORKSPACE gets a symlink to every top-level entry of CHECKOUT (the program, Pulumi.yaml, the azure and gcp
stack files: Pulumi writes those through the link, as it would in the checkout), except the named stack files
(default: Pulumi.local.yaml), which are the workspace's own: Pulumi writes a stack's encryption salt and its
re-typed values into its stack file, and the tracked one is only the defaults. A workspace stack file follows
the tracked one by a three-way merge: a key whose tracked value changed since the last run takes the new value;
every other key (set with `pulumi config set`, or by a script) keeps the workspace's value.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

SKIPPED = {".git"}
DEFAULT_OWN = ("Pulumi.local.yaml",)


def _load(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _same(a: Any, b: Any) -> bool:
    """Equal as config values (Pulumi re-writes 3 as "3" and true as "true")."""
    def norm(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return norm(a) == norm(b)


def merge_config(base: dict[str, Any], tracked: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Three-way merge of `config:` maps: tracked changes since `base` win, everything else stays `ours`."""
    merged = dict(ours)
    for key in set(base) | set(tracked):
        if key in tracked and (key not in base or not _same(tracked[key], base[key])):
            merged[key] = tracked[key]
        elif key not in tracked and key in ours and _same(ours[key], base[key]):
            merged.pop(key)  # removed from the tracked defaults, never changed here
    return merged


def sync_stack_file(tracked_path: Path, own_path: Path) -> None:
    """Bring the workspace's stack file up to date with the tracked defaults (see the module docstring)."""
    seed_path = own_path.with_name(f".{own_path.name}.seed.json")
    tracked = _load(tracked_path).get("config") or {}
    if not own_path.exists():
        own_path.write_text(tracked_path.read_text())
    else:
        base = json.loads(seed_path.read_text()) if seed_path.exists() else {}
        document = _load(own_path)
        ours = document.get("config") or {}
        merged = merge_config(base, tracked, ours)
        if merged != ours:
            document["config"] = merged
            own_path.write_text(yaml.safe_dump(document, sort_keys=True))
    seed_path.write_text(json.dumps(tracked, sort_keys=True))


def prepare(checkout: Path, workspace: Path, own: tuple[str, ...] = DEFAULT_OWN) -> Path:
    """Create or refresh WORKSPACE for CHECKOUT; return it."""
    checkout, workspace = checkout.resolve(), workspace.absolute()
    if workspace.resolve() == checkout or checkout in workspace.resolve().parents:
        raise SystemExit(f"workspace {workspace} must be outside the checkout {checkout}")
    workspace.mkdir(parents=True, exist_ok=True)
    entries = {p.name for p in checkout.iterdir()} - SKIPPED - set(own)
    for link in workspace.iterdir():  # links to entries the checkout no longer has
        if link.is_symlink() and link.name not in entries and not link.exists():
            link.unlink()
    for name in entries:
        link, target = workspace / name, checkout / name
        if link.is_symlink() and os.readlink(link) == str(target):
            continue
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise SystemExit(f"{link} is not a link to the checkout: move it away (the workspace only links)")
        link.symlink_to(target)
    for name in own:
        if (checkout / name).exists():
            sync_stack_file(checkout / name, workspace / name)
    return workspace


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    prepare(Path(sys.argv[1]), Path(sys.argv[2]), tuple(sys.argv[3:]) or DEFAULT_OWN)
