"""Where kthw puts things on a controller: the one module that spells a host path.

Templates under scripts/ get these as `paths` (components/render.py); the PKI's file table
(`FILES` in components/pki/table.py) places every certificate, key and config under them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostPaths:
    kubernetes: str = "/var/lib/kubernetes"  # the kube components' certs, keys, kubeconfigs and configs (0700)
    etcd: str = "/etc/etcd"  # etcd's certs and its cluster.env (0700)
    etcd_data: str = "/var/lib/etcd"  # etcd's data dir
    config: str = "/etc/kubernetes/config"  # component config files (kube-scheduler.yaml)
    logs: str = "/var/log/kubernetes"  # the apiserver's audit log
    bin: str = "/usr/local/bin"  # the release binaries
    sbin: str = "/usr/local/sbin"  # kthw's own commands (kthw-etcd-backup)
    systemd: str = "/etc/systemd/system"  # units
    etcd_backups: str = "/var/backups/etcd"  # the snapshot timer's snapshots
    healthz_site: str = "/etc/nginx/sites-available/kubernetes-healthz"  # the LB health proxy's nginx site
    apt_lock: str = "/run/lock/kthw-apt.lock"  # one apt-get at a time across kthw's parallel steps
    staged: str = "/var/lib/kthw/staged"  # new files and service binaries wait here (0700) for their service's switch
    probe_digests: str = "/var/lib/kthw/probe-digests.json"  # the drift probe's digests by stat key (0600)
    ssh_host_key: str = "/etc/ssh/kthw_host_ed25519_key"  # the program's host key (first boot), sshd's only one
    restore: str = ".kthw-restore"  # under the login user's home (0700): where a snapshot to restore is copied

    def unit(self, name: str) -> str:
        """A systemd unit's file."""
        return f"{self.systemd}/{name}.service"

    def binary(self, name: str) -> str:
        return f"{self.bin}/{name}"

    @property
    def staged_bin(self) -> str:
        """Where the binaries step stages the service binaries."""
        return f"{self.staged}/bin"

    @property
    def staged_files(self) -> str:
        """Where the files step unpacks a node's files, each under its live path."""
        return f"{self.staged}/files"

    def staged_file(self, path: str) -> str:
        return f"{self.staged_files}{path}"

    def staged_binary(self, name: str) -> str:
        return f"{self.staged_bin}/{name}"


HOST = HostPaths()


@dataclass(frozen=True)
class HostDir:
    """A directory the files step keeps as it is here (made, or put back when its mode or owner drifted)."""

    path: str
    mode: int
    owner: str = "root"
    group: str = "root"
    create: bool = True  # False: only put back where it exists (another step makes it)


# The directories kthw's files live in, their modes and owners (the drift probe watches them too).
DIRECTORIES = (
    HostDir(HOST.kubernetes, 0o700),
    HostDir(HOST.staged, 0o700),
    HostDir(HOST.staged_files, 0o700),
    HostDir(HOST.etcd, 0o750, group="etcd"),  # etcd (its own user) reads its certs and keys here
    HostDir(HOST.etcd_data, 0o700, owner="etcd", group="etcd", create=False),  # etcd's membership step makes it
    HostDir(HOST.config, 0o755),
    HostDir(HOST.logs, 0o755),
)
