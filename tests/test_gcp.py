"""GcpInfra under Pulumi mocks: network, firewalls, VMs, the target-pool load balancer and InfraOutputs."""
from __future__ import annotations

import ipaddress
from typing import Any

import pulumi
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from harness import FakeCloud, Graph, contains_secret_marker, fake_ssh_key, evaluate, release_digests_feeding_installs, run_program
from test_azure import USER_PRIVATE, USER_PUBLIC, key_pair

from components import config as stack_config
from components.config import ConfigError
from components.gcp import GcpConfig, GcpInfra, GcpInfraArgs, load_gcp_config
from components.infra import ControllerHost, HealthCheckStyle, InfraOutputs

HEALTH_RANGES = {"35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22"}
BASE = {
    "cloud": "gcp",
    "adminCidrs": ["203.0.113.7/32"],
    "zones": ["us-central1-a", "us-central1-b", "us-central1-c"],
    "gcp:project": "kthw-test-project",
    "gcp:region": "us-central1",
}
T_INSTANCE = "gcp:compute/instance:Instance"
T_FIREWALL = "gcp:compute/firewall:Firewall"


def build(captured: dict[str, Any]) -> None:
    """What the program does for a gcp stack: validate every key, then create the infra."""
    cfg = stack_config.parse(pulumi.Config("kthw").get, "gcp")
    gcp_config = load_gcp_config(pulumi.Config("kthw").get, cfg, pulumi.Config("gcp").get)
    infra = GcpInfra("kthw", GcpInfraArgs(config=cfg, gcp=gcp_config))
    captured["outputs"] = infra.outputs
    hosts = infra.outputs.hosts
    pulumi.Output.all(
        public=infra.outputs.public_address,
        hosts=[pulumi.Output.all(h.name, h.private_ip, h.ssh_host, h.ssh_port, h.ssh_user) for h in hosts],
        keys=[pulumi.Output.from_input(h.ssh_private_key) for h in hosts],
        key_secret=[pulumi.Output.is_secret(pulumi.Output.from_input(h.ssh_private_key)) for h in hosts],
    ).apply(lambda values: captured.update(values))


def run(**overrides: Any) -> tuple[Graph, dict[str, Any]]:
    captured: dict[str, Any] = {}
    graph = evaluate(lambda: build(captured), {**BASE, **overrides}, stack="gcp")
    return graph, captured


@pytest.fixture(scope="module")
def default() -> tuple[Graph, dict[str, Any]]:
    return run()


def test_health_check_is_legacy_http_on_port_80_with_the_kubernetes_host(default):
    graph, _ = default
    (check,) = graph.of_type("gcp:compute/httpHealthCheck:HttpHealthCheck")
    assert check.input("port") == 80
    assert check.input("requestPath") == "/healthz"
    assert check.input("host") == "kubernetes.default.svc.cluster.local"
    assert check.input("timeoutSec") <= check.input("checkIntervalSec")


def test_health_check_host_follows_the_cluster_domain():
    graph, _ = run(clusterDomain="corp.internal")
    (check,) = graph.of_type("gcp:compute/httpHealthCheck:HttpHealthCheck")
    assert check.input("host") == "kubernetes.default.svc.corp.internal"


def test_target_pool_holds_every_controller_and_the_health_check(default):
    graph, _ = default
    (pool,) = graph.of_type("gcp:compute/targetPool:TargetPool")
    instances = graph.of_type(T_INSTANCE)
    assert sorted(pool.input("instances")) == sorted(f"https://gcp/{i.name}" for i in instances)
    assert len(instances) == 3
    assert pool.input("healthChecks") == "https://gcp/kthw-api-health"
    assert pool.input("region") == "us-central1"
    for instance in instances:
        assert graph.reaches(pool, instance)


def test_forwarding_rule_sends_6443_to_the_pool_at_the_static_address(default):
    graph, _ = default
    (rule,) = graph.of_type("gcp:compute/forwardingRule:ForwardingRule")
    (address,) = graph.of_type("gcp:compute/address:Address")
    assert rule.input("portRange") == "6443"
    assert rule.input("ipProtocol") == "TCP"
    assert rule.input("ipAddress") == "34.0.113.10"  # the FakeCloud's address for the Address resource
    assert rule.input("target") == "https://gcp/kthw-api-pool"
    assert rule.input("loadBalancingScheme") == "EXTERNAL"
    assert graph.reaches(rule, address)
    assert address.input("addressType") == "EXTERNAL" and address.input("region") == "us-central1"


def _firewalls(graph: Graph) -> dict[str, Any]:
    return {r.name: r for r in graph.of_type(T_FIREWALL)}


def _ports(rule) -> dict[str, set[str]]:
    return {a["protocol"]: set(a.get("ports") or ["*"]) for a in rule.input("allows")}


def test_health_check_firewall_lets_only_google_ranges_reach_port_80(default):
    graph, _ = default
    rule = _firewalls(graph)["kthw-allow-health-check"]
    assert set(rule.input("sourceRanges")) == HEALTH_RANGES
    assert _ports(rule) == {"tcp": {"80"}}
    assert rule.input("targetTags") == ["kthw-controller"]


def test_admin_firewall_opens_ssh_and_api_to_admin_cidrs_only(default):
    graph, _ = default
    rule = _firewalls(graph)["kthw-allow-admin"]
    assert rule.input("sourceRanges") == ["203.0.113.7/32"]
    assert _ports(rule) == {"tcp": {"22", "6443"}, "icmp": {"*"}}


def test_internal_firewall_covers_the_node_subnet_and_cluster_cidr(default):
    graph, _ = default
    rule = _firewalls(graph)["kthw-allow-internal"]
    assert set(rule.input("sourceRanges")) == {"10.240.0.0/24", "10.200.0.0/16"}
    assert set(_ports(rule)) == {"tcp", "udp", "icmp"}


def test_no_rule_opens_ssh_or_api_beyond_admin_and_private_ranges(default):
    graph, _ = default
    allowed = {"203.0.113.7/32", "10.240.0.0/24", "10.200.0.0/16"}
    checked = 0
    for rule in graph.of_type(T_FIREWALL):
        if _ports(rule).get("tcp", set()) & {"22", "6443", "*"}:
            checked += 1
            assert set(rule.input("sourceRanges")) <= allowed, rule.name
            assert all(ipaddress.ip_network(c).prefixlen > 0 for c in rule.input("sourceRanges"))
    assert checked == 2  # the admin and internal rules


def test_network_is_custom_mode_with_the_node_subnet(default):
    graph, _ = default
    (network,) = graph.of_type("gcp:compute/network:Network")
    (subnet,) = graph.of_type("gcp:compute/subnetwork:Subnetwork")
    assert network.input("autoCreateSubnetworks") is False
    assert subnet.input("ipCidrRange") == "10.240.0.0/24"
    assert subnet.input("region") == "us-central1"


def test_instances_have_static_ips_spread_over_zones(default):
    graph, _ = default
    instances = sorted(graph.of_type(T_INSTANCE), key=lambda r: r.input("name"))
    assert [i.input("name") for i in instances] == ["controller-0", "controller-1", "controller-2"]
    assert [i.input("networkInterfaces")[0]["networkIp"] for i in instances] == \
        ["10.240.0.10", "10.240.0.11", "10.240.0.12"]
    assert [i.input("zone") for i in instances] == ["us-central1-a", "us-central1-b", "us-central1-c"]
    for instance in instances:
        assert instance.input("tags") == ["kthw-controller"]
        assert instance.input("canIpForward") is True
        assert instance.input("machineType") == "e2-standard-2"
        assert instance.input("bootDisk")["initializeParams"]["image"] == "ubuntu-os-cloud/ubuntu-2404-lts-amd64"
        assert instance.input("networkInterfaces")[0]["subnetwork"] == "kthw-subnet-id"
        metadata = instance.input("metadata")
        assert metadata["enable-oslogin"] == "FALSE"
        assert metadata["ssh-keys"] == "kthw:ssh-ed25519 FAKEkthw-ssh-key kthw"


def test_instances_wait_for_the_firewalls(default):
    graph, _ = default
    for instance in graph.of_type(T_INSTANCE):
        for rule in graph.of_type(T_FIREWALL):
            assert graph.reaches(instance, rule)


def test_ssh_private_key_is_a_generated_ed25519_secret(default):
    graph, captured = default
    (key,) = [k for k in graph.of_type("tls:index/privateKey:PrivateKey") if not k.name.endswith("-host-key")]
    assert key.input("algorithm") == "ED25519"
    assert captured["key_secret"] == [True, True, True]
    assert captured["keys"][0].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_a_configured_key_pair_is_used_and_kept_secret():
    public_key, private_key = key_pair(ec.generate_private_key(ec.SECP256R1()))  # GCP takes ECDSA too
    graph, captured = run(sshPublicKey=public_key, sshPrivateKey=private_key)
    assert sorted(k.name for k in graph.of_type("tls:index/privateKey:PrivateKey")) == [
        f"kthw-controller-{i}-host-key" for i in range(3)]  # the hosts' own keys only
    assert captured["key_secret"] == [True, True, True]
    assert captured["keys"] == [private_key] * 3
    assert graph.of_type(T_INSTANCE)[0].input("metadata")["ssh-keys"] == f"kthw:{public_key} kthw"


