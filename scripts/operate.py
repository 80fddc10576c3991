"""Day-2 operations on a kthw stack: etcd backup and restore, encryption key rotation (run through
scripts/etcd-backup, scripts/etcd-restore and scripts/rotate-encryption-key).

backup DIR:        on the first controller that answers, take a fresh snapshot with the controller's own
                   kthw-etcd-backup (the command its timer runs), download it (checked by sha256) to
                   DIR/etcd-<stack>-<time>.db and the encryption config beside it (<snapshot>.encryption-config.yaml,
                   mode 0600): the Secrets in the snapshot can only be read with that key.
restore SNAPSHOT:  start the (destroyed) stack again from the snapshot: set kthw:encryptionKey (secret) from the
                   backup's encryption config and kthw:etcdRestoreFrom, `pulumi up` (every founding etcd
                   member restores the snapshot with etcdutl before its first start), then drop
                   kthw:etcdRestoreFrom and `pulumi up` again (nothing changes on the hosts).
rotate-encryption-key:  three `pulumi up`s, each a rolling restart of the apiservers: (1) the new key is added
                   for decryption only; (2) it encrypts, the old one still decrypts, and every Secret is
                   rewritten with the new key; (3) the old key is dropped. The keys live in the stack's config
                   as secrets (kthw:encryptionKey, kthw:encryptionKeyNext, kthw:encryptionKeyPrevious).

SSH goes to each controller's sshHost/sshPort/sshUser with its key from the stack's outputs (paramiko).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import yaml

REPO = Path(__file__).resolve().parent.parent
# Commands run as root whether the login user is root or, as on every infra, the image's sudo user.
AS_ROOT = 'S=; [ "$(id -u)" -eq 0 ] || S="sudo -n"; $S sh -c '
ENCRYPTION_CONFIG = "/var/lib/kubernetes/encryption-config.yaml"


def pulumi(stack: str, *args: str, stdin: str | None = None, timeout: float = 1800) -> str:
    result = subprocess.run([str(REPO / "scripts/pulumi"), *args, "--stack", stack, "--non-interactive"],
                            input=stdin, text=True, capture_output=True, timeout=timeout)
    if result.returncode != 0:
        sys.exit(f"pulumi {' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
    return result.stdout


def _key(pem: str) -> paramiko.PKey:
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(pem))
        except (paramiko.SSHException, ValueError):
            continue
    raise SystemExit("the stack's SSH key is in no format paramiko reads")


def _run(client: paramiko.SSHClient, command: str, timeout: float = 180) -> bytes:
    _, stdout, stderr = client.exec_command(AS_ROOT + shlex.quote(command), timeout=timeout)
    data = stdout.read()
    if stdout.channel.recv_exit_status() != 0:
        raise RuntimeError(f"{command!r}: {stderr.read().decode(errors='replace')[-2000:]}")
    return data


def on_a_controller(stack: str, work):
    """(name, work(client)) on the first controller that answers over SSH and does the work."""
    outputs = json.loads(pulumi(stack, "stack", "output", "--json", "--show-secrets", timeout=300))
    controllers, keys = outputs.get("controllers") or [], outputs.get("sshPrivateKeys") or {}
    if not controllers:
        sys.exit(f"stack {stack} has no controllers (is it up?)")
    errors = []
    for c in controllers:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - hosts are the stack's own
        try:
            client.connect(c["sshHost"], port=int(c.get("sshPort", 22)), username=c["sshUser"],
                           pkey=_key(keys[c["name"]]), timeout=10, banner_timeout=10, auth_timeout=10,
                           allow_agent=False, look_for_keys=False)
            return c["name"], work(client)
        except Exception as err:  # noqa: BLE001 - try the next controller
            errors.append(f"{c['name']}: {err}")
        finally:
            client.close()
    sys.exit("no controller could do it:\n  " + "\n  ".join(errors))


def _encrypting_key(encryption_config: bytes) -> tuple[str, str]:
    """(provider, base64 key) that encrypts, from an EncryptionConfiguration."""
    providers = yaml.safe_load(encryption_config)["resources"][0]["providers"]
    (provider, spec), = providers[0].items()
    return provider, spec["keys"][0]["secret"]


def backup(stack: str, out_dir: Path) -> Path:
    def snapshot(client: paramiko.SSHClient) -> tuple[bytes, str, bytes]:
        remote = _run(client, "/usr/local/sbin/kthw-etcd-backup").decode().strip().splitlines()[-1]
        data = _run(client, f"cat {remote}", timeout=600)
        remote_digest = _run(client, f"sha256sum {remote}").decode().split()[0]
        if hashlib.sha256(data).hexdigest() != remote_digest:
            raise RuntimeError("the downloaded snapshot does not match the controller's")
        return data, remote_digest, _run(client, f"cat {ENCRYPTION_CONFIG}")

    out_dir.mkdir(parents=True, exist_ok=True)
    name, (data, remote_digest, encryption) = on_a_controller(stack, snapshot)
    target = out_dir / f"etcd-{stack}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.db"
    target.write_bytes(data)
    key_file = Path(f"{target}.encryption-config.yaml")
    key_file.touch(mode=0o600)
    key_file.write_bytes(encryption)
    etcdutl = shutil.which("etcdutl")
    if etcdutl:
        subprocess.run([etcdutl, "snapshot", "status", str(target), "-w", "table"], check=True, timeout=120)
    print(f"snapshot of {name}: {target} ({len(data)} bytes, sha256 {remote_digest[:12]}); "
          f"encryption key: {key_file} (keep both, and keep the key secret)", file=sys.stderr)
    return target


def restore(stack: str, snapshot: Path) -> None:
    snapshot = snapshot.resolve()
    key_file = Path(f"{snapshot}.encryption-config.yaml")
    if not snapshot.is_file() or not key_file.is_file():
        sys.exit(f"need {snapshot} and {key_file} (scripts/etcd-backup writes both)")
    outputs = json.loads(pulumi(stack, "stack", "output", "--json", timeout=300) or "{}")
    if outputs.get("controllers"):
        sys.exit(f"stack {stack} is up: a restore starts a new cluster from the snapshot; "
                 f"`scripts/pulumi destroy --stack {stack}` first (the snapshot and its key stay where they are)")
    provider, secret = _encrypting_key(key_file.read_bytes())
    pulumi(stack, "config", "set", "--secret", "kthw:encryptionKey", stdin=secret, timeout=120)
    pulumi(stack, "config", "set", "kthw:encryptionProvider", provider, timeout=120)
    pulumi(stack, "config", "set", "kthw:etcdRestoreFrom", str(snapshot), timeout=120)
    try:
        print(pulumi(stack, "up", "--yes", "--skip-preview"), file=sys.stderr)
    finally:
        pulumi(stack, "config", "rm", "kthw:etcdRestoreFrom", timeout=120)
    print(pulumi(stack, "up", "--yes", "--skip-preview"), file=sys.stderr)
    print(f"stack {stack} restored from {snapshot}", file=sys.stderr)


def rotate_encryption_key(stack: str) -> None:
    _, encryption = on_a_controller(stack, lambda client: _run(client, f"cat {ENCRYPTION_CONFIG}"))
    _, current = _encrypting_key(encryption)
    upcoming = base64.b64encode(os.urandom(32)).decode()
    stages = [
        ("1/3 add the new key for decryption", {"encryptionKey": current, "encryptionKeyNext": upcoming}, []),
        ("2/3 encrypt with the new key, rewrite every Secret", {"encryptionKey": upcoming,
                                                                "encryptionKeyPrevious": current},
         ["encryptionKeyNext"]),
        ("3/3 drop the old key", {}, ["encryptionKeyPrevious"]),
    ]
    for label, secrets, removed in stages:
        for key, value in secrets.items():
            pulumi(stack, "config", "set", "--secret", f"kthw:{key}", stdin=value, timeout=120)
        for key in removed:
            pulumi(stack, "config", "rm", f"kthw:{key}", timeout=120)
        start = time.monotonic()
        pulumi(stack, "up", "--yes", "--skip-preview")
        print(f"rotation {label}: {time.monotonic() - start:.1f} s", file=sys.stderr)
    print(f"stack {stack}: Secrets are encrypted with the new key; the old one is gone", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("backup", "restore", "rotate-encryption-key"))
    parser.add_argument("path", type=Path, nargs="?",
                        help="backup: the directory to write to; restore: the snapshot file")
    parser.add_argument("--stack", default=os.environ.get("PULUMI_STACK", "local"))
    args = parser.parse_args()
    if args.action == "rotate-encryption-key":
        rotate_encryption_key(args.stack)
    elif args.path is None:
        parser.error(f"{args.action} needs a path")
    elif args.action == "backup":
        print(backup(args.stack, args.path))
    else:
        restore(args.stack, args.path)


if __name__ == "__main__":
    main()
