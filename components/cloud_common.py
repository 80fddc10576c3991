"""Pieces the infra components share: the official release source (azure, gcp) and the bootstrap's SSH key
pair (on the clouds read and checked from config, or generated; on local hosts generated)."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pulumi
import pulumi_tls as tls
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, SSHPublicKeyTypes

from components import releases
from components.config import StackConfig, _Reader
from components.infra import ReleaseSource

SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


def official_release_source(config: StackConfig) -> ReleaseSource:
    """The official releases (dl.k8s.io, GitHub), pinned to the checksum table's sha256 for the stack's versions.

    A digest the table lacks is resolved from the release's published checksum files at the first `up`
    (components/release_digests.py), or, with kthw:requirePinnedDigests, refused by `components.clouds`
    before any resource exists.
    """
    return ReleaseSource(kubernetes_base=releases.KUBERNETES_BASE, etcd_base=releases.ETCD_BASE,
                         pinned=releases.official_sha256(config.kubernetes_version, config.etcd_version))


# ---- the bootstrap's SSH key ----------------------------------------------------------------------------

def read_ssh_key_pair(r: _Reader, is_secret: Optional[Callable[[str], bool]],
                      key_types: Sequence[str] = SSH_KEY_TYPES) -> tuple[Optional[str], Optional[str]]:
    """`kthw:sshPublicKey` and `kthw:sshPrivateKey` (both or neither), each problem reported through `r`.

    The public key must be one OpenSSH line of `key_types` (RSA of at least 2048 bits); the private key an
    unencrypted PEM/OpenSSH key, its other half, stored as a config secret when `is_secret` can tell.
    """
    public_key, private_key = r.str("sshPublicKey"), r.str("sshPrivateKey")
    if (public_key is None) != (private_key is None):
        r.fail("sshPublicKey" if public_key is None else "sshPrivateKey",
               "must be set together with the other half of the pair (kthw:sshPublicKey, kthw:sshPrivateKey), "
               "or leave both unset to have a key pair generated")
        return None, None
    if public_key is None or private_key is None:
        return None, None
    private_key += "\n"  # the reader strips; a PEM block ends with a newline
    public = private_half = None
    try:
        public = _load_public_key(public_key, key_types).public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    except ValueError as err:
        r.fail("sshPublicKey", str(err))
    try:
        private_half = _public_half(private_key)
    except ValueError:
        r.fail("sshPrivateKey", "must be an unencrypted private key in PEM or OpenSSH format "
               "(pulumi config set --secret kthw:sshPrivateKey < ~/.ssh/id_ed25519)")
    if private_half is not None and is_secret is not None and not is_secret("sshPrivateKey"):
        r.fail("sshPrivateKey", "must be stored as a secret: "
               "pulumi config set --secret kthw:sshPrivateKey < ~/.ssh/id_ed25519")
    elif private_half is not None and public is not None and private_half != public:
        r.fail("sshPrivateKey", "is not the private half of kthw:sshPublicKey")
    return public_key, private_key


def _load_public_key(line: str, key_types: Sequence[str] = SSH_KEY_TYPES) -> SSHPublicKeyTypes:
    """The key of one OpenSSH public key line; a ValueError says why it is unusable."""
    fields = line.split()
    if len(fields) < 2 or fields[0] not in key_types:
        raise ValueError(f"must be one OpenSSH public key line of type {', '.join(key_types)}, got {line[:40]!r}")
    try:
        base64.b64decode(fields[1], validate=True)
    except ValueError:
        raise ValueError("holds a key whose base64 body does not decode") from None
    try:  # the type inside the body must be the one the line names
        key = serialization.load_ssh_public_key(line.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"says {fields[0]} but its body is not a {fields[0]} key") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise ValueError("must be an RSA key of at least 2048 bits, or an ED25519 key")
    return key


def _public_half(private_key: str) -> bytes:
    """The OpenSSH public key of an unencrypted private key in OpenSSH or PEM (PKCS#8, PKCS#1, SEC1) format;
    a ValueError for anything else (cryptography raises a TypeError for an encrypted key)."""
    data = private_key.encode()
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
        return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ValueError(str(err)) from None


@dataclass
class SshKey:
    public_key: pulumi.Output[str]  # one OpenSSH line, for authorized_keys
    private_key: pulumi.Output[str]  # always a secret


def ssh_key(name: str, public_key: Optional[str], private_key: Optional[str], parent: pulumi.Resource,
            algorithm: str = "ED25519") -> SshKey:
    """The configured pair, or a pulumi-tls key (`{name}-ssh-key`: ED25519, or RSA 4096); the private half secret."""
    if public_key is not None and private_key is not None:
        return SshKey(pulumi.Output.from_input(public_key), pulumi.Output.secret(private_key))
    size = {"rsa_bits": 4096} if algorithm == "RSA" else {}
    key = tls.PrivateKey(f"{name}-ssh-key", algorithm=algorithm, **size, opts=pulumi.ResourceOptions(parent=parent))
    return SshKey(key.public_key_openssh, pulumi.Output.secret(key.private_key_openssh))
