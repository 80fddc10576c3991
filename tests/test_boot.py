"""The controllers' first boot, shared by azure, gcp and local: the user data, the local NoCloud seed, the wait."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pulumi
import pulumi_command as command
import yaml
from harness import contains_secret_marker, evaluate, ssh_host_key_pair, unwrap

from components.boot import DEFAULT_ADMIN_USERNAME, WAIT_FOR_BOOT, wait_for_boot
from components.boot import user_data as host_user_data
from components.infra import ControllerHost
from components.paths import HOST

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "scripts" / "local" / "lib.sh"


HOST_KEY = ssh_host_key_pair()


def user_data() -> str:
    return host_user_data(*HOST_KEY)


def written(text: str) -> dict[str, dict]:
    """The user data's write_files by path."""
    return {f["path"]: f for f in yaml.safe_load(text)["write_files"]}


def sshd_drop_in() -> str:
    return written(user_data())["/etc/ssh/sshd_config.d/10-kthw.conf"]["content"]


def test_user_data_is_a_cloud_config_that_installs_the_host_key_tunes_sshd_and_reloads_it():
    text = user_data()
    assert text.startswith("#cloud-config\n")  # cloud-init takes the document as cloud-config only with it
    data = yaml.safe_load(text)
    files = written(text)
    assert list(files) == [HOST.ssh_host_key, f"{HOST.ssh_host_key}.pub", "/etc/ssh/sshd_config.d/10-kthw.conf"]
    key, pub, drop_in = files.values()
    assert key["content"] == HOST_KEY[0] and (key["permissions"], key["owner"]) == ("0600", "root:root")
    assert pub["content"] == HOST_KEY[1] and pub["permissions"] == "0644"
    assert drop_in["permissions"] == "0644"
    lines = {line.split()[0]: line.split()[1] for line in drop_in["content"].splitlines()
             if line.strip() and not line.startswith("#")}
    assert lines == {"MaxStartups": "100:30:200", "MaxSessions": "50", "PermitRootLogin": "no",
                     "PasswordAuthentication": "no", "KbdInteractiveAuthentication": "no",
                     "HostKey": HOST.ssh_host_key}
    assert data["runcmd"] == [["systemctl", "try-reload-or-restart", "ssh.service"]]
    assert set(data) == {"write_files", "runcmd"}  # the login user comes from each infra, never from here
    other = host_user_data(*ssh_host_key_pair())
    assert other != text and written(other)["/etc/ssh/sshd_config.d/10-kthw.conf"] == files[
        "/etc/ssh/sshd_config.d/10-kthw.conf"]  # the same but for the key


def test_sshd_takes_the_user_data_drop_in(tmp_path):
    """sshd itself takes the drop-in and the host key as cloud-init writes them, included first as Debian's and
    Ubuntu's sshd_config do (whose own settings, after it, lose for the options where sshd keeps the first value).
    sshd -T needs its privilege separation dir: in a private /run; /etc/ssh is a private one too."""
    from system_tools import require, require_root

    require_root("sshd -T needs root (its privilege separation directory)")
    sshd = require("sshd", "openssh-server")
    for path, entry in written(user_data()).items():  # what cloud-init writes, under a private /etc/ssh below
        target = tmp_path / "etc-ssh" / Path(path).relative_to("/etc/ssh")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry["content"])
        target.chmod(int(entry["permissions"], 8))
    (tmp_path / "sshd_config").write_text("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n")
    result = subprocess.run(["unshare", "--mount", "sh", "-c", 'mount -t tmpfs kthw-test /run && mkdir /run/sshd && '
                             'mount --bind "$1" /etc/ssh && shift && exec "$@"',
                             "_", str(tmp_path / "etc-ssh"), sshd, "-T", "-f", str(tmp_path / "sshd_config")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    settings = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert settings["maxstartups"] == "100:30:200" and settings["maxsessions"] == "50"
    assert settings["permitrootlogin"] == "no" and settings["passwordauthentication"] == "no"
    # The program's key is sshd's only host key (the image's and cloud-init's are never offered).
    assert [line for line in result.stdout.splitlines() if line.startswith("hostkey ")] == [
        f"hostkey {HOST.ssh_host_key}"]
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "etc-ssh" / "kthw_host_ed25519_key")],
                                 capture_output=True, text=True, timeout=30, check=True).stdout.split()[1]
    assert fingerprint == subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=HOST_KEY[1], capture_output=True,
                                         text=True, timeout=30, check=True).stdout.split()[1]


