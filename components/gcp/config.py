"""The GCP stack's own settings, read and validated before any resource is registered.

Project and region are the gcp provider's keys (`gcp:project`, `gcp:region`), so the provider and this
program agree on them; everything else is in the `kthw:` namespace.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import pulumi

from components.boot import DEFAULT_ADMIN_USERNAME
from components.cloud_common import read_ssh_key_pair
from components.config import ConfigError, StackConfig, _Reader
from components.infra import HealthChecks, HealthCheckStyle

Getter = Callable[[str], Optional[str]]

DEFAULT_MACHINE_TYPE = "e2-standard-2"
DEFAULT_IMAGE = "ubuntu-os-cloud/ubuntu-2404-lts-amd64"  # project/family: the current Ubuntu LTS image
DEFAULT_DISK_GB = 50

_PROJECT = re.compile(r"^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")  # optional domain: prefix
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]{1,2}$")  # us-central1, europe-west4, northamerica-northeast2
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")  # e2-standard-2, n2d-custom-4-8192
_IMAGE = re.compile(r"^[a-z0-9./_-]+$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
HEALTH_CHECKS = HealthChecks("gcp", (HealthCheckStyle.HTTP_HEALTHZ_PROXY,),
                             why="a target pool takes only a legacy HTTP health check")


@dataclass(frozen=True)
class GcpConfig:
    """Where and on what the controllers run."""

    project: str
    region: str
    zones: tuple[str, ...]  # controller i goes to zones[i % len(zones)]
    machine_type: str = DEFAULT_MACHINE_TYPE
    image: str = DEFAULT_IMAGE
    disk_size_gb: int = DEFAULT_DISK_GB
    admin_username: str = DEFAULT_ADMIN_USERNAME
    ssh_public_key: Optional[str] = None  # both set, or neither (then an ED25519 pair is generated)
    ssh_private_key: Optional[str] = field(default=None, repr=False)  # wrapped as a secret where used

    def zone_of(self, index: int) -> str:
        return self.zones[index % len(self.zones)]


def _provider_keys(get: Getter, problems: list[str]) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """The gcp provider's project, region and zone, each checked for its shape."""
    project, region, zone = ((get(k) or "").strip() or None for k in ("project", "region", "zone"))
    if project is None:
        problems.append("gcp:project is required: the ID of the project to create the cluster in "
                        "(pulumi config set gcp:project my-project)")
    elif not _PROJECT.match(project):
        problems.append("gcp:project must be a project ID (6-30 lowercase letters, digits, hyphens), "
                        f"got {project!r}")
    if region is None:
        problems.append("gcp:region is required, e.g. us-central1 (pulumi config set gcp:region us-central1)")
    elif not _REGION.match(region):
        problems.append(f"gcp:region must be a region such as us-central1, got {region!r}")
        region = None
    return project, region, zone


def _zones(r: _Reader, region: Optional[str], provider_zone: Optional[str]) -> tuple[str, ...]:
    """kthw:zones, or the single gcp:zone; each must be a zone of the region."""
    zones, key = r.list("zones"), "kthw:zones"
    if not zones and provider_zone:
        zones, key = (provider_zone,), "gcp:zone"
    if not zones:
        r.fail("zones", "is required (or gcp:zone for a single zone): the zones to spread the controllers "
               "across, e.g. [us-central1-a, us-central1-b, us-central1-c] "
               "(gcloud compute zones list --filter=region:REGION)")
    elif region is not None:
        bad = [z for z in zones if not re.fullmatch(re.escape(region) + r"-[a-z]", z)]
        if bad:
            r.problems.append(f"{key} must be zones of region {region} such as {region}-a, got {bad}")
    if len(set(zones)) != len(zones):
        r.problems.append(f"{key} must not repeat a zone, got {list(zones)}")
    return zones


def load_gcp_config(get: Getter, config: StackConfig, provider_get: Optional[Getter] = None,
                    is_secret: Optional[Callable[[str], bool]] = None) -> GcpConfig:
    """Read `kthw:` keys through `get` and `gcp:` keys through `provider_get`; raise ConfigError.

    `provider_get` defaults to `pulumi.Config("gcp").get` (the provider reads the same project and region).
    `is_secret(key)` (e.g. `is_config_secret("kthw:" + key)`) lets a plain-text private key be refused.
    """
    r = _Reader(get)
    project, region, provider_zone = _provider_keys(provider_get or pulumi.Config("gcp").get, r.problems)
    zones = _zones(r, region, provider_zone)

    machine_type = r.str("machineType", DEFAULT_MACHINE_TYPE)
    if not _MACHINE_TYPE.match(machine_type):
        r.fail("machineType", f"must be a machine type such as {DEFAULT_MACHINE_TYPE}, got {machine_type!r}")
    image = r.str("image", DEFAULT_IMAGE)
    if not _IMAGE.match(image):
        r.fail("image", f"must be an image or image family such as {DEFAULT_IMAGE}, got {image!r}")
    disk_size = r.int("diskSizeGb", DEFAULT_DISK_GB)
    if not 10 <= disk_size <= 65536:
        r.fail("diskSizeGb", f"must be a whole number of GB from 10 to 65536, got {disk_size}")
    username = r.str("adminUsername", DEFAULT_ADMIN_USERNAME)
    if not _USER.match(username) or username == "root":
        r.fail("adminUsername", f"must be a Linux user name other than root, such as {DEFAULT_ADMIN_USERNAME}, "
               f"got {username!r}")
    public_key, private_key = read_ssh_key_pair(r, is_secret)

    health_problem = HEALTH_CHECKS.problem(config.health_check)
    if health_problem:
        r.fail("healthCheck", health_problem)

    if r.problems:
        raise ConfigError(r.problems)
    assert project is not None and region is not None
    return GcpConfig(project=project, region=region, zones=zones, machine_type=machine_type, image=image,
                     disk_size_gb=disk_size, admin_username=username,
                     ssh_public_key=public_key, ssh_private_key=private_key)
