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
replace-controller NAME:  replace one controller's machine, drained first (see `replace_controller`); a change
                   of image, zone or first-boot data waits for this, one controller at a time
                   (components/machines.py).
rotate-encryption-key:  three `pulumi up`s, each a rolling restart of the apiservers: (1) the new key is added
                   for decryption only; (2) it encrypts, the old one still decrypts, and every Secret is
                   rewritten with the new key; (3) the old key is dropped. The keys live in the stack's config
                   as secrets (kthw:encryptionKey, kthw:encryptionKeyNext, kthw:encryptionKeyPrevious).

SSH goes to each controller's sshHost/sshPort/sshUser with its key from the stack's outputs (components/ssh.py).
Pulumi is driven through the Automation API on scripts/pulumi's defaults (scripts/stacks.py): outputs with
`stack.outputs()`, config with `set_config`/`remove_config`, `up` with its output streamed to stderr.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import paramiko
import yaml
from pulumi import automation as auto

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))
import stacks  # noqa: E402
from components import ssh  # noqa: E402
from components.paths import HOST  # noqa: E402
from components.pki.table import host_file  # noqa: E402

ENCRYPTION_CONFIG = host_file(f"{HOST.kubernetes}/encryption-config.yaml").path
BACKUP_COMMAND = f"{HOST.sbin}/kthw-etcd-backup"  # what kthw-etcd-backup.timer runs
# Take a controller out before its machine is replaced: the apiserver first (its stop waits out its shutdown delay,
# while the LB stops sending to it), then the others; etcd last.
DRAIN = ("systemctl stop kube-apiserver && systemctl stop kube-controller-manager kube-scheduler"
         " && systemctl stop etcd")


def outputs(stack: auto.Stack) -> dict:
    """The stack's outputs, secrets in plaintext (kept in memory, never printed)."""
    return {key: output.value for key, output in stack.outputs().items()}


