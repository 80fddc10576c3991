"""What the program observes of a local stack's live parts on this machine, when it is evaluated.

pulumi-command's `local.Command` cannot notice that the process it started has died (its refresh reads
nothing), so LocalInfra makes that visible itself: each long-lived part (the bridge, each host, the LB, the
file server) records, after a successful `up`, the *generation* it was created or repaired for. On every
evaluation (`pulumi up`, `pulumi preview`, with or without --refresh) the program reads that number and
checks that the part is alive; if it is, the generation stays as recorded (no diff, so a second `up` makes
no change); if it is not, the program asks for the next generation, which changes the resource's
`environment`, so the engine runs its `update` command: the same idempotent `up` script, which rebuilds
whatever is missing (namespace, veth, mount, container, process) and records the new generation.
Only reads: files under the state dir, /proc, /sys/class/net and /run/netns.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from components.local.layout import HostLayout, LocalLayout


def read_generation(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def pid_alive(pidfile: Path, marker: str) -> bool:
    """The pidfile's process exists, is not a zombie and its command line contains `marker`."""
    try:
        pid = int(pidfile.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def bridge_up(layout: LocalLayout) -> bool:
    return Path(f"/sys/class/net/{layout.bridge}").exists()


def host_alive(layout: LocalLayout, host: HostLayout) -> bool:
    master = Path(f"/sys/class/net/{host.veth}/master")
    try:
        on_bridge = master.resolve().name == layout.bridge
    except OSError:
        on_bridge = False
    return (pid_alive(host.pidfile, host.machine) and Path(f"/run/netns/{host.netns}").exists()
            and on_bridge and (host.dir / "root" / "etc").is_dir())


def lb_alive(layout: LocalLayout) -> bool:
    return pid_alive(layout.lb_dir / "haproxy.pid", str(layout.lb_dir / "haproxy.cfg"))


def file_server_alive(layout: LocalLayout, root: Optional[Path] = None) -> bool:
    config = layout.file_server_dir / "nginx.conf"
    if not pid_alive(layout.file_server_dir / "http.pid", f"-c {config}"):
        return False
    if root is None:
        return True
    try:
        text = config.read_text()
    except OSError:
        return False
    return f"root {root};" in text and f"listen {layout.gateway}:{layout.file_server_port} ssl;" in text


def generation(path: Path, alive: bool) -> str:
    """The generation to ask for: the recorded one while the part lives, the next one when it does not."""
    recorded = read_generation(path)
    return str(recorded if alive else recorded + 1)
