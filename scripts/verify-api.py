"""Verify the API through the load balancer: GET /version with the cluster CA (read from stdin).

Usage: python3 verify-api.py URL EXPECTED_VERSION [TRIES]. Retries a bounded number of times.
"""
import json
import ssl
import urllib.error
import sys
import time
import urllib.request


def main() -> int:
    url, expected = sys.argv[1], sys.argv[2]
    tries = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    context = ssl.create_default_context(cadata=sys.stdin.read())
    error = ""
    for attempt in range(1, tries + 1):
        try:
            with urllib.request.urlopen(f"{url}/version", context=context, timeout=5) as response:
                version = json.load(response)["gitVersion"]
            if version == expected:
                print(f"{url}/version answers {version} (attempt {attempt})")
                return 0
            error = f"answers {version}, expected {expected}"
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # an answer that waiting will not change
                print(f"{url}/version refused: HTTP {exc.code} {exc.reason}", file=sys.stderr)
                return 1
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - report whatever stopped the request
            error = str(exc)
        time.sleep(2)
    print(f"{url}/version not verified after {tries} tries: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
