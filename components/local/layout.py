"""Names, addresses and paths of one local stack: the single source of truth the scripts are given.

Every machine-wide name carries the stack, so two stacks never share a bridge, namespace, veth, container,
state dir or process:
- bridge `kt-<tag>-br` and host-side veths `kt-<tag>-<i>` (Linux interface names are at most 15 chars;
  <tag> is the stack name if it is a short [a-z0-9] word, else 2 chars of it plus 4 hex of its hash);
- network namespace and nspawn machine `kthw-<stack>-<host>`;
- state `${KTHW_STATE:-~/.local/state/kthw}/stacks/<stack>/` with `hosts/<host>/{upper,work,root,...}`, `lb/`,
  `fileserver/`; the base root is cached under `${KTHW_CACHE:-~/.cache/kthw}/rootfs/` (shared by stacks).
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from components.addressing import controller_ips, subnet_problem

FILE_SERVER_PORT = 8443  # the release mirror (HTTPS)
MAX_UNIX_SOCKET_PATH = 107


def default_state_root() -> Path:
    return Path(os.environ.get("KTHW_STATE") or Path.home() / ".local/state/kthw")


def default_cache_root() -> Path:
    return Path(os.environ.get("KTHW_CACHE") or Path.home() / ".cache/kthw")


def stack_id(stack: str) -> str:
    """The stack name made safe for file, namespace and machine names."""
    clean = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")
    if not clean:
        raise ValueError(f"stack name {stack!r} has no usable characters")
    return clean[:40]


def iface_tag(stack: str) -> str:
    """A short tag for interface names (<= 6 chars)."""
    clean = re.sub(r"[^a-z0-9]+", "", stack.lower())
    if clean == stack and 0 < len(clean) <= 6:
        return clean
    return (clean[:2] or "s") + hashlib.sha256(stack.encode()).hexdigest()[:4]


@dataclass(frozen=True)
class HostLayout:
    index: int
    name: str  # hostname, e.g. controller-0
    ip: str  # e.g. 198.18.0.10
    ip_cidr: str  # e.g. 198.18.0.10/24
    netns: str
    machine: str
    veth: str
    dir: Path

    @property
    def pidfile(self) -> Path:
        return self.dir / "nspawn.pid"

    @property
    def generation_file(self) -> Path:
        return self.dir / "generation"


@dataclass(frozen=True)
class LocalLayout:
    stack: str
    id: str
    tag: str
    network: ipaddress.IPv4Network
    gateway: str  # the bridge's address: the LB and the file server listen here
    bridge: str
    state_dir: Path
    cache_root: Path
    hosts: tuple[HostLayout, ...]
    file_server_port: int = FILE_SERVER_PORT

    @classmethod
    def build(cls, stack: str, host_names: list[str], node_cidr: str, state_root: Optional[Path] = None,
              cache_root: Optional[Path] = None, file_server_port: int = FILE_SERVER_PORT) -> "LocalLayout":
        sid, tag = stack_id(stack), iface_tag(stack)
        net = ipaddress.ip_network(node_cidr, strict=True)
        if not isinstance(net, ipaddress.IPv4Network):
            raise ValueError(f"node subnet {node_cidr} must be IPv4")
        problem = subnet_problem(node_cidr, len(host_names))
        if problem:
            raise ValueError(f"node subnet {node_cidr} {problem}")
        if len(host_names) > 10:
            raise ValueError("at most 10 local hosts")
        # Under stacks/: the state root also holds scripts/pulumi's backend, home and passphrase.
        state_dir = Path(state_root or default_state_root()).absolute() / "stacks" / sid
        hosts = tuple(
            HostLayout(index=i, name=name, ip=ip, ip_cidr=f"{ip}/{net.prefixlen}",
                       netns=f"kthw-{sid}-{name}", machine=f"kthw-{sid}-{name}", veth=f"kt-{tag}-{i}",
                       dir=state_dir / "hosts" / name)
            for i, (name, ip) in enumerate(zip(host_names, controller_ips(node_cidr, len(host_names)))))
        layout = cls(stack=stack, id=sid, tag=tag, network=net, gateway=str(net[1]), bridge=f"kt-{tag}-br",
                     state_dir=state_dir, cache_root=Path(cache_root or default_cache_root()).absolute(),
                     hosts=hosts, file_server_port=file_server_port)
        if len(str(layout.stats_socket)) > MAX_UNIX_SOCKET_PATH:
            raise ValueError(f"state dir {state_dir} is too long for HAProxy's stats socket "
                             f"({layout.stats_socket}); set KTHW_STATE to a shorter path")
        return layout

    @property
    def gateway_cidr(self) -> str:
        return f"{self.gateway}/{self.network.prefixlen}"

    @property
    def lb_dir(self) -> Path:
        return self.state_dir / "lb"

    @property
    def stats_socket(self) -> Path:
        return self.lb_dir / "haproxy.sock"

    @property
    def file_server_dir(self) -> Path:
        return self.state_dir / "fileserver"

    @property
    def network_generation_file(self) -> Path:
        return self.state_dir / "network.generation"

    @property
    def toolchain_dir(self) -> Path:
        return self.cache_root / "toolchain"

    @property
    def etc_hosts(self) -> str:
        """`ip name` lines for every controller (each host's /etc/hosts gets its peers)."""
        return "\n".join(f"{h.ip} {h.name}" for h in self.hosts)

    def network_env(self) -> dict[str, str]:
        return {"KTHW_BRIDGE": self.bridge, "KTHW_GATEWAY_CIDR": self.gateway_cidr,
                "KTHW_STATE_DIR": str(self.state_dir),
                "KTHW_GENERATION_FILE": str(self.network_generation_file)}

    def host_env(self, host: HostLayout) -> dict[str, str]:
        """Everything host.sh needs except KTHW_BASE_ROOT, KTHW_AUTHORIZED_KEY and KTHW_GENERATION."""
        return {"KTHW_HOST": host.name, "KTHW_HOST_DIR": str(host.dir), "KTHW_NETNS": host.netns,
                "KTHW_BRIDGE": self.bridge, "KTHW_VETH": host.veth, "KTHW_MACHINE": host.machine,
                "KTHW_IP_CIDR": host.ip_cidr, "KTHW_GATEWAY": self.gateway, "KTHW_ETC_HOSTS": self.etc_hosts,
                "KTHW_GENERATION_FILE": str(host.generation_file)}

    def lb_env(self, api_port: int) -> dict[str, str]:
        return {"KTHW_LB_DIR": str(self.lb_dir), "KTHW_LB_ADDRESS": self.gateway, "KTHW_LB_PORT": str(api_port),
                "KTHW_GENERATION_FILE": str(self.lb_dir / "generation")}

    def file_server_env(self, root: Path) -> dict[str, str]:
        return {"KTHW_FS_DIR": str(self.file_server_dir), "KTHW_FS_ROOT": str(root),
                "KTHW_FS_ADDRESS": self.gateway, "KTHW_FS_PORT": str(self.file_server_port),
                "KTHW_GENERATION_FILE": str(self.file_server_dir / "generation")}
