"""Pulumi components of the kthw project: infra (azure, gcp, local), PKI and control plane."""
