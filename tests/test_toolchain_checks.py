"""scripts/toolchain/build's smoke checks, run from the script itself on fake commands that print what the real
ones do (no toolchain needed)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

BUILD = Path(__file__).resolve().parent.parent / "scripts" / "toolchain" / "build"


def fake_tool(tmp_path: Path, body: str) -> Path:
    """artifacts/etcd-v3.6.14/etcdctl under tmp_path, a shell script with `body`."""
    tool = tmp_path / "artifacts" / "etcd-v3.6.14" / "etcdctl"
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return tool


def expect_version(want: str, *command: str) -> subprocess.CompletedProcess:
    """The build's own expect_version (cut out of the script) on `command`."""
    body = re.search(r"^expect_version\(\) \{\n.*?^\}\n", BUILD.read_text(), re.S | re.M).group(0)
    return subprocess.run(["bash", "-c", body + '\nexpect_version "$@"', "_", "etcdctl", want, *command],
                          capture_output=True, text=True, timeout=30)


def test_a_version_line_holding_a_word_of_the_arguments_is_still_recognised(tmp_path):
    """etcdctl's own `version` output (v3.6.14): the argument `version` is in its answer, and must stay there
    (the check once removed every argument from the output, and a cold build's etcd piece failed)."""
    real = fake_tool(tmp_path, "printf 'etcdctl version: 3.6.14\\nAPI version: 3.6\\n'")
    ok = expect_version("etcdctl version: 3.6.14", str(real), "version")
    assert ok.returncode == 0 and ok.stdout == "etcdctl: etcdctl version: 3.6.14\n", ok.stdout
    old = fake_tool(tmp_path, "printf 'etcdctl version: 3.5.0\\nAPI version: 3.5\\n'")
    wrong = expect_version("etcdctl version: 3.6.14", str(old), "version")
    assert wrong.returncode == 1 and "expected version etcdctl version: 3.6.14" in wrong.stdout


def test_the_commands_path_echoed_back_does_not_count(tmp_path):
    """A command that only echoes its own path (artifacts/etcd-v3.6.14/...) does not pass for that version."""
    echo = fake_tool(tmp_path, 'echo "usage: $0 [version]"')
    echoed = expect_version("etcd-v3.6.14", str(echo), "version")
    assert echoed.returncode == 1 and "got: usage:  [version]" in echoed.stdout, echoed.stdout
