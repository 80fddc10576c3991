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
Pulumi is driven through the Automation API on scripts/pulumi's defaults (scripts/stacks.py): outputs with
`stack.outputs()`, config with `set_config`/`remove_config`, `up` with its output streamed to stderr.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import yaml
from pulumi import automation as auto

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import stacks  # noqa: E402

# Commands run as root whether the login user is root or, as on every infra, the image's sudo user.
AS_ROOT = 'S=; [ "$(id -u)" -eq 0 ] || S="sudo -n"; $S sh -c '
ENCRYPTION_CONFIG = "/var/lib/kubernetes/encryption-config.yaml"


def outputs(stack: auto.Stack) -> dict:
    """The stack's outputs, secrets in plaintext (kept in memory, never printed)."""
    return {key: output.value for key, output in stack.outputs().items()}


def up(stack: auto.Stack) -> None:
    """`pulumi up`, its progress streamed to stderr (the CLI's display masks secrets)."""
    def show(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
    stack.up(on_output=show, on_error=show, color="never", show_secrets=False)


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


def on_a_controller(stack: auto.Stack, work):
    """(name, work(client)) on the first controller that answers over SSH and does the work."""
    found = outputs(stack)
    controllers, keys = found.get("controllers") or [], found.get("sshPrivateKeys") or {}
    if not controllers:
        sys.exit(f"stack {stack.name} has no controllers (is it up?)")
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


def backup(stack: auto.Stack, out_dir: Path) -> Path:
    def snapshot(client: paramiko.SSHClient) -> tuple[bytes, str, bytes]:
        remote = _run(client, "/usr/local/sbin/kthw-etcd-backup").decode().strip().splitlines()[-1]
        data = _run(client, f"cat {remote}", timeout=600)
        remote_digest = _run(client, f"sha256sum {remote}").decode().split()[0]
        if hashlib.sha256(data).hexdigest() != remote_digest:
            raise RuntimeError("the downloaded snapshot does not match the controller's")
        return data, remote_digest, _run(client, f"cat {ENCRYPTION_CONFIG}")

    out_dir.mkdir(parents=True, exist_ok=True)
    name, (data, remote_digest, encryption) = on_a_controller(stack, snapshot)
    target = out_dir / f"etcd-{stack.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.db"
    target.write_bytes(data)
    key_file = Path(f"{target}.encryption-config.yaml")
    key_file.touch(mode=0o600)
    key_file.write_bytes(encryption)
    etcdutl = shutil.which("etcdutl", path=stack.workspace.env_vars.get("PATH"))  # the toolchain's
    if etcdutl:
        subprocess.run([etcdutl, "snapshot", "status", str(target), "-w", "table"], check=True, timeout=120)
    print(f"snapshot of {name}: {target} ({len(data)} bytes, sha256 {remote_digest[:12]}); "
          f"encryption key: {key_file} (keep both, and keep the key secret)", file=sys.stderr)
    return target


def restore(stack: auto.Stack, snapshot: Path) -> None:
    snapshot = snapshot.resolve()
    key_file = Path(f"{snapshot}.encryption-config.yaml")
    if not snapshot.is_file() or not key_file.is_file():
        sys.exit(f"need {snapshot} and {key_file} (scripts/etcd-backup writes both)")
    if outputs(stack).get("controllers"):
        sys.exit(f"stack {stack.name} is up: a restore starts a new cluster from the snapshot; "
                 f"`scripts/pulumi destroy --stack {stack.name}` first (the snapshot and its key stay where they are)")
    provider, secret = _encrypting_key(key_file.read_bytes())
    stacks.set_secret_config(stack, "kthw:encryptionKey", secret)
    stack.set_config("kthw:encryptionProvider", auto.ConfigValue(provider))
    stack.set_config("kthw:etcdRestoreFrom", auto.ConfigValue(str(snapshot)))
    try:
        up(stack)
    finally:
        stack.remove_config("kthw:etcdRestoreFrom")
    up(stack)
    print(f"stack {stack.name} restored from {snapshot}", file=sys.stderr)


def rotate_encryption_key(stack: auto.Stack) -> None:
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
            stacks.set_secret_config(stack, f"kthw:{key}", value)
        for key in removed:
            stack.remove_config(f"kthw:{key}")
        start = time.monotonic()
        up(stack)
        print(f"rotation {label}: {time.monotonic() - start:.1f} s", file=sys.stderr)
    print(f"stack {stack.name}: Secrets are encrypted with the new key; the old one is gone", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("backup", "restore", "rotate-encryption-key"))
    parser.add_argument("path", type=Path, nargs="?",
                        help="backup: the directory to write to; restore: the snapshot file")
    parser.add_argument("--stack", default=os.environ.get("PULUMI_STACK", "local"))
    args = parser.parse_args()
    if args.action != "rotate-encryption-key" and args.path is None:
        parser.error(f"{args.action} needs a path")
    try:
        stack = stacks.select(args.stack)
        if args.action == "rotate-encryption-key":
            rotate_encryption_key(stack)
        elif args.action == "backup":
            print(backup(stack, args.path))
        else:
            restore(stack, args.path)
    except auto.CommandError as error:  # the CLI's own words (its display masks secrets)
        sys.exit(f"{args.action}: pulumi failed:{str(error)[-3000:]}")


if __name__ == "__main__":
    main()
