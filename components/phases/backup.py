"""etcd's snapshots: the timer that takes them on every node (kthw:etcdBackupSchedule, kthw:etcdBackupKeep), and a
new cluster's start from one (kthw:etcdRestoreFrom), copied to every node before its etcd starts."""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from components.config import StackConfig
from components.phases.cluster import Cluster
from components.phases.remote import RemoteSteps
from components.paths import HOST
from components.render import render
from components.ssh import connection


def timer_script(cfg: StackConfig) -> str:
    """The snapshot command, its service and its timer."""
    backup = render("etcd/backup.sh.j2", backup_dir=HOST.etcd_backups, keep=cfg.etcd_backup_keep)
    return render("etcd/install-backup.sh.j2", schedule=cfg.etcd_backup_schedule,
                  backup_script=backup.rstrip("\n"),
                  service_unit=render("etcd/kthw-etcd-backup.service.j2").rstrip("\n"),
                  timer_unit=render("etcd/kthw-etcd-backup.timer.j2", schedule=cfg.etcd_backup_schedule).rstrip("\n"))


def snapshot_timers(cluster: Cluster, run: RemoteSteps, after: dict[str, pulumi.Resource]) -> list[remote.Command]:
    """The timer on every node, once its member is part of a healthy cluster (`after[node]`)."""
    install = timer_script(cluster.config)
    return [run.run(h, "etcd-backup", install, render("etcd/remove-backup.sh.j2"), depends_on=[after[h.name]])
            for h in cluster.hosts]


def restore_source(cfg: StackConfig) -> Optional[dict[str, str]]:
    """The snapshot a new cluster starts from: its digest and where hosts get it.

    `path` is relative to the login user's home (SFTP resolves it there): pulumi-command's CopyToRemote writes
    with the SFTP server's default mode (0644), so the copy lands in HOST.restore, a 0700 directory made first.
    """
    path = cfg.etcd_restore_from
    if not path:
        return None
    with open(path, "rb") as snapshot:
        digest = hashlib.file_digest(snapshot, "sha256").hexdigest()
    return {"source": path, "sha256": digest, "path": f"{HOST.restore}/etcd-{digest[:12]}.db"}


def copy_snapshot(cluster: Cluster, restore: Optional[dict[str, str]], depends_on: Sequence[pulumi.Resource]
                  ) -> dict[str, list[pulumi.Resource]]:
    """With a restore, the snapshot on every node, in a directory only the login user (and root) can read."""
    if not restore:
        return {}
    copies: dict[str, list[pulumi.Resource]] = {}
    for h in cluster.hosts:
        private_dir = remote.Command(
            f"{cluster.prefix}-{h.name}-etcd-snapshot-dir", connection=connection(h),
            create=f'install -d -m 0700 "$HOME/{HOST.restore}"', delete=f'rm -rf "$HOME/{HOST.restore}"',
            add_previous_output_in_env=False, opts=cluster.child(depends_on))
        copies[h.name] = [remote.CopyToRemote(
            f"{cluster.prefix}-{h.name}-etcd-snapshot", connection=connection(h),
            source=pulumi.FileAsset(restore["source"]), remote_path=restore["path"],
            opts=cluster.child([private_dir]))]
    return copies
