"""A small OIDC issuer for tests: a throwaway CA and a serving certificate for one address, discovery and a JWKS
over HTTPS (stdlib http.server + ssl, in a thread), and RS256 tokens it signs itself.

It listens on the one address it is given (loopback, or a local stack's bridge address) and nowhere else.
"""
from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

KID = "kthw-test-key"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificates(address: str) -> tuple[str, bytes, bytes]:
    """(the CA's PEM, the server's certificate PEM, its key PEM) for a server at the IP `address`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("kthw test issuer CA")).issuer_name(_name("kthw test issuer CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(_name(address)).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
                             critical=False)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return (ca.public_bytes(serialization.Encoding.PEM).decode(), server.public_bytes(serialization.Encoding.PEM),
            key_pem)


def sign(claims: dict, key: rsa.RSAPrivateKey, kid: str = KID) -> str:
    """A compact RS256 JWS of `claims`."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{b64url(signature)}"


def jwk(key: rsa.RSAPublicKey, kid: str = KID) -> dict:
    numbers = key.public_numbers()
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b64url(_uint(numbers.n)),
            "e": b64url(_uint(numbers.e))}


@dataclass
class Issuer:
    """A running issuer: its URL (the tokens' `iss`), its CA (PEM) and the paths it was asked for, by client."""

    url: str
    ca_pem: str
    signing_key: rsa.RSAPrivateKey
    server: ThreadingHTTPServer
    requests: list[tuple[str, str]] = field(default_factory=list)  # (client address, path)

    def token(self, subject: str, audience: str, groups: Sequence[str] = (), lifetime: int = 600,
              key: Optional[rsa.RSAPrivateKey] = None, **claims) -> str:
        """A token for `subject`, signed with the issuer's key (or `key`: one the issuer does not publish)."""
        now = int(time.time())
        return sign({"iss": self.url, "aud": audience, "sub": subject, "groups": list(groups), "iat": now,
                     "nbf": now - 60, "exp": now + lifetime, **claims}, key or self.signing_key)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(address: str, port: int = 0) -> Issuer:
    """Serve discovery (`/.well-known/openid-configuration`) and the JWKS (`/jwks`) over HTTPS on `address`."""
    ca_pem, cert_pem, key_pem = certificates(address)
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as tmp:  # ssl loads a chain from files only; gone once loaded
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key_pem)
        context.load_cert_chain(cert_file, key_file)
    documents: dict[str, dict] = {}
    requests: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            requests.append((self.client_address[0], self.path))
            document = documents.get(self.path)
            body = json.dumps(document).encode() if document is not None else b"{}"
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://{address}:{server.server_address[1]}"
    documents["/.well-known/openid-configuration"] = {
        "issuer": url, "jwks_uri": f"{url}/jwks", "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}
    documents["/jwks"] = {"keys": [jwk(signing_key.public_key())]}
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return Issuer(url=url, ca_pem=ca_pem, signing_key=signing_key, server=server, requests=requests)
