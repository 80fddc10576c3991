"""In-host drift detection: what is recorded, how drift is found and named, and how it drives repairs."""
import os
import time
from pathlib import Path
from typing import Optional

import pytest

from components import drift, ssh
from components.host_files import sha256
from fake_infra import build
from harness import FakeCloud, evaluate

DYNAMIC = "pulumi-python:dynamic:Resource"
EXPECTED = {
    "files": {"files": {"/var/lib/kubernetes/ca.pem": "a" * 64, "/etc/etcd/peer-key.pem": "b" * 64}},
    "kube-apiserver": {"files": {"/etc/systemd/system/kube-apiserver.service": "c" * 64}, "units": ["kube-apiserver"]},
    "kube-scheduler": {"files": {"/etc/systemd/system/kube-scheduler.service": "d" * 64}, "units": ["kube-scheduler"]},
}
CLEAN = {"files": {"/var/lib/kubernetes/ca.pem": "a" * 64, "/etc/etcd/peer-key.pem": "b" * 64,
                   "/etc/systemd/system/kube-apiserver.service": "c" * 64,
                   "/etc/systemd/system/kube-scheduler.service": "d" * 64},
         "units": {"kube-apiserver": "active", "kube-scheduler": "active"}}


def tampered(**changes):
    observed = {"files": dict(CLEAN["files"]), "units": dict(CLEAN["units"])}
    for key, value in changes.items():
        kind, name = key.split(":", 1)
        observed[kind][name] = value
    return observed


def test_clean_host_has_no_drift():
    assert drift.compare(EXPECTED, CLEAN) == {}


@pytest.mark.parametrize("change,line", [
    ({"files:/etc/systemd/system/kube-apiserver.service": "e" * 64},
     "kube-apiserver: /etc/systemd/system/kube-apiserver.service changed"),
    ({"files:/etc/etcd/peer-key.pem": "missing"}, "files: /etc/etcd/peer-key.pem is missing"),
    ({"units:kube-scheduler": "inactive"}, "kube-scheduler: kube-scheduler is inactive"),
])
def test_each_tamper_is_named(change, line):
    assert drift.drift_lines(drift.compare(EXPECTED, tampered(**change))) == [line]


def test_probe_output_round_trips(tmp_path):
    import subprocess

    present = tmp_path / "present"
    present.write_text("x")
    expected = {"g": {"files": {str(present): sha256("x"), str(tmp_path / "absent"): "0" * 64}}}
    out = subprocess.run(["bash", "-c", drift.probe_command(expected, digest_cache=str(tmp_path / "digests.json"))],
                         text=True, capture_output=True).stdout
    observed = drift.parse_probe(out)
    assert observed["files"][str(present)] == sha256("x")
    assert observed["files"][str(tmp_path / "absent")] == "missing"
    assert drift.drift_lines(drift.compare(expected, observed)) == [f"g: {tmp_path / 'absent'} is missing"]


def _probe_files(expected: dict, cache: Path, path_env: Optional[str] = None) -> dict[str, str]:
    import shutil
    import subprocess

    env = {**os.environ, **({"PATH": path_env} if path_env is not None else {})}
    done = subprocess.run([shutil.which("bash"), "-c", drift.probe_command(expected, digest_cache=str(cache))],
                          text=True, capture_output=True, timeout=60, env=env)
    return drift.parse_probe(done.stdout)["files"]


