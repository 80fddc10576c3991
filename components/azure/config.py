"""The Azure stack's own `kthw:` keys, read and validated before any resource is registered."""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from components.azure import regions
from components.boot import DEFAULT_ADMIN_USERNAME
from components.cloud_common import read_ssh_key_pair
from components.config import ConfigError, StackConfig, _Reader
from components.infra import HealthChecks, HealthCheckStyle

DEFAULT_LOCATION = "eastus2"
DEFAULT_VM_SIZE = "Standard_D2s_v5"
DEFAULT_IMAGE = "Canonical:ubuntu-24_04-lts:server:latest"

_VM_SIZE = re.compile(r"^Standard_[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*$")
_IMAGE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Names Azure refuses as a Linux VM's admin user (a subset of its list: the likely ones).
_RESERVED_USERNAMES = frozenset({
    "root", "admin", "administrator", "adm", "user", "guest", "test", "sys", "support", "backup",
    "console", "owner", "server", "sql", "aspnet", "actuser", "admin1", "admin2", "user1", "test1",
})
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa")  # Azure refuses ECDSA keys; RSA must have >= 2048 bits
HEALTH_CHECKS = HealthChecks(
    "azure", (HealthCheckStyle.HTTPS_READYZ, HealthCheckStyle.TCP),
    why="a Standard load balancer probes HTTPS /readyz itself, so the http-healthz-proxy (nginx on port 80, "
        "for GCP's legacy checks) is not used")


@dataclass(frozen=True)
class ImageRef:
    """A marketplace image URN `publisher:offer:sku:version`."""

    publisher: str
    offer: str
    sku: str
    version: str


@dataclass(frozen=True)
class AzureConfig:
    """The validated Azure settings."""

    location: str = DEFAULT_LOCATION
    zones: tuple[str, ...] = regions.ZONES  # () in a region without zones
    vm_size: str = DEFAULT_VM_SIZE
    image: ImageRef = ImageRef(*DEFAULT_IMAGE.split(":"))
    admin_username: str = DEFAULT_ADMIN_USERNAME
    ssh_public_key: Optional[str] = None  # None: generate a key pair with pulumi-tls
    ssh_private_key: Optional[str] = field(default=None, repr=False)  # wrapped as a secret where used


def load_azure_config(get: Callable[[str], Optional[str]], config: StackConfig,
                      is_secret: Optional[Callable[[str], bool]] = None) -> AzureConfig:
    """Read the Azure keys with `get` (e.g. `pulumi.Config("kthw").get`); raise ConfigError naming each bad key.

    `is_secret(key)` (e.g. `pulumi.runtime.is_config_secret("kthw:" + key)`) lets a private key given in
    plain text be refused.
    """
    r = _Reader(get)
    location = _location(r)
    zones = _zones(r, location, get("zones"))

    vm_size = r.str("vmSize", DEFAULT_VM_SIZE)
    if not _VM_SIZE.match(vm_size):
        r.fail("vmSize", f"must be an Azure VM size such as {DEFAULT_VM_SIZE} or Standard_B2s, got {vm_size!r}")

    image = _image(r)

    username = r.str("adminUsername", DEFAULT_ADMIN_USERNAME)
    if not _USERNAME.match(username) or username in _RESERVED_USERNAMES:
        r.fail("adminUsername", "must be a Linux user name (lower case, 1-32 characters) that Azure allows "
               f"(not root, admin, ...), such as {DEFAULT_ADMIN_USERNAME}, got {username!r}")

    public_key, private_key = read_ssh_key_pair(r, is_secret, SSH_KEY_TYPES)
    health_problem = HEALTH_CHECKS.problem(config.health_check)
    if health_problem:
        r.fail("healthCheck", health_problem)

    if not config.admin_cidrs:
        r.fail("adminCidrs", "is required on azure: the CIDRs that may reach SSH and 6443, e.g. 203.0.113.7/32")
    for cidr in config.admin_cidrs:
        if ipaddress.ip_network(cidr, strict=False).version != 4:
            r.fail("adminCidrs", f"holds {cidr!r}: the Azure public IP is IPv4, so list IPv4 CIDRs only")

    if r.problems:
        raise ConfigError(r.problems)
    return AzureConfig(location=location, zones=zones, vm_size=vm_size, image=image, admin_username=username,
                       ssh_public_key=public_key, ssh_private_key=private_key)


def _location(r: _Reader) -> str:
    location = regions.normalize(r.str("location", DEFAULT_LOCATION))
    if location not in regions.REGIONS:
        r.fail("location", f"must be a known Azure region's programmatic name such as {DEFAULT_LOCATION}, "
               f"westeurope or japaneast (see `az account list-locations -o table`), got {location!r}")
    return location


def _zones(r: _Reader, location: str, raw: Optional[str]) -> tuple[str, ...]:
    """kthw:zones as a list (`["1", "2"]`, `[1, 2]` from `config set --path`, or `1,2`), checked against the region."""
    available = regions.zones_of(location)
    try:
        parsed = json.loads(raw) if raw else []
    except ValueError:
        parsed = raw.split(",")  # type: ignore[union-attr]
    items = parsed if isinstance(parsed, list) else [parsed]
    wanted = tuple(str(z).strip() for z in items if str(z).strip())
    if not wanted or location not in regions.REGIONS:  # an unknown location is already reported
        return wanted or available
    if not available:
        r.fail("zones", f"must be unset: region {location} has no availability zones, got {list(wanted)}")
    elif any(z not in available for z in wanted) or len(set(wanted)) != len(wanted):
        r.fail("zones", f"must be distinct zones of {location}, drawn from {list(available)}, got {list(wanted)}")
    return tuple(wanted)


def _image(r: _Reader) -> ImageRef:
    urn = r.str("image", DEFAULT_IMAGE)
    parts = urn.split(":")
    if len(parts) != 4 or not all(_IMAGE_PART.match(p) for p in parts):
        r.fail("image", f"must be a marketplace image URN publisher:offer:sku:version such as {DEFAULT_IMAGE}, "
               f"got {urn!r}")
        return ImageRef(*DEFAULT_IMAGE.split(":"))
    return ImageRef(*parts)
