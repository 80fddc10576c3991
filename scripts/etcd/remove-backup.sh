#!/usr/bin/env bash
# Remove the snapshot timer, its service and command; the snapshots in /var/backups/etcd stay.
set -euo pipefail
timeout 60 systemctl disable --now kthw-etcd-backup.timer >/dev/null 2>&1 || true
rm -f /etc/systemd/system/kthw-etcd-backup.timer /etc/systemd/system/kthw-etcd-backup.service \
  /usr/local/sbin/kthw-etcd-backup
systemctl daemon-reload || true
