#!/usr/bin/env bash
# Remove the etcd binaries install-binaries installed; missing files are fine.
set -euo pipefail
rm -f /usr/local/bin/etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl
