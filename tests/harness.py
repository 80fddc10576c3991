"""Run the Pulumi program (or any function that registers resources) under mocks, recording the graph.

`run_program(config)` evaluates the real `__main__.py` with a fake cloud and returns a `Graph` of every
registered resource: its type, name, parent, inputs (secrets still wrapped), and its dependency edges as the
engine would see them (from the `RegisterResource` requests, which `MockResourceArgs` does not carry).
"""
from __future__ import annotations

import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components import release_digests

ROOT = Path(__file__).resolve().parent.parent
SECRET_SIG = rpc._special_secret_sig  # type: ignore[attr-defined]
SIG_KEY = rpc._special_sig_key  # type: ignore[attr-defined]


@dataclass
class Registered:
    """One RegisterResource request, as the engine would receive it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    delete_before_replace: bool
    additional_secret_outputs: list[str]
    outputs: dict[str, Any] = field(default_factory=dict)
    ignore_changes: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)

    def input(self, key: str) -> Any:
        """An input with any secret wrapper removed."""
        return unwrap(self.inputs.get(key))

    def is_secret(self, key: str) -> bool:
        value = self.inputs.get(key)
        return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG

    def depends_on(self) -> set[str]:
        deps = set(self.dependencies)
        for urns in self.property_dependencies.values():
            deps.update(urns)
        return deps


def unwrap(value: Any) -> Any:
    """Remove Pulumi secret wrappers anywhere in a deserialized value."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return unwrap(value.get("value"))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def contains_secret_marker(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get(SIG_KEY) == SECRET_SIG or any(contains_secret_marker(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret_marker(v) for v in value)
    return False


class Graph:
    """The recorded resources, with small queries for tests."""

    def __init__(self, resources: list[Registered], stack_outputs: dict[str, Any],
                 error: Optional[BaseException] = None):
        self.error = error
        self.resources = resources
        self.by_urn = {r.urn: r for r in resources}
        self.stack_outputs = stack_outputs

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}"
        return matches[0]

    def find(self, predicate: Callable[[Registered], bool]) -> list[Registered]:
        return [r for r in self.resources if predicate(r)]

    def ancestors(self, resource: Registered) -> set[str]:
        """Every URN `resource` depends on, directly or through other resources (not through parents)."""
        seen: set[str] = set()
        stack = list(resource.depends_on())
        while stack:
            urn = stack.pop()
            if urn in seen:
                continue
            seen.add(urn)
            dep = self.by_urn.get(urn)
            if dep is not None:
                stack.extend(dep.depends_on())
                # A dependency on a component means a dependency on all its children.
                stack.extend(r.urn for r in self.resources if r.parent == urn)
        return seen

    def reaches(self, later: Registered, earlier: Registered) -> bool:
        """Whether `later` transitively depends on `earlier`."""
        return earlier.urn in self.ancestors(later)


def ssh_host_key_pair() -> tuple[str, str]:
    """A real, fresh ED25519 key's OpenSSH halves, as pulumi-tls gives them (private_key_openssh,
    public_key_openssh): for tests that hand a host key to sshd and paramiko."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public + "\n"


def fake_ssh_key(name: str) -> tuple[str, str]:
    """FakeCloud's (private_key_openssh, public_key_openssh) of the tls.PrivateKey `name`."""
    return (f"-----BEGIN OPENSSH PRIVATE KEY-----\nFAKE-{name}\n-----END OPENSSH PRIVATE KEY-----\n",
            f"ssh-ed25519 FAKE{name}")


