"""components/ssh.py's client against a real SSH server on loopback (paramiko's): a pinned host key is the only one
accepted, and a mismatch is refused before any credential or command is sent, naming the host."""
from __future__ import annotations

import socket
import threading
from typing import Iterator

import paramiko
import pytest
from harness import ssh_host_key_pair

from components import drift, ssh

USER = "kthw"


class _Server(paramiko.ServerInterface):
    """Takes one public key for USER, and runs any command as `echo ok`."""

    def __init__(self, client_key: paramiko.PKey, seen: list[str]):
        self.client_key, self.seen = client_key, seen
        self.executing = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.seen.append(f"auth {username}")
        ok = username == USER and key.asbytes() == self.client_key.asbytes()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.seen.append("exec")
        self.executing.set()
        return True


@pytest.fixture
def server() -> Iterator[dict]:
    """An SSH server on 127.0.0.1 with a host key of its own; yields its address, keys and what it saw."""
    host_private, host_public = ssh_host_key_pair()
    client_private, _ = ssh_host_key_pair()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(10)
    seen: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            seen.append("connect")
            transport = paramiko.Transport(conn)
            transport.add_server_key(ssh.paramiko_key(host_private))
            handler = _Server(ssh.paramiko_key(client_private), seen)
            try:
                transport.start_server(server=handler)
            except (paramiko.SSHException, EOFError):
                continue
            channel = transport.accept(10)
            if channel is not None and handler.executing.wait(10):
                channel.sendall(b"ok\n")
                channel.send_exit_status(0)
                channel.close()
                stop.wait(0.2)
            transport.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield {"port": listener.getsockname()[1], "host_key": host_public.strip(), "private_key": client_private,
           "seen": seen}
    stop.set()
    listener.close()
    thread.join(10)


def test_the_pinned_host_key_is_accepted(server):
    client = ssh.client("127.0.0.1", server["port"], USER, server["private_key"], timeout=10,
                        host_key=server["host_key"], name="controller-0")
    try:
        assert ssh.run_as_root(client, "true", "test", timeout=10)[:2] == (0, b"ok\n")
    finally:
        client.close()
    assert server["seen"] == ["connect", f"auth {USER}", "exec"]


def test_another_host_key_is_refused_naming_the_host_before_anything_is_sent(server):
    impostor = ssh_host_key_pair()[1].strip()
    with pytest.raises(ssh.HostKeyMismatch) as refused:
        ssh.client("127.0.0.1", server["port"], USER, server["private_key"], timeout=10, host_key=impostor,
                   name="controller-1")
    message = str(refused.value)
    assert message.startswith(f"controller-1 (127.0.0.1:{server['port']}) answered with SSH host key ssh-ed25519 SHA256:")
    want = ssh.fingerprint(paramiko.PKey.from_type_string("ssh-ed25519", __import__("base64").b64decode(
        impostor.split()[1])))
    assert f"not the stack's pinned {want}: refused" in message
    assert server["seen"] == ["connect"]  # no credential, no command


def test_the_drift_probe_names_a_mismatch_as_the_hosts_drift_and_does_not_retry(server):
    props = {"name": "controller-1", "host": "127.0.0.1", "port": float(server["port"]), "user": USER,  # as Pulumi
             "private_key": server["private_key"], "host_key": ssh_host_key_pair()[1].strip(),
             "expected": {"g": {"files": {}, "units": ["ssh"]}}}
    read = drift.HostStateProvider().read("id", props).outs
    [line] = read["drift"]
    assert line.startswith(f"host: controller-1 (127.0.0.1:{server['port']}) answered with SSH host key ")
    assert server["seen"] == ["connect"]  # one attempt: an impostor is not a transient failure
