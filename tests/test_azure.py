"""The Azure infra under Pulumi mocks: the registered graph, the InfraOutputs it hands on, and bad config."""
from __future__ import annotations

import base64
import json
from typing import Any, Optional

import pulumi
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from components import config as stack_config
from components import releases
from components.azure import AzureInfra, AzureInfraArgs, load_azure_config
from components.azure import regions
from components.config import ConfigError
from components.infra import ControllerHost, HealthCheckStyle, InfraOutputs, ReleaseSource
from harness import (Graph, Registered, contains_secret_marker, evaluate, fake_public_ip, fake_ssh_key,
                     release_digests_feeding_installs, run_program, unwrap)

ADMIN = "203.0.113.7/32"
API_IP = fake_public_ip("kthw-api-ip")
BASE = {"cloud": "azure", "adminCidrs": json.dumps([ADMIN])}
LB = "azure-native:network:LoadBalancer"
NIC = "azure-native:network:NetworkInterface"
VM = "azure-native:compute:VirtualMachine"
PIP = "azure-native:network:PublicIPAddress"
NSG = "azure-native:network:NetworkSecurityGroup"
NAT = "azure-native:network:NatGateway"
SUBNET = "azure-native:network:Subnet"
WHOLE_INTERNET = {"*", "0.0.0.0/0", "internet", "any", "::/0"}


def key_pair(key: serialization.SSHPrivateKeyTypes,
             private_format: serialization.PrivateFormat = serialization.PrivateFormat.OpenSSH,
             password: bytes = b"") -> tuple[str, str]:
    """A key's OpenSSH public key line and its private half in PEM (unencrypted unless a password is given)."""
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return public.decode() + " me@laptop", key.private_bytes(serialization.Encoding.PEM, private_format,
                                                             encryption).decode()


USER_KEY = ed25519.Ed25519PrivateKey.generate()
USER_PUBLIC, USER_PRIVATE = key_pair(USER_KEY)
RSA_1024_PUBLIC, RSA_1024_PRIVATE = key_pair(rsa.generate_private_key(65537, 1024))


class Built:
    """What one evaluation produced: the graph, the InfraOutputs object, or the ConfigError."""

    def __init__(self) -> None:
        self.graph: Optional[Graph] = None
        self.outputs: Optional[InfraOutputs] = None
        self.error: Optional[ConfigError] = None


def build(extra: Optional[dict[str, str]] = None, secret_keys: tuple[str, ...] = ("sshPrivateKey",)) -> Built:
    """Parse the config (a plain dict, as `pulumi config` would give it), load the Azure keys, build AzureInfra."""
    values = {**BASE, **(extra or {})}
    built = Built()

    def program() -> None:
        try:
            config = stack_config.parse(values.get, "azure")
            azure = load_azure_config(values.get, config, is_secret=lambda key: key in secret_keys)
        except ConfigError as err:
            built.error = err
            return
        outputs = AzureInfra("kthw", AzureInfraArgs(config=config, azure=azure)).outputs
        built.outputs = outputs
        pulumi.export("publicAddress", outputs.public_address)
        pulumi.export("hosts", [{"name": h.name, "privateIp": h.private_ip, "sshHost": h.ssh_host,
                                 "sshPort": h.ssh_port, "sshUser": h.ssh_user, "instanceId": h.instance_id}
                                for h in outputs.hosts])
        for h in outputs.hosts:  # one export each: a secret inside a list would wrap the whole list
            pulumi.export(f"key-{h.name}", h.ssh_private_key)

    built.graph = evaluate(program, {}, stack="azure")
    return built


@pytest.fixture(scope="module")
def default() -> Built:
    return build()


@pytest.fixture(scope="module")
def five() -> Built:
    return build({"controllerCount": "5"})


def login_keys(graph: Graph) -> list[Registered]:
    """The generated SSH key pairs but the hosts' own keys."""
    return [k for k in graph.of_type("tls:index/privateKey:PrivateKey") if not k.name.endswith("-host-key")]


