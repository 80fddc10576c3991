"""The GCP stack's own settings, read and validated before any resource is registered.

Project and region are the gcp provider's keys (`gcp:project`, `gcp:region`), so the provider and this
program agree on them; everything else is in the `kthw:` namespace.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Optional

import pulumi

from components.config import ConfigError, StackConfig
from components.infra import HealthCheckStyle

Getter = Callable[[str], Optional[str]]

DEFAULT_MACHINE_TYPE = "e2-standard-2"
DEFAULT_IMAGE = "ubuntu-os-cloud/ubuntu-2404-lts-amd64"  # project/family: the current Ubuntu LTS image
DEFAULT_DISK_GB = 50
DEFAULT_SSH_USER = "kthw"

_PROJECT = re.compile(r"^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")  # optional domain: prefix
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]{1,2}$")  # us-central1, europe-west4, northamerica-northeast2
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")  # e2-standard-2, n2d-custom-4-8192
_IMAGE = re.compile(r"^[a-z0-9./_-]+$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SSH_PUBLIC = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$")


@dataclass(frozen=True)
class GcpConfig:
    """Where and on what the controllers run."""

    project: str
    region: str
    zones: tuple[str, ...]  # controller i goes to zones[i % len(zones)]
    machine_type: str = DEFAULT_MACHINE_TYPE
    image: str = DEFAULT_IMAGE
    disk_size_gb: int = DEFAULT_DISK_GB
    ssh_user: str = DEFAULT_SSH_USER
    ssh_public_key: Optional[str] = None  # both set, or neither (then an ED25519 pair is generated)
    ssh_private_key: Optional[str] = None

    def zone_of(self, index: int) -> str:
        return self.zones[index % len(self.zones)]


def _list(value: Optional[str]) -> Optional[list[str]]:
    if value is None or value.strip() == "":
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value.split(",")
    if isinstance(parsed, str):
        parsed = [parsed]
    if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
        return []
    return [p.strip() for p in parsed if p.strip()]


def _str(get: Getter, key: str) -> Optional[str]:
    value = get(key)
    return value.strip() if value is not None and value.strip() else None


def load_gcp_config(get: Getter, config: StackConfig, provider_get: Optional[Getter] = None) -> GcpConfig:
    """Read `kthw:` keys through `get` and `gcp:` keys through `provider_get`; raise ConfigError.

    `provider_get` defaults to `pulumi.Config("gcp").get`, the provider's own project/region/zone.
    """
    provider_get = provider_get or pulumi.Config("gcp").get
    problems: list[str] = []

    project = _str(provider_get, "project")
    if project is None:
        problems.append("gcp:project is required: the project ID to create the cluster in "
                        "(pulumi config set gcp:project my-project)")
    elif not _PROJECT.match(project):
        problems.append(f"gcp:project must be a project ID (6-30 lowercase letters, digits, hyphens), got {project!r}")

    region = _str(provider_get, "region")
    if region is None:
        problems.append("gcp:region is required, e.g. us-central1 (pulumi config set gcp:region us-central1)")
    elif not _REGION.match(region):
        problems.append(f"gcp:region must be a region such as us-central1, got {region!r}")
        region = None

    zones = _list(get("zones"))
    zone_key = "kthw:zones"
    if zones is None:
        provider_zone = _str(provider_get, "zone")
        zones, zone_key = ([provider_zone], "gcp:zone") if provider_zone else ([], zone_key)
    if not zones:
        problems.append("kthw:zones is required (or gcp:zone for a single zone): the zones to spread "
                        "controllers across, e.g. [us-central1-a, us-central1-b, us-central1-c] "
                        "(gcloud compute zones list --filter=region:REGION)")
    elif region is not None:
        bad = [z for z in zones if not re.fullmatch(re.escape(region) + r"-[a-z]", z)]
        if bad:
            problems.append(f"{zone_key} must be zones of region {region} such as {region}-a, got {bad}")
    if len(set(zones)) != len(zones):
        problems.append(f"{zone_key} lists a zone twice: {zones}")

    machine_type = _str(get, "machineType") or DEFAULT_MACHINE_TYPE
    if not _MACHINE_TYPE.match(machine_type):
        problems.append(f"kthw:machineType must be a machine type such as {DEFAULT_MACHINE_TYPE}, got {machine_type!r}")

    image = _str(get, "image") or DEFAULT_IMAGE
    if not _IMAGE.match(image):
        problems.append(f"kthw:image must be an image or family such as {DEFAULT_IMAGE}, got {image!r}")

    disk = _str(get, "diskSizeGb") or str(DEFAULT_DISK_GB)
    disk_size = int(disk) if disk.isdigit() else 0
    if not 10 <= disk_size <= 65536:
        problems.append(f"kthw:diskSizeGb must be a whole number of GB from 10 to 65536, got {disk!r}")

    ssh_user = _str(get, "sshUser") or DEFAULT_SSH_USER
    if not _USER.match(ssh_user) or ssh_user == "root":
        problems.append(f"kthw:sshUser must be a Linux user name other than root, such as kthw, got {ssh_user!r}")

    public_key, private_key = _str(get, "sshPublicKey"), _str(get, "sshPrivateKey")
    if (public_key is None) != (private_key is None):
        problems.append("kthw:sshPublicKey and kthw:sshPrivateKey must be set together (the private key with "
                        "--secret), or neither to have an ED25519 pair generated")
    elif public_key is not None and not _SSH_PUBLIC.match(public_key):
        problems.append("kthw:sshPublicKey must be one OpenSSH public key line (ssh-ed25519 AAAA...)")
    elif private_key is not None and "PRIVATE KEY-----" not in private_key:
        problems.append("kthw:sshPrivateKey must be a PEM or OpenSSH private key")

    if config.health_check not in (None, HealthCheckStyle.HTTP_HEALTHZ_PROXY.value):
        problems.append(f"kthw:healthCheck must be {HealthCheckStyle.HTTP_HEALTHZ_PROXY.value} on gcp "
                        f"(a target pool takes only a legacy HTTP health check), got {config.health_check!r}")

    if problems:
        raise ConfigError(problems)
    assert project is not None and region is not None
    return GcpConfig(project=project, region=region, zones=tuple(zones), machine_type=machine_type,
                     image=image, disk_size_gb=disk_size, ssh_user=ssh_user,
                     ssh_public_key=public_key, ssh_private_key=private_key)
