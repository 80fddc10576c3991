"""AzureInfra: resource group, network, load balancer and controllers, handed on as InfraOutputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native.resources as resources

from components.azure.config import HEALTH_CHECKS, AzureConfig
from components.azure.loadbalancer import AZURE_PROBE, create_load_balancer
from components.azure.network import create_network
from components.azure.site import Site
from components.azure.vms import create_controllers
from components import host_keys
from components.boot import wait_for_boot
from components.cloud_common import official_release_source, ssh_key
from components.config import StackConfig
from components.machines import MachineSpecs
from components.infra import ControllerHost, Infra, InfraOutputs


@dataclass
class AzureInfraArgs:
    config: StackConfig
    azure: AzureConfig


class AzureInfra(Infra):
    """The Azure infrastructure of one kthw stack; `outputs` is the cloud-agnostic InfraOutputs."""

    TYPE = "kthw:azure:AzureInfra"
    health_checks = HEALTH_CHECKS

    def _create(self, name: str, args: AzureInfraArgs) -> tuple[InfraOutputs, dict[str, Any]]:
        config, azure = args.config, args.azure
        tags = {"project": pulumi.get_project(), "stack": pulumi.get_stack()}
        group = resources.ResourceGroup(f"{name}-rg", location=azure.location, tags=tags,
                                        opts=pulumi.ResourceOptions(parent=self))
        site = Site(prefix=name, parent=self, resource_group_name=group.name, resource_group_id=group.id,
                    location=azure.location, tags=tags)

        net = create_network(site, config)
        lb = create_load_balancer(site, azure, self.health_check)
        # RSA because every Azure cloud takes it (ED25519 is newer there); a user's ED25519 pair works through
        # kthw:sshPublicKey / kthw:sshPrivateKey.
        key = ssh_key(name, azure.ssh_public_key, azure.ssh_private_key, self, algorithm="RSA")
        controllers = create_controllers(site, config, azure, net.subnet.id, lb, key.public_key)

        specs = MachineSpecs(f"{name}-machine-specs", {c.name: c.spec for c in controllers},
                             config.replace_controller, opts=pulumi.ResourceOptions(parent=self))
        hosts = [ControllerHost(name=c.name, private_ip=c.private_ip, ssh_host=c.public_ip.ip_address, ssh_port=22,
                                ssh_user=azure.admin_username, ssh_private_key=key.private_key, instance_id=c.vm.vm_id,
                                machine_urn=c.vm.urn, ssh_host_key=host_keys.pinned(specs, c.name, c.spec, c.host_key))
                 for c in controllers]
        # Each VM depends on its NIC, subnet and NAT gateway; the wait adds sshd and cloud-init being done.
        booted = [wait_for_boot(site.name(f"{host.name}-booted"), host, after=[c.vm], parent=self)
                  for host, c in zip(hosts, controllers)]

        outputs = InfraOutputs(
            probe=AZURE_PROBE,
            hosts=hosts,
            public_address=lb.public_ip.ip_address,
            health_check=self.health_check,
            releases=official_release_source(config),
            ready=[lb.lb, net.nat_gateway, *(c.vm for c in controllers), *booted],
            incarnations=[lb.lb.id, *(c.vm.vm_id for c in controllers)],
        )
        return outputs, {"egressAddress": net.egress_ip.ip_address, "zones": {c.name: c.zone for c in controllers}}
