"""The controller VMs."""
from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import pulumi_gcp as gcp

from components.boot import user_data
from components.cloud_common import SshKey
from components.gcp.config import GcpConfig
from components.machines import machine_options
from components.machines import spec as machine_spec

# What GCP cannot change on an instance without re-creating it: a change waits for scripts/replace-controller.
INSTANCE_SPEC = ("bootDisk", "zone")


def instance_spec(gcp_config: GcpConfig, index: int) -> str:
    """What controller `index`'s instance is built from (components/machines.py)."""
    return machine_spec(gcp_config.image, gcp_config.disk_size_gb, gcp_config.zone_of(index))


def create_instances(name: str, *, names: Sequence[str], ips: Sequence[str], gcp_config: GcpConfig,
                     subnet: gcp.compute.Subnetwork, target_tag: str, key: SshKey,
                     depends_on: Sequence[pulumi.Resource], parent: pulumi.Resource,
                     replacing: Optional[str] = None) -> list[gcp.compute.Instance]:
    """One VM per controller name at its static internal IP, spread round-robin over the zones.

    The instance name is the hostname (and so the name in the node's certificates). Each VM has an
    ephemeral external address for SSH (from adminCidrs only) and for downloading release binaries.
    """
    # Only this key logs in: OS Login off (it would ignore metadata keys; an org policy that enforces
    # OS Login overrides this, see README) and project-wide keys blocked. The image's cloud-init applies the
    # controllers' shared first-boot user data (components/boot.py).
    first_boot = user_data()
    metadata = key.public_key.apply(lambda pub: {
        "ssh-keys": f"{gcp_config.admin_username}:{pub.strip()} {gcp_config.admin_username}",
        "enable-oslogin": "FALSE",
        "block-project-ssh-keys": "TRUE",
        "user-data": first_boot,
    })
    instances = []
    for index, (host, ip) in enumerate(zip(names, ips)):
        instances.append(gcp.compute.Instance(
            f"{name}-{host}",
            name=host,
            project=gcp_config.project,
            zone=gcp_config.zone_of(index),
            machine_type=gcp_config.machine_type,
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=gcp_config.image, size=gcp_config.disk_size_gb, type="pd-balanced")),
            network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(
                subnetwork=subnet.id, network_ip=ip,
                access_configs=[gcp.compute.InstanceNetworkInterfaceAccessConfigArgs(network_tier="PREMIUM")])],
            can_ip_forward=True,  # as KTHW: pod traffic is routed through the nodes
            tags=[target_tag],
            metadata=metadata,
            labels={"kthw-role": "controller"},
            opts=machine_options(host, replacing, INSTANCE_SPEC, parent, depends_on=list(depends_on)),
        ))
    return instances


def external_ip(instance: gcp.compute.Instance) -> pulumi.Output[str]:
    """The instance's ephemeral external address, where the bootstrap connects over SSH."""
    return instance.network_interfaces.apply(lambda nics: nics[0].access_configs[0].nat_ip)
