"""Real tools the tests run (nginx, openssl, ...): found on PATH or in /usr/sbin, else installed from
Debian's packages when running as root (as CI does), else the test fails with the install command.

A test that needs root skips without it, except where nothing may be skipped (REQUIRE: CI=true or
KTHW_REQUIRE_TOOLS=1), where it fails."""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

_SBIN = ("/usr/sbin", "/sbin")
REQUIRE = os.environ.get("CI") == "true" or os.environ.get("KTHW_REQUIRE_TOOLS") == "1"


def require_root(why: str) -> None:
    """Skip the calling test when not root, saying `why`; fail instead under REQUIRE."""
    if os.geteuid() != 0:
        if REQUIRE:
            pytest.fail(f"{why}; not root, and CI=true or KTHW_REQUIRE_TOOLS=1 forbids skipping")
        pytest.skip(why)


def _which(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    return next((str(Path(d) / binary) for d in _SBIN if (Path(d) / binary).exists()), None)


@lru_cache(maxsize=None)
def _apt_updated() -> bool:
    subprocess.run(["apt-get", "update", "-q"], check=True, timeout=600, capture_output=True)
    return True


def require(binary: str, package: str) -> str:
    """The path of `binary`, installing Debian package `package` if it is missing and we are root."""
    path = _which(binary)
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_updated()
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                       check=True, timeout=600, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        path = _which(binary)
    if path is None:
        pytest.fail(f"{binary} is missing: apt-get install -y {package}")
    return path
