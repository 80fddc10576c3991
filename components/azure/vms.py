"""The controllers: per controller a public IP for SSH, a NIC at a static private IP in the LB's backend pool,
and an Ubuntu VM, spread over the zones."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_azure_native.compute as compute
import pulumi_azure_native.network as network

from components.addressing import controller_ips
from components.azure.config import AzureConfig
from components.azure.loadbalancer import LoadBalancer
from components.azure.publicip import static_public_ip
from components.azure.site import Site
from components import host_keys
from components.config import StackConfig
from components.machines import machine_options, spec_output


@dataclass
class Controller:
    name: str
    private_ip: str
    zone: Optional[str]
    public_ip: network.PublicIPAddress  # SSH for the bootstrap (inbound only: egress is the NAT gateway)
    vm: compute.VirtualMachine
    host_key: host_keys.HostKey  # its SSH host key, installed by its first boot
    spec: pulumi.Output[str]  # what the VM is built from (components/machines.py)


# What Azure cannot change on a VM without re-creating it: a change waits for scripts/replace-controller.
VM_SPEC = ("storageProfile.imageReference", "zones", "osProfile", "securityProfile")


def create_controllers(site: Site, config: StackConfig, azure: AzureConfig, subnet_id: pulumi.Input[str],
                       lb: LoadBalancer, public_key: pulumi.Input[str]) -> list[Controller]:
    """One public IP, NIC and VM per controller, round-robin over the zones (the IP in its VM's zone)."""
    ips = controller_ips(config.node_cidr, config.controller_count)
    controllers = []
    for i, (name, ip) in enumerate(zip(config.controller_names, ips)):
        zone = azure.zones[i % len(azure.zones)] if azure.zones else None
        host_key = host_keys.host_key(site.name(f"{name}-host-key"), site.parent)
        custom_data = host_keys.first_boot(host_key).apply(  # a secret, as the first boot is
            lambda text: base64.b64encode(text.encode()).decode())
        public_ip = static_public_ip(site, f"{name}-ip", [zone] if zone else [])
        nic = network.NetworkInterface(
            site.name(f"{name}-nic"), **site.common(),
            ip_configurations=[network.NetworkInterfaceIPConfigurationArgs(
                name="primary", primary=True, subnet=network.SubnetArgs(id=subnet_id),
                private_ip_allocation_method="Static", private_ip_address=ip,
                public_ip_address=network.PublicIPAddressArgs(id=public_ip.id),
                load_balancer_backend_address_pools=[network.BackendAddressPoolArgs(id=lb.backend_pool_id)],
            )],
            opts=site.opts())
        vm = compute.VirtualMachine(
            site.name(name), **site.common(),
            vm_name=name,
            zones=[zone] if zone else None,
            hardware_profile=compute.HardwareProfileArgs(vm_size=azure.vm_size),
            storage_profile=compute.StorageProfileArgs(
                image_reference=compute.ImageReferenceArgs(
                    publisher=azure.image.publisher, offer=azure.image.offer,
                    sku=azure.image.sku, version=azure.image.version),
                os_disk=compute.OSDiskArgs(
                    create_option="FromImage", delete_option="Delete", caching=compute.CachingTypes.READ_WRITE,
                    managed_disk=compute.ManagedDiskParametersArgs(storage_account_type="StandardSSD_LRS")),
            ),
            os_profile=compute.OSProfileArgs(
                computer_name=name,  # the hostname the PKI and the control plane use
                admin_username=azure.admin_username,  # Azure gives it passwordless sudo
                custom_data=custom_data,
                linux_configuration=compute.LinuxConfigurationArgs(
                    disable_password_authentication=True,
                    provision_vm_agent=True,
                    ssh=compute.SshConfigurationArgs(public_keys=[compute.SshPublicKeyArgs(
                        path=f"/home/{azure.admin_username}/.ssh/authorized_keys", key_data=public_key)]),
                ),
            ),
            network_profile=compute.NetworkProfileArgs(network_interfaces=[
                # Detach: a replaced VM leaves its NIC (static IP, LB pool, public IP) to the new one.
                compute.NetworkInterfaceReferenceArgs(id=nic.id, primary=True, delete_option="Detach")]),
            security_profile=compute.SecurityProfileArgs(
                security_type="TrustedLaunch",
                uefi_settings=compute.UefiSettingsArgs(secure_boot_enabled=True, v_tpm_enabled=True)),
            diagnostics_profile=compute.DiagnosticsProfileArgs(
                boot_diagnostics=compute.BootDiagnosticsArgs(enabled=True)),  # managed storage: serial log
            opts=machine_options(name, config.replace_controller, VM_SPEC, site.parent))
        spec = spec_output(azure.image, zone, azure.admin_username, custom_data, public_key, "TrustedLaunch")
        controllers.append(Controller(name=name, private_ip=ip, zone=zone, public_ip=public_ip, vm=vm,
                                      host_key=host_key, spec=spec))
    return controllers