def test_the_probe_reads_again_only_files_whose_stat_key_moved(tmp_path):
    """The digest cache is used while a file's stat key holds (a planted digest is reported as it is), and a
    rewrite that keeps the size and puts the mtime back is still read again: its ctime moved."""
    import json

    binary, cache = tmp_path / "kube-apiserver", tmp_path / "state" / "digests.json"
    binary.write_bytes(b"A" * 4096)
    expected = {"binaries": {"files": {str(binary): sha256("A" * 4096), str(tmp_path / "absent"): "0" * 64}}}
    assert _probe_files(expected, cache) == {str(binary): sha256("A" * 4096), str(tmp_path / "absent"): "missing"}
    assert oct(cache.stat().st_mode & 0o777) == "0o600" and oct(cache.parent.stat().st_mode & 0o777) == "0o700"
    entries = json.loads(cache.read_text())
    assert list(entries) == [str(binary)]  # this probe's files only
    entries[str(binary)][1] = "f" * 64  # the same stat key with another digest: the probe takes the cache's word
    cache.write_text(json.dumps(entries))
    assert _probe_files(expected, cache)[str(binary)] == "f" * 64
    before = binary.stat()
    time.sleep(0.01)
    binary.write_bytes(b"B" * 4096)  # same size; the mtime put back, as `touch -r` would
    os.utime(binary, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert binary.stat().st_size == before.st_size and binary.stat().st_mtime_ns == before.st_mtime_ns
    assert _probe_files(expected, cache)[str(binary)] == sha256("B" * 4096)


def test_without_python3_the_probe_hashes_every_file_with_openssl(tmp_path):
    """A host without python3: the same digests, from OpenSSL (and nothing cached)."""
    import shutil

    present = tmp_path / "present"
    present.write_text("x")
    expected = {"g": {"files": {str(present): sha256("x"), str(tmp_path / "absent"): "0" * 64}}}
    shadow = tmp_path / "bin"
    shadow.mkdir()
    for tool in ("openssl", "sed", "cat", "printf", "seq", "paste"):
        if shutil.which(tool):
            (shadow / tool).symlink_to(shutil.which(tool))
    cache = tmp_path / "cache.json"
    assert _probe_files(expected, cache, path_env=str(shadow)) == {str(present): sha256("x"),
                                                                  str(tmp_path / "absent"): "missing"}
    assert not cache.exists()


def test_provider_reads_diffs_and_repairs_only_the_drifted_group(monkeypatch):
    provider = drift.HostStateProvider()
    props = {"name": "controller-1", "host": "198.18.0.11", "port": 22, "user": "root", "private_key": "k",
             "expected": EXPECTED, "drift": []}
    created = provider.create(props).outs
    assert created["repairs"] == {"files": 0, "kube-apiserver": 0, "kube-scheduler": 0}

    monkeypatch.setattr(drift, "probe_host", lambda p: CLEAN)
    clean = provider.read("id", created).outs
    assert clean["drift"] == [] and not provider.diff("id", clean, props).changes

    monkeypatch.setattr(drift, "probe_host", lambda p: tampered(**{"units:kube-scheduler": "inactive"}))
    dirty = provider.read("id", created).outs
    assert dirty["drift"] == ["kube-scheduler: kube-scheduler is inactive"]
    assert provider.diff("id", dirty, props).changes
    repaired = provider.update("id", dirty, props).outs
    assert repaired["repairs"] == {"files": 0, "kube-apiserver": 0, "kube-scheduler": 1}
    assert repaired["drift"] == []


def test_unreachable_host_is_drift_and_repairs_everything_if_it_still_is(monkeypatch):
    provider = drift.HostStateProvider()
    props = {"name": "c", "host": "198.18.0.11", "port": 22, "user": "root", "private_key": "k",
             "expected": EXPECTED, "drift": []}
    created = provider.create(props).outs

    def refuse(_):
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(drift, "probe_host", refuse)
    read = provider.read("id", created).outs
    assert read["drift"][0].startswith("host: unreachable")
    assert provider.diff("id", read, props).changes
    assert set(provider.update("id", read, props).outs["repairs"].values()) == {1}


def test_a_transient_ssh_failure_repairs_only_what_drifted(monkeypatch):
    """Unreachable on refresh, back at `up`: the update probes again and bumps only the drifted group."""
    provider = drift.HostStateProvider()
    props = {"name": "c", "host": "198.18.0.11", "port": 22, "user": "root", "private_key": "k",
             "expected": EXPECTED, "drift": []}
    created = provider.create(props).outs
    monkeypatch.setattr(drift, "probe_host", lambda _: (_ for _ in ()).throw(TimeoutError("timed out")))
    read = provider.read("id", created).outs
    monkeypatch.setattr(drift, "probe_host", lambda _: CLEAN)
    assert set(provider.update("id", read, props).outs["repairs"].values()) == {0}
    monkeypatch.setattr(drift, "probe_host", lambda _: tampered(**{"units:kube-scheduler": "inactive"}))
    assert provider.update("id", read, props).outs["repairs"] == {"files": 0, "kube-apiserver": 0,
                                                                  "kube-scheduler": 1}


def test_private_key_is_a_secret_and_parses_for_paramiko():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    for key in (ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        assert ssh.paramiko_key(pem).get_bits() > 0


def test_every_host_records_its_files_units_and_binaries():
    graph = evaluate(lambda: build(), {"cloud": "local"})
    states = [s for s in graph.of_type(DYNAMIC) if s.name.endswith("-drift")]
    assert sorted(s.name for s in states) == [f"kthw-control-plane-controller-{i}-drift" for i in range(3)]
    state = graph.named("kthw-control-plane-controller-0-drift")
    expected = state.input("expected")
    assert set(expected) == {"files", "binaries", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    assert "/var/lib/kthw/staged/files/var/lib/kubernetes/apiserver-key.pem" in expected["files"]["files"]
    assert "/var/lib/kubernetes/apiserver-key.pem" in expected["kube-apiserver"]["files"]
    assert "/var/lib/kubernetes/apiserver-key.pem" not in expected["kube-scheduler"]["files"]
    assert expected["kube-scheduler"]["units"] == ["kube-scheduler"]
    assert set(expected["binaries"]["files"]) == {"/usr/local/bin/kubectl", *(
        f"/var/lib/kthw/staged/bin/{b}" for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"))}
    assert state.is_secret("private_key") and "private_key" in state.additional_secret_outputs
    assert not any("PRIVATE KEY" in str(v) for v in expected["files"]["files"].values())


class RepairedScheduler(FakeCloud):
    """As after a repair of controller-1's stopped scheduler: its drift resource reports one repair."""

    def new_resource(self, args):
        id_, outputs = super().new_resource(args)
        if args.name == "kthw-control-plane-controller-1-drift":
            outputs["repairs"] = {"kube-scheduler": 1}
        return id_, outputs


def test_a_repair_reruns_only_the_drifted_step_on_that_host():
    base = evaluate(lambda: build(), {"cloud": "local"})
    repaired = evaluate(lambda: build(), {"cloud": "local"}, mocks=RepairedScheduler())
    differs = {r.name for r in repaired.of_type("command:remote:Command")
               if r.input("create") != base.named(r.name).input("create")}
    assert differs == {"kthw-control-plane-controller-1-kube-scheduler"}


def test_the_healthz_proxy_is_watched_where_the_lb_uses_it():
    from components.infra import HealthCheckStyle

    graph = evaluate(lambda: build(health=HealthCheckStyle.HTTP_HEALTHZ_PROXY), {"cloud": "local"})
    expected = graph.named("kthw-control-plane-controller-2-drift").input("expected")
    assert expected["nginx-healthz"]["units"] == ["nginx"]
    assert list(expected["nginx-healthz"]["files"]) == ["/etc/nginx/sites-available/kubernetes-healthz"]


def test_modes_and_owners_are_watched(tmp_path):
    """A live input whose mode changed is named, from `stat`'s real output through the real probe command."""
    import pwd
    import subprocess

    path = tmp_path / "server-key.pem"
    path.write_text("key")
    owner = pwd.getpwuid(path.stat().st_uid).pw_name
    expected = {"etcd": {"files": {str(path): sha256("key")}, "modes": {str(path): f"600 {owner}"}}}

    def probe() -> dict:
        out = subprocess.run(["bash", "-c", drift.probe_command(expected, digest_cache=str(tmp_path / "cache.json"))],
                             capture_output=True, text=True, timeout=30)
        return drift.parse_probe(out.stdout)
    path.chmod(0o644)
    assert drift.drift_lines(drift.compare(expected, probe())) == [f"etcd: {path} is 644 {owner} (want 600 {owner})"]
    path.chmod(0o600)
    assert drift.compare(expected, probe()) == {}


def test_every_service_expects_its_units_and_inputs_modes():
    graph = evaluate(lambda: build(), {"cloud": "local"})
    expected = graph.named("kthw-control-plane-controller-0-drift").input("expected")
    assert expected["etcd"]["modes"]["/etc/systemd/system/etcd.service"] == "600 root"
    assert expected["etcd"]["modes"]["/etc/etcd/server-key.pem"] == "600 etcd"
    assert expected["kube-apiserver"]["modes"]["/var/lib/kubernetes/apiserver.pem"] == "644 root"
    assert expected["kube-apiserver"]["modes"]["/usr/local/bin/kube-apiserver"] == "755 root"
    # The directories: the files step makes them and puts back their modes and owners, so its group watches them.
    assert expected["files"]["modes"] == {"/var/lib/kubernetes": "700 root", "/var/lib/kthw/staged": "700 root",
                                          "/var/lib/kthw/staged/files": "700 root", "/etc/etcd": "750 root",
                                          "/var/lib/etcd": "700 etcd", "/etc/kubernetes/config": "755 root",
                                          "/var/log/kubernetes": "755 root"}


def test_the_files_step_makes_or_puts_back_every_watched_directory():
    """Each directory the probe watches is one the files step sets: made with its mode and owner, or (etcd's data
    dir, made by etcd's first start) put back where it exists."""
    from components.paths import DIRECTORIES
    from components.render import render

    script = render("common/put-files.sh.j2", absent=[], directories=DIRECTORIES)
    assert "install -d -m 0700 -o root -g root /var/lib/kubernetes\n" in script
    assert "install -d -m 0750 -o root -g etcd /etc/etcd\n" in script
    assert ("[ ! -d /var/lib/etcd ] || { chown etcd:etcd /var/lib/etcd && chmod 0700 /var/lib/etcd; }\n"
            in script) and "install -d -m 0700 -o etcd" not in script
    assert script.index("useradd") < script.index("-g etcd")  # the group exists first
