"""What lands on each controller: the files per component, packed into one secret payload for stdin."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from typing import Mapping

import pulumi

from components.pki import Pki
from components.render import content_hash, script

K8S = "/var/lib/kubernetes"
ETCD = "/etc/etcd"
SCHEDULER_CONFIG = "/etc/kubernetes/config/kube-scheduler.yaml"

# Files that hold a private key or credentials: mode 0600. Everything else is 0644.
PRIVATE_SUFFIXES = ("-key.pem", ".kubeconfig", "encryption-config.yaml")


def node_file_groups(pki: Pki, node: str) -> dict[str, dict[str, pulumi.Input[str]]]:
    """Path -> content for each component on `node`; a component's files change -> it restarts."""
    ca, etcd_ca, front_ca = pki.cas["ca"], pki.cas["etcd-ca"], pki.cas["front-proxy-ca"]
    certs, kubeconfigs = pki.certs, pki.kubeconfigs
    server, peer = pki.node_certs["etcd-server"][node], pki.node_certs["etcd-peer"][node]
    health = certs["etcd-healthcheck-client"]
    return {
        "etcd": {
            f"{ETCD}/ca.pem": etcd_ca.cert_pem,
            f"{ETCD}/server.pem": server.cert_pem, f"{ETCD}/server-key.pem": server.key_pem,
            f"{ETCD}/peer.pem": peer.cert_pem, f"{ETCD}/peer-key.pem": peer.key_pem,
            f"{ETCD}/healthcheck-client.pem": health.cert_pem,
            f"{ETCD}/healthcheck-client-key.pem": health.key_pem,
        },
        "kube-apiserver": {
            f"{K8S}/ca.pem": ca.cert_pem,
            f"{K8S}/etcd-ca.pem": etcd_ca.cert_pem,
            f"{K8S}/front-proxy-ca.pem": front_ca.cert_pem,
            **_pair(certs, "apiserver"), **_pair(certs, "apiserver-kubelet-client"),
            **_pair(certs, "apiserver-etcd-client"), **_pair(certs, "front-proxy-client"),
            f"{K8S}/service-account.pub": pki.service_account_public_pem,
            f"{K8S}/service-account-key.pem": pki.service_account_key_pem,
            f"{K8S}/encryption-config.yaml": pki.encryption_config,
            f"{K8S}/audit-policy.yaml": script("kube-apiserver/audit-policy.yaml"),
            f"{K8S}/authentication-config.yaml": script("kube-apiserver/authentication-config.yaml"),
            f"{K8S}/admin.kubeconfig": kubeconfigs["admin"],
            f"{K8S}/super-admin.kubeconfig": kubeconfigs["super-admin"],
        },
        "kube-controller-manager": {
            f"{K8S}/ca.pem": ca.cert_pem,
            f"{K8S}/ca-key.pem": ca.key_pem,
            f"{K8S}/front-proxy-ca.pem": front_ca.cert_pem,
            f"{K8S}/service-account-key.pem": pki.service_account_key_pem,
            f"{K8S}/controller-manager.kubeconfig": kubeconfigs["controller-manager"],
        },
        "kube-scheduler": {
            f"{K8S}/scheduler.kubeconfig": kubeconfigs["scheduler"],
            SCHEDULER_CONFIG: script("kube-scheduler/kube-scheduler.yaml"),
        },
    }


def _pair(certs: Mapping, name: str) -> dict[str, pulumi.Input[str]]:
    return {f"{K8S}/{name}.pem": certs[name].cert_pem, f"{K8S}/{name}-key.pem": certs[name].key_pem}


def pack(files: Mapping[str, str]) -> str:
    """A deterministic tar of `files` (absolute paths), base64-encoded, built in memory only."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            data = files[path].encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mtime, info.uid, info.gid = len(data), 0, 0, 0
            info.mode = 0o600 if path.endswith(PRIVATE_SUFFIXES) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


def merged(groups: Mapping[str, Mapping[str, pulumi.Input[str]]]) -> dict[str, pulumi.Input[str]]:
    files: dict[str, pulumi.Input[str]] = {}
    for group in groups.values():
        files.update(group)
    return files


def payload(files: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """The secret stdin of a node's files step."""
    paths = sorted(files)
    return pulumi.Output.secret(pulumi.Output.all(*[files[p] for p in paths]).apply(
        lambda contents: pack(dict(zip(paths, contents)))))


def fingerprint(files: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """A hash of the files' content: not secret (it reveals nothing), used to trigger restarts."""
    paths = sorted(files)
    return pulumi.Output.unsecret(pulumi.Output.all(*[files[p] for p in paths]).apply(
        lambda contents: content_hash(*[f"{p}\n{c}" for p, c in zip(paths, contents)])))


def sha256(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def digests(files: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[dict[str, str]]:
    """path -> sha256 of each file as it lands on the host; not secret (a digest reveals nothing)."""
    paths = sorted(files)
    return pulumi.Output.unsecret(pulumi.Output.all(*[files[p] for p in paths]).apply(
        lambda contents: {p: sha256(c) for p, c in zip(paths, contents)}))
