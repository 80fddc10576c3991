"""Stack configuration (namespace `kthw:`), read and validated before any resource is registered."""
from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Callable, Mapping, Optional, Sequence

import pulumi

from components import addressing, releases
from components.infra import LB_PROBES, HealthCheckStyle

CLOUDS = ("azure", "gcp", "local")
ENCRYPTION_PROVIDERS = ("secretbox", "aesgcm", "aescbc")
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")  # Pod Security Admission's levels
WHOLE_INTERNET = ("0.0.0.0/0", "::/0", "*", "internet", "any")


class ConfigError(ValueError):
    """One or more bad config values; the message names every key and what is allowed."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class StackConfig:
    """The validated, typed view of the stack's `kthw:` config: a field holds the key of its name in camelCase
    (or of the `key` in its metadata), and its default is that of an unset key (CLOUD_DEFAULTS: where a cloud's
    differs)."""

    cloud: str
    controller_count: int = 3
    kubernetes_version: str = releases.DEFAULT_KUBERNETES
    etcd_version: str = releases.DEFAULT_ETCD
    # Clouds: refuse versions whose digests components/releases.json lacks, instead of resolving them from the
    # published checksum files at the first `up` (components/release_digests.py).
    require_pinned_digests: bool = False
    service_cidr: str = "10.32.0.0/24"
    cluster_cidr: str = "10.200.0.0/16"
    node_cidr: str = "10.240.0.0/24"
    cluster_domain: str = "cluster.local"
    admin_cidrs: tuple[str, ...] = ()
    encryption_provider: str = "secretbox"
    api_server_dns_name: Optional[str] = None
    health_check: Optional[HealthCheckStyle] = None  # None: the cloud's default (its Infra.health_checks)
    local_lb_probe: str = "haproxy"  # local: the LB probes with its own timings, or Azure's or GCP's
    # The one controller whose machine `up` replaces now (scripts/replace-controller sets it): see machines.py.
    replace_controller: Optional[str] = None
    cert_validity_hours: int = 8760
    admin_cert_validity_hours: int = 24  # the admin's client cert: short-lived, renewed by `up` after half of it
    etcd_heartbeat_ms: int = field(default=100, metadata={"key": "etcdHeartbeatInterval"})
    etcd_election_ms: int = field(default=1000, metadata={"key": "etcdElectionTimeout"})
    etcd_backup_schedule: str = "hourly"  # systemd OnCalendar of the snapshot timer on every controller
    etcd_backup_keep: int = 24  # snapshots kept per controller
    etcd_restore_from: Optional[str] = None  # absolute path of a snapshot a new cluster starts from
    encryption_key: Optional[str] = field(default=None, repr=False)  # base64 32 bytes; default: generated
    # A rotation's other keys (scripts/rotate-encryption-key): the next one, readable before any apiserver
    # writes with it; the previous one, readable until every Secret is rewritten with the new key.
    encryption_key_next: Optional[str] = field(default=None, repr=False)
    encryption_key_previous: Optional[str] = field(default=None, repr=False)
    # Admission (components/apiserver_config.py, docs/hardening.md 1.2.9, 1.2.11, 5.2.x).
    event_rate_limit: bool = True  # EventRateLimit: bounds the events the apiserver takes (server, per namespace)
    always_pull_images: bool = False  # AlwaysPullImages: off, every pod start would depend on the registry
    pod_security_enforce: str = "baseline"  # Pod Security Admission's cluster-wide enforce level
    # OIDC login (a `jwt` authenticator in authentication-config.yaml); unset issuer: none.
    oidc_issuer_url: Optional[str] = None
    oidc_client_id: Optional[str] = None  # the audience the issuer's tokens carry
    oidc_username_claim: str = "sub"
    oidc_username_prefix: str = "oidc:"
    oidc_groups_claim: Optional[str] = None
    oidc_groups_prefix: str = "oidc:"
    oidc_ca_pem: Optional[str] = None  # the issuer's CA (PEM), for an issuer with a private CA

    @property
    def service_ip(self) -> str:
        """The `kubernetes` Service's cluster IP: the first address of the service range."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def controller_names(self) -> list[str]:
        return controller_names(self.controller_count)


