"""The e2e's OIDC issuer (tests/oidc_issuer.py) on loopback: discovery and JWKS over HTTPS that its own CA
verifies, and tokens whose RS256 signature the published key checks (and another key's does not)."""
import base64
import json
import ssl
import urllib.request

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.exceptions import InvalidSignature

import oidc_issuer


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify(token: str, jwks: dict) -> dict:
    header, body, signature = token.split(".")
    (key,) = [k for k in jwks["keys"] if k["kid"] == json.loads(b64decode(header))["kid"]]
    public = rsa.RSAPublicNumbers(int.from_bytes(b64decode(key["e"]), "big"),
                                  int.from_bytes(b64decode(key["n"]), "big")).public_key()
    public.verify(b64decode(signature), f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return json.loads(b64decode(body))


@pytest.fixture
def issuer():
    running = oidc_issuer.start("127.0.0.1")
    yield running
    running.close()


def get(issuer, path: str, context: ssl.SSLContext) -> dict:
    with urllib.request.urlopen(issuer.url + path, context=context, timeout=10) as response:
        return json.loads(response.read())


def test_discovery_and_jwks_over_https_its_ca_verifies(issuer):
    context = ssl.create_default_context(cadata=issuer.ca_pem)
    discovery = get(issuer, "/.well-known/openid-configuration", context)
    assert discovery["issuer"] == issuer.url and issuer.url.startswith("https://127.0.0.1:")
    jwks = get(issuer, discovery["jwks_uri"].removeprefix(issuer.url), context)
    claims = verify(issuer.token("alice", "kthw", groups=["dev"]), jwks)
    assert (claims["iss"], claims["aud"], claims["sub"], claims["groups"]) == (issuer.url, "kthw", "alice", ["dev"])
    assert claims["nbf"] < claims["iat"] < claims["exp"]
    with pytest.raises(InvalidSignature):
        verify(issuer.token("mallory", "kthw", key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
               jwks)
    assert [path for _, path in issuer.requests] == ["/.well-known/openid-configuration", "/jwks"]


def test_a_client_without_its_ca_refuses_it(issuer):
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(issuer, "/jwks", ssl.create_default_context())
