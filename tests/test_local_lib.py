"""scripts/local/lib.sh's process helpers, on processes and loopback ports the test makes itself."""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wait_own_listen_rides_out_an_exec(tmp_path):
    """A daemon whose cmdline gains its marker only after an exec (as HAProxy's master re-executes itself into
    wait mode right after it starts), then listens: waited for, not given up on at the first look."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    marker = str(tmp_path / "daemon.cfg")
    listener = tmp_path / "listen.py"
    listener.write_text(textwrap.dedent(f"""\
        import socket, sys, time
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", {port})); s.listen(1); time.sleep(20)
        """))
    starter = tmp_path / "start.py"
    starter.write_text(textwrap.dedent(f"""\
        import os, sys, time
        time.sleep(0.6)  # not yet the process the marker names
        os.execv(sys.executable, [sys.executable, {str(listener)!r}, {marker!r}])
        """))
    daemon = subprocess.Popen([sys.executable, str(starter)], stdin=subprocess.DEVNULL)
    try:
        (tmp_path / "pid").write_text(f"{daemon.pid}\n")
        start = time.monotonic()
        waited = subprocess.run(
            ["bash", "-c", f'source {ROOT}/scripts/local/lib.sh; wait_own_listen 127.0.0.1 {port} "$1" "$2" 5',
             "_", str(tmp_path / "pid"), marker], capture_output=True, text=True, timeout=30)
        assert waited.returncode == 0, waited.stderr
        assert time.monotonic() - start >= 0.5
    finally:
        daemon.kill()
        daemon.wait(timeout=10)
    # A process that exits is given up on at once, marker or not.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    (tmp_path / "pid").write_text(f"{gone.pid}\n")
    start = time.monotonic()
    waited = subprocess.run(["bash", "-c", f'source {ROOT}/scripts/local/lib.sh; wait_own_listen 127.0.0.1 {port} "$1" x 5',
                             "_", str(tmp_path / "pid")], capture_output=True, text=True, timeout=30)
    assert waited.returncode != 0 and time.monotonic() - start < 2