class FakeCloud(pulumi_mocks.Mocks):
    """Returns inputs as outputs, plus the few computed outputs the program reads."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[Optional[str], dict]:
        outputs = dict(args.inputs)
        token = args.typ
        if token == "tls:index/privateKey:PrivateKey":
            private_openssh, public_openssh = fake_ssh_key(args.name)
            outputs.update(private_key_pem=f"-----BEGIN PRIVATE KEY-----\nFAKE-{args.name}\n-----END PRIVATE KEY-----\n",
                           private_key_openssh=private_openssh,
                           public_key_pem=f"-----BEGIN PUBLIC KEY-----\nFAKE-{args.name}\n-----END PUBLIC KEY-----\n",
                           public_key_openssh=public_openssh)
        elif token in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            outputs.update(cert_pem=f"-----BEGIN CERTIFICATE-----\nFAKE-{args.name}\n-----END CERTIFICATE-----\n",
                           validity_end_time="2027-11-23T00:00:00Z")
        elif token == "tls:index/certRequest:CertRequest":
            outputs.update(cert_request_pem=f"-----BEGIN CERTIFICATE REQUEST-----\nFAKE-{args.name}\n-----END CERTIFICATE REQUEST-----\n")
        elif token == "random:index/randomPassword:RandomPassword":
            outputs.update(result="p" * int(args.inputs.get("length", 16)))
        elif token == "random:index/randomBytes:RandomBytes":
            outputs.update(base64="a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=", hex="00" * 32)
        elif token == "pulumi-python:dynamic:Resource" and args.name.endswith("-etcd-membership"):
            # EtcdMembership's create: every member founds the cluster (a fresh install).
            outputs.update(founders=sorted(args.inputs.get("members") or {}))
        elif token == "pulumi-python:dynamic:Resource" and args.name.endswith("-machine-specs"):
            # MachineSpecs' create: every machine built from the spec the config asks for.
            outputs.update(built=dict(args.inputs.get("specs") or {}))
        elif token == "pulumi-python:dynamic:Resource" and args.name.endswith("-release-digests"):
            # ReleaseDigests' create: the pinned digests, and the others as if published (see `published_digest`).
            outputs = release_digests.outputs(args.inputs, {}, lambda a: published_digest(a["checksum_url"]))
        elif token.startswith("command:"):
            outputs.setdefault("stdout", "")
            outputs.setdefault("stderr", "")
        outputs.update(self.cloud_outputs(args))
        return f"{args.name}-id", outputs

    def cloud_outputs(self, args: pulumi_mocks.MockResourceArgs) -> dict:
        """Computed outputs of cloud resources (public IP addresses and the like)."""
        if args.typ == "azure-native:network:PublicIPAddress":
            return {"ip_address": fake_public_ip(args.name)}
        if args.typ == "azure-native:compute:VirtualMachine":
            return {"vm_id": f"{args.name}-vmid"}  # a GUID on Azure, new whenever the VM is re-created
        if args.typ == "gcp:compute/address:Address":
            return {"address": "34.0.113.10", "self_link": f"https://gcp/{args.name}"}
        if args.typ == "gcp:compute/instance:Instance":
            # instanceId: a number on GCP, new whenever the instance is re-created
            return {"self_link": f"https://gcp/{args.name}", "networkInterfaces": _gcp_nat_ips(args.inputs),
                    "instanceId": f"{args.name}-instance-id"}
        if args.typ.startswith("gcp:"):
            return {"self_link": f"https://gcp/{args.name}", "name": args.inputs.get("name", args.name)}
        return {}

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, Optional[list[tuple[str, str]]]]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A MockMonitor that keeps every RegisterResource request, dependencies included."""

    def __init__(self, mocks: pulumi_mocks.Mocks):
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.stack_outputs: dict[str, Any] = {}

    def RegisterResource(self, request):  # noqa: N802 (gRPC name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registered.append(Registered(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                custom=request.custom,
                inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                delete_before_replace=request.deleteBeforeReplace,
                additional_secret_outputs=list(request.additionalSecretOutputs),
                ignore_changes=list(request.ignoreChanges),
                replace_on_changes=list(request.replaceOnChanges),
            ))
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802
        if request.urn.split("::")[-2:-1] == ["pulumi:pulumi:Stack"]:  # the root stack, not a child
            self.stack_outputs = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        return super().RegisterResourceOutputs(request)


