"""Azure infra for kthw: `load_azure_config` (validation, before any resource) and the `AzureInfra` component.

    azure = load(config)  # or load_azure_config(getter, config, is_secret)
    infra = AzureInfra("kthw", AzureInfraArgs(config, azure)).outputs
"""
from components.azure.component import AzureInfra, AzureInfraArgs
from components.azure.config import AzureConfig, load, load_azure_config

__all__ = ["AzureConfig", "AzureInfra", "AzureInfraArgs", "load", "load_azure_config"]
