"""Put every node's files (the PKI file table resolved for it) in place: one tar on stdin, never logged."""
from __future__ import annotations

from typing import Sequence

import pulumi
from pulumi_command import remote

from components import host_files
from components.infra import ControllerHost
from components.paths import DIRECTORIES
from components.phases.cluster import Cluster
from components.phases.remote import RemoteSteps, after_shebang
from components.render import render


def files(cluster: Cluster, run: RemoteSteps, host: ControllerHost, depends_on: Sequence[pulumi.Resource]
          ) -> remote.Command:
    node = cluster.files[host.name]
    body = host_files.fingerprint(node.contents).apply(
        lambda digest: after_shebang(render("common/put-files.sh.j2", absent=node.absent, directories=DIRECTORIES),
                                     f"# files: {digest}\n"))
    # Secrets travel only on stdin; the output is not logged.
    return run.run(host, "files", body, render("common/remove-files.sh.j2"), depends_on=depends_on,
                   stdin=host_files.payload(node), logging=remote.Logging.NONE)
