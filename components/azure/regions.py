"""Known Azure public-cloud regions and whether each has availability zones (1, 2, 3).

Source: learn.microsoft.com/azure/reliability/regions-list (checked 2026-11). A region missing here is refused
by config validation; add a row when Azure opens one.
"""
from __future__ import annotations

ZONES = ("1", "2", "3")

# Programmatic name -> has availability zones.
REGIONS: dict[str, bool] = {
    # Americas
    "brazilsouth": True, "brazilsoutheast": False, "canadacentral": True, "canadaeast": False,
    "centralus": True, "chilecentral": True, "eastus": True, "eastus2": True, "mexicocentral": True,
    "northcentralus": False, "southcentralus": True, "westcentralus": False, "westus": False,
    "westus2": True, "westus3": True,
    # Europe
    "austriaeast": True, "belgiumcentral": True, "francecentral": True, "francesouth": False,
    "germanynorth": False, "germanywestcentral": True, "italynorth": True, "northeurope": True,
    "norwayeast": True, "norwaywest": False, "polandcentral": True, "spaincentral": True,
    "swedencentral": True, "swedensouth": False, "switzerlandnorth": True, "switzerlandwest": False,
    "uksouth": True, "ukwest": False, "westeurope": True,
    # Middle East and Africa
    "israelcentral": True, "qatarcentral": True, "uaecentral": False, "uaenorth": True,
    "southafricanorth": True, "southafricawest": False,
    # Asia Pacific
    "australiacentral": False, "australiacentral2": False, "australiaeast": True,
    "australiasoutheast": False, "centralindia": True, "eastasia": True, "indonesiacentral": True,
    "japaneast": True, "japanwest": True, "jioindiacentral": False, "jioindiawest": False,
    "koreacentral": True, "koreasouth": False, "malaysiawest": True, "newzealandnorth": True,
    "southeastasia": True, "southindia": False, "westindia": False,
}


def normalize(location: str) -> str:
    """`East US 2` or `eastus2` -> `eastus2` (Azure's programmatic name)."""
    return "".join(location.split()).lower()


def zones_of(location: str) -> tuple[str, ...]:
    """The zones of a known region, () where it has none."""
    return ZONES if REGIONS.get(normalize(location)) else ()