def one(graph: Graph, type_: str) -> Registered:
    found = graph.of_type(type_)
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    return found[0]


def sub_id(ref: dict[str, Any]) -> str:
    return unwrap(ref)["id"]


# ---- load balancer -------------------------------------------------------------------------------------

def test_load_balancer_is_standard_with_the_static_standard_public_ip(default: Built) -> None:
    lb, pip = one(default.graph, LB), default.graph.named("kthw-api-ip")
    assert lb.input("sku") == {"name": "Standard", "tier": "Regional"}
    assert pip.input("sku")["name"] == "Standard"
    assert pip.input("publicIPAllocationMethod") == "Static"
    assert pip.input("publicIPAddressVersion") == "IPv4"
    assert pip.input("zones") == ["1", "2", "3"]  # zone-redundant in a region with zones
    [frontend] = lb.input("frontendIPConfigurations")
    assert frontend["publicIPAddress"]["id"] == f"{pip.name}-id"
    assert pip.urn in lb.depends_on()


@pytest.mark.parametrize("health, protocol, path", [
    (None, "Https", "/readyz"),
    ("https-readyz", "Https", "/readyz"),
    ("tcp", "Tcp", None),
])
def test_probe_on_6443(health: Optional[str], protocol: str, path: Optional[str]) -> None:
    built = build({"healthCheck": health} if health else {})
    [probe] = one(built.graph, LB).input("probes")
    assert (probe["port"], probe["protocol"], probe.get("requestPath")) == (6443, protocol, path)
    expected = HealthCheckStyle.TCP if health == "tcp" else HealthCheckStyle.HTTPS_READYZ
    assert built.outputs.health_check is expected


def test_rule_6443_to_6443_through_the_probe_without_outbound_snat(default: Built) -> None:
    lb = one(default.graph, LB)
    [rule] = lb.input("loadBalancingRules")
    [frontend] = lb.input("frontendIPConfigurations")
    [pool] = lb.input("backendAddressPools")
    [probe] = lb.input("probes")
    assert (rule["protocol"], rule["frontendPort"], rule["backendPort"]) == ("Tcp", 6443, 6443)
    assert rule["frontendIPConfiguration"]["id"].endswith(f"/frontendIPConfigurations/{frontend['name']}")
    assert rule["backendAddressPool"]["id"].endswith(f"/backendAddressPools/{pool['name']}")
    assert rule["probe"]["id"].endswith(f"/probes/{probe['name']}")
    # Outbound leaves through the NAT gateway: the API frontend is never used to SNAT the controllers.
    assert rule["disableOutboundSnat"] is True


def test_outbound_through_the_nat_gateway_only(default: Built) -> None:
    graph = default.graph
    nat, subnet, lb = one(graph, NAT), one(graph, SUBNET), one(graph, LB)
    assert nat.input("sku") == {"name": "Standard"}
    [egress] = nat.input("publicIpAddresses")
    assert egress["id"] == "kthw-nat-ip-id"
    assert graph.named("kthw-nat-ip").input("sku")["name"] == "Standard"
    assert subnet.input("natGateway")["id"] == f"{nat.name}-id"
    assert subnet.input("defaultOutboundAccess") is False
    # No LB outbound rule (it would be ignored for VMs with their own public IP, and SNAT would be ambiguous).
    assert not lb.input("outboundRules") and not lb.input("inboundNatRules")


@pytest.mark.parametrize("fixture, count", [("default", 3), ("five", 5)])
def test_ssh_reaches_each_controller_at_its_own_public_ip(fixture: str, count: int, request) -> None:
    graph = request.getfixturevalue(fixture).graph
    zones = [vm.input("zones") for vm in sorted(graph.of_type(VM), key=lambda r: r.name)]
    for i in range(count):
        pip = graph.named(f"kthw-controller-{i}-ip")
        assert pip.input("sku")["name"] == "Standard" and pip.input("publicIPAllocationMethod") == "Static"
        assert pip.input("zones") == zones[i]  # the IP lives in its VM's zone
        [ipc] = graph.named(f"kthw-controller-{i}-nic").input("ipConfigurations")
        assert ipc["publicIPAddress"]["id"] == f"{pip.name}-id"
    # The API address, the egress address and one per controller: nothing else is public.
    assert len(graph.of_type(PIP)) == count + 2


# ---- NICs, VMs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture, count", [("default", 3), ("five", 5)])
def test_every_nic_in_the_backend_pool_at_its_static_ip(fixture: str, count: int, request) -> None:
    graph = request.getfixturevalue(fixture).graph
    lb = one(graph, LB)
    [pool] = lb.input("backendAddressPools")
    nics = sorted(graph.of_type(NIC), key=lambda r: r.name)
    assert [n.name for n in nics] == [f"kthw-controller-{i}-nic" for i in range(count)]
    for i, nic in enumerate(nics):
        [ipc] = nic.input("ipConfigurations")
        assert ipc["privateIPAllocationMethod"] == "Static"
        assert ipc["privateIPAddress"] == f"10.240.0.{10 + i}"
        assert [p["id"] for p in ipc["loadBalancerBackendAddressPools"]] == \
            [f"{lb.name}-id/backendAddressPools/{pool['name']}"]
        assert ipc["subnet"]["id"] == f"{one(graph, SUBNET).name}-id"
        assert graph.reaches(nic, lb)


def test_private_ips_follow_node_cidr() -> None:
    built = build({"nodeCidr": "10.50.0.0/24"})
    ips = sorted(n.input("ipConfigurations")[0]["privateIPAddress"] for n in built.graph.of_type(NIC))
    assert ips == ["10.50.0.10", "10.50.0.11", "10.50.0.12"]
    assert one(built.graph, SUBNET).input("addressPrefix") == "10.50.0.0/24"
    assert one(built.graph, "azure-native:network:VirtualNetwork").input("addressSpace") == \
        {"addressPrefixes": ["10.50.0.0/24"]}


@pytest.mark.parametrize("fixture, zones", [("default", ["1", "2", "3"]), ("five", ["1", "2", "3", "1", "2"])])
def test_vms_ubuntu_key_only_spread_over_zones(fixture: str, zones: list[str], request) -> None:
    graph = request.getfixturevalue(fixture).graph
    vms = sorted(graph.of_type(VM), key=lambda r: r.name)
    assert [vm.input("zones") for vm in vms] == [[z] for z in zones]
    for i, vm in enumerate(vms):
        assert vm.input("vmName") == vm.input("osProfile")["computerName"] == f"controller-{i}"
        assert vm.input("hardwareProfile") == {"vmSize": "Standard_D2s_v5"}
        assert vm.input("storageProfile")["imageReference"] == {
            "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}
        os_profile = vm.input("osProfile")
        assert "adminPassword" not in os_profile
        assert os_profile["adminUsername"] == "kthw"
        linux = os_profile["linuxConfiguration"]
        assert linux["disablePasswordAuthentication"] is True
        [key] = linux["ssh"]["publicKeys"]
        assert key["path"] == "/home/kthw/.ssh/authorized_keys"
        assert key["keyData"].startswith("ssh-")
        [nic_ref] = vm.input("networkProfile")["networkInterfaces"]
        assert nic_ref["id"] == f"kthw-controller-{i}-nic-id"


def test_each_vm_boots_with_its_own_host_key_which_every_ssh_client_pins(default: Built) -> None:
    from harness import unwrap

    from components.boot import user_data

    for vm in default.graph.of_type(VM):
        name = vm.input("vmName")
        [key] = default.graph.find(lambda r: r.name.endswith(f"{name}-host-key"))
        assert key.input("algorithm") == "ED25519"
        private, public = fake_ssh_key(key.name)
        cloud_config = base64.b64decode(vm.input("osProfile")["customData"]).decode()
        # The first boot every infra shares (GCP's user-data, the local seed), with this VM's key.
        assert cloud_config == user_data(private, public)
        assert contains_secret_marker(vm.inputs["osProfile"])  # it holds the host's private key
        assert "MaxStartups 100:30:200" in cloud_config
        wait = default.graph.named(f"kthw-{name}-booted")
        assert unwrap(wait.inputs["connection"])["hostKey"] == public


def test_vm_size_image_user_and_zones_are_configurable() -> None:
    built = build({"location": "West Europe", "zones": "2,3", "vmSize": "Standard_B2s",
                   "image": "Canonical:ubuntu-24_04-lts:server:24.04.202411030", "adminUsername": "ops"})
    vms = sorted(built.graph.of_type(VM), key=lambda r: r.name)
    assert {vm.input("location") for vm in vms} == {"westeurope"}
    assert [vm.input("zones") for vm in vms] == [["2"], ["3"], ["2"]]
    assert vms[0].input("hardwareProfile")["vmSize"] == "Standard_B2s"
    assert vms[0].input("storageProfile")["imageReference"]["version"] == "24.04.202411030"
    assert vms[0].input("osProfile")["linuxConfiguration"]["ssh"]["publicKeys"][0]["path"] == \
        "/home/ops/.ssh/authorized_keys"
    assert all(h.ssh_user == "ops" for h in built.outputs.hosts)


@pytest.mark.parametrize("zones", ['["1", "3"]', "[1, 3]", "1,3", " 1 , 3 "])
def test_zones_accept_pulumi_config_shapes(zones: str) -> None:
    built = build({"zones": zones})
    assert [vm.input("zones") for vm in sorted(built.graph.of_type(VM), key=lambda r: r.name)] == \
        [["1"], ["3"], ["1"]]


def test_region_without_zones_places_vms_without_zones() -> None:
    built = build({"location": "westus"})
    assert all(vm.input("zones") is None for vm in built.graph.of_type(VM))
    assert all(pip.input("zones") is None for pip in built.graph.of_type(PIP))


# ---- NSG ----------------------------------------------------------------------------------------------

def sources(rule: dict[str, Any]) -> list[str]:
    return list(rule.get("sourceAddressPrefixes") or []) + \
        ([rule["sourceAddressPrefix"]] if rule.get("sourceAddressPrefix") else [])


def covers(rule: dict[str, Any], port: int) -> bool:
    ranges = list(rule.get("destinationPortRanges") or []) + [rule.get("destinationPortRange") or ""]
    for r in ranges:
        if r == "*" or r == str(port):
            return True
        if "-" in r and int(r.split("-")[0]) <= port <= int(r.split("-")[1]):
            return True
    return False


def test_nsg_opens_22_and_6443_only_to_admins(default: Built) -> None:
    rules = [r for r in one(default.graph, NSG).input("securityRules") if r["direction"] == "Inbound"]
    allows = [r for r in rules if r["access"] == "Allow"]
    for rule in allows:
        assert not {s.lower() for s in sources(rule)} & WHOLE_INTERNET, rule
    for port in (22, 6443):
        from_outside = {s for r in allows if covers(r, port) for s in sources(r)} - {"10.240.0.0/24"}
        assert from_outside <= {ADMIN, "AzureLoadBalancer"}, (port, from_outside)
        assert ADMIN in from_outside
    probe = [r for r in allows if sources(r) == ["AzureLoadBalancer"]]
    assert len(probe) == 1 and covers(probe[0], 6443) and not covers(probe[0], 22)
    intra = [r for r in allows if sources(r) == ["10.240.0.0/24"]]
    assert len(intra) == 1 and intra[0]["destinationAddressPrefix"] == "10.240.0.0/24"
    assert len({r["priority"] for r in rules}) == len(rules)


def test_subnet_is_guarded_by_the_nsg(default: Built) -> None:
    nsg, subnet = one(default.graph, NSG), one(default.graph, SUBNET)
    assert subnet.input("networkSecurityGroup")["id"] == f"{nsg.name}-id"
    assert nsg.urn in subnet.depends_on()


def test_several_admin_cidrs_are_all_allowed() -> None:
    built = build({"adminCidrs": json.dumps([ADMIN, "198.51.100.0/24"])})
    rules = one(built.graph, NSG).input("securityRules")
    ssh = [r for r in rules if covers(r, 22) and r["access"] == "Allow" and "10.240.0.0/24" not in sources(r)]
    assert sorted(s for r in ssh for s in sources(r)) == ["198.51.100.0/24", ADMIN]


# ---- SSH key, outputs ---------------------------------------------------------------------------------

def test_generated_ssh_key_is_rsa_4096_and_secret(default: Built) -> None:
    [key] = login_keys(default.graph)
    assert (key.input("algorithm"), key.input("rsaBits")) == ("RSA", 4096)
    keys = [default.graph.stack_outputs[f"key-controller-{i}"] for i in range(3)]
    assert all(contains_secret_marker(k) for k in keys)
    assert not contains_secret_marker(default.graph.stack_outputs["publicAddress"])
    assert not contains_secret_marker(default.graph.stack_outputs["hosts"])
    for wait in default.graph.of_type("command:remote:Command"):
        assert contains_secret_marker(wait.inputs["connection"])


def test_user_key_pair_is_used_and_kept_secret() -> None:
    built = build({"sshPublicKey": USER_PUBLIC, "sshPrivateKey": USER_PRIVATE})
    assert not login_keys(built.graph)
    for vm in built.graph.of_type(VM):
        assert vm.input("osProfile")["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"] == USER_PUBLIC
    keys = [built.graph.stack_outputs[f"key-controller-{i}"] for i in range(3)]
    assert all(contains_secret_marker(k) and unwrap(k) == USER_PRIVATE for k in keys)


def test_outputs_have_the_infra_shape(five: Built) -> None:
    out = five.outputs
    assert isinstance(out, InfraOutputs) and isinstance(out.releases, ReleaseSource)
    assert all(isinstance(h, ControllerHost) for h in out.hosts)
    assert [h.name for h in out.hosts] == [f"controller-{i}" for i in range(5)]
    assert (out.api_port, out.health_check) == (6443, HealthCheckStyle.HTTPS_READYZ)
    assert (out.releases.kubernetes_base, out.releases.etcd_base) == (releases.KUBERNETES_BASE, releases.ETCD_BASE)
    assert out.releases.pinned == releases.official_sha256(releases.DEFAULT_KUBERNETES, releases.DEFAULT_ETCD)
    hosts = five.graph.stack_outputs["hosts"]
    assert [(h["privateIp"], h["sshHost"], h["sshPort"], h["sshUser"]) for h in hosts] == \
        [(f"10.240.0.{10 + i}", fake_public_ip(f"kthw-controller-{i}-ip"), 22, "kthw") for i in range(5)]
    assert five.graph.stack_outputs["publicAddress"] == API_IP
    assert len({h["sshHost"] for h in hosts} | {API_IP}) == 6
    assert [h["instanceId"] for h in hosts] == [f"kthw-controller-{i}-vmid" for i in range(5)]
    # The bootstrap waits for the LB, every VM, and every host's first boot over its own SSH path.
    ready = {r._name for r in out.ready}  # type: ignore[attr-defined]
    assert {"kthw-lb", "kthw-nat", *(f"kthw-controller-{i}" for i in range(5)),
            *(f"kthw-controller-{i}-booted" for i in range(5))} <= ready


def test_boot_wait_runs_over_ssh_after_the_vm_and_the_nat_gateway(default: Built) -> None:
    graph = default.graph
    nat = one(graph, NAT)
    for i in range(3):
        wait, vm = graph.named(f"kthw-controller-{i}-booted"), graph.named(f"kthw-controller-{i}")
        conn = unwrap(wait.inputs["connection"])
        assert (conn["host"], conn["port"], conn["user"]) == (fake_public_ip(f"kthw-controller-{i}-ip"), 22, "kthw")
        assert graph.reaches(wait, nat) and graph.reaches(wait, vm)
        script = wait.input("create")
        assert "cloud-init status --wait" in script and f"kthw-controller-{i}-vmid" in script
        assert wait.input("update") == script and not wait.input("triggers")  # in place, never replaced


def test_children_are_parented_and_prefixed(default: Built) -> None:
    [component] = default.graph.of_type("kthw:azure:AzureInfra")
    children = [r for r in default.graph.resources if r is not component]
    assert children and all(r.parent == component.urn for r in children)
    assert all(r.name.startswith("kthw-") for r in children)
    assert {r.input("location") for r in children if "location" in r.inputs} == {"eastus2"}


# ---- bad config: a clear error naming the key, before any resource ------------------------------------

@pytest.mark.parametrize("extra, key", [
    ({"adminCidrs": ""}, "adminCidrs"),
    ({"adminCidrs": "0.0.0.0/0"}, "adminCidrs"),
    ({"adminCidrs": "2001:db8::/64"}, "adminCidrs"),
    ({"location": "mars-north"}, "location"),
    ({"location": "westus", "zones": "1"}, "zones"),
    ({"location": "eastus2", "zones": "4"}, "zones"),
    ({"zones": "1,1"}, "zones"),
    ({"zones": '{"a": 1}'}, "zones"),
    ({"vmSize": "D2s_v5"}, "vmSize"),
    ({"vmSize": "Standard D2s v5"}, "vmSize"),
    ({"image": "Canonical:ubuntu-24_04-lts:server"}, "image"),
    ({"adminUsername": "root"}, "adminUsername"),
    ({"adminUsername": "Kthw User"}, "adminUsername"),
    ({"healthCheck": "http-healthz-proxy"}, "healthCheck"),
    ({"sshPublicKey": USER_PUBLIC}, "sshPrivateKey"),
    ({"sshPrivateKey": USER_PRIVATE}, "sshPublicKey"),
    ({"sshPublicKey": "ecdsa-sha2-nistp256 AAAA", "sshPrivateKey": USER_PRIVATE}, "sshPublicKey"),
    ({"sshPublicKey": RSA_1024_PUBLIC, "sshPrivateKey": RSA_1024_PRIVATE}, "sshPublicKey"),
    ({"sshPublicKey": USER_PUBLIC, "sshPrivateKey": "not a key"}, "sshPrivateKey"),
])
def test_bad_config_is_refused_before_any_resource(extra: dict[str, str], key: str) -> None:
    built = build(extra)
    assert built.error is not None, f"{extra} was accepted"
    assert any(p.startswith(f"kthw:{key} ") for p in built.error.problems), built.error.problems
    assert built.graph.resources == []


def test_plain_text_private_key_is_refused() -> None:
    built = build({"sshPublicKey": USER_PUBLIC, "sshPrivateKey": USER_PRIVATE}, secret_keys=())
    assert built.error is not None and any("--secret" in p for p in built.error.problems)
    assert built.graph.resources == []


def test_every_bad_key_is_named_at_once() -> None:
    built = build({"location": "nowhere", "vmSize": "big", "image": "ubuntu"})
    keys = {p.split()[0] for p in built.error.problems}
    assert keys == {"kthw:location", "kthw:vmSize", "kthw:image"}


@pytest.mark.parametrize("public_key, private_key, problem", [
    ("ssh-ed25519 AAA!", USER_PRIVATE, "kthw:sshPublicKey holds a key whose base64 body does not decode"),
    ("ssh-ed25519 " + RSA_1024_PUBLIC.split()[1], USER_PRIVATE,
     "kthw:sshPublicKey says ssh-ed25519 but its body is not a ssh-ed25519 key"),
    (RSA_1024_PUBLIC, RSA_1024_PRIVATE, "kthw:sshPublicKey must be an RSA key of at least 2048 bits"),
    (USER_PUBLIC, key_pair(USER_KEY, password=b"passphrase")[1],
     "kthw:sshPrivateKey must be an unencrypted private key in PEM or OpenSSH format"),
    (USER_PUBLIC, key_pair(ed25519.Ed25519PrivateKey.generate())[1],
     "kthw:sshPrivateKey is not the private half of kthw:sshPublicKey"),
])
def test_a_bad_key_pair_is_refused_saying_why(public_key: str, private_key: str, problem: str) -> None:
    config = stack_config.parse({**BASE}.get, "azure")
    with pytest.raises(ConfigError) as err:
        load_azure_config({"sshPublicKey": public_key, "sshPrivateKey": private_key}.get, config)
    assert [p for p in err.value.problems if p.startswith(problem)], err.value.problems


def test_good_rsa_key_and_region_display_names_are_accepted() -> None:
    config = stack_config.parse({**BASE}.get, "azure")
    # An RSA pair of 2048 bits, its private half in PKCS#8 PEM (not OpenSSH's own format).
    public_key, private_key = key_pair(rsa.generate_private_key(65537, 2048), serialization.PrivateFormat.PKCS8)
    get = {"sshPublicKey": public_key, "sshPrivateKey": private_key, "location": "Japan East"}.get
    azure = load_azure_config(get, config)
    assert azure.location == "japaneast" and azure.zones == ("1", "2", "3")
    assert "PRIVATE KEY" not in repr(azure)


def test_region_table_is_well_formed() -> None:
    assert all(name == regions.normalize(name) for name in regions.REGIONS)
    assert regions.zones_of("westus") == () and regions.zones_of("East US 2") == ("1", "2", "3")


# ---- the whole program on the azure stack ---------------------------------------------------------------

def test_control_plane_commands_target_the_azure_hosts() -> None:
    """As shipped (the table lacks digests of the default version): the program runs, the digests resource
    resolving what the table lacks before any install step."""
    graph = run_program({"cloud": "azure", "adminCidrs": [ADMIN]}, stack="azure")
    release_digests_feeding_installs(graph)
    [component] = graph.of_type("kthw:azure:AzureInfra")
    remote = [r for r in graph.of_type("command:remote:Command") if r.parent != component.urn]
    assert remote, "the control plane registered no remote command"
    targets = {(c["host"], int(c["port"]), c["user"]) for c in (unwrap(r.inputs["connection"]) for r in remote)}
    assert targets == {(fake_public_ip(f"kthw-controller-{i}-ip"), 22, "kthw") for i in range(3)}
    waits = [graph.named(f"kthw-controller-{i}-booted") for i in range(3)]
    assert all(any(graph.reaches(r, w) for w in waits) for r in remote)
    assert unwrap(graph.stack_outputs["publicAddress"]) == API_IP


def test_stack_file_is_valid_and_consistent() -> None:
    from pathlib import Path

    stack = yaml.safe_load((Path(__file__).resolve().parent.parent / "Pulumi.azure.yaml").read_text())["config"]
    values = {k.split(":", 1)[1]: v if isinstance(v, str) else json.dumps(v)
              for k, v in stack.items() if k.startswith("kthw:")}
    config = stack_config.parse(values.get, "azure")
    azure = load_azure_config(values.get, config)
    assert config.cloud == "azure" and config.admin_cidrs
    assert azure.location == stack["azure-native:location"]
    assert build(values).error is None