def test_instances_boot_with_the_shared_user_data_and_the_bootstrap_waits_for_it(default):
    """GCE's cloud-init applies the `user-data` metadata key: the same first boot as Azure's and the local hosts',
    with the instance's own host key, which the bootstrap's connection pins."""
    import yaml
    from harness import unwrap

    from components.boot import user_data

    graph, captured = default
    for i, instance in enumerate(sorted(graph.of_type(T_INSTANCE), key=lambda r: r.input("name"))):
        metadata = instance.input("metadata")
        private, public = fake_ssh_key(f"kthw-controller-{i}-host-key")
        assert metadata["user-data"] == user_data(private, public)
        assert contains_secret_marker(instance.inputs["metadata"])  # it holds the host's private key
        assert metadata["user-data"].startswith("#cloud-config\n") and yaml.safe_load(metadata["user-data"])["write_files"]
        wait = graph.named(f"kthw-controller-{i}-booted")
        connection = unwrap(wait.inputs["connection"])
        assert (connection["host"], connection["port"], connection["user"]) == (f"35.0.113.1{i}", 22, "kthw")
        assert connection["hostKey"] == public
        assert "cloud-init status --wait" in wait.input("create") and "sudo -n true" in wait.input("create")
        assert graph.reaches(wait, instance) and all(graph.reaches(wait, rule) for rule in graph.of_type(T_FIREWALL))
    ready = {r._name for r in captured["outputs"].ready}  # type: ignore[attr-defined]
    assert {f"kthw-controller-{i}-booted" for i in range(3)} <= ready


def test_infra_outputs_shape(default):
    _, captured = default
    outputs = captured["outputs"]
    assert isinstance(outputs, InfraOutputs)
    assert outputs.health_check is HealthCheckStyle.HTTP_HEALTHZ_PROXY
    assert outputs.api_port == 6443
    assert all(isinstance(h, ControllerHost) for h in outputs.hosts)
    assert captured["public"] == "34.0.113.10"
    assert captured["hosts"] == [
        [f"controller-{i}", f"10.240.0.1{i}", f"35.0.113.1{i}", 22, "kthw"] for i in range(3)]
    assert outputs.releases.kubernetes_url("kubectl", "v1.36.3") == \
        "https://dl.k8s.io/release/v1.36.3/bin/linux/amd64/kubectl"
    assert len(outputs.ready) >= 3 + 3  # the VMs and the firewalls at least


def test_the_whole_program_runs_as_shipped_and_resolves_digests_before_installing():
    graph = run_program(BASE, stack="gcp")
    digests = release_digests_feeding_installs(graph)
    assert set(digests.input("artifacts")) - set(digests.input("pinned")) == {
        "kube-apiserver@v1.36.3", "kube-controller-manager@v1.36.3", "kube-scheduler@v1.36.3"}
    # The official source answers from the start: the digests are read while the VMs are made, and every
    # install waits for both.
    assert not any(graph.reaches(digests, vm) for vm in graph.of_type(T_INSTANCE))
    installs = graph.find(lambda r: r.type == "command:remote:Command" and r.name.endswith("binaries"))
    assert installs and all(graph.reaches(step, vm) for step in installs for vm in graph.of_type(T_INSTANCE))


def test_every_child_is_parented_to_the_component_and_named_after_it(default):
    graph, _ = default
    (component,) = graph.of_type("kthw:gcp:GcpInfra")
    for resource in graph.resources:
        if resource is not component:
            assert resource.parent == component.urn, resource.name
            assert resource.name.startswith("kthw-"), resource.name


def test_five_controllers_round_robin_over_three_zones():
    graph, captured = run(controllerCount=5)
    instances = sorted(graph.of_type(T_INSTANCE), key=lambda r: r.input("name"))
    assert [i.input("zone")[-1] for i in instances] == ["a", "b", "c", "a", "b"]
    assert [i.input("networkInterfaces")[0]["networkIp"] for i in instances] == \
        [f"10.240.0.{10 + i}" for i in range(5)]
    (pool,) = graph.of_type("gcp:compute/targetPool:TargetPool")
    assert len(pool.input("instances")) == 5
    assert len(captured["hosts"]) == 5


def test_a_single_gcp_zone_is_used_when_zones_is_unset():
    overrides = {**BASE, "gcp:zone": "us-central1-f"}
    del overrides["zones"]
    graph = evaluate(lambda: build({}), overrides, stack="gcp")
    assert {i.input("zone") for i in graph.of_type(T_INSTANCE)} == {"us-central1-f"}


