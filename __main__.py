"""kthw: a highly available Kubernetes control plane, "the hard way", on Azure, GCP or local hosts."""
import pulumi

from components import clouds, config
from components.control_plane import ControlPlane, ControlPlaneArgs
from components.pki import Pki, PkiArgs

# 1. Config: every `kthw:` key (and the cloud's own) is validated before any resource is registered.
cfg = config.load()
cloud = clouds.load(cfg)

# 2. Infra: network, controllers, public address and load balancer (azure, gcp or local hosts).
infra = cloud.build("kthw")

# 3. PKI: CAs, every certificate, kubeconfigs and the encryption key, from one table.
pki = Pki("kthw-pki", PkiArgs(config=cfg, hosts=infra.hosts, public_address=infra.public_address,
                              api_port=infra.api_port, extra_sans=infra.extra_sans))

# 4. Control plane: etcd -> kube-apiserver -> controller-manager, scheduler -> RBAC -> verify, over SSH.
control_plane = ControlPlane("kthw-control-plane", ControlPlaneArgs(config=cfg, infra=infra, pki=pki))

# 5. Outputs.
pulumi.export("apiServerUrl", control_plane.api_server_url)
pulumi.export("publicAddress", infra.public_address)
pulumi.export("healthCheck", infra.health_check.value)
pulumi.export("controllers", [{"name": h.name, "privateIp": h.private_ip, "sshHost": h.ssh_host, "sshPort": h.ssh_port,
                                "sshUser": h.ssh_user, "sshHostKey": h.ssh_host_key, "machineUrn": h.machine_urn}
                               for h in infra.hosts])
# How an operator reaches the controllers (scripts/etcd-backup): a secret, like the kubeconfig.
pulumi.export("sshPrivateKeys", pulumi.Output.secret({h.name: h.ssh_private_key for h in infra.hosts}))
pulumi.export("kubeconfig", pki.kubeconfigs["admin"])
pulumi.export("certificateExpiry", {name: pair.expires for name, pair in {**pki.cas, **pki.certs}.items()})