def controller_names(count: int) -> list[str]:
    """The controllers' names (their hostnames): controller-0, controller-1, ..."""
    return [f"controller-{i}" for i in range(count)]


# An unset key's value on one cloud, where it differs from StackConfig's default (by field name).
CLOUD_DEFAULTS: dict[str, dict[str, Any]] = {
    "local": {"node_cidr": "198.18.0.0/24"},  # a range no real network uses (198.18.0.0/15, RFC 2544)
}


def _key(f: Field) -> str:
    """The `kthw:` key a StackConfig field holds."""
    first, *rest = f.name.split("_")
    return f.metadata.get("key", first + "".join(word.capitalize() for word in rest))


def defaults(cloud: Optional[str]) -> dict[str, Any]:
    """Each `kthw:` key's value when it is unset on `cloud`."""
    overrides = CLOUD_DEFAULTS.get(cloud or "", {})
    return {_key(f): overrides.get(f.name, f.default) for f in fields(StackConfig) if f.default is not MISSING}


_DEFAULT: Any = object()  # a _Reader method's default: the reader's `defaults` for the key


class _Reader:
    """Reads keys from a config source, collecting every problem instead of stopping at the first; an unset
    key reads as the `default` given, else as `defaults[key]` (None where it has none)."""

    def __init__(self, get: Callable[[str], Optional[str]]):
        self._get = get
        self.defaults: Mapping[str, Any] = {}
        self.problems: list[str] = []

    def _default(self, key: str, default: Any) -> Any:
        return self.defaults.get(key) if default is _DEFAULT else default

    def str(self, key: str, default: Optional[str] = _DEFAULT) -> Optional[str]:
        value = self._get(key)
        return self._default(key, default) if value is None or value == "" else value.strip()

    def int(self, key: str, default: int = _DEFAULT) -> int:
        default = self._default(key, default)
        value = self._get(key)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            self.fail(key, f"must be a whole number, got {value!r}")
            return default

    def bool(self, key: str, default: bool = _DEFAULT) -> bool:
        default = self._default(key, default)
        value = self._get(key)
        if value is None or value == "":
            return default
        if value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.fail(key, f"must be true or false, got {value!r}")
        return default

    def list(self, key: str) -> tuple[str, ...]:
        import json

        value = self._get(key)
        if value is None or value == "":
            return ()
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = [part.strip() for part in value.split(",")]
        if isinstance(parsed, str):
            parsed = [parsed]
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            self.fail(key, f"must be a list of strings, got {value!r}")
            return ()
        return tuple(p.strip() for p in parsed if p.strip())

    def is_set(self, key: str) -> bool:
        return self._get(key) not in (None, "")

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"kthw:{key} {message}")


def _network(reader: _Reader, key: str, value: str) -> Optional[ipaddress.IPv4Network]:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        reader.fail(key, f"must be an IPv4 CIDR such as 10.32.0.0/24, got {value!r} ({err})")
        return None
    if not isinstance(net, ipaddress.IPv4Network):
        reader.fail(key, f"must be an IPv4 CIDR, got {value!r}")
        return None
    return net


def _is_dns_name(value: str) -> bool:
    labels = value.rstrip(".").split(".")
    return len(value) <= 253 and all(
        0 < len(label) <= 63
        and label[0].isalnum()
        and label[-1].isalnum()
        and all(c.isalnum() or c == "-" for c in label)
        for label in labels
    )


