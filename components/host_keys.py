"""Each controller's SSH host key: made by the program, installed at first boot, pinned by every kthw SSH client.

A VM makes its host keys at its first boot, so a client meeting one for the first time cannot tell it from an
impostor's, and the bootstrap ships the CAs' keys over those connections. kthw therefore generates one ED25519
key per controller (pulumi-tls; the private half a secret), hands it to the machine in its first-boot user data
(components/boot.py: sshd offers only it), and gives the public half to every SSH client it owns: the bootstrap's
remote commands (pulumi-command's `host_key`), the drift probe and the operator scripts (paramiko,
components/ssh.py), which refuse any other key.

A machine built from older first-boot data (a stack made before its hosts had pinned keys) has keys of its own:
its key is pinned once `MachineSpecs` records that the machine was built from the user data holding it, i.e.
once scripts/replace-controller has replaced it (components/machines.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_tls as tls

from components.boot import user_data
from components.machines import MachineSpecs


@dataclass
class HostKey:
    private_openssh: pulumi.Output[str]  # a secret
    public: pulumi.Output[str]  # one OpenSSH line: "ssh-ed25519 AAAA..."


def host_key(name: str, parent: pulumi.Resource) -> HostKey:
    """A new ED25519 host key, resource `name`."""
    key = tls.PrivateKey(name, algorithm="ED25519", opts=pulumi.ResourceOptions(parent=parent))
    return HostKey(private_openssh=pulumi.Output.secret(key.private_key_openssh),
                   public=key.public_key_openssh.apply(lambda line: line.strip()))


def first_boot(key: HostKey) -> pulumi.Output[str]:
    """The controller's `#cloud-config` holding its host key (a secret)."""
    return pulumi.Output.secret(pulumi.Output.all(key.private_openssh, key.public).apply(
        lambda halves: user_data(halves[0], halves[1])))


def pinned(specs: MachineSpecs, host: str, spec: pulumi.Input[str], key: HostKey) -> pulumi.Output[Optional[str]]:
    """The host key clients must see on `host`: its public half once the machine was built from `spec` (the first
    boot that installs it), else None (a machine from before: not pinned until it is replaced)."""
    return pulumi.Output.all(specs.built, spec, key.public).apply(
        lambda v: v[2] if (v[0] or {}).get(host) == v[1] else None)
