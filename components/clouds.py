"""Pick the infra component for the stack's cloud and read its own config, before any resource exists."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pulumi

from components import releases
from components.config import ConfigError, StackConfig, is_secret
from components.infra import InfraOutputs

Getter = Callable[[str], Optional[str]]


@dataclass
class Cloud:
    """A validated cloud choice: its name, and how to build its infra component."""

    name: str
    build: Callable[[str], InfraOutputs]


def _require_official_checksums(cfg: StackConfig) -> None:
    """With kthw:requirePinnedDigests, every digest of the official releases must be pinned before anything is
    created (fail closed); without it, the ones the table lacks are resolved at the first `up`."""
    missing = releases.missing_official(cfg.kubernetes_version, cfg.etcd_version)
    if cfg.require_pinned_digests and missing:
        raise ConfigError([
            f"kthw:requirePinnedDigests is true, but the checksum table ({releases.TABLE_PATH.name}) has no "
            f"official sha256 for {', '.join(missing)} (kthw:kubernetesVersion {cfg.kubernetes_version}, "
            f"kthw:etcdVersion {cfg.etcd_version}); run `scripts/update-checksums {cfg.kubernetes_version} "
            f"{cfg.etcd_version}` on a machine with internet access, pick versions whose digests are all pinned, "
            "or set kthw:requirePinnedDigests false to resolve them from the published checksum files at the "
            "first `pulumi up`"])


def load(cfg: StackConfig, get: Optional[Getter] = None) -> Cloud:
    """Validate the cloud's own keys and return how to build its infra (nothing is registered yet)."""
    get = get or pulumi.Config("kthw").get
    if cfg.cloud == "azure":
        from components.azure import AzureInfra, AzureInfraArgs, load_azure_config

        settings = load_azure_config(get, cfg, is_secret=is_secret)
        _require_official_checksums(cfg)
        return Cloud("azure", lambda name: AzureInfra(name, AzureInfraArgs(config=cfg, azure=settings)).outputs)
    if cfg.cloud == "gcp":
        from components.gcp import GcpInfra, GcpInfraArgs, load_gcp_config

        settings = load_gcp_config(get, cfg, is_secret=is_secret)
        _require_official_checksums(cfg)
        return Cloud("gcp", lambda name: GcpInfra(name, GcpInfraArgs(config=cfg, gcp=settings)).outputs)
    from components.local import LocalInfra, LocalInfraArgs, LocalLayout, ManifestError, release_source

    args = LocalInfraArgs(config=cfg)
    try:  # the toolchain's manifest is the local checksum table: check it before anything is created
        release_source(LocalLayout.build(pulumi.get_stack(), cfg.controller_names, cfg.node_cidr).toolchain_dir,
                       cfg.kubernetes_version, cfg.etcd_version, "https://check")
    except ManifestError as err:
        raise ConfigError([f"kthw:kubernetesVersion {cfg.kubernetes_version} / kthw:etcdVersion "
                           f"{cfg.etcd_version}: {err} (run scripts/toolchain/build)"]) from err
    return Cloud("local", lambda name: LocalInfra(name, args).outputs)