def up(stack: auto.Stack, **options) -> None:
    """`pulumi up`, its progress streamed to stderr (the CLI's display masks secrets)."""
    def show(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
    stack.up(on_output=show, on_error=show, color="never", show_secrets=False, **options)


def _run(client: paramiko.SSHClient, command: str, timeout: float = 180) -> bytes:
    status, out, err = ssh.run_as_root(client, command, "operate", timeout)
    if status != 0:
        raise RuntimeError(f"{command!r}: {err.decode(errors='replace')[-2000:]}")
    return out


def on_a_controller(stack: auto.Stack, work, only: Optional[str] = None):
    """(name, work(client)) on the first controller (or controller `only`) that answers over SSH and does it."""
    found = outputs(stack)
    controllers, keys = found.get("controllers") or [], found.get("sshPrivateKeys") or {}
    controllers = [c for c in controllers if only in (None, c["name"])]
    if not controllers:
        sys.exit(f"stack {stack.name} has no controllers (is it up?)")
    errors = []
    for c in controllers:
        try:
            client = ssh.client(c["sshHost"], c.get("sshPort", 22), c["sshUser"], keys[c["name"]], timeout=10,
                                host_key=c.get("sshHostKey"), name=c["name"])
        except ssh.HostKeyMismatch as err:
            sys.exit(f"refused: {err}")  # never try the next one after an impostor
        except Exception as err:  # noqa: BLE001 - try the next controller
            errors.append(f"{c['name']}: {err}")
            continue
        try:
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


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path`, readable by its owner only whatever the umask (0600 before the first byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def backup(stack: auto.Stack, out_dir: Path) -> Path:
    def snapshot(client: paramiko.SSHClient) -> tuple[bytes, str, bytes]:
        remote = _run(client, BACKUP_COMMAND).decode().strip().splitlines()[-1]
        data = _run(client, f"cat {remote}", timeout=600)
        remote_digest = _run(client, f"sha256sum {remote}").decode().split()[0]
        if hashlib.sha256(data).hexdigest() != remote_digest:
            raise RuntimeError("the downloaded snapshot does not match the controller's")
        return data, remote_digest, _run(client, f"cat {ENCRYPTION_CONFIG}")

    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    name, (data, remote_digest, encryption) = on_a_controller(stack, snapshot)
    target = out_dir / f"etcd-{stack.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.db"
    _write_private(target, data)  # every Secret is in it (encrypted with the key beside it)
    key_file = Path(f"{target}.encryption-config.yaml")
    _write_private(key_file, encryption)
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


# A rotation's config writes, in the order that never leaves a key that may still encrypt a Secret out of the
# config, whatever write or `up` the rotation stops after (see `rotation_plan`).
KEY, NEXT, PREVIOUS = "encryptionKey", "encryptionKeyNext", "encryptionKeyPrevious"


@dataclass(frozen=True)
class Stage:
    label: str
    writes: tuple[tuple[str, Optional[str]], ...]  # (key, value) in order; None removes the key


def rotation_plan(config: Mapping[str, Optional[str]], current_on_host: Callable[[], str],
                  new_key: Callable[[], str]) -> list[Stage]:
    """The stages a rotation still has to run, read from the stack's config (where the keys live), so that
    re-running it after a stop anywhere resumes it instead of starting a new one:

    1/3  Key=K, Next=N: every apiserver can decrypt with N before any encrypts with it;
    2/3  Previous=K, then Key=N, then Next removed: N encrypts, K still decrypts, every Secret is rewritten;
    3/3  Previous removed, once 2/3's `up` (the rewrite) succeeded.
    """
    key, nxt, prev = config.get(KEY), config.get(NEXT), config.get(PREVIOUS)
    finish = Stage("3/3 drop the old key", ((PREVIOUS, None),))
    if prev and not nxt:  # 2/3 was written: its rewrite may be unfinished, so `prev` stays until it is
        return [Stage("2/3 encrypt with the new key, rewrite every Secret (resumed)", ()), finish]
    if prev and nxt:  # 2/3 stopped between its writes: Key is the old key still, or already the new one
        return [Stage("2/3 encrypt with the new key, rewrite every Secret (resumed)",
                      ((KEY, nxt), (NEXT, None))), finish]
    first: list[Stage] = []
    if not nxt:
        key = key or current_on_host()
        nxt = new_key()
        first = [Stage("1/3 add the new key for decryption", ((KEY, key), (NEXT, nxt)))]
    elif key:
        first = [Stage("1/3 add the new key for decryption (resumed)", ())]
    else:
        raise SystemExit(f"kthw:{NEXT} is set without kthw:{KEY}: set kthw:{KEY} to the key that encrypts now")
    return [*first, Stage("2/3 encrypt with the new key, rewrite every Secret",
                          ((PREVIOUS, key), (KEY, nxt), (NEXT, None))), finish]


def rotation_config(stack: auto.Stack) -> dict[str, Optional[str]]:
    """The rotation's keys as the stack's config holds them now (secrets in plaintext, in memory only)."""
    found = stack.get_all_config()
    return {name: (found[f"kthw:{name}"].value if f"kthw:{name}" in found else None) for name in (KEY, NEXT, PREVIOUS)}


def _fault(point: str) -> None:
    """A fault-injection point for the tests (KTHW_ROTATE_STOP_AT=<point>): the rotation stops there."""
    if os.environ.get("KTHW_ROTATE_STOP_AT") == point:
        sys.exit(f"rotate-encryption-key: stopped at {point} (KTHW_ROTATE_STOP_AT)")


def rotate_encryption_key(stack: auto.Stack) -> None:
    def current_on_host() -> str:
        _, encryption = on_a_controller(stack, lambda client: _run(client, f"cat {ENCRYPTION_CONFIG}"))
        return _encrypting_key(encryption)[1]

    plan = rotation_plan(rotation_config(stack), current_on_host, lambda: base64.b64encode(os.urandom(32)).decode())
    for number, stage in enumerate(plan, 1):
        for write, (key, value) in enumerate(stage.writes, 1):
            if value is None:
                stack.remove_config(f"kthw:{key}")
            else:
                stacks.set_secret_config(stack, f"kthw:{key}", value)
            _fault(f"{stage.label[:3]}-write-{write}")
        start = time.monotonic()
        up(stack)
        print(f"rotation {stage.label}: {time.monotonic() - start:.1f} s", file=sys.stderr)
        _fault(f"{stage.label[:3]}-up")
    print(f"stack {stack.name}: Secrets are encrypted with the new key; the old one is gone", file=sys.stderr)


def replace_controller(stack: auto.Stack, name: str) -> None:
    """Replace one controller's machine (a new image, zone or first-boot data; or a broken machine): drain it
    (its apiserver's shutdown delay outlasts the LB's probe), stop its etcd member (the others keep quorum), then
    `up` with kthw:replaceController=NAME and the machine replaced; it joins etcd again as a new member."""
    machines = {c["name"]: c.get("machineUrn") for c in outputs(stack).get("controllers") or []}
    if name not in machines or not machines[name]:
        sys.exit(f"stack {stack.name} has no controller {name} (it has {', '.join(machines) or 'none'})")
    start = time.monotonic()
    try:
        on_a_controller(stack, lambda client: _run(client, DRAIN, timeout=600), only=name)
        print(f"replace {name}: drained in {time.monotonic() - start:.1f} s", file=sys.stderr)
    except SystemExit as unreachable:  # a dead machine has nothing to drain
        print(f"replace {name}: not drained ({unreachable})", file=sys.stderr)
    stack.set_config("kthw:replaceController", auto.ConfigValue(name))
    try:
        up(stack, replace=[machines[name]])
    finally:
        stack.remove_config("kthw:replaceController")
    print(f"replace {name}: done in {time.monotonic() - start:.1f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("backup", "restore", "rotate-encryption-key", "replace-controller"))
    parser.add_argument("path", nargs="?",
                        help="backup: the directory to write to; restore: the snapshot file; "
                             "replace-controller: the controller's name")
    parser.add_argument("--stack", default=os.environ.get("PULUMI_STACK", "local"))
    args = parser.parse_args()
    if args.action != "rotate-encryption-key" and args.path is None:
        parser.error(f"{args.action} needs a path")
    try:
        stack = stacks.select(args.stack)
        if args.action == "rotate-encryption-key":
            rotate_encryption_key(stack)
        elif args.action == "replace-controller":
            replace_controller(stack, args.path)
        elif args.action == "backup":
            print(backup(stack, Path(args.path)))
        else:
            restore(stack, Path(args.path))
    except auto.CommandError as error:  # the CLI's own words (its display masks secrets)
        sys.exit(f"{args.action}: pulumi failed:{str(error)[-3000:]}")


if __name__ == "__main__":
    main()
