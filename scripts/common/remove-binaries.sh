#!/usr/bin/env bash
# Remove the Kubernetes binaries install-binaries installed; missing files are fine.
set -euo pipefail
rm -f /usr/local/bin/kube-apiserver /usr/local/bin/kube-controller-manager /usr/local/bin/kube-scheduler \
  /usr/local/bin/kubectl
