"""GcpInfra: the GCP infra component (network, controllers, API load balancer) and its InfraOutputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi


from components.addressing import controller_ips
from components import host_keys
from components.boot import wait_for_boot
from components.cloud_common import official_release_source, ssh_key
from components.config import StackConfig
from components.gcp import instances as vms
from components.gcp.config import HEALTH_CHECKS, GcpConfig
from components.gcp.lb import GCP_PROBE, create_address, create_load_balancer
from components.gcp.network import create_network
from components.machines import MachineSpecs
from components.infra import API_PORT, ControllerHost, Infra, InfraOutputs

CONTROLLER_TAG = "kthw-controller"


@dataclass
class GcpInfraArgs:
    config: StackConfig
    gcp: GcpConfig


class GcpInfra(Infra):
    """A custom-mode VPC, one VM per controller across zones, and a network LB over a target pool."""

    TYPE = "kthw:gcp:GcpInfra"
    health_checks = HEALTH_CHECKS

    def _create(self, name: str, args: GcpInfraArgs) -> tuple[InfraOutputs, dict[str, Any]]:
        config, gcp_config = args.config, args.gcp
        project, region = gcp_config.project, gcp_config.region

        net = create_network(name, project=project, region=region, node_cidr=config.node_cidr,
                             cluster_cidr=config.cluster_cidr, admin_cidrs=config.admin_cidrs,
                             target_tag=CONTROLLER_TAG, api_port=API_PORT, parent=self)
        address = create_address(name, project=project, region=region, parent=self)
        key = ssh_key(name, gcp_config.ssh_public_key, gcp_config.ssh_private_key, self)
        names, ips = config.controller_names, controller_ips(config.node_cidr, config.controller_count)
        instances = vms.create_instances(name, names=names, ips=ips, gcp_config=gcp_config, subnet=net.subnet,
                                         target_tag=CONTROLLER_TAG, key=key, depends_on=net.firewalls,
                                         parent=self, replacing=config.replace_controller)
        specs = MachineSpecs(f"{name}-machine-specs", {n: i.spec for n, i in zip(names, instances)},
                             config.replace_controller, opts=pulumi.ResourceOptions(parent=self))
        forwarding_rule = create_load_balancer(name, project=project, region=region, address=address,
                                               instances=[i.vm for i in instances],
                                               cluster_domain=config.cluster_domain, api_port=API_PORT, parent=self)

        hosts = [
            ControllerHost(name=host, private_ip=ip, ssh_host=vms.external_ip(instance.vm), ssh_port=22,
                           ssh_user=gcp_config.admin_username, ssh_private_key=key.private_key,
                           instance_id=instance.vm.instance_id, machine_urn=instance.vm.urn,
                           ssh_host_key=host_keys.pinned(specs, host, instance.spec, instance.host_key))
            for host, ip, instance in zip(names, ips, instances)
        ]
        # Each host is ready once its image's cloud-init applied the first-boot user data.
        booted = [wait_for_boot(f"{name}-{host.name}-booted", host, after=[instance.vm], parent=self)
                  for host, instance in zip(hosts, instances)]
        outputs = InfraOutputs(
            probe=GCP_PROBE,
            hosts=hosts,
            public_address=address.address,
            health_check=self.health_check,
            releases=official_release_source(config),
            api_port=API_PORT,
            ready=[*(i.vm for i in instances), *net.firewalls, forwarding_rule, *booted],
            incarnations=[forwarding_rule.id, *(i.vm.instance_id for i in instances)],
        )
        return outputs, {}
