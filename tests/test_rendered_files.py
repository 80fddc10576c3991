"""Every file the bootstrap renders, checked by the real tool that reads it."""
import base64
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from fake_infra import build, config
from harness import evaluate
from system_tools import REQUIRE


def tool(name: str) -> str:
    cache = Path(os.environ.get("KTHW_CACHE", Path.home() / ".cache/kthw")) / "toolchain/bin" / name
    path = str(cache) if cache.exists() else shutil.which(name)
    if not path:
        if REQUIRE:
            pytest.fail(f"{name} is not installed: run scripts/setup")
        pytest.skip(f"{name} is not installed: run scripts/setup")
    return path


@pytest.fixture(scope="module")
def graph():
    return evaluate(lambda: build(config(apiServerDnsName="k8s.example.com")), {"cloud": "local"})


def body_of(command: str) -> str:
    return command.split("<<'KTHW_SCRIPT'\n", 1)[1].rsplit("\nKTHW_SCRIPT\n", 1)[0]


def remote_scripts(graph):
    for cmd in graph.of_type("command:remote:Command"):
        for key in ("create", "delete"):
            if cmd.input(key):
                yield f"{cmd.name}.{key}", cmd.input(key)


def test_every_host_script_passes_shellcheck(graph):
    shellcheck = tool("shellcheck")
    checked = 0
    for name, command in remote_scripts(graph):
        outer = subprocess.run([shellcheck, "-s", "sh", "-"], input=command, text=True, capture_output=True)
        assert outer.returncode == 0, f"{name} (wrapper):\n{outer.stdout}"
        inner = subprocess.run([shellcheck, "-s", "bash", "-"], input=body_of(command), text=True,
                               capture_output=True)
        assert inner.returncode == 0, f"{name}:\n{inner.stdout}"
        checked += 1
    assert checked >= 3 * 13


def test_static_scripts_pass_shellcheck():
    shellcheck = tool("shellcheck")
    root = Path(__file__).resolve().parent.parent / "scripts"
    files = [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".sh" or _has_bash_shebang(p))]
    assert files
    result = subprocess.run([shellcheck, "-x", *map(str, files)], text=True, capture_output=True)
    assert result.returncode == 0, result.stdout


def _has_bash_shebang(path: Path) -> bool:
    if path.suffix in (".j2",):
        return False
    try:
        return path.read_text(errors="ignore").startswith(("#!/usr/bin/env bash", "#!/bin/bash", "#!/bin/sh"))
    except OSError:
        return False


UNIT_FILES = {"etcd.service", "kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service",
              "kthw-etcd-backup.service", "kthw-etcd-backup.timer"}


def units(graph):
    """(step, unit file name, content) of every unit (UNIT heredoc) and timer (TIMER heredoc) a step installs."""
    for cmd in graph.of_type("command:remote:Command"):
        step = re.search(r"-controller-\d+-(.+)$", cmd.name)
        if not step:
            continue
        name = "kthw-etcd-backup" if step.group(1) == "etcd-backup" else step.group(1)
        for kind, suffix in (("UNIT", ".service"), ("TIMER", ".timer")):
            match = re.search(rf"<<'{kind}'\n(.*?)\n{kind}\n", cmd.input("create") or "", re.S)
            if match:
                yield cmd.name, name + suffix, match.group(1)


def test_units_pass_systemd_analyze_verify(graph, tmp_path):
    analyze = tool("systemd-analyze")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kthw-etcd-backup"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    seen = set()
    for name, unit_name, unit in units(graph):
        path = tmp_path / unit_name
        path.write_text(unit.replace("/usr/local/bin/", f"{bin_dir}/").replace("/usr/local/sbin/", f"{bin_dir}/"))
        result = subprocess.run([analyze, "verify", "--recursive-errors=no", "--man=no", str(path)],
                                text=True, capture_output=True)
        assert result.returncode == 0 and not result.stderr.strip(), f"{name}:\n{result.stderr}"
        seen.add(unit_name)
    assert seen == UNIT_FILES


def test_units_use_no_removed_flags(graph):
    removed = ("--kubelet-https", "--experimental-encryption-provider-config", "--insecure-port",
               "--insecure-bind-address", "--runtime-config=api/all", "--apiserver-count", "--address=",
               "--port=", "--master=")
    seen = set()
    for name, unit_name, unit in units(graph):
        for flag in removed:
            assert flag not in unit, f"{name} uses {flag}"
        seen.add(unit_name)
    assert seen == UNIT_FILES  # every unit was read (none found would check nothing)


def test_apiserver_flags(graph):
    unit = {n: u for n, _, u in units(graph)}["kthw-control-plane-controller-1-kube-apiserver"]
    for flag in ("--service-account-issuer=https://k8s.example.com:6443",
                 "--service-account-signing-key-file=", "--service-account-key-file=",
                 "--service-cluster-ip-range=10.32.0.0/24", "--audit-policy-file=", "--audit-log-path=",
                 "--encryption-provider-config=", "--advertise-address=10.240.0.11",
                 "--etcd-servers=https://10.240.0.10:2379,https://10.240.0.11:2379,https://10.240.0.12:2379"):
        assert flag in unit
    for name in ("kube-controller-manager", "kube-scheduler"):
        unit = {n: u for n, _, u in units(graph)}[f"kthw-control-plane-controller-1-{name}"]
        assert "--bind-address=127.0.0.1" in unit
    cm = {n: u for n, _, u in units(graph)}["kthw-control-plane-controller-1-kube-controller-manager"]
    assert "--leader-elect=true" in cm


