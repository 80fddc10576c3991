#!/usr/bin/env bash
# Remove what install-binaries installed; missing files are fine.
set -euo pipefail
rm -f /usr/local/bin/kube-apiserver /usr/local/bin/kube-controller-manager /usr/local/bin/kube-scheduler \
  /usr/local/bin/kubectl /usr/local/bin/etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl
