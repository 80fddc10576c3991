"""scripts/pulumi runs the project in a workspace outside the checkout (scripts/workspace.py): running a stack
never writes into the tracked Pulumi.local.yaml, and the caller's SSH agent never reaches Pulumi."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import workspace  # noqa: E402


def test_merge_takes_tracked_changes_and_keeps_local_ones():
    base = {"kthw:controllerCount": 3, "kthw:etcdHeartbeatInterval": 250, "kthw:gone": "x", "kthw:kept": "y"}
    tracked = {"kthw:controllerCount": 3, "kthw:etcdHeartbeatInterval": 300, "kthw:new": "n"}
    ours = {"kthw:controllerCount": "5", "kthw:etcdHeartbeatInterval": "250", "kthw:gone": "x",
            "kthw:kept": "changed here", "kthw:encryptionKey": {"secure": "v1:abc"}}
    assert workspace.merge_config(base, tracked, ours) == {
        "kthw:controllerCount": "5",  # set with `pulumi config set`: stays
        "kthw:etcdHeartbeatInterval": 300,  # the tracked default changed: follows it
        "kthw:new": "n",  # a new tracked default
        "kthw:kept": "changed here",  # dropped from the defaults, but changed here: stays
        "kthw:encryptionKey": {"secure": "v1:abc"},  # a script's secret: stays
    }  # kthw:gone was dropped from the defaults and never changed here: gone


def test_prepare_links_the_checkout_and_owns_the_local_stack_file(tmp_path):
    checkout, ws = tmp_path / "checkout", tmp_path / "ws"
    (checkout / "components").mkdir(parents=True)
    (checkout / ".git").mkdir()
    (checkout / "Pulumi.yaml").write_text("name: kthw\n")
    (checkout / "Pulumi.local.yaml").write_text("config:\n  kthw:controllerCount: 3\n")
    workspace.prepare(checkout, ws)
    assert os.readlink(ws / "components") == str(checkout / "components")
    assert os.readlink(ws / "Pulumi.yaml") == str(checkout / "Pulumi.yaml")
    assert not (ws / ".git").exists()
    own = ws / "Pulumi.local.yaml"
    assert not own.is_symlink() and yaml.safe_load(own.read_text())["config"] == {"kthw:controllerCount": 3}
    # Pulumi writes its salt and string values into the workspace's file; the tracked one then changes a default.
    own.write_text(yaml.safe_dump({"encryptionsalt": "v1:salt", "config": {"kthw:controllerCount": "3"}}))
    (checkout / "Pulumi.local.yaml").write_text("config:\n  kthw:controllerCount: 5\n")
    workspace.prepare(checkout, ws)
    document = yaml.safe_load(own.read_text())
    assert document == {"encryptionsalt": "v1:salt", "config": {"kthw:controllerCount": 5}}


def _fake_cli(tmp_path: Path) -> dict[str, str]:
    """A cache whose toolchain `pulumi` records its working directory and environment, then writes a salt into
    the stack file in its working directory, as `pulumi stack init` does."""
    bin_dir = tmp_path / "cache/toolchain/bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "pulumi"
    fake.write_text("#!/bin/sh\npwd >\"$KTHW_TEST_OUT\"\nenv >>\"$KTHW_TEST_OUT\"\n"
                    "printf 'encryptionsalt: v1:x\\nconfig:\\n  kthw:controllerCount: \"3\"\\n' >Pulumi.local.yaml\n")
    fake.chmod(0o755)
    return {**os.environ, "KTHW_CACHE": str(tmp_path / "cache"), "KTHW_STATE": str(tmp_path / "state"),
            "KTHW_TEST_OUT": str(tmp_path / "out"), "PULUMI_CONFIG_PASSPHRASE": "x"}


def test_scripts_pulumi_leaves_the_checkout_clean_and_drops_the_agent(tmp_path):
    tracked = ROOT / "Pulumi.local.yaml"
    before = hashlib.sha256(tracked.read_bytes()).hexdigest()
    agent = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(agent))
    env = {**_fake_cli(tmp_path), "SSH_AUTH_SOCK": str(agent)}
    subprocess.run([str(ROOT / "scripts/pulumi"), "stack", "init", "local"], env=env, check=True, timeout=60,
                   stdin=subprocess.DEVNULL)
    cwd, *environment = (tmp_path / "out").read_text().splitlines()
    assert Path(cwd) == tmp_path / "state/workspace"
    assert not any(line.startswith("SSH_AUTH_SOCK=") for line in environment)
    assert hashlib.sha256(tracked.read_bytes()).hexdigest() == before
    assert "encryptionsalt" in (tmp_path / "state/workspace/Pulumi.local.yaml").read_text()


def test_prepare_refuses_the_checkout_itself_and_never_replaces_files(tmp_path):
    import pytest

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "README.md").write_text("docs\n")
    with pytest.raises(SystemExit, match="outside the checkout"):
        workspace.prepare(checkout, checkout)
    with pytest.raises(SystemExit, match="outside the checkout"):
        workspace.prepare(checkout, checkout / "sub")
    assert (checkout / "README.md").read_text() == "docs\n" and not (checkout / "README.md").is_symlink()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("someone's file\n")
    with pytest.raises(SystemExit, match="not a link"):
        workspace.prepare(checkout, ws)
    assert (ws / "README.md").read_text() == "someone's file\n"