def seed(tmp_path: Path, nonce: str, key: str, data: str, host: str = "controller-0") -> tuple[dict, str, int]:
    """Run lib.sh's nocloud_seed (as host.sh does) into tmp_path/seed: (meta-data, user-data, seed_changed)."""
    result = subprocess.run(
        ["bash", "-c", 'set -euo pipefail; source "$1"; shift; nocloud_seed "$@"; echo "$seed_changed"', "_", str(LIB),
         str(tmp_path / "seed"), nonce, host, key, data], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return (yaml.safe_load((tmp_path / "seed" / "meta-data").read_text()),
            (tmp_path / "seed" / "user-data").read_text(), int(result.stdout.strip()))


def test_local_nocloud_seed(tmp_path):
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA3vn/damYxA1myOy28wNwF9AfCNVJa2rOs1ptQlEKwe it's me: #1"
    meta, data, changed = seed(tmp_path, "nonce-1", key, user_data())
    assert changed == 1
    assert set(meta) == {"instance-id", "local-hostname", "public-keys"}
    assert meta["local-hostname"] == "controller-0" and meta["public-keys"] == [key]  # quoted: survives ' and #
    assert meta["instance-id"].startswith("i-") and len(meta["instance-id"]) == 22
    assert data == user_data()  # the host's user data, byte for byte
    first = meta["instance-id"]
    assert seed(tmp_path, "nonce-1", key, user_data()) == (meta, data, 0)  # the same host: nothing to do
    # A new incarnation of the host, or new instance data, is a new instance (cloud-init runs it again).
    assert seed(tmp_path, "nonce-2", key, user_data())[0]["instance-id"] != first
    again, _, changed = seed(tmp_path, "nonce-1", key, user_data() + "# changed\n")
    assert changed == 1 and again["instance-id"] != first
    assert seed(tmp_path, "nonce-1", key.replace("me", "you"), user_data())[0]["instance-id"] != first


def host(**overrides) -> ControllerHost:
    return ControllerHost(**{"name": "controller-0", "private_ip": "10.0.0.10", "ssh_host": "203.0.113.10",
                             "ssh_port": 22, "ssh_user": DEFAULT_ADMIN_USERNAME,
                             "ssh_private_key": pulumi.Output.secret("KEY"), "instance_id": "vm-1", **overrides})


def test_wait_for_boot_logs_in_as_the_host_user_and_waits_for_cloud_init():
    def program():
        parent = pulumi.ComponentResource("kthw:test:Infra", "infra")
        before = command.local.Command("vm", create="true")
        wait_for_boot("infra-controller-0-booted", host(), after=[before], parent=parent)
        wait_for_boot("infra-controller-1-booted", host(name="controller-1", instance_id=None), after=[], parent=parent,
                      instance="container-7 generation 2", dial_error_limit=5)

    graph = evaluate(program, {})
    wait, other = graph.named("infra-controller-0-booted"), graph.named("infra-controller-1-booted")
    assert wait.type == "command:remote:Command" and wait.parent == graph.named("infra").urn
    assert graph.reaches(wait, graph.named("vm"))
    connection = unwrap(wait.inputs["connection"])
    assert (connection["host"], connection["port"], connection["user"], connection["privateKey"]) == \
        ("203.0.113.10", 22, "kthw", "KEY")
    assert contains_secret_marker(wait.inputs["connection"])  # the key stays a secret
    script = wait.input("create")
    assert script == f"# kthw first boot of controller-0 (instance vm-1)\n{WAIT_FOR_BOOT}\n"
    assert "cloud-init status --wait" in script and "boot-finished" in script and "sudo -n true" in script
    assert wait.input("update") == script and not wait.input("delete")  # in place, nothing to undo
    assert "(instance container-7 generation 2)" in other.input("create")
    assert unwrap(other.inputs["connection"])["dialErrorLimit"] == 5


def test_every_infra_logs_in_as_the_same_default_user():
    from components.azure.config import AzureConfig
    from components.gcp.config import GcpConfig
    from components.local.infra import SSH_USER

    gcp = GcpConfig(project="p", region="r", zones=("r-a",))
    assert AzureConfig().admin_username == gcp.admin_username == SSH_USER == DEFAULT_ADMIN_USERNAME != "root"
