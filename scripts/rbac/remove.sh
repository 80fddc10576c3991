#!/usr/bin/env bash
# Remove the cluster-wide RBAC; an apiserver that is already gone is fine.
set -euo pipefail
kc=/var/lib/kubernetes/super-admin.kubeconfig
[ -f "$kc" ] || exit 0
timeout 30 kubectl --kubeconfig "$kc" --request-timeout=5s delete --ignore-not-found \
  clusterrolebinding/system:kube-apiserver clusterrolebinding/kubeadm:cluster-admins \
  clusterrole/system:kube-apiserver-to-kubelet >/dev/null 2>&1 || true