def payload_files(graph, node="controller-0") -> dict[str, tarfile.TarInfo]:
    stdin = graph.named(f"kthw-control-plane-{node}-files").input("stdin")
    tar = tarfile.open(fileobj=io.BytesIO(base64.b64decode(stdin)))
    return {"/" + m.name: (m, tar.extractfile(m).read().decode()) for m in tar.getmembers()}


def test_private_files_are_0600(graph):
    files = payload_files(graph)
    for path, (info, _) in files.items():
        private = path.endswith(("-key.pem", ".kubeconfig", "encryption-config.yaml", "admission-config.yaml"))
        assert info.mode == (0o600 if private else 0o644), path
    assert "/var/lib/kubernetes/apiserver-key.pem" in files and "/etc/etcd/peer-key.pem" in files


def test_kubeconfigs_pass_kubectl_config_view(graph, tmp_path):
    kubectl = tool("kubectl")
    files = payload_files(graph)
    kubeconfigs = {p: c for p, (_, c) in files.items() if p.endswith(".kubeconfig")}
    assert set(kubeconfigs) == {f"/var/lib/kubernetes/{n}.kubeconfig" for n in
                                ("super-admin", "controller-manager", "scheduler")}
    from harness import unwrap

    kubeconfigs["(stack output)/admin.kubeconfig"] = unwrap(graph.stack_outputs["kubeconfig"])  # users' only
    for path, content in kubeconfigs.items():
        file = tmp_path / Path(path).name
        file.write_text(content)
        result = subprocess.run([kubectl, "config", "view", "--kubeconfig", str(file), "-o", "json"],
                                text=True, capture_output=True)
        assert result.returncode == 0, result.stderr
        view = yaml.safe_load(result.stdout)
        server = view["clusters"][0]["cluster"]["server"]
        expected = "https://k8s.example.com:6443" if path.endswith("/admin.kubeconfig") else "https://127.0.0.1:6443"
        assert server == expected, path
        assert view["current-context"]


EXPECTED_KINDS = {
    "/var/lib/kubernetes/encryption-config.yaml": ("apiserver.config.k8s.io/v1", "EncryptionConfiguration"),
    "/var/lib/kubernetes/audit-policy.yaml": ("audit.k8s.io/v1", "Policy"),
    "/var/lib/kubernetes/authentication-config.yaml": ("apiserver.config.k8s.io/v1", "AuthenticationConfiguration"),
    "/var/lib/kubernetes/admission-config.yaml": ("apiserver.config.k8s.io/v1", "AdmissionConfiguration"),
    "/etc/kubernetes/config/kube-scheduler.yaml": ("kubescheduler.config.k8s.io/v1", "KubeSchedulerConfiguration"),
}


def test_yaml_configs_parse_with_their_kind(graph):
    files = payload_files(graph)
    for path, (api_version, kind) in EXPECTED_KINDS.items():
        doc = yaml.safe_load(files[path][1])
        assert (doc["apiVersion"], doc["kind"]) == (api_version, kind), path
    enc = yaml.safe_load(files["/var/lib/kubernetes/encryption-config.yaml"][1])
    providers = enc["resources"][0]["providers"]
    assert list(providers[0]) == ["secretbox"] and len(base64.b64decode(providers[0]["secretbox"]["keys"][0]["secret"])) == 32
    assert providers[-1] == {"identity": {}}
    audit = yaml.safe_load(files["/var/lib/kubernetes/audit-policy.yaml"][1])
    assert audit["rules"][-1]["level"] == "Metadata"  # the audit log logs something
    assert all(r["level"] in ("None", "Metadata") for r in audit["rules"])  # never a Secret's body
    rbac = list(yaml.safe_load_all((Path(__file__).resolve().parent.parent / "scripts/rbac/rbac.yaml").read_text()))
    assert [d["kind"] for d in rbac] == ["ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding"]
    assert rbac[0]["metadata"]["name"] == "system:kube-apiserver-to-kubelet"


def test_the_joining_etcd_step_passes_shellcheck():
    """A scale-up renders the etcd step's join branch, which a fresh install's graph never shows."""
    from fake_infra import build, config
    from harness import FakeCloud, evaluate

    class NoFounders(FakeCloud):
        def new_resource(self, args):
            rid, outputs = super().new_resource(args)
            if args.name.endswith("-etcd-membership"):
                outputs["founders"] = ["controller-0"]
            return rid, outputs

    joined = evaluate(lambda: build(config(controllerCount=3)), {"cloud": "local"}, mocks=NoFounders())
    script = joined.named("kthw-control-plane-controller-2-etcd").input("create")
    assert "members_ctl member add controller-2" in script
    result = subprocess.run([tool("shellcheck"), "-s", "bash", "-"], input=body_of(script), text=True,
                            capture_output=True)
    assert result.returncode == 0, result.stdout


