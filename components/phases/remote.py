"""The step runner: one `remote.Command` per (host, step), whose create and update run the same idempotent script
as root, whose delete removes what it installed, and whose header names the host's instance and the drift
repairs of its group (either changing runs the step again)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import pulumi
from pulumi_command import remote

from components.infra import ControllerHost
from components.ssh import as_root, as_root_output, connection

# Host-side waits poll this often (s); each wait has a deadline in seconds (lib.sh.j2's wait_until).
POLL_SECONDS = 0.25
STEP_TIMEOUTS = pulumi.CustomTimeouts(create="20m", update="20m", delete="5m")


def after_shebang(body: str, line: str) -> str:
    """Insert a comment line after the script's shebang (or at the top when it has none)."""
    first, _, rest = body.partition("\n")
    return f"{first}\n{line}{rest}" if first.startswith("#!") else f"{line}{body}"


class RemoteSteps:
    """Registers the bootstrap's steps as children of `parent`, named `<prefix>-<host>-<step>`."""

    def __init__(self, parent: pulumi.Resource, prefix: str, repairs: Mapping[str, pulumi.Output[dict]]):
        self._parent, self._prefix, self._repairs = parent, prefix, repairs
        self.steps: dict[str, remote.Command] = {}

    def run(self, host: ControllerHost, step: str, body: pulumi.Input[str], delete: Optional[pulumi.Input[str]],
            depends_on: Sequence[pulumi.Resource], stdin: Optional[pulumi.Input[str]] = None,
            logging: Optional[remote.Logging] = None) -> remote.Command:
        """`body` on `host` as step `step`, after `depends_on`; `delete` (if any) when the step goes away."""
        repairs = self._repairs[host.name].apply(lambda r: int((r or {}).get(step, 0)))
        header = pulumi.Output.format("# kthw {0} on {1} (instance {2}, repair {3})\n", step, host.name,
                                      host.instance_id or "-", repairs)
        script = pulumi.Output.all(header, body).apply(lambda v: as_root(after_shebang(v[1], v[0]), step))
        resource = remote.Command(
            f"{self._prefix}-{host.name}-{step}", connection=connection(host), create=script, update=script,
            delete=as_root_output(delete, f"{step}-delete") if delete is not None else None,
            stdin=stdin, logging=logging, add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=self._parent, depends_on=list(depends_on),
                                        custom_timeouts=STEP_TIMEOUTS))
        self.steps[f"{host.name}/{step}"] = resource
        return resource
