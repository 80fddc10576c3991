"""The controller VMs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_gcp as gcp

from components import host_keys
from components.cloud_common import SshKey
from components.gcp.config import GcpConfig
from components.machines import machine_options, spec_output

# What GCP cannot change on an instance without re-creating it: a change waits for scripts/replace-controller.
INSTANCE_SPEC = ("bootDisk", "zone")


@dataclass
class Instance:
    vm: gcp.compute.Instance
    host_key: host_keys.HostKey  # its SSH host key, installed by its first boot
    spec: pulumi.Output[str]  # what it is built from (components/machines.py)


def instance_spec(gcp_config: GcpConfig, index: int, first_boot: pulumi.Input[str]) -> pulumi.Output[str]:
    """What controller `index`'s instance is built from: its image, disk, zone and first-boot data (cloud-init
    applies the `user-data` key once, at the first boot: a new one needs a new instance)."""
    return spec_output(gcp_config.image, gcp_config.disk_size_gb, gcp_config.zone_of(index), first_boot)


def create_instances(name: str, *, names: Sequence[str], ips: Sequence[str], gcp_config: GcpConfig,
                     subnet: gcp.compute.Subnetwork, target_tag: str, key: SshKey,
                     depends_on: Sequence[pulumi.Resource], parent: pulumi.Resource,
                     replacing: Optional[str] = None) -> list[Instance]:
    """One VM per controller name at its static internal IP, spread round-robin over the zones.

    The instance name is the hostname (and so the name in the node's certificates). Each VM has an
    ephemeral external address for SSH (from adminCidrs only) and for downloading release binaries.
    """
    # Only this key logs in: OS Login off (it would ignore metadata keys; an org policy that enforces
    # OS Login overrides this, see README) and project-wide keys blocked. The image's cloud-init applies the
    # controller's first-boot user data (components/boot.py), which holds its host key.
    instances = []
    for index, (host, ip) in enumerate(zip(names, ips)):
        host_key = host_keys.host_key(f"{name}-{host}-host-key", parent)
        first_boot = host_keys.first_boot(host_key)
        metadata = pulumi.Output.all(key.public_key, first_boot).apply(lambda v: {
            "ssh-keys": f"{gcp_config.admin_username}:{v[0].strip()} {gcp_config.admin_username}",
            "enable-oslogin": "FALSE",
            "block-project-ssh-keys": "TRUE",
            "user-data": v[1],
        })
        vm = gcp.compute.Instance(
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
        )
        instances.append(Instance(vm=vm, host_key=host_key, spec=instance_spec(gcp_config, index, first_boot)))
    return instances


def external_ip(instance: gcp.compute.Instance) -> pulumi.Output[str]:
    """The instance's ephemeral external address, where the bootstrap connects over SSH."""
    return instance.network_interfaces.apply(lambda nics: nics[0].access_configs[0].nat_ip)
