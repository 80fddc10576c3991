"""A controller's first boot, the same on every infra (azure, gcp, local).

Each infra boots its controllers from an image with cloud-init, gives it the same user data but for its own SSH
host key (`scripts/common/user-data.yaml.j2`: Azure's customData, GCP's `user-data` metadata, the local hosts'
NoCloud seed; the key: components/host_keys.py), and lets the bootstrap log in as the image's non-root sudo user (`DEFAULT_ADMIN_USERNAME` unless configured).
`wait_for_boot` then waits, over the bootstrap's own SSH path, until cloud-init is done on a host: every step of
the bootstrap depends on it (through `InfraOutputs.ready`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from components.infra import ControllerHost
from components.render import render
from components.ssh import BOOT_DIAL_ERROR_LIMIT, connection

DEFAULT_ADMIN_USERNAME = "kthw"  # the sudo user the bootstrap logs in as (Azure's adminUsername, GCP's, local)
USER_DATA = "common/user-data.yaml.j2"

# Bounded: cloud-init gets 15 minutes to be done and to have written this boot's marker; then sudo must work without
# a password. Early in a reboot `status --wait` can answer from the last boot's status (its files live on disk)
# while the marker is already gone: it is asked again until the marker is there.
WAIT_FOR_BOOT = ("timeout 900 sh -c 'until cloud-init status --wait >/dev/null 2>&1; "
                 "test -f /var/lib/cloud/instance/boot-finished; do sleep 1; done' && sudo -n true")


def user_data(host_key_private: str, host_key_public: str) -> str:
    """The `#cloud-config` a controller boots with: the same for all but for the host key (OpenSSH halves)."""
    return render(USER_DATA, host_key={"private": host_key_private, "public": host_key_public})


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
