#!/usr/bin/env bash
# Unpack the node's certificates and configs from stdin (a base64 tar); nothing touches a local disk.
set -euo pipefail
umask 077
install -d -m 0700 /var/lib/kubernetes /etc/etcd
install -d -m 0755 /etc/kubernetes/config /var/log/kubernetes
base64 -d | tar -x -C / --no-same-owner --no-overwrite-dir
echo "files in place"
