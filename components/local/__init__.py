"""The `local` stack's infra: controller hosts as systemd-nspawn containers on this machine.

See `LocalInfra` (components/local/infra.py) and the scripts it runs under scripts/local/.
"""
from components.local.infra import LocalInfra, LocalInfraArgs
from components.local.layout import LocalLayout
from components.local.releases import ManifestError, release_source

__all__ = ["LocalInfra", "LocalInfraArgs", "LocalLayout", "ManifestError", "release_source"]
