#!/usr/bin/env bash
# Remove the node's certificates, configs and logs.
set -euo pipefail
rm -rf /var/lib/kubernetes /etc/etcd /etc/kubernetes/config /var/log/kubernetes
