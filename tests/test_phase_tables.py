"""The tables the bootstrap is made of agree with each other and with what the templates render: the PKI's file
table (where each file lands, who reads it, its mode), the service table, and components/paths.py."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from components.paths import HOST
from components.phases.components import COMPONENTS
from components.pki.table import CAS, CERTS, FILES, KUBECONFIGS
from fake_infra import build, config
from harness import evaluate
from test_rendered_files import units

ROOT = Path(__file__).resolve().parent.parent
HOST_DIRS = [getattr(HOST, f.name) for f in dataclasses.fields(HOST) if getattr(HOST, f.name).startswith("/")]
# Files the bootstrap writes on the host itself (not from the file table): etcd's membership env, the data dir.
WRITTEN_ON_HOST = {f"{HOST.etcd}/cluster.env"}


@pytest.fixture(scope="module")
def graph():
    return evaluate(lambda: build(config()), {"cloud": "local"})


def test_every_file_lands_under_a_host_dir_once_with_known_readers():
    paths = [f.path for f in FILES]
    assert len(paths) == len(set(paths)), "a path is placed twice"
    units = {c.unit for c in COMPONENTS}
    for f in FILES:
        assert any(f.path.startswith(d + "/") for d in HOST_DIRS), f.path
        assert f.readers and set(f.readers) <= units, f"{f.path}: readers {f.readers} not all in the service table"
    for unit in units:
        assert any(unit in f.readers for f in FILES), f"{unit} reads no file"


# Not secret, yet 0600: the admission config (docs/hardening.md 1.2.9: only the apiserver reads it).
PRIVATE_CONFIGS = ("template:kube-apiserver/admission-config.yaml.j2",)


def test_every_secret_is_private_and_nothing_else_is():
    secret = ("key:", "ca-key:", "kubeconfig:", "encryption-config", "service-account-key")
    for f in FILES:
        assert f.private == (f.holds.startswith(secret) or f.holds in PRIVATE_CONFIGS), \
            f"{f.path} ({f.holds}) has mode {oct(f.mode)}"
    assert {f.holds for f in FILES} >= set(PRIVATE_CONFIGS)


def test_every_certificate_kubeconfig_and_ca_lands_somewhere():
    held = {f.holds for f in FILES}
    for ca in CAS:
        assert f"ca:{ca.name}" in held, ca.name
    in_kubeconfigs = {client_cert for client_cert, _, _ in KUBECONFIGS.values()}
    for cert in CERTS:  # as files, or inside the kubeconfig that a component (or the admin) reads
        assert cert.name in in_kubeconfigs or {f"cert:{cert.name}", f"key:{cert.name}"} <= held, cert.name
    for name in KUBECONFIGS:  # the admin's is for users only (a stack output), never on a host
        assert (f"kubeconfig:{name}" in held) == (name != "admin"), name


def test_payload_modes_follow_the_table(graph):
    from test_rendered_files import payload_files

    members = payload_files(graph)
    assert {path: info.mode for path, (info, _) in members.items()} == {f.path: f.mode for f in FILES}


def test_the_super_admin_is_on_the_first_controller_only(graph):
    from test_rendered_files import payload_files

    super_admin = "/var/lib/kubernetes/super-admin.kubeconfig"
    on = [n for n in ("controller-0", "controller-1", "controller-2") if super_admin in payload_files(graph, n)]
    assert on == ["controller-0"]
    for node in ("controller-1", "controller-2"):  # and removed from the others, staged copy included
        script = graph.named(f"kthw-control-plane-{node}-files").input("create")
        assert f"rm -f {super_admin} /var/lib/kthw/staged/files{super_admin}" in script
        apiserver = graph.named(f"kthw-control-plane-{node}-kube-apiserver").input("create")
        assert super_admin not in apiserver  # nothing to switch in there


def test_each_unit_reads_only_files_placed_for_it(graph):
    """A path under the kubernetes, etcd or config dir in a unit is a table row naming that unit as a reader."""
    placed = {f.path: f.readers for f in FILES}
    pattern = re.compile("(?:%s)/[\\w./-]+" % "|".join(map(re.escape, (HOST.kubernetes, HOST.etcd, HOST.config))))
    checked = 0
    for step, unit_file, content in units(graph):
        unit = unit_file.removesuffix(".service")
        if unit not in {c.unit for c in COMPONENTS}:
            continue
        for path in pattern.findall(content):
            if path in WRITTEN_ON_HOST:
                continue
            assert unit in placed.get(path, ()), f"{step}: {path} is not placed for {unit} in pki/table.py FILES"
            checked += 1
    assert checked >= 30


def test_templates_spell_no_host_path():
    """Host paths live in components/paths.py only; templates use `paths`."""
    found = []
    for path in sorted((ROOT / "scripts").rglob("*")):
        rel = path.relative_to(ROOT / "scripts").as_posix()
        if not path.is_file() or rel.startswith(("local/", "toolchain/")) or path.suffix in (".py", ".md", ".pyc") \
                or "__pycache__" in path.parts:
            continue
        for number, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            for d in HOST_DIRS:
                if re.search(re.escape(d) + r"(?![\w-])", line) and "NGINX_DIR" not in line:
                    found.append(f"scripts/{rel}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
