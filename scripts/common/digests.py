"""Print the sha256 of each file given, as JSON lines {"file": path, "sha256": hex}; a missing file prints nothing.

Run on a controller by the drift probe (components/drift.py), as root: `python3 - CACHE PATH...` (every image that
boots with cloud-init has python3). A file whose stat key (device, inode, size, mtime and ctime in nanoseconds) is
the one CACHE recorded with a digest at the previous probe is not read again: any write to it moves its ctime,
which no tool can set back (only the clock can). Over 600 MB of release binaries sit on each controller, and
hashing them was most of a refresh's time. CACHE is rewritten (mode 0600, by rename) with this probe's keys only.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys


def stat_key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load(cache_path: str) -> dict:
    try:
        with open(cache_path) as cache:
            found = json.load(cache)
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def save(cache_path: str, entries: dict) -> None:
    os.makedirs(os.path.dirname(cache_path), mode=0o700, exist_ok=True)
    new = f"{cache_path}.new"
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(entries, out)
    os.chmod(new, 0o600)
    os.replace(new, cache_path)


def main(cache_path: str, paths: list[str]) -> None:
    cache, seen = load(cache_path), {}
    for path in paths:
        try:
            key = stat_key(os.stat(path))
            cached = cache.get(path)
            digest = cached[1] if isinstance(cached, list) and len(cached) == 2 and cached[0] == key \
                else sha256_of(path)
        except OSError:
            continue  # missing (or unreadable): the caller names it missing
        seen[path] = [key, digest]
        print(json.dumps({"file": path, "sha256": digest}))
    try:
        save(cache_path, seen)
    except OSError:
        pass  # the next probe reads everything again


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