@pytest.mark.parametrize("change, key", [
    ({"adminCidrs": None}, "kthw:adminCidrs"),
    ({"adminCidrs": ["0.0.0.0/0"]}, "kthw:adminCidrs"),
    ({"gcp:project": None}, "gcp:project"),
    ({"gcp:project": "Not_A_Project"}, "gcp:project"),
    ({"gcp:region": None}, "gcp:region"),
    ({"gcp:region": "us central"}, "gcp:region"),
    ({"zones": ["europe-west1-b"]}, "kthw:zones"),
    ({"zones": ["us-central1"]}, "kthw:zones"),
    ({"zones": ["us-central1-a", "us-central1-a"]}, "kthw:zones"),
    ({"zones": None}, "kthw:zones"),
    ({"zones": None, "gcp:zone": "us-east1-b"}, "gcp:zone"),
    ({"machineType": "E2 Standard"}, "kthw:machineType"),
    ({"image": "ubuntu 24.04"}, "kthw:image"),
    ({"diskSizeGb": "5"}, "kthw:diskSizeGb"),
    ({"adminUsername": "root"}, "kthw:adminUsername"),
    ({"sshPublicKey": "ssh-ed25519 AAAA"}, "kthw:sshPrivateKey"),
    ({"sshPublicKey": "not a key", "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"}, "kthw:sshPublicKey"),
    ({"healthCheck": "https-readyz"}, "kthw:healthCheck"),
])
def test_bad_gcp_config_is_refused_before_any_resource(change, key):
    values = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    registered: list[str] = []

    class Counting(FakeCloud):
        def new_resource(self, args):
            registered.append(args.typ)
            return super().new_resource(args)

    with pytest.raises(Exception) as caught:
        evaluate(lambda: build({}), values, stack="gcp", mocks=Counting())
    error = caught.value
    while not isinstance(error, ConfigError) and (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    assert isinstance(error, ConfigError), repr(caught.value)
    assert any(p.startswith(key + " ") for p in error.problems), error.problems
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_load_gcp_config_reads_the_defaults():
    cfg = stack_config.parse({"cloud": "gcp", "adminCidrs": "203.0.113.7/32"}.get)
    gcp_config = load_gcp_config({"zones": "us-central1-a,us-central1-b"}.get, cfg,
                                 {"project": "kthw-test-project", "region": "us-central1"}.get)
    assert gcp_config == GcpConfig(project="kthw-test-project", region="us-central1",
                                   zones=("us-central1-a", "us-central1-b"))
    assert gcp_config.zone_of(2) == "us-central1-a"


def _stack_file() -> dict[str, Any]:
    import yaml
    from pathlib import Path

    return yaml.safe_load((Path(__file__).resolve().parent.parent / "Pulumi.gcp.yaml").read_text())["config"]


def _getter(values: dict[str, Any], namespace: str):
    import json

    def get(key: str) -> Any:
        value = values.get(f"{namespace}:{key}")
        return value if value is None or isinstance(value, str) else json.dumps(value)
    return get


def test_stack_file_holds_every_required_key():
    values = _stack_file()
    cfg = stack_config.parse(_getter(values, "kthw"), "gcp")
    gcp_config = load_gcp_config(_getter(values, "kthw"), cfg, _getter(values, "gcp"))
    assert cfg.cloud == "gcp" and cfg.admin_cidrs == ("203.0.113.7/32",)
    assert gcp_config.zones and gcp_config.project and gcp_config.region
    for key in ("kthw:adminCidrs", "gcp:project", "gcp:region", "kthw:zones"):
        without = {k: v for k, v in values.items() if k != key}
        with pytest.raises(ConfigError) as caught:
            parsed = stack_config.parse(_getter(without, "kthw"), "gcp")
            load_gcp_config(_getter(without, "kthw"), parsed, _getter(without, "gcp"))
        assert any(p.startswith(key + " ") for p in caught.value.problems), (key, caught.value.problems)


def test_a_plain_text_private_key_is_refused_when_secrecy_is_known():
    cfg = stack_config.parse({"cloud": "gcp", "adminCidrs": "203.0.113.7/32"}.get)
    kthw = {"zones": "us-central1-a", "sshPublicKey": USER_PUBLIC, "sshPrivateKey": USER_PRIVATE}
    provider = {"project": "kthw-test-project", "region": "us-central1"}
    with pytest.raises(ConfigError) as caught:
        load_gcp_config(kthw.get, cfg, provider.get, is_secret=lambda key: False)
    assert [p for p in caught.value.problems if p.startswith("kthw:sshPrivateKey must be stored as a secret")]
    assert load_gcp_config(kthw.get, cfg, provider.get, is_secret=lambda key: True).ssh_private_key
