"""What the apiserver's admission and authentication configs hold, from the stack's config: the admission plugins
it enables, the AdmissionConfiguration's settings (Pod Security Admission's defaults, EventRateLimit's buckets) and
the AuthenticationConfiguration's OIDC issuer. The templates under scripts/kube-apiserver/ render these values; the
PKI's file table places the files (docs/hardening.md: 1.2.9, 1.2.11, 3.1.1, 5.2.x)."""
from __future__ import annotations

from typing import Any, Optional

from components.config import StackConfig

# Always on: NodeRestriction (kubelets change only their own Node and pods), DenyServiceExternalIPs (CVE-2020-8554).
ADMISSION_PLUGINS = ("NodeRestriction", "DenyServiceExternalIPs")
# EventRateLimit (kthw:eventRateLimit): what the apiserver takes in events, over all (Server) and per namespace.
EVENT_RATE_LIMITS = (
    {"type": "Server", "qps": 50, "burst": 100},
    {"type": "Namespace", "qps": 10, "burst": 50, "cacheSize": 2000},
)
# Pod Security Admission: a namespace without its own labels is enforced at kthw:podSecurityEnforce and audited and
# warned at restricted; kube-system (the workers' CNI, kube-proxy: host networking) is exempt.
POD_SECURITY_AUDIT_WARN = "restricted"
POD_SECURITY_EXEMPT_NAMESPACES = ("kube-system",)


def admission_plugins(cfg: StackConfig) -> str:
    """The apiserver's `--enable-admission-plugins` (the default ones, PodSecurity among them, stay on)."""
    optional = (("EventRateLimit", cfg.event_rate_limit), ("AlwaysPullImages", cfg.always_pull_images))
    return ",".join([*ADMISSION_PLUGINS, *(name for name, wanted in optional if wanted)])


def oidc(cfg: StackConfig) -> Optional[dict[str, Any]]:
    """The OIDC issuer the authentication config trusts (None: no kthw:oidcIssuerUrl)."""
    if not cfg.oidc_issuer_url:
        return None
    return {"issuer_url": cfg.oidc_issuer_url, "client_id": cfg.oidc_client_id, "ca_pem": cfg.oidc_ca_pem,
            "username_claim": cfg.oidc_username_claim, "username_prefix": cfg.oidc_username_prefix,
            "groups_claim": cfg.oidc_groups_claim, "groups_prefix": cfg.oidc_groups_prefix}


def template_values(cfg: StackConfig) -> dict[str, Any]:
    """What the file table's templates take (every one gets the same values)."""
    return {
        "event_rate_limits": list(EVENT_RATE_LIMITS) if cfg.event_rate_limit else [],
        "pod_security": {"enforce": cfg.pod_security_enforce, "audit": POD_SECURITY_AUDIT_WARN,
                         "warn": POD_SECURITY_AUDIT_WARN, "exempt_namespaces": list(POD_SECURITY_EXEMPT_NAMESPACES)},
        "oidc": oidc(cfg),
    }
