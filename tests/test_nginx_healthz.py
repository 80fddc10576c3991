"""The /healthz proxy site served by a real nginx on loopback, in front of an HTTPS stub of the apiserver.

Proves what the GCP health check relies on: 200 only while the apiserver's /readyz says ok over a TLS
connection that nginx verified against the cluster CA and the `kubernetes` name; an error otherwise.
Only 127.0.0.1 is used; every wait is bounded.
"""
from __future__ import annotations

import http.client
import http.server
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from system_tools import require, require_root

from components.render import render, script

HOST = "kubernetes.default.svc.cluster.local"
TEMPLATE = "nginx/kubernetes-healthz.conf.j2"
WAIT_S = 10.0


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    return {"nginx": require("nginx", "nginx"), "openssl": require("openssl", "openssl")}


# --- certificates (openssl CLI) ---------------------------------------------------------------------

@dataclass
class Pki:
    """A throwaway CA, its server cert for `kubernetes`, and the same from a second, unrelated CA."""

    ca: Path
    cert: Path  # each cert's key is beside it, as <stem>.key
    wrong_name_cert: Path  # signed by the right CA, but without the `kubernetes` SAN
    other_ca_cert: Path  # the right SANs, signed by another CA


def _openssl(openssl: str, *args: str) -> None:
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30)


