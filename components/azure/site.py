"""Where the Azure children go: their name prefix, parent, resource group, location and tags."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi


@dataclass(frozen=True)
class Site:
    """What every Azure child needs to be created inside the AzureInfra component."""

    prefix: str  # the component's name; children are f"{prefix}-<child>"
    parent: pulumi.Resource
    resource_group_name: pulumi.Output[str]
    resource_group_id: pulumi.Output[str]  # /subscriptions/<id>/resourceGroups/<name>
    location: str
    tags: dict[str, str]

    def name(self, child: str) -> str:
        return f"{self.prefix}-{child}"

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, **kwargs)

    def common(self) -> dict[str, Any]:
        """The arguments every regional Azure resource takes."""
        return {"resource_group_name": self.resource_group_name, "location": self.location, "tags": self.tags}
