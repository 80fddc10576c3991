"""The PKI table rendered into pulumi-tls resources: subjects, SANs, usages, CA flags and secrets."""
import pytest

from components.pki import table
from fake_infra import PUBLIC_ADDRESS, build, config
from harness import contains_secret_marker, evaluate

CERT = "tls:index/locallySignedCert:LocallySignedCert"
CSR = "tls:index/certRequest:CertRequest"
CA = "tls:index/selfSignedCert:SelfSignedCert"
IPS = ["10.240.0.10", "10.240.0.11", "10.240.0.12"]


@pytest.fixture(scope="module")
def graph():
    return evaluate(lambda: build(config(apiServerDnsName="k8s.example.com")), {"cloud": "local"})


def csr(graph, name):
    return graph.named(f"kthw-pki-{name}-csr")


def test_every_table_row_becomes_a_signed_cert(graph):
    expected = [f"kthw-pki-{s.name}" for s in table.CERTS if not s.per_node]
    expected += [f"kthw-pki-{s.name}-controller-{i}" for s in table.CERTS if s.per_node for i in range(3)]
    assert sorted(r.name for r in graph.of_type(CERT)) == sorted(expected)
    assert sorted(r.name for r in graph.of_type(CA)) == ["kthw-pki-ca", "kthw-pki-etcd-ca", "kthw-pki-front-proxy-ca"]


def test_cas_are_ca_certificates_that_sign(graph):
    for ca in graph.of_type(CA):
        assert ca.input("isCaCertificate") is True
        assert set(ca.input("allowedUses")) >= {"cert_signing", "crl_signing"}
    for cert in graph.of_type(CERT):
        assert not cert.input("isCaCertificate")
        assert "cert_signing" not in cert.input("allowedUses")


def test_apiserver_sans(graph):
    req = csr(graph, "apiserver")
    dns, ips = req.input("dnsNames"), req.input("ipAddresses")
    for name in ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local", "controller-0", "controller-1", "controller-2",
                 "k8s.example.com"):
        assert name in dns
    assert "kubernetes.svc.cluster.local" not in dns  # KTHW upstream's typo
    for ip in ("10.32.0.1", "127.0.0.1", PUBLIC_ADDRESS, *IPS):
        assert ip in ips
    assert req.input("subject")["commonName"] == "kube-apiserver"


def test_signers_subjects_and_usages_follow_the_table(graph):
    for spec in table.CERTS:
        names = [spec.name] if not spec.per_node else [f"{spec.name}-controller-{i}" for i in range(3)]
        for name in names:
            cert = graph.named(f"kthw-pki-{name}")
            assert set(cert.input("allowedUses")) == set(spec.usages), name
            signer = graph.named(f"kthw-pki-{spec.signer}")
            assert signer.urn in cert.depends_on(), f"{name} is not signed by {spec.signer}"
            subject = csr(graph, name).input("subject")
            node = name.rsplit("-", 2)[-2:] if spec.per_node else None
            expected_cn = spec.common_name.replace("{node}", "-".join(node) if node else "")
            assert subject["commonName"] == expected_cn
            assert subject.get("organization") == spec.organization


def test_client_identities(graph):
    subjects = {name: csr(graph, name).input("subject") for name in
                ("admin", "super-admin", "controller-manager", "scheduler", "apiserver-kubelet-client")}
    assert subjects["controller-manager"]["commonName"] == "system:kube-controller-manager"
    assert subjects["scheduler"]["commonName"] == "system:kube-scheduler"
    assert subjects["admin"]["organization"] == "kubeadm:cluster-admins"
    assert subjects["super-admin"]["organization"] == "system:masters"
    assert "client_auth" in graph.named("kthw-pki-admin").input("allowedUses")


