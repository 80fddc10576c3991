"""A controller's first boot, the same on every infra (azure, gcp, local).

Each infra boots its controllers from an image with cloud-init, gives it the same user data
(`scripts/common/user-data.yaml`: Azure's customData, GCP's `user-data` metadata, the local hosts' NoCloud seed)
and lets the bootstrap log in as the image's non-root sudo user (`DEFAULT_ADMIN_USERNAME` unless configured).
`wait_for_boot` then waits, over the bootstrap's own SSH path, until cloud-init is done on a host: every step of
the bootstrap depends on it (through `InfraOutputs.ready`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from components.infra import ControllerHost
from components.render import script
from components.ssh import BOOT_DIAL_ERROR_LIMIT, connection

DEFAULT_ADMIN_USERNAME = "kthw"  # the sudo user the bootstrap logs in as (Azure's adminUsername, GCP's, local)
USER_DATA = "common/user-data.yaml"

# Bounded: cloud-init gets 15 minutes; then the boot marker must exist and sudo must work without a password.
WAIT_FOR_BOOT = ("timeout 900 cloud-init status --wait >/dev/null; "
                 "test -f /var/lib/cloud/instance/boot-finished && sudo -n true")


def user_data() -> str:
    """The `#cloud-config` every controller boots with."""
    return script(USER_DATA)


def wait_for_boot(name: str, host: ControllerHost, after: Sequence[pulumi.Resource], parent: pulumi.Resource,
                  instance: Optional[pulumi.Input[str]] = None,
                  dial_error_limit: int = BOOT_DIAL_ERROR_LIMIT) -> remote.Command:
    """A read-only command (nothing to delete) named `name`. The instance (default: the host's instance_id) is
    part of the script, so a re-created machine is waited for again, in place (`update`), like the control
    plane's steps. A fresh VM takes a minute or two to answer: the dial is retried `dial_error_limit` times."""
    script_text = pulumi.Output.format("# kthw first boot of {0} (instance {1})\n{2}\n", host.name,
                                       instance if instance is not None else host.instance_id, WAIT_FOR_BOOT)
    return remote.Command(
        name,
        connection=connection(host, dial_error_limit),
        create=script_text,
        update=script_text,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(after)))