def parse(get: Callable[[str], Optional[str]], stack: str = "",
          is_secret: Callable[[str], bool] = lambda key: True) -> StackConfig:
    """Build a StackConfig from a key getter (e.g. `pulumi.Config("kthw").get`); raise ConfigError.

    `is_secret(key)` tells whether a key was set with --secret (keys that hold key material must be)."""
    r = _Reader(get)
    cloud = r.str("cloud", stack if stack in CLOUDS else None)
    if cloud not in CLOUDS:
        r.fail("cloud", f"must be one of {', '.join(CLOUDS)}, got {cloud!r}")
    r.defaults = defaults(cloud)

    count = r.int("controllerCount")
    if not 1 <= count <= 7 or count % 2 == 0:
        r.fail("controllerCount", f"must be odd and between 1 and 7 (etcd needs a majority), got {count}")

    k8s = r.str("kubernetesVersion")
    if k8s not in releases.KUBERNETES:
        r.fail("kubernetesVersion", f"must be one of the checksum table's versions "
               f"{', '.join(releases.KUBERNETES)}, got {k8s!r}")
    etcd = r.str("etcdVersion")
    if etcd not in releases.ETCD:
        r.fail("etcdVersion", f"must be one of the checksum table's versions {', '.join(releases.ETCD)}, got {etcd!r}")
    require_pinned = r.bool("requirePinnedDigests")

    service = r.str("serviceCidr")
    cluster = r.str("clusterCidr")
    node = r.str("nodeCidr")
    nets = {key: _network(r, key, value) for key, value in
            (("serviceCidr", service), ("clusterCidr", cluster), ("nodeCidr", node))}
    for a, b in (("clusterCidr", "serviceCidr"), ("clusterCidr", "nodeCidr"), ("serviceCidr", "nodeCidr")):
        if nets[a] and nets[b] and nets[a].overlaps(nets[b]):
            r.fail(a, f"{nets[a]} must not overlap {b} {nets[b]}")
    if nets["serviceCidr"] and nets["serviceCidr"].num_addresses < 4:
        r.fail("serviceCidr", "must hold at least 4 addresses")
    node_problem = nets["nodeCidr"] and addressing.subnet_problem(node, count)
    if node_problem:
        r.fail("nodeCidr", node_problem)

    domain = r.str("clusterDomain")
    if not _is_dns_name(domain):
        r.fail("clusterDomain", f"must be a DNS name such as cluster.local, got {domain!r}")

    admin = r.list("adminCidrs")
    for cidr in admin:
        if cidr.lower() in WHOLE_INTERNET or cidr.endswith("/0"):
            r.fail("adminCidrs", f"must not open SSH and 6443 to the whole internet ({cidr!r}); "
                   "list your own addresses, e.g. 203.0.113.7/32")
            continue
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            r.fail("adminCidrs", f"holds {cidr!r}, which is not a CIDR such as 203.0.113.7/32")
    if cloud in ("azure", "gcp") and not admin:
        r.fail("adminCidrs", f"is required on {cloud}: the CIDRs that may reach SSH and 6443, "
               "e.g. pulumi config set --path 'kthw:adminCidrs[0]' 203.0.113.7/32")

    provider = r.str("encryptionProvider")
    if provider not in ENCRYPTION_PROVIDERS:
        r.fail("encryptionProvider", f"must be one of {', '.join(ENCRYPTION_PROVIDERS)}, got {provider!r}")

    dns_name = r.str("apiServerDnsName")
    if dns_name is not None and not _is_dns_name(dns_name):
        r.fail("apiServerDnsName", f"must be a DNS name such as k8s.example.com, got {dns_name!r}")

    health_name = r.str("healthCheck")
    health = None
    if health_name is not None:
        try:
            health = HealthCheckStyle(health_name)
        except ValueError:
            r.fail("healthCheck", f"must be one of {', '.join(s.value for s in HealthCheckStyle)}, "
                   f"got {health_name!r}")

    lb_probe = r.str("localLbProbe")
    if lb_probe not in LB_PROBES:
        r.fail("localLbProbe", f"must be one of {', '.join(LB_PROBES)} (whose probe timings the local LB takes), "
               f"got {lb_probe!r}")
    elif lb_probe != "haproxy" and cloud != "local":
        r.fail("localLbProbe", f"is for the local stack only; {cloud}'s load balancer probes with its own timings")

    replacing = r.str("replaceController")
    if replacing is not None and replacing not in controller_names(count):
        r.fail("replaceController", f"must name one controller (controller-0 .. controller-{count - 1}), "
               f"got {replacing!r}; scripts/replace-controller sets and removes it")

    validity = r.int("certValidityHours")
    if not 1 <= validity <= 87600:
        r.fail("certValidityHours", f"must be between 1 and 87600 (10 years), got {validity}")

    admin_validity = r.int("adminCertValidityHours")
    if not 2 <= admin_validity <= validity:
        r.fail("adminCertValidityHours", f"must be between 2 and kthw:certValidityHours ({validity}), "
               f"got {admin_validity}")

    heartbeat = r.int("etcdHeartbeatInterval")
    election = r.int("etcdElectionTimeout")
    if not 10 <= heartbeat <= 5000:
        r.fail("etcdHeartbeatInterval", f"must be between 10 and 5000 ms, got {heartbeat}")
    if not 5 * heartbeat <= election <= 50000:
        r.fail("etcdElectionTimeout", f"must be at least 5 x etcdHeartbeatInterval ({5 * heartbeat} ms) "
               f"and at most 50000 ms, got {election}")

    schedule = r.str("etcdBackupSchedule")
    if not re.fullmatch(r"[A-Za-z0-9*:,./~ -]{1,100}", schedule):
        r.fail("etcdBackupSchedule", f"must be a systemd OnCalendar expression such as hourly or "
               f"'*-*-* 00/6:00:00', got {schedule!r}")
    keep = r.int("etcdBackupKeep")
    if not 1 <= keep <= 1000:
        r.fail("etcdBackupKeep", f"must be between 1 and 1000 snapshots, got {keep}")
    restore = r.str("etcdRestoreFrom")
    if restore is not None:
        restore = os.path.abspath(os.path.expanduser(restore))
        if not os.path.isfile(restore):
            r.fail("etcdRestoreFrom", f"must name an etcd snapshot file (scripts/etcd-backup makes one); "
                   f"{restore} does not exist")
    keys = {name: r.str(name) for name in ("encryptionKey", "encryptionKeyNext", "encryptionKeyPrevious")}
    for name, value in keys.items():
        if value is None:
            continue
        if not is_secret(name):
            r.fail(name, f"holds key material: set it with `pulumi config set --secret kthw:{name}`")
        try:
            raw_key = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw_key = b""
        if len(raw_key) != 32:
            r.fail(name, "must be 32 random bytes, base64-encoded (e.g. `head -c 32 /dev/urandom | base64`)")
    for name in ("encryptionKeyNext", "encryptionKeyPrevious"):
        if keys[name] is not None and keys["encryptionKey"] is None:
            r.fail(name, "needs kthw:encryptionKey (the key that encrypts now): see scripts/rotate-encryption-key")
        elif keys[name] is not None and keys[name] == keys["encryptionKey"]:
            r.fail(name, "must differ from kthw:encryptionKey")
    key = keys["encryptionKey"]

    event_rate_limit = r.bool("eventRateLimit")
    always_pull = r.bool("alwaysPullImages")
    pod_security = r.str("podSecurityEnforce")
    if pod_security not in POD_SECURITY_LEVELS:
        r.fail("podSecurityEnforce", f"must be one of {', '.join(POD_SECURITY_LEVELS)}, got {pod_security!r}")
    oidc = _oidc(r)

    if r.problems:
        raise ConfigError(r.problems)
    return StackConfig(
        cloud=cloud, controller_count=count, kubernetes_version=k8s, etcd_version=etcd,
        require_pinned_digests=require_pinned,
        service_cidr=service, cluster_cidr=cluster, node_cidr=node, cluster_domain=domain,
        admin_cidrs=admin, encryption_provider=provider, api_server_dns_name=dns_name,
        health_check=health, local_lb_probe=lb_probe, replace_controller=replacing, cert_validity_hours=validity,
        admin_cert_validity_hours=admin_validity,
        etcd_heartbeat_ms=heartbeat, etcd_election_ms=election,
        etcd_backup_schedule=schedule, etcd_backup_keep=keep, etcd_restore_from=restore, encryption_key=key,
        encryption_key_next=keys["encryptionKeyNext"], encryption_key_previous=keys["encryptionKeyPrevious"],
        event_rate_limit=event_rate_limit, always_pull_images=always_pull, pod_security_enforce=pod_security,
        **oidc,
    )