def _ca(openssl: str, d: Path, name: str) -> tuple[Path, Path]:
    cert, key = d / f"{name}.pem", d / f"{name}-key.pem"
    _openssl(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _server(openssl: str, d: Path, name: str, ca: tuple[Path, Path], sans: str) -> Path:
    """A serving cert for `sans` signed by `ca`; its key is <name>.key beside it."""
    cert, key, csr, ext = d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
    ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl(openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
    _openssl(openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return cert


@pytest.fixture(scope="module")
def pki(tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Pki:
    openssl, d = tools["openssl"], tmp_path_factory.mktemp("pki")
    ca, other = _ca(openssl, d, "ca"), _ca(openssl, d, "other-ca")
    sans = "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1"
    cert = _server(openssl, d, "apiserver", ca, sans)
    wrong_name = _server(openssl, d, "wrong-name", ca, "DNS:etcd,IP:127.0.0.1")
    other_ca = _server(openssl, d, "other", other, sans)
    return Pki(ca=ca[0], cert=cert, wrong_name_cert=wrong_name, other_ca_cert=other_ca)


# --- the apiserver stub -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stub:
    """An HTTPS server on 127.0.0.1 answering /readyz with `status`; records the paths it was asked."""

    def __init__(self, cert: Path, port: int, status: int = 200):
        self.status, self.paths = status, []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                stub.paths.append(self.path)
                ok = self.path == "/readyz" and stub.status == 200
                body = b"ok" if ok else b"[-]etcd failed: reason withheld\nreadyz check failed"
                self.send_response(stub.status if self.path == "/readyz" else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(cert.with_suffix(".key")))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.timeout = 2
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=WAIT_S)


# --- nginx --------------------------------------------------------------------------------------------

def nginx_conf(prefix: Path, site: Path) -> Path:
    """A minimal nginx.conf of the test's own that includes the site, as Debian's includes sites-enabled."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = prefix / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp}
    include {site};
}}
""")
    return conf


def nginx_test(nginx: str, prefix: Path, conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                          capture_output=True, text=True, timeout=30)


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on 127.0.0.1:{port} within {WAIT_S}s")


@dataclass
class Proxy:
    port: int
    upstream_port: int
    prefix: Path

    def get(self, path: str = "/healthz", host: str = HOST, method: str = "GET") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT_S)
        try:
            conn.request(method, path, headers={"Host": host})
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")


def render_site(port: int, upstream_port: int, ca_path: Path, cluster_domain: str = "cluster.local") -> str:
    return render(TEMPLATE, cluster_domain=cluster_domain, ca_path=str(ca_path), listen_address="127.0.0.1",
                  listen_port=port, upstream_port=upstream_port)


@pytest.fixture
def proxy(tools: dict[str, str], pki: Pki, tmp_path: Path) -> Iterator[Proxy]:
    """nginx serving the rendered site on a free loopback port, upstream on another free port."""
    port, upstream = free_port(), free_port()
    site = tmp_path / "kubernetes-healthz.conf"
    site.write_text(render_site(port, upstream, pki.ca))
    conf = nginx_conf(tmp_path, site)
    checked = nginx_test(tools["nginx"], tmp_path, conf)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen([tools["nginx"], "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, proc)
        yield Proxy(port=port, upstream_port=upstream, prefix=tmp_path)
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful stop of this nginx (and its worker) only
        try:
            proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=WAIT_S)


@pytest.fixture
def stub(pki: Pki, proxy: Proxy) -> Iterator[Stub]:
    server = Stub(pki.cert, proxy.upstream_port)
    try:
        yield server
    finally:
        server.stop()


# --- the tests ---------------------------------------------------------------------------------------

def test_site_with_production_defaults_passes_nginx_t(tools, pki, tmp_path):
    """listen 80 and upstream 6443 when the variables are left out (nginx -t opens no sockets)."""
    text = render(TEMPLATE, cluster_domain="cluster.local", ca_path=str(pki.ca))
    assert "listen 80;" in text and "https://127.0.0.1:6443/readyz" in text
    assert "proxy_ssl_verify on;" in text and "proxy_ssl_name kubernetes;" in text
    site = tmp_path / "site.conf"
    site.write_text(text)
    checked = nginx_test(tools["nginx"], tmp_path, nginx_conf(tmp_path, site))
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_nginx_t_rejects_a_missing_ca_file(tools, tmp_path):
    """The check that guards install.sh: a site whose CA file is absent does not pass."""
    site = tmp_path / "site.conf"
    site.write_text(render_site(1, 6443, tmp_path / "absent-ca.pem"))
    assert nginx_test(tools["nginx"], tmp_path, nginx_conf(tmp_path, site)).returncode != 0


def test_healthy_apiserver_gives_200_from_readyz(proxy, stub):
    status, body = proxy.get("/healthz?verbose")
    assert (status, body) == (200, "ok")
    assert stub.paths == ["/readyz"]  # /readyz, and the query string is not passed on


def test_unready_apiserver_gives_an_error(proxy, stub):
    stub.status = 500
    status, _ = proxy.get()
    assert 500 <= status <= 599
    stub.status = 200
    assert proxy.get()[0] == 200  # and back to healthy


def test_stopped_apiserver_gives_502(proxy, stub):
    assert proxy.get()[0] == 200
    stub.stop()
    assert proxy.get()[0] == 502


@pytest.mark.parametrize("cert, logged", [
    ("other_ca_cert", "upstream SSL certificate verify error"),  # proxy_ssl_verify + the trusted CA
    ("wrong_name_cert", 'upstream SSL certificate does not match "kubernetes"'),  # proxy_ssl_name
])
def test_an_apiserver_cert_nginx_cannot_verify_is_refused(proxy, pki, cert, logged):
    server = Stub(getattr(pki, cert), proxy.upstream_port)
    try:
        status, _ = proxy.get()
    finally:
        server.stop()
    assert status == 502
    assert server.paths == []  # the TLS handshake failed: no request reached the "apiserver"
    assert logged in proxy.error_log()


def test_only_healthz_for_the_kubernetes_host_is_exposed(proxy, stub):
    assert proxy.get("/healthz", host="example.com")[0] == 404
    assert proxy.get("/", host=HOST)[0] == 404
    assert proxy.get("/readyz", host=HOST)[0] == 404
    assert proxy.get("/healthz/etcd", host=HOST)[0] == 404
    assert proxy.get("/healthz", method="POST")[0] == 403
    assert stub.paths == []


def run_probe(proxy: Proxy, tries: int) -> subprocess.CompletedProcess:
    """lib.sh's probe_healthz against the running proxy, as install.sh.j2 calls it after a reload."""
    body = script("nginx/lib.sh") + f"\nprobe_healthz {HOST} {proxy.port} {tries}\n"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", body], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "NGINX_ERROR_LOG": str(proxy.prefix / "error.log")})


def test_install_probe_waits_for_200_and_reports_nginx_errors(proxy, stub):
    assert run_probe(proxy, 3).returncode == 0
    stub.stop()
    started = time.monotonic()
    failed = run_probe(proxy, 2)
    assert failed.returncode != 0
    assert time.monotonic() - started < 10  # bounded
    assert "did not answer 200" in failed.stderr and "connect() failed" in failed.stderr


def test_cluster_domain_is_templated(tools, pki, tmp_path):
    text = render_site(1, 6443, pki.ca, cluster_domain="corp.internal")
    assert "server_name kubernetes.default.svc.corp.internal;" in text
    assert "cluster.local" not in text.split("#}")[-1]


# --- install.sh.j2 / remove.sh.j2 --------------------------------------------------------------------

@pytest.fixture
def fake_host(tools: dict[str, str], tmp_path: Path) -> dict[str, Path]:
    """An nginx config dir with Debian's layout (and its default site), and logging systemctl/apt-get stubs."""
    require_root("the install scripts run as root")
    etc, bin_dir, state = tmp_path / "etc-nginx", tmp_path / "bin", tmp_path / "state"
    for d in (etc / "sites-available", etc / "sites-enabled", bin_dir, state):
        d.mkdir(parents=True)
    (etc / "sites-available" / "default").write_text("server { listen 127.0.0.1:1 default_server; }\n")
    (etc / "sites-enabled" / "default").symlink_to(etc / "sites-available" / "default")
    (etc / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nevents {{ worker_connections 8; }}\n"
        f"http {{ include {etc}/sites-enabled/*; }}\n")
    calls = tmp_path / "calls.log"
    for tool in ("systemctl", "apt-get"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (bin_dir / tool).chmod(0o755)
    return {"etc": etc, "bin": bin_dir, "state": state, "calls": calls,
            "nginx_dir": Path(tools["nginx"]).parent, "tmp": tmp_path}


def run_script(host: dict[str, Path], script: str, *args: str) -> subprocess.CompletedProcess:
    """Run a rendered script as the control plane does (bash, no stdin), on the fake host."""
    env = {"PATH": f"{host['bin']}:{host['nginx_dir']}:/usr/bin:/bin", "NGINX_DIR": str(host["etc"]),
           "KTHW_STATE_DIR": str(host["state"])}
    return subprocess.run(["bash", "-c", script, "kthw-nginx-healthz", *args], stdin=subprocess.DEVNULL,
                          env=env, capture_output=True, text=True, timeout=60)


def install_script(site: str) -> str:
    return render("nginx/install.sh.j2", site=site)


def test_install_is_idempotent_and_removes_the_default_site(fake_host, pki):
    site = render_site(1, 6443, pki.ca)
    for _ in range(2):
        done = run_script(fake_host, install_script(site))
        assert done.returncode == 0, done.stderr
    etc = fake_host["etc"]
    assert (etc / "sites-available" / "kubernetes-healthz").read_text() == site
    assert (etc / "sites-enabled" / "kubernetes-healthz").resolve() == etc / "sites-available" / "kubernetes-healthz"
    assert not (etc / "sites-enabled" / "default").exists()
    calls = fake_host["calls"].read_text().splitlines()
    assert not [c for c in calls if c.startswith("apt-get")]  # nginx was present: nothing installed
    assert calls.count("systemctl enable --no-reload nginx") == 2 and calls.count("systemctl reload-or-restart nginx") == 2


def test_install_takes_a_site_file_and_keeps_the_previous_site_when_nginx_t_fails(fake_host, pki):
    good = fake_host["tmp"] / "good.conf"
    good.write_text(render_site(1, 6443, pki.ca))
    assert run_script(fake_host, install_script("# placeholder\n"), str(good)).returncode == 0
    bad = run_script(fake_host, install_script("server { bogus_directive on; }\n"))
    assert bad.returncode != 0
    assert "restoring" in bad.stderr
    assert (fake_host["etc"] / "sites-available" / "kubernetes-healthz").read_text() == good.read_text()
    assert fake_host["calls"].read_text().count("reload-or-restart") == 1  # not reloaded with the bad site


def test_install_refuses_an_empty_site(fake_host):
    empty = fake_host["tmp"] / "empty.conf"
    empty.write_text("")
    assert run_script(fake_host, install_script("x\n"), str(empty)).returncode != 0
    assert not (fake_host["etc"] / "sites-available" / "kubernetes-healthz").exists()


def test_install_scripts_pass_shellcheck(tmp_path):
    shellcheck = require("shellcheck", "shellcheck")
    (tmp_path / "install.sh").write_text(render("nginx/install.sh.j2", site="server {}\n", probe_host=HOST))
    (tmp_path / "remove.sh").write_text(render("nginx/remove.sh.j2"))
    checked = subprocess.run([shellcheck, "-s", "bash", str(tmp_path / "install.sh"), str(tmp_path / "remove.sh")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout


def test_remove_is_tolerant(fake_host, pki):
    assert run_script(fake_host, install_script(render_site(1, 6443, pki.ca))).returncode == 0
    remove = render("nginx/remove.sh.j2")
    for _ in range(2):  # the second run finds nothing to remove
        done = run_script(fake_host, remove)
        assert done.returncode == 0, done.stderr
    assert not (fake_host["etc"] / "sites-enabled" / "kubernetes-healthz").exists()
    assert not (fake_host["etc"] / "sites-available" / "kubernetes-healthz").exists()
    assert "systemctl reload nginx" in fake_host["calls"].read_text()  # nginx was not ours: kept, reloaded
    gone = dict(fake_host, nginx_dir=fake_host["bin"])  # a host without nginx at all
    done = run_script(gone, remove)
    assert done.returncode == 0, done.stderr
    assert "not installed" in done.stderr


def test_remove_purges_nginx_that_kthw_installed(fake_host):
    (fake_host["state"] / "nginx-installed-by-kthw").touch()
    done = run_script(fake_host, render("nginx/remove.sh.j2"))
    assert done.returncode == 0, done.stderr
    calls = fake_host["calls"].read_text()
    assert "systemctl disable --now nginx" in calls and "apt-get" in calls and "purge" in calls
    assert not (fake_host["state"] / "nginx-installed-by-kthw").exists()


def test_install_installs_nginx_with_apt_only_when_missing(fake_host):
    without_nginx = dict(fake_host, nginx_dir=fake_host["bin"])
    done = run_script(without_nginx, install_script("server {}\n"))
    assert done.returncode != 0  # the apt-get stub installs nothing, so nginx -t cannot run
    calls = fake_host["calls"].read_text()
    assert "apt-get -o DPkg::Lock::Timeout=300 update" in calls
    assert "install -y -q --no-install-recommends nginx" in calls
    assert (fake_host["state"] / "nginx-installed-by-kthw").exists()  # remove.sh will purge it
