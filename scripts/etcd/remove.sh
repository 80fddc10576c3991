#!/usr/bin/env bash
# Stop etcd and remove its unit and data.
set -euo pipefail
timeout 60 systemctl disable --now etcd >/dev/null 2>&1 || true
rm -f /etc/systemd/system/etcd.service /var/lib/kubernetes/.etcd.inputs
systemctl daemon-reload || true
rm -rf /var/lib/etcd
