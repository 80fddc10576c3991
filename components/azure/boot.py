"""Wait, over the bootstrap's own SSH path, until a controller has finished its first boot."""
from __future__ import annotations

from typing import Sequence

import pulumi
from pulumi_command import remote

from components.azure.site import Site
from components.infra import ControllerHost

# Bounded: cloud-init gets 15 minutes; then the boot marker must exist and sudo must work without a password.
WAIT_FOR_BOOT = ("timeout 900 cloud-init status --wait >/dev/null; "
                 "test -f /var/lib/cloud/instance/boot-finished && sudo -n true")


def wait_for_boot(site: Site, host: ControllerHost, after: Sequence[pulumi.Resource]) -> remote.Command:
    """A read-only command (nothing to delete). The VM's id is part of the script, so a re-created VM is
    waited for again, in place (`update`), like the control plane's steps."""
    script = pulumi.Output.format("# kthw first boot of {0} (vm {1})\n{2}\n", host.name, host.instance_id,
                                  WAIT_FOR_BOOT)
    return remote.Command(
        site.name(f"{host.name}-booted"),
        connection=remote.ConnectionArgs(
            host=host.ssh_host, port=host.ssh_port, user=host.ssh_user, private_key=host.ssh_private_key,
            dial_error_limit=60, per_dial_timeout=10),  # a fresh VM takes a minute or two to answer
        create=script,
        update=script,
        opts=site.opts(depends_on=list(after)))
