"""Pulumi mocks whose pulumi-tls resources are real keys and certificates (made with `cryptography`), for tests
that hand what the program rendered to real tools (nginx, curl, ssh) instead of only reading it."""
from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi.runtime import mocks as pulumi_mocks

from harness import FakeCloud, unwrap

PEM = serialization.Encoding.PEM


def _private_key(inputs: dict) -> dict:
    algorithm = inputs.get("algorithm", "RSA")
    if algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ECDSA":
        curves = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}
        key = ec.generate_private_key(curves[inputs.get("ecdsaCurve", "P224")]())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))
    public = key.public_key()
    return {
        "private_key_pem": key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
        "private_key_openssh": key.private_bytes(PEM, serialization.PrivateFormat.OpenSSH,
                                                 serialization.NoEncryption()).decode(),
        "public_key_pem": public.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "public_key_openssh": public.public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH).decode(),
    }


def _name(subject: dict | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, (subject or {}).get("commonName") or "kthw")]
    if (subject or {}).get("organization"):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]))
    return x509.Name(attributes)


def _sign(builder: x509.CertificateBuilder, inputs: dict, issuer_key) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    end = now + datetime.timedelta(hours=int(inputs.get("validityPeriodHours") or 24))
    uses = set(inputs.get("allowedUses") or [])
    usages = [u for u, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, "server_auth"),
                                  (ExtendedKeyUsageOID.CLIENT_AUTH, "client_auth")) if wanted in uses]
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5)) \
        .not_valid_after(end).sign(issuer_key, None if isinstance(issuer_key, ed25519.Ed25519PrivateKey)
                                   else hashes.SHA256())
    return {"cert_pem": cert.public_bytes(PEM).decode(), "validity_end_time": end.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _self_signed(inputs: dict) -> dict:
    key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), password=None)
    name = _name(inputs.get("subject"))
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()) \
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    if is_ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    return _sign(builder, inputs, key)


def _cert_request(inputs: dict) -> dict:
    key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), password=None)
    names = [x509.DNSName(n) for n in inputs.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in inputs.get("ipAddresses") or []]
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject")))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    return {"cert_request_pem": csr.public_bytes(PEM).decode()}


def _locally_signed(inputs: dict) -> dict:
    csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    ca_key = serialization.load_pem_private_key(inputs["caPrivateKeyPem"].encode(), password=None)
    builder = x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject) \
        .public_key(csr.public_key()).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    for extension in csr.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    return _sign(builder, inputs, ca_key)


MAKERS = {
    "tls:index/privateKey:PrivateKey": _private_key,
    "tls:index/selfSignedCert:SelfSignedCert": _self_signed,
    "tls:index/certRequest:CertRequest": _cert_request,
    "tls:index/locallySignedCert:LocallySignedCert": _locally_signed,
}


class RealTls(FakeCloud):
    """FakeCloud, except that every pulumi-tls key and certificate is real. Like a stack's state, one instance
    keeps what it made: evaluating the program again with it gives each resource the same key or cert."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[tuple[str, str], dict] = {}

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        resource_id, outputs = super().new_resource(args)
        maker = MAKERS.get(args.typ)
        if maker is not None:
            outputs.update(self._made.setdefault((args.typ, args.name), maker(unwrap(args.inputs))))
        return resource_id, outputs


def ca_and_server_cert(common_name: str, ip: str) -> tuple[str, str]:
    """A CA's cert and, signed by it, a server key and cert for `ip` (PEM, key first): what LocalInfra's mirror
    CA and certificate resources give the hosts and the file server."""
    ca_key = _private_key({"algorithm": "ECDSA", "ecdsaCurve": "P256"})["private_key_pem"]
    ca = _self_signed({"privateKeyPem": ca_key, "subject": {"commonName": common_name}, "isCaCertificate": True,
                       "validityPeriodHours": 24})["cert_pem"]
    key = _private_key({"algorithm": "ECDSA", "ecdsaCurve": "P256"})["private_key_pem"]
    csr = _cert_request({"privateKeyPem": key, "subject": {"commonName": ip}, "ipAddresses": [ip]})
    cert = _locally_signed({"certRequestPem": csr["cert_request_pem"], "caCertPem": ca, "caPrivateKeyPem": ca_key,
                            "validityPeriodHours": 24, "allowedUses": ["server_auth"]})["cert_pem"]
    return ca, key + cert