def evaluate(program: Callable[[], Any], config: dict[str, Any], stack: str = "test",
             preview: bool = False, mocks: Optional[pulumi_mocks.Mocks] = None,
             expect_error: bool = False) -> Graph:
    """Run `program` under mocks with `config` (keys without a namespace go to `kthw:`).

    With `expect_error`, an exception from the program is returned in `Graph.error` instead of raised.
    """
    mocks = mocks or FakeCloud()
    monitor = RecordingMonitor(mocks)
    settings.ROOT.set(None)  # a fresh Stack (with this stack's URN) for every evaluation
    pulumi.runtime.set_all_config({_key(k): _value(v) for k, v in config.items()})
    pulumi_mocks.set_mocks(mocks, project="kthw", stack=stack, preview=preview, monitor=monitor)
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    root = settings.get_root_resource()
    # set_mocks finishes its Stack at once; reopen it so the program's exports are registered.
    root._outputs_registered = False  # type: ignore[attr-defined]
    root._async_program_registration_closed = False  # type: ignore[attr-defined]

    def body() -> None:
        program()

    error: Optional[BaseException] = None
    try:
        _sync_await(run_pulumi_func(body))
    except Exception as exc:  # noqa: BLE001
        if not expect_error:
            raise
        error = exc
    finally:
        root = settings.get_root_resource()
        if root is not None:
            root._finish()  # type: ignore[attr-defined]
            try:  # an error inside an apply surfaces here, while the outstanding registrations finish
                _sync_await(run_pulumi_func(lambda: None))
            except Exception as exc:  # noqa: BLE001
                if not expect_error:
                    raise
                error = error or exc
    return Graph(monitor.registered, monitor.stack_outputs, error)


def run_program(config: dict[str, Any], stack: str = "test", preview: bool = False,
                expect_error: bool = False) -> Graph:
    """Evaluate the project's real `__main__.py` under mocks."""
    return evaluate(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
                    config, stack=stack, preview=preview, expect_error=expect_error)


def published_digest(checksum_url: str) -> str:
    """The digest FakeCloud's release source "publishes" at a checksum URL: distinct per URL."""
    import hashlib

    return hashlib.sha256(checksum_url.encode()).hexdigest()


def fake_public_ip(name: str) -> str:
    """A stable, distinct public address per resource name (20.x.y.10), for clouds that allocate them."""
    import hashlib

    high, low = hashlib.sha256(name.encode()).digest()[:2]
    return f"20.{high}.{low}.10"


def _gcp_nat_ips(inputs: dict) -> list:
    """A GCP instance's network interfaces with an ephemeral external IP (35.0.113.<last octet>) filled in."""
    nics = []
    for nic in inputs.get("networkInterfaces") or []:
        octet = str(nic.get("networkIp", "0.0.0.0")).rsplit(".", 1)[-1]
        configs = [{**ac, "natIp": f"35.0.113.{octet}"} for ac in nic.get("accessConfigs") or []]
        nics.append({**nic, "accessConfigs": configs})
    return nics


def _key(key: str) -> str:
    return key if ":" in key else f"kthw:{key}"


def _value(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


# How the install script verifies each download against its digest (scripts/common/install-binaries.sh.j2).
VERIFY = 'actual=$(sha256_of "$3" | cut -d\' \' -f1)'


def release_digests_feeding_installs(graph: Graph) -> Registered:
    """The stack's one ReleaseDigests resource; asserts that every install step depends on it directly."""
    [digests] = graph.find(lambda r: r.name.endswith("-release-digests"))
    installs = graph.find(lambda r: r.type == "command:remote:Command" and r.name.endswith("binaries"))
    assert installs, "no install step"
    for step in installs:
        assert digests.urn in step.depends_on(), f"{step.name} does not wait for {digests.name}"
        assert step.input("create") == step.input("update") and VERIFY in step.input("create")
    return digests


def names(resources: Iterable[Registered]) -> list[str]:
    return sorted(r.name for r in resources)