def test_etcd_member_certs_name_their_node(graph):
    for i, ip in enumerate(IPS):
        for kind in ("etcd-server", "etcd-peer"):
            req = csr(graph, f"{kind}-controller-{i}")
            assert req.input("dnsNames") == [f"controller-{i}", "localhost"]
            assert req.input("ipAddresses") == [ip, "127.0.0.1", "::1"]
            assert set(graph.named(f"kthw-pki-{kind}-controller-{i}").input("allowedUses")) >= {
                "server_auth", "client_auth"}


def test_private_keys_reach_resources_only_as_secrets(graph):
    for cert in graph.of_type(CERT):
        assert cert.is_secret("caPrivateKeyPem"), cert.name
    for cmd in graph.of_type("command:remote:Command"):
        assert not contains_secret_marker(cmd.inputs.get("create")), f"{cmd.name}: a secret in the command line"
        if cmd.name.endswith("-files"):
            assert cmd.is_secret("stdin")
            assert cmd.input("logging") == "none"
    kubeconfig = graph.stack_outputs["kubeconfig"]
    assert contains_secret_marker(kubeconfig)


def test_keys_are_ecdsa(graph):
    keys = graph.of_type("tls:index/privateKey:PrivateKey")
    per_node = sum(1 for s in table.CERTS if s.per_node)
    expected = len(table.CAS) + (len(table.CERTS) - per_node) + 3 * per_node + 1  # +1: service account
    assert len(keys) == expected == 19
    assert {k.input("algorithm") for k in keys} == {"ECDSA"}


def test_encryption_config_during_a_rotation_decrypts_with_every_key_and_encrypts_with_the_first():
    import base64

    import pulumi
    import yaml

    from components.pki.component import encryption_key_name
    from harness import SECRET_SIG, SIG_KEY, unwrap

    current, upcoming = (base64.b64encode(bytes([n]) * 32).decode() for n in (7, 8))

    def program():
        _, pki, plane = build(config(encryptionKey=current, encryptionKeyNext=upcoming))
        pulumi.export("encryption", pki.encryption_config)
        pulumi.export("name", pki.encryption_key_name)

    graph = evaluate(program, {"cloud": "local"})
    exported = graph.stack_outputs["encryption"]
    assert isinstance(exported, dict) and exported.get(SIG_KEY) == SECRET_SIG
    providers = yaml.safe_load(unwrap(exported))["resources"][0]["providers"]
    keys = providers[0]["secretbox"]["keys"]
    assert [k["secret"] for k in keys] == [current, upcoming]
    assert [k["name"] for k in keys] == [encryption_key_name(current), encryption_key_name(upcoming)]
    assert providers[1] == {"identity": {}}
    assert graph.stack_outputs["name"] == encryption_key_name(current)  # not a secret: a digest of the key
    rewrite = graph.named("kthw-control-plane-controller-0-rewrite-secrets").input("create")
    assert encryption_key_name(current) in rewrite and current not in rewrite


def test_the_admin_certificate_is_short_lived_and_renewed_by_up():
    graph = evaluate(lambda: build(config(adminCertValidityHours="12", certValidityHours="4380")), {"cloud": "local"})
    admin = graph.named("kthw-pki-admin")
    assert (admin.input("validityPeriodHours"), admin.input("earlyRenewalHours")) == (12, 6)
    for name in ("apiserver", "super-admin", "controller-manager"):  # the others keep kthw:certValidityHours
        cert = graph.named(f"kthw-pki-{name}")
        assert (cert.input("validityPeriodHours"), cert.input("earlyRenewalHours")) == (4380, 438), name
    default = evaluate(lambda: build(), {"cloud": "local"}).named("kthw-pki-admin")
    assert default.input("validityPeriodHours") == 24


@pytest.mark.parametrize("hours", ["1", "5000"])
def test_the_admin_certificate_validity_is_checked(hours):
    from components.config import ConfigError

    with pytest.raises(ConfigError, match="kthw:adminCertValidityHours must be between 2 and"):
        config(adminCertValidityHours=hours, certValidityHours="4380")
