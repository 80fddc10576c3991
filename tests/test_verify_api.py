"""scripts/verify-api.py against a real HTTPS server on loopback that answers as an apiserver behind an LB does."""
import http.server
import json
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tls_mocks import ca_and_server_cert

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "verify-api.py"
VERSION = "v1.34.2"


class Api:
    """/readyz fails `not_ready` times (as an LB with no backend up yet, or a starting apiserver), then answers
    `readyz`; /version answers `version` (or `status`)."""

    def __init__(self, tmp: Path, not_ready: int = 0, version: str = VERSION, status: int = 200, readyz: str = "ok"):
        self.requests: list[str] = []
        ca, key_and_cert = ca_and_server_cert("kthw test cluster CA", "127.0.0.1")
        self.ca = ca
        (tmp / "server.pem").write_text(key_and_cert)
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                api.requests.append(self.path)
                if status != 200:
                    code, body = status, "forbidden"
                elif self.path == "/readyz":
                    failed = api.requests.count("/readyz") <= not_ready
                    code, body = (500, "[-]etcd failed") if failed else (200, readyz)
                elif self.path == "/version":
                    code, body = 200, json.dumps({"gitVersion": version})
                else:
                    code, body = 404, "not found"
                self.send_response(code)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / "server.pem")
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def verify(self, deadline: float = 10, ca: str = "") -> tuple[subprocess.CompletedProcess, float]:
        start = time.monotonic()
        result = subprocess.run([sys.executable, str(SCRIPT), self.url, VERSION, str(deadline)], input=ca or self.ca,
                                text=True, capture_output=True, timeout=deadline + 30)
        return result, time.monotonic() - start

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(tmp_path, request):
    server = Api(tmp_path, **getattr(request, "param", {}))
    yield server
    server.close()


@pytest.mark.parametrize("api", [{"not_ready": 3}], indirect=True)
def test_waits_until_readyz_is_ok_then_checks_the_version(api):
    result, _ = api.verify()
    assert result.returncode == 0, result.stderr
    assert "(attempt 4," in result.stdout
    assert api.requests == ["/readyz"] * 4 + ["/version"]


@pytest.mark.parametrize("api", [{"version": "v1.33.0"}], indirect=True)
def test_another_version_fails_at_the_deadline_naming_both(api):
    result, seconds = api.verify(deadline=1.5)
    assert result.returncode == 1
    assert "not verified within 1.5 s" in result.stderr and "v1.33.0, expected v1.34.2" in result.stderr
    assert 1.5 <= seconds < 10


@pytest.mark.parametrize("api", [{"readyz": "not yet"}], indirect=True)
def test_a_readyz_other_than_ok_is_not_ready(api):
    result, _ = api.verify(deadline=1)
    assert result.returncode == 1 and "/readyz answers 'not yet'" in result.stderr


@pytest.mark.parametrize("api", [{"status": 403}], indirect=True)
def test_a_refusal_fails_at_once(api):
    result, seconds = api.verify(deadline=30)
    assert result.returncode == 1 and "refused: HTTP 403" in result.stderr
    assert seconds < 10 and api.requests == ["/readyz"]


def test_only_the_cluster_ca_is_trusted(api):
    other_ca, _ = ca_and_server_cert("another CA", "127.0.0.1")
    result, _ = api.verify(deadline=1, ca=other_ca)
    assert result.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert api.requests == []
