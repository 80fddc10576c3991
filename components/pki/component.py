"""The PKI component: turns the table into pulumi-tls keys and certificates, kubeconfigs and the encryption key."""
from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from components.config import StackConfig
from components.infra import ControllerHost, api_server_url
from components.pki import kubeconfig, table
from components.render import render


@dataclass(frozen=True)
class CertPair:
    """A certificate (public) and its private key (always a secret)."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    expires: pulumi.Output[str]


@dataclass
class PkiArgs:
    config: StackConfig
    hosts: Sequence[ControllerHost]
    public_address: pulumi.Input[str]
    api_port: int = 6443
    extra_sans: Sequence[pulumi.Input[str]] = field(default_factory=list)


CA_VALIDITY_HOURS = 87600  # ten years, as kubeadm's CAs


def encryption_key_name(key: str) -> str:
    """A key's name in the encryption config: derived from the key, so the same key always has the same name
    (stored Secrets carry it), and two keys never share one."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _encryption_key(seed: str) -> str:
    """A 32-byte key (base64) for secretbox/aesgcm/aescbc from a random seed."""
    return base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


def _split_names(values: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split values that may be DNS names or IP addresses into (dns, ips)."""
    dns, ips = [], []
    for value in values:
        if not value:
            continue
        try:
            ipaddress.ip_address(value)
            ips.append(value)
        except ValueError:
            dns.append(value)
    return dns, ips


def private_key(name: str, parent: pulumi.Resource) -> tls.PrivateKey:
    """An ECDSA P-256 key (every key of the PKI)."""
    return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=parent))


def self_signed_ca(name: str, common_name: str, parent: pulumi.Resource) -> CertPair:
    """A CA (`<name>-key`, `<name>`) valid for CA_VALIDITY_HOURS."""
    key = private_key(f"{name}-key", parent)
    cert = tls.SelfSignedCert(
        name, private_key_pem=key.private_key_pem, is_ca_certificate=True,
        subject=tls.SelfSignedCertSubjectArgs(common_name=common_name),
        # Leaf validity (kthw:certValidityHours) never re-issues a CA: a new trust root cannot roll out
        # node by node. A CA's expiry is a stack output (certificateExpiry).
        validity_period_hours=CA_VALIDITY_HOURS,
        allowed_uses=list(table.CA_USES), set_subject_key_id=True,
        opts=pulumi.ResourceOptions(parent=parent))
    return CertPair(cert.cert_pem, pulumi.Output.secret(key.private_key_pem), cert.validity_end_time)


def signed_cert(name: str, signer: CertPair, common_name: str, organization: Optional[str],
                dns_names: pulumi.Input[Sequence[str]], ip_addresses: pulumi.Input[Sequence[str]],
                usages: Sequence[str], validity_hours: int, parent: pulumi.Resource,
                renew_fraction: int = 10) -> CertPair:
    """A leaf (`<name>-key`, `<name>-csr`, `<name>`) signed by `signer`, re-issued by the first `up` within
    1/`renew_fraction` of its validity of its end."""
    key = private_key(f"{name}-key", parent)
    request = tls.CertRequest(
        f"{name}-csr", private_key_pem=key.private_key_pem,
        subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=organization),
        dns_names=dns_names, ip_addresses=ip_addresses, opts=pulumi.ResourceOptions(parent=parent))
    cert = tls.LocallySignedCert(
        name, cert_request_pem=request.cert_request_pem,
        ca_cert_pem=signer.cert_pem, ca_private_key_pem=signer.key_pem,
        validity_period_hours=validity_hours, early_renewal_hours=max(1, validity_hours // renew_fraction),
        allowed_uses=list(usages), set_subject_key_id=True, opts=pulumi.ResourceOptions(parent=parent))
    return CertPair(cert.cert_pem, pulumi.Output.secret(key.private_key_pem), cert.validity_end_time)


class Pki(pulumi.ComponentResource):
    """Every key pair and certificate of the control plane, its kubeconfigs and its encryption config."""

    cas: dict[str, CertPair]
    certs: dict[str, CertPair]
    node_certs: dict[str, dict[str, CertPair]]  # spec name -> node name -> pair
    service_account_key_pem: pulumi.Output[str]
    service_account_public_pem: pulumi.Output[str]
    kubeconfigs: dict[str, pulumi.Output[str]]
    encryption_config: pulumi.Output[str]
    encryption_key_name: pulumi.Output[str]

    def __init__(self, name: str, args: PkiArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kthw:pki:Pki", name, None, opts)
        self._name = name
        self._validity = args.config.cert_validity_hours
        self._short_validity = args.config.admin_cert_validity_hours
        cfg = args.config
        names = [h.name for h in args.hosts]
        extra = list(args.extra_sans) + ([cfg.api_server_dns_name] if cfg.api_server_dns_name else [])
        context = table.SanContext(
            cluster_domain=cfg.cluster_domain, service_ip=cfg.service_ip, controller_names=names,
            controller_ips=[h.private_ip for h in args.hosts], public_address=args.public_address, extra=extra)

        self.cas = {spec.name: self._ca(spec) for spec in table.CAS}
        self.certs, self.node_certs = {}, {}
        for spec in table.CERTS:
            if spec.per_node:
                self.node_certs[spec.name] = {
                    host.name: self._cert(spec, f"{spec.name}-{host.name}", host.name,
                                          context.__class__(**{**context.__dict__, "node_name": host.name,
                                                               "node_ip": host.private_ip}))
                    for host in args.hosts}
            else:
                self.certs[spec.name] = self._cert(spec, spec.name, None, context)

        sa_key = self._key("service-account")
        self.service_account_key_pem = pulumi.Output.secret(sa_key.private_key_pem)
        self.service_account_public_pem = sa_key.public_key_pem

        public_server = api_server_url(cfg.api_server_dns_name, args.public_address, args.api_port)
        servers = {"public": public_server, "local": pulumi.Output.from_input(f"https://127.0.0.1:{args.api_port}")}
        self.kubeconfigs = {
            kc_name: pulumi.Output.secret(pulumi.Output.all(
                self.cas["ca"].cert_pem, self.certs[cert].cert_pem, self.certs[cert].key_pem, servers[where],
            ).apply(lambda v, user=user: kubeconfig.render(ca_pem=v[0], cert_pem=v[1], key_pem=v[2],
                                                            server=v[3], user=user)))
            for kc_name, (cert, user, where) in table.KUBECONFIGS.items()}

        # RandomBytes would do, but its ID is the value itself (plaintext in the state); a RandomPassword's
        # ID is "none" and its result a secret, so the 32-byte key is the SHA-256 of 64 random characters.
        seed = random.RandomPassword(f"{name}-encryption-key", length=64, special=False,
                                     opts=pulumi.ResourceOptions(parent=self))
        # kthw:encryptionKey (a secret) overrides it: the key then outlives `pulumi destroy`, so a restored
        # snapshot's Secrets stay readable (scripts/etcd-restore sets it from the backup). During a rotation
        # (scripts/rotate-encryption-key) the next and the previous key decrypt too; the first one encrypts.
        key = pulumi.Output.secret(cfg.encryption_key) if cfg.encryption_key else seed.result.apply(_encryption_key)
        others = [k for k in (cfg.encryption_key_next, cfg.encryption_key_previous) if k]
        keys = pulumi.Output.all(key, *others).apply(lambda ks: [{"name": encryption_key_name(k), "secret": k}
                                                                 for k in ks])
        self.encryption_config = pulumi.Output.secret(keys.apply(
            lambda ks: render("kube-apiserver/encryption-config.yaml.j2", provider=cfg.encryption_provider, keys=ks)))
        # The encrypting key's name (a digest of it: it is in every stored Secret's prefix; not secret).
        self.encryption_key_name = pulumi.Output.unsecret(key.apply(encryption_key_name))

        self.register_outputs({
            "caCertPem": self.cas["ca"].cert_pem,
            "expiries": {n: p.expires for n, p in {**self.cas, **self.certs}.items()},
            "kubeconfigs": self.kubeconfigs,
        })

    def _key(self, name: str) -> tls.PrivateKey:
        return private_key(f"{self._name}-{name}-key", self)

    def _ca(self, spec: table.CaSpec) -> CertPair:
        return self_signed_ca(f"{self._name}-{spec.name}", spec.common_name, self)

    def _cert(self, spec: table.CertSpec, name: str, node: Optional[str], ctx: table.SanContext) -> CertPair:
        sans = spec.sans(ctx) if spec.sans else table.Sans()
        extra = pulumi.Output.all(*sans.either).apply(_split_names)
        dns = pulumi.Output.all(pulumi.Output.all(*sans.dns), extra).apply(lambda v: list(v[0]) + v[1][0])
        ips = pulumi.Output.all(pulumi.Output.all(*sans.ips), extra).apply(lambda v: list(v[0]) + v[1][1])
        # A short-lived identity (the admin's) is renewed by any `up` in the second half of its life.
        validity, renew = (self._short_validity, 2) if spec.short_lived else (self._validity, 10)
        return signed_cert(f"{self._name}-{name}", self.cas[spec.signer],
                           spec.common_name.replace("{node}", node or ""), spec.organization, dns, ips,
                           spec.usages, validity, self, renew_fraction=renew)
