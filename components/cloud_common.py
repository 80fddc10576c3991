"""Pieces the real clouds (azure, gcp) share: the official release source and the bootstrap's SSH key pair
(read and checked from config, or generated)."""
from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pulumi
import pulumi_tls as tls

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
    unencrypted PEM/OpenSSH key, stored as a config secret when `is_secret` can tell.
    """
    public_key, private_key = r.str("sshPublicKey"), r.str("sshPrivateKey")
    if (public_key is None) != (private_key is None):
        r.fail("sshPublicKey" if public_key is None else "sshPrivateKey",
               "must be set together with the other half of the pair (kthw:sshPublicKey, kthw:sshPrivateKey), "
               "or leave both unset to have a key pair generated")
        return None, None
    if public_key is None or private_key is None:
        return None, None
    problem = public_key_problem(public_key, key_types)
    if problem:
        r.fail("sshPublicKey", problem)
    if "PRIVATE KEY-----" not in private_key:
        r.fail("sshPrivateKey", "must be an unencrypted private key in PEM or OpenSSH format "
               "(pulumi config set --secret kthw:sshPrivateKey < ~/.ssh/id_ed25519)")
    elif is_secret is not None and not is_secret("sshPrivateKey"):
        r.fail("sshPrivateKey", "must be stored as a secret: "
               "pulumi config set --secret kthw:sshPrivateKey < ~/.ssh/id_ed25519")
    return public_key, private_key + "\n"  # the reader strips; a PEM block ends with a newline


def public_key_problem(key: str, key_types: Sequence[str] = SSH_KEY_TYPES) -> Optional[str]:
    """Why this OpenSSH public key line is unusable, or None."""
    fields = key.split()
    if len(fields) < 2 or fields[0] not in key_types:
        return f"must be one OpenSSH public key line of type {', '.join(key_types)}, got {key[:40]!r}"
    try:
        parts = _ssh_fields(base64.b64decode(fields[1], validate=True))
    except (ValueError, binascii.Error, struct.error):
        return "holds a key whose base64 body does not decode"
    if not parts or parts[0] != fields[0].encode():
        return f"says {fields[0]} but its body is not a {fields[0]} key"
    if fields[0] == "ssh-rsa" and (len(parts) < 3 or len(parts[2].lstrip(b"\0")) * 8 < 2048):
        return "must be an RSA key of at least 2048 bits, or an ED25519 key"
    return None


def _ssh_fields(blob: bytes) -> list[bytes]:
    """Split an SSH wire-format key blob into its length-prefixed fields."""
    out, i = [], 0
    while i < len(blob):
        (n,) = struct.unpack(">I", blob[i:i + 4])
        if i + 4 + n > len(blob):
            raise ValueError("truncated")
        out.append(blob[i + 4:i + 4 + n])
        i += 4 + n
    return out


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