OIDC_KEYS = ("oidcIssuerUrl", "oidcClientId", "oidcUsernameClaim", "oidcUsernamePrefix", "oidcGroupsClaim",
             "oidcGroupsPrefix", "oidcCaPem")
_CLAIM = re.compile(r"[A-Za-z0-9_.:/-]{1,100}")


def _oidc(r: _Reader) -> dict[str, Any]:
    """The `kthw:oidc…` keys as StackConfig's `oidc_…` fields: an https issuer without query or fragment, the
    client id it issues tokens for, claim names, prefixes outside `system:`, and a CA that parses as PEM."""
    from urllib.parse import urlsplit

    values = {key: r.str(key) for key in OIDC_KEYS}
    issuer = values["oidcIssuerUrl"]
    if issuer is None:
        for key in OIDC_KEYS:
            if r.is_set(key):
                r.fail(key, "needs kthw:oidcIssuerUrl (OIDC login is off without an issuer)")
        return {}
    try:
        url = urlsplit(issuer)
        port_ok = url.port is None or url.port > 0
    except ValueError:
        url, port_ok = None, False
    if not (url and port_ok and url.scheme == "https" and url.hostname and not url.query and not url.fragment
            and url.username is None and url.password is None):
        r.fail("oidcIssuerUrl", f"must be an https URL without query or fragment, such as "
               f"https://login.example.com/realms/k8s (the tokens' `iss`), got {issuer!r}")
    if not values["oidcClientId"]:
        r.fail("oidcClientId", "is required with kthw:oidcIssuerUrl: the client id the issuer's tokens carry as "
               "their audience (`aud`)")
    for key in ("oidcUsernameClaim", "oidcGroupsClaim"):
        if values[key] is not None and not _CLAIM.fullmatch(values[key]):
            r.fail(key, f"must be a claim name such as sub, email or groups, got {values[key]!r}")
    for key in ("oidcUsernamePrefix", "oidcGroupsPrefix"):
        if values[key] is not None and values[key].startswith("system:"):
            r.fail(key, f"must not start with system: (OIDC users would name Kubernetes' own identities), "
                   f"got {values[key]!r}")
    if values["oidcCaPem"] is not None and not _certificates(values["oidcCaPem"]):
        r.fail("oidcCaPem", "must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)")
    return {f.name: values[_key(f)] for f in fields(StackConfig)
            if _key(f) in OIDC_KEYS and values[_key(f)] is not None}


def _certificates(pem: str) -> bool:
    """Whether `pem` holds only X.509 certificates (at least one)."""
    from cryptography import x509

    if pem.count("-----BEGIN") != pem.count("-----BEGIN CERTIFICATE-----"):
        return False
    try:
        return bool(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError:
        return False


def is_secret(key: str) -> bool:
    """Whether the stack's `kthw:<key>` was set with --secret."""
    from pulumi.runtime.config import is_config_secret

    return is_config_secret(f"kthw:{key}")


def load() -> StackConfig:
    """Read and validate the current stack's `kthw:` config."""
    return parse(pulumi.Config("kthw").get, pulumi.get_stack(), is_secret)
