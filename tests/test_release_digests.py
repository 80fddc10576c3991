"""ReleaseDigests' provider against a real HTTPS server on loopback, serving checksum files in the official layouts.

dl.k8s.io: `/release/<version>/bin/linux/amd64/<name>.sha256` (the bare digest); etcd's GitHub releases:
`<base>/<version>/SHA256SUMS` ("<digest>  <file>" lines). The server's certificate is issued by a CA this test
makes; the provider trusts it only through the release source's `ca_pem`.
"""
from __future__ import annotations

import datetime
import hashlib
import http.server
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components import release_digests as rd
from components.infra import ReleaseSource

K8S, NEXT, ETCD = "v1.36.3", "v1.37.2", "v3.6.14"
KUBE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


# ---- a CA, a server certificate, and the server ------------------------------------------------------------

def _issue(name: str, issuer: tuple | None, ca: bool):
    """A key and a certificate for `name`, signed by `issuer` (key, cert) or self-signed; PEM strings."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, signer_cert = issuer if issuer else (key, None)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(signer_cert.subject if signer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    else:
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = (builder.add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    cert = builder.sign(signer_key, hashes.SHA256())
    return key, cert


def _pem(key, cert) -> tuple[str, str]:
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            cert.public_bytes(serialization.Encoding.PEM).decode())


class Mirror:
    """An HTTPS file server on 127.0.0.1 whose files (path -> body) a test can change; it logs every GET."""

    def __init__(self, tmp: Path, issuer: tuple):
        key_pem, cert_pem = _pem(*_issue("127.0.0.1", issuer, ca=False))
        (tmp / "server.key").write_text(key_pem)
        (tmp / "server.pem").write_text(cert_pem)
        self.files: dict[str, str] = {}
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write((body if body is not None else "not found").encode())

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that refuses our certificate is what some tests want

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def publish(self, k8s: str = K8S, etcd: str = ETCD, prefix: str = "", salt: str = "") -> dict[str, str]:
        """Checksum files for one Kubernetes and one etcd release, as upstream lays them out; their digests."""
        published = {}
        for name in KUBE:
            published[rd.digest_key(name, k8s)] = digest(name, k8s, salt)
            self.files[f"{prefix}/release/{k8s}/bin/linux/amd64/{name}.sha256"] = digest(name, k8s, salt) + "\n"
        archive = f"etcd-{etcd}-linux-amd64.tar.gz"
        published[rd.digest_key("etcd", etcd)] = digest(archive, salt)
        self.files[f"{prefix}/etcd/{etcd}/SHA256SUMS"] = "".join(f"{digest(f, salt)}  {f}\n" for f in (
            f"etcd-{etcd}-darwin-arm64.zip", archive, f"{archive}.asc", f"etcd-{etcd}-linux-arm64.tar.gz"))
        return published

    def source(self, ca_pem, pinned=None, prefix: str = "") -> ReleaseSource:
        return ReleaseSource(kubernetes_base=self.base + prefix, etcd_base=f"{self.base}{prefix}/etcd",
                             pinned=pinned or {}, ca_pem=ca_pem)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def ca():
    return _issue("kthw test mirror CA", None, ca=True)


@pytest.fixture
def ca_pem(ca) -> str:
    return _pem(*ca)[1]


@pytest.fixture
def mirror(tmp_path, ca):
    server = Mirror(tmp_path, ca)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def provider(deadline: float = 5) -> rd._DigestsProvider:
    return rd._DigestsProvider(deadline_seconds=deadline, tries=3)


def created(source: ReleaseSource, k8s: str = K8S, deadline: float = 5) -> dict:
    return provider(deadline).create(rd.inputs(source, k8s, ETCD)).outs


# ---- create ------------------------------------------------------------------------------------------------

def test_create_resolves_the_kube_sha256_files_and_the_etcd_sha256sums(mirror, ca_pem):
    published = mirror.publish()
    outs = created(mirror.source(ca_pem))
    assert outs["digests"] == published
    assert outs["resolved"]["etcd@v3.6.14"] == {"sha256": published["etcd@v3.6.14"],
                                                "source": f"{mirror.base}/etcd/{ETCD}/SHA256SUMS"}
    assert sorted(mirror.requests) == sorted([f"/release/{K8S}/bin/linux/amd64/{n}.sha256" for n in KUBE]
                                             + [f"/etcd/{ETCD}/SHA256SUMS"])


def test_pinned_digests_win_without_a_fetch(mirror, ca_pem):
    published = mirror.publish()
    pins = {("kube-apiserver", K8S): "1" * 64, ("etcd", ETCD): "2" * 64, ("kubectl", "v0.0.1"): "3" * 64}
    outs = created(mirror.source(ca_pem, pinned=pins))
    assert outs["digests"] == {**published, "kube-apiserver@v1.36.3": "1" * 64, "etcd@v3.6.14": "2" * 64}
    assert outs["pinned"] == {"kube-apiserver@v1.36.3": "1" * 64, "etcd@v3.6.14": "2" * 64}  # only wanted ones
    assert outs["resolved"]["etcd@v3.6.14"]["source"] == rd.PINNED
    assert not [r for r in mirror.requests if "kube-apiserver" in r or "SHA256SUMS" in r]


BAD_FILES = [
    ("kube-scheduler.sha256", "uppercase", lambda d: d.upper() + "\n"),
    ("kube-scheduler.sha256", "short", lambda d: d[:63] + "\n"),
    ("kube-scheduler.sha256", "two digests", lambda d: f"{d}\n{d}\n"),
    ("kube-scheduler.sha256", "another file's", lambda d: f"{d}  kube-apiserver\n"),
    ("kube-scheduler.sha256", "an HTML page", lambda d: "<html><body>moved</body></html>\n"),
    ("kube-scheduler.sha256", "missing", None),
    ("SHA256SUMS", "without the archive's line", lambda d: f"{d}  etcd-{ETCD}-linux-arm64.tar.gz\n"),
    ("SHA256SUMS", "only a longer name", lambda d: f"{d}  etcd-{ETCD}-linux-amd64.tar.gz.asc\n"),
    ("SHA256SUMS", "the line twice", lambda d: f"{d}  etcd-{ETCD}-linux-amd64.tar.gz\n" * 2),
]


@pytest.mark.parametrize("file,what,body", BAD_FILES, ids=[f"{f}:{w}" for f, w, _ in BAD_FILES])
def test_a_wrong_or_malformed_checksum_file_is_an_error_naming_its_url(mirror, ca_pem, file, what, body):
    mirror.publish()
    [path] = [p for p in mirror.files if p.endswith(f"/{file}")]
    if body is None:
        del mirror.files[path]
    else:
        mirror.files[path] = body("ab" * 32)
    with pytest.raises(rd.DigestError) as err:
        created(mirror.source(ca_pem))
    assert f"{mirror.base}{path}" in str(err.value)
    assert "kthw:requirePinnedDigests" in str(err.value) and "releases.json" in str(err.value)


@pytest.mark.parametrize("text,fmt,file", [
    ("ab" * 32, rd.SHA256_FILE, "kubectl"),
    ("ab" * 32 + "\n", rd.SHA256_FILE, "kubectl"),
    ("ab" * 32 + "  kubectl\n", rd.SHA256_FILE, "kubectl"),
    ("cd" * 32 + "  other.zip\n" + "ab" * 32 + " *etcd.tar.gz\r\n", rd.SHA256SUMS, "etcd.tar.gz"),
])
def test_the_official_layouts_parse(text, fmt, file):
    assert rd.parse_checksum(text, fmt, file) == "ab" * 32


def test_an_unreachable_url_fails_within_its_deadline_naming_it(ca_pem):
    with socket.socket() as sock:  # a loopback port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = ReleaseSource(kubernetes_base=f"https://127.0.0.1:{port}", etcd_base=f"https://127.0.0.1:{port}/etcd",
                           ca_pem=ca_pem)
    start = time.monotonic()
    with pytest.raises(rd.DigestError) as err:
        created(source, deadline=3)
    assert time.monotonic() - start < 3 + 1
    assert f"https://127.0.0.1:{port}/release/{K8S}/bin/linux/amd64/kube-apiserver.sha256" in str(err.value)
    assert "ConnectionRefusedError" in str(err.value) and "3 tries" in str(err.value)


def test_a_server_that_never_answers_fails_within_its_deadline(ca_pem):
    with socket.socket() as silent:  # listens (the kernel completes the handshake) but never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        base = f"https://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(rd.DigestError) as err:
            created(ReleaseSource(kubernetes_base=base, etcd_base=f"{base}/etcd", ca_pem=ca_pem), deadline=1.5)
        elapsed = time.monotonic() - start
    assert elapsed < 1.5 + 1, elapsed
    assert f"{base}/etcd/{ETCD}/SHA256SUMS" in str(err.value)


def test_the_whole_resolution_is_bounded_even_if_a_fetch_is_not():
    artifacts = {"a@v1": {"name": "a", "version": "v1", "checksum_url": "https://x/a.sha256"}}
    start = time.monotonic()
    with pytest.raises(rd.DigestError, match=r"https://x/a.sha256.*no answer within 0.3 s"):
        rd.resolve(artifacts, {}, {}, lambda a: time.sleep(2) or "ab" * 32, wait_seconds=0.3)
    assert time.monotonic() - start < 1


# ---- trust -------------------------------------------------------------------------------------------------

def test_the_sources_ca_is_required(mirror):
    mirror.publish()
    with pytest.raises(rd.DigestError, match="CERTIFICATE_VERIFY_FAILED") as err:
        created(mirror.source(None))  # the system CAs alone do not trust the mirror
    assert f"{mirror.base}/release/{K8S}/bin/linux/amd64/kubectl.sha256" in str(err.value)
    assert len(mirror.requests) == 0


def test_a_server_with_an_untrusted_certificate_fails(tmp_path, ca_pem):
    stranger = Mirror(tmp_path, _issue("another CA", None, ca=True))  # same name, another issuer
    try:
        stranger.publish()
        with pytest.raises(rd.DigestError, match="CERTIFICATE_VERIFY_FAILED"):
            created(stranger.source(ca_pem))
        assert stranger.requests == []
    finally:
        stranger.close()


def test_plain_http_is_refused_before_any_fetch():
    source = ReleaseSource(kubernetes_base="http://127.0.0.1:9", etcd_base="http://127.0.0.1:9/etcd")
    failures = provider().check({}, rd.inputs(source, K8S, ETCD)).failures
    assert failures and all("is not HTTPS" in f.reason for f in failures)
    with pytest.raises(rd.DigestError, match="HTTPS only"):
        created(source)


# ---- once per version: update, diff, refresh -----------------------------------------------------------------

def test_update_resolves_only_the_new_version_and_keeps_the_others(mirror, ca_pem):
    old = mirror.publish()
    new = mirror.publish(k8s=NEXT)
    p = provider()
    first = p.create(rd.inputs(mirror.source(ca_pem), K8S, ETCD)).outs
    mirror.requests.clear()
    news = rd.inputs(mirror.source(ca_pem), NEXT, ETCD)
    assert p.diff("release-digests", first, news).changes  # a version change is an in-place update
    assert p.diff("release-digests", first, news).replaces == []
    second = p.update("release-digests", first, news).outs
    assert sorted(mirror.requests) == sorted(f"/release/{NEXT}/bin/linux/amd64/{n}.sha256" for n in KUBE)
    assert second["digests"] == {**{k: v for k, v in new.items() if NEXT in k}, "etcd@v3.6.14": old["etcd@v3.6.14"]}
    assert set(second["resolved"]) == set(old) | set(new)  # the earlier version stays on record
    mirror.requests.clear()
    back = p.update("release-digests", second, rd.inputs(mirror.source(ca_pem), K8S, ETCD)).outs
    assert mirror.requests == [] and back["digests"] == old  # going back needs no fetch


def test_unchanged_inputs_are_no_change_and_a_refresh_looks_nowhere(mirror, ca_pem, tmp_path):
    mirror.publish()
    p = provider()
    props = rd.inputs(mirror.source(ca_pem), K8S, ETCD)
    outs = p.create(props).outs
    assert not p.diff("release-digests", outs, rd.inputs(mirror.source(ca_pem), K8S, ETCD)).changes
    other_ca = _pem(*_issue("a re-issued mirror CA", None, ca=True))[1]
    assert not p.diff("release-digests", outs, rd.inputs(mirror.source(other_ca), K8S, ETCD)).changes
    mirror.requests.clear()
    mirror.publish(salt="republished")
    assert p.read("release-digests", outs).outs == outs
    assert mirror.requests == []


def test_a_changed_published_digest_is_refused(mirror, ca_pem):
    """The same release, looked up again at a new address (a moved mirror), must publish the same digests."""
    first = mirror.publish()
    p = provider()
    outs = p.create(rd.inputs(mirror.source(ca_pem), K8S, ETCD)).outs
    moved = mirror.publish(prefix="/moved", salt="tampered")
    mirror.publish(prefix="/moved")  # ... but kube-scheduler's file differs
    mirror.files[f"/moved/release/{K8S}/bin/linux/amd64/kube-scheduler.sha256"] = moved["kube-scheduler@v1.36.3"]
    with pytest.raises(rd.DigestError) as err:
        p.update("release-digests", outs, rd.inputs(mirror.source(ca_pem, prefix="/moved"), K8S, ETCD))
    message = str(err.value)
    assert "refused" in message and "kube-scheduler v1.36.3" in message
    assert f"from {first['kube-scheduler@v1.36.3']} to {moved['kube-scheduler@v1.36.3']}" in message
    assert f"{mirror.base}/moved/release/{K8S}/bin/linux/amd64/kube-scheduler.sha256" in message
    assert "kube-apiserver" not in message  # the others still match
    mirror.files[f"/moved/release/{K8S}/bin/linux/amd64/kube-scheduler.sha256"] = first["kube-scheduler@v1.36.3"]
    again = p.update("release-digests", outs, rd.inputs(mirror.source(ca_pem, prefix="/moved"), K8S, ETCD)).outs
    assert again["digests"] == first


def test_the_provider_pickles_with_nothing_but_its_bounds():
    """As Pulumi stores it in the state (serialize_provider), and back."""
    import base64

    import dill
    from pulumi.dynamic.dynamic import serialize_provider

    p = dill.loads(base64.b64decode(serialize_provider(rd._DigestsProvider())))
    assert vars(p) == {"deadline_seconds": rd.FETCH_DEADLINE_SECONDS, "tries": rd.FETCH_TRIES}