def apiserver_flags(graph) -> list[str]:
    unit = {n: u for n, _, u in units(graph)}["kthw-control-plane-controller-0-kube-apiserver"]
    return [line.strip().rstrip(" \\") for line in unit.splitlines() if line.strip().startswith("--")]


def admission(graph) -> dict:
    return {p["name"]: p["configuration"] for p in
            yaml.safe_load(payload_files(graph)["/var/lib/kubernetes/admission-config.yaml"][1])["plugins"]}


def test_admission_defaults_event_rate_limit_and_pod_security(graph):
    """By default: EventRateLimit on (CIS 1.2.9) with its buckets, AlwaysPullImages off (1.2.11), Pod Security
    Admission enforcing baseline, auditing and warning at restricted, kube-system exempt (5.2.x)."""
    assert "--enable-admission-plugins=NodeRestriction,DenyServiceExternalIPs,EventRateLimit" in apiserver_flags(graph)
    assert "--admission-control-config-file=/var/lib/kubernetes/admission-config.yaml" in apiserver_flags(graph)
    plugins = admission(graph)
    assert set(plugins) == {"PodSecurity", "EventRateLimit"}
    limits = plugins["EventRateLimit"]
    assert (limits["apiVersion"], limits["kind"]) == ("eventratelimit.admission.k8s.io/v1alpha1", "Configuration")
    assert {(l["type"], l["qps"], l["burst"]) for l in limits["limits"]} == {("Server", 50, 100), ("Namespace", 10, 50)}
    pss = plugins["PodSecurity"]
    assert (pss["apiVersion"], pss["kind"]) == ("pod-security.admission.config.k8s.io/v1", "PodSecurityConfiguration")
    assert {k: v for k, v in pss["defaults"].items() if not k.endswith("-version")} == {
        "enforce": "baseline", "audit": "restricted", "warn": "restricted"}
    assert pss["exemptions"]["namespaces"] == ["kube-system"]


def test_admission_keys_change_the_plugins_and_their_settings():
    graph = evaluate(lambda: build(config(eventRateLimit="false", alwaysPullImages="true",
                                          podSecurityEnforce="restricted")), {"cloud": "local"})
    assert "--enable-admission-plugins=NodeRestriction,DenyServiceExternalIPs,AlwaysPullImages" in apiserver_flags(graph)
    plugins = admission(graph)
    assert set(plugins) == {"PodSecurity"} and plugins["PodSecurity"]["defaults"]["enforce"] == "restricted"


@pytest.fixture(scope="module")
def issuer_ca() -> str:
    from oidc_issuer import certificates

    return certificates("192.0.2.1")[0]


def authentication(graph) -> dict:
    return yaml.safe_load(payload_files(graph)["/var/lib/kubernetes/authentication-config.yaml"][1])


def test_without_an_issuer_the_authentication_config_has_no_jwt(graph):
    assert "jwt" not in authentication(graph)


def test_oidc_keys_become_a_jwt_authenticator(issuer_ca):
    graph = evaluate(lambda: build(config(
        oidcIssuerUrl="https://login.example.com/realms/k8s", oidcClientId="kthw", oidcUsernameClaim="email",
        oidcGroupsClaim="groups", oidcGroupsPrefix="corp:", oidcCaPem=issuer_ca)), {"cloud": "local"})
    auth = authentication(graph)
    assert auth["anonymous"]["enabled"] is True  # the health endpoints stay open
    assert auth["jwt"] == [{
        "issuer": {"url": "https://login.example.com/realms/k8s", "audiences": ["kthw"],
                   "certificateAuthority": issuer_ca},
        "claimMappings": {"username": {"claim": "email", "prefix": "oidc:"},
                          "groups": {"claim": "groups", "prefix": "corp:"}}}]
    assert payload_files(graph)["/var/lib/kubernetes/authentication-config.yaml"][0].mode == 0o644  # nothing secret


# A shell builtin (printf, echo) writes a line at a time; a reader that stops at its first match (grep -q, head,
# cmp -s) can exit before the last line, and the writer's SIGPIPE fails the pipe under pipefail, now and then.
EARLY_READER_PIPE = re.compile(r"\b(?:printf|echo)\b[^|\n]*\|\s*(?:grep\s+-\w*q|head\b|cmp\s+-s)")


def test_no_script_pipes_a_builtin_into_a_reader_that_stops_early(graph):
    root = Path(__file__).resolve().parent.parent / "scripts"
    sources = {str(p): p.read_text() for p in root.rglob("*")
               if p.is_file() and (p.suffix in (".sh", ".j2") or _has_bash_shebang(p))}
    sources.update(dict(remote_scripts(graph)))
    assert len(sources) > 40
    found = [f"{name}: {line.strip()}" for name, text in sources.items() for line in text.splitlines()
             if EARLY_READER_PIPE.search(line)]
    assert not found, "\n".join(found)
