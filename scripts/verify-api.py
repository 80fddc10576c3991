"""Verify the API through the load balancer: GET /readyz answers ok and GET /version the expected version, trusting
only the cluster CA (read from stdin).

Usage: python3 verify-api.py URL EXPECTED_VERSION [DEADLINE_SECONDS]. Polls every POLL_SECONDS until the deadline.
"""
import json
import ssl
import sys
import time
import urllib.error
import urllib.request

POLL_SECONDS = 0.5
REQUEST_SECONDS = 5


def get(url: str, context: ssl.SSLContext) -> bytes:
    with urllib.request.urlopen(url, context=context, timeout=REQUEST_SECONDS) as response:
        return response.read()


def check(url: str, expected: str, context: ssl.SSLContext) -> str:
    """'' when the API is ready and runs `expected`, otherwise what is wrong."""
    ready = get(f"{url}/readyz", context).decode(errors="replace").strip()
    if ready != "ok":
        return f"/readyz answers {ready!r}"
    version = json.loads(get(f"{url}/version", context))["gitVersion"]
    return "" if version == expected else f"/version answers {version}, expected {expected}"


def main() -> int:
    url, expected = sys.argv[1], sys.argv[2]
    deadline_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 60
    context = ssl.create_default_context(cadata=sys.stdin.read())
    start = time.monotonic()
    attempt, error = 0, ""
    while attempt < deadline_seconds / POLL_SECONDS + 1:
        attempt += 1
        try:
            error = check(url, expected, context)
            if not error:
                print(f"{url} is ready and answers {expected} (attempt {attempt}, {time.monotonic() - start:.1f} s)")
                return 0
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # an answer that waiting will not change
                print(f"{exc.url}: refused: HTTP {exc.code} {exc.reason}", file=sys.stderr)
                return 1
            error = f"{exc.url}: HTTP {exc.code} {exc.reason}"
        except Exception as exc:  # noqa: BLE001 - report whatever stopped the request
            error = str(exc)
        if time.monotonic() - start >= deadline_seconds:
            break
        time.sleep(POLL_SECONDS)
    print(f"{url} not verified within {deadline_seconds:g} s ({attempt} attempts): {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
