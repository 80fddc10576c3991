"""What every phase reads, fixed before the first step: the config, the infra's hosts, the PKI, the API's URL,
the release digests and each node's files and units. Phases get it as an argument; nothing else is shared."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi

from components.config import StackConfig
from components.host_files import NodeFiles
from components.infra import ControllerHost, InfraOutputs
from components.pki import Pki


@dataclass(frozen=True)
class Cluster:
    prefix: str  # the control plane component's name: every child is named `<prefix>-...`
    parent: pulumi.Resource  # the control plane component
    config: StackConfig
    infra: InfraOutputs
    pki: Pki
    api_server_url: pulumi.Output[str]
    digests: pulumi.Output[dict]  # artifact sha256 by `release_digests.digest_key(name, version)`
    files: dict[str, NodeFiles]  # per node: the PKI's file table resolved for it
    units: dict[str, dict[str, pulumi.Output[str]]]  # per node, per component: its rendered unit

    @property
    def hosts(self) -> Sequence[ControllerHost]:
        return self.infra.hosts

    def private_ips(self) -> pulumi.Output[list]:
        return pulumi.Output.all(*[h.private_ip for h in self.hosts])

    def child(self, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, depends_on=list(depends_on))


def etcd_client_urls(ips: Sequence[str]) -> str:
    """Every etcd member's client URL, as etcd clients (apiserver, etcdctl) take them."""
    return ",".join(f"https://{ip}:2379" for ip in ips)
