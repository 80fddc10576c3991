"""Azure infra for kthw: `load_azure_config` (validation, before any resource) and the `AzureInfra` component.

    azure = load_azure_config(pulumi.Config("kthw").get, config, is_secret)
    infra = AzureInfra("kthw", AzureInfraArgs(config, azure)).outputs
"""
from components.azure.component import AzureInfra, AzureInfraArgs
from components.azure.config import AzureConfig, load_azure_config

__all__ = ["AzureConfig", "AzureInfra", "AzureInfraArgs", "load_azure_config"]
