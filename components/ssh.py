"""How kthw reaches a controller over SSH, the one place for it: the connection every remote command uses, the
paramiko client the drift probe and the operator scripts use, and running a script as root on the host.

Both verify the host's key where the stack pins one (components/host_keys.py) and refuse any other.
"""
from __future__ import annotations

import base64
import hashlib
import io
from typing import Any, Optional

import pulumi
from pulumi_command import remote

from components.infra import ControllerHost

DIAL_ERROR_LIMIT = 30  # a bootstrap step's dial retries (hosts are up: they booted before the first step)
BOOT_DIAL_ERROR_LIMIT = 60  # waiting for a fresh VM's first boot: a minute or two before sshd answers
PER_DIAL_TIMEOUT_SECONDS = 10
CLIENT_TIMEOUT_SECONDS = 30  # paramiko's connect, banner, auth and channel timeouts


def connection(host: ControllerHost, dial_error_limit: int = DIAL_ERROR_LIMIT) -> remote.ConnectionArgs:
    """How a remote command reaches `host`: its login user and the bootstrap's key (never the caller's agent),
    verifying its pinned host key (pulumi-command refuses another; with none pinned it checks nothing)."""
    return remote.ConnectionArgs(host=host.ssh_host, port=host.ssh_port, user=host.ssh_user,
                                 private_key=host.ssh_private_key, host_key=host.ssh_host_key,
                                 dial_error_limit=dial_error_limit, per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS)


def as_root(body: str, step: str) -> str:
    """Run a script as root over SSH whether the login user is root or a sudoer; stdin passes through.

    The script travels as a quoted heredoc, so previews show it as it is written.
    """
    if "\nKTHW_SCRIPT\n" in f"\n{body}\n":
        raise ValueError("a host script must not contain the line KTHW_SCRIPT")
    return ('S=; [ "$(id -u)" -eq 0 ] || S="sudo -n"\n'
            f'$S bash -c "$(cat <<\'KTHW_SCRIPT\'\n{body.rstrip()}\nKTHW_SCRIPT\n)" kthw-{step}\n')


def as_root_output(body: pulumi.Input[str], step: str) -> pulumi.Output[str]:
    return pulumi.Output.from_input(body).apply(lambda b: as_root(b, step))


def paramiko_key(private_key: str) -> Any:
    """A paramiko key from any PEM or OpenSSH private key (ECDSA, Ed25519 or RSA), parsed by `cryptography`."""
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    data = private_key.encode()
    if b"OPENSSH PRIVATE KEY" in data:
        key = serialization.load_ssh_private_key(data, password=None)
    else:
        key = serialization.load_pem_private_key(data, password=None)
    openssh = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    kind = {ed25519.Ed25519PrivateKey: paramiko.Ed25519Key, ec.EllipticCurvePrivateKey: paramiko.ECDSAKey,
            rsa.RSAPrivateKey: paramiko.RSAKey}
    for base, cls in kind.items():
        if isinstance(key, base):
            return cls.from_private_key(io.StringIO(openssh))
    raise ValueError(f"unsupported SSH key type {type(key).__name__}")


class HostKeyMismatch(Exception):
    """The host answered with another SSH host key than the one the stack pins: refused, nothing was sent."""


def fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return f"{key.get_name()} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def client(host: str, port: int, user: str, private_key: str, timeout: float = CLIENT_TIMEOUT_SECONDS,
           host_key: Optional[str] = None, name: Optional[str] = None) -> Any:
    """A connected paramiko client; close it. `host_key` (one OpenSSH public key line) is the only key accepted
    from the host (HostKeyMismatch names `name` or the address otherwise); without one (a machine built before
    kthw pinned its hosts' keys) the host's key is not checked."""
    import paramiko

    port = int(port)  # Pulumi hands numbers over as floats
    ssh = paramiko.SSHClient()
    if host_key:
        kind, body = host_key.split()[:2]
        ssh.get_host_keys().add(_known_hosts_name(host, port), kind, paramiko.PKey.from_type_string(
            kind, base64.b64decode(body)))
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    else:
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - nothing pinned to check against
    try:
        ssh.connect(host, port=port, username=user, pkey=paramiko_key(private_key), timeout=timeout,
                    banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                    allow_agent=False, look_for_keys=False)
    except paramiko.BadHostKeyException as err:
        ssh.close()
        raise HostKeyMismatch(f"{name or host} ({host}:{port}) answered with SSH host key {fingerprint(err.key)}, "
                              f"not the stack's pinned {fingerprint(err.expected_key)}: refused (a machine "
                              "re-created outside kthw, or someone in between)") from None
    except BaseException:
        ssh.close()
        raise
    return ssh


def _known_hosts_name(host: str, port: int) -> str:
    """How paramiko names a host in its known hosts: the address, or [address]:port off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


def run_as_root(ssh: Any, body: str, step: str, timeout: float) -> tuple[int, bytes, bytes]:
    """Run `body` as root on a connected client: (exit status, stdout, stderr)."""
    _, stdout, stderr = ssh.exec_command(as_root(body, step), timeout=timeout)
    out, err = stdout.read(), stderr.read()
    return stdout.channel.recv_exit_status(), out, err
