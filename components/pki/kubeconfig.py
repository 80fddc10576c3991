"""Render a kubeconfig with embedded credentials (the caller keeps it a Pulumi secret)."""
from __future__ import annotations

import base64

import yaml

CLUSTER = "kubernetes"


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def render(*, ca_pem: str, cert_pem: str, key_pem: str, server: str, user: str) -> str:
    """A kubeconfig for `user` at `server`, trusting `ca_pem`, with a client cert and key embedded."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(cert_pem),
                                          "client-key-data": _b64(key_pem)}}],
        "contexts": [{"name": f"{user}@{CLUSTER}", "context": {"cluster": CLUSTER, "user": user}}],
        "current-context": f"{user}@{CLUSTER}",
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)
