"""GCP infra: custom-mode VPC, controllers across zones, a network LB over a target pool with a legacy
HTTP health check answered by nginx's /healthz proxy on each controller."""
from components.gcp.component import GcpInfra, GcpInfraArgs
from components.gcp.config import GcpConfig, load_gcp_config

__all__ = ["GcpConfig", "GcpInfra", "GcpInfraArgs", "load_gcp_config"]
