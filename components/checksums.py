"""The published checksum files of a release, parsed strictly (no Pulumi here: scripts/update-checksums uses it
on a plain python3 too)."""
from __future__ import annotations

import re

SHA256_FILE = "sha256"  # <artifact>.sha256: the bare hex digest, optionally followed by "  <file name>"
SHA256SUMS = "sha256sums"  # SHA256SUMS: one "<hex>  <file name>" line per file of the release
FORMATS = (SHA256_FILE, SHA256SUMS)
HEX64 = re.compile(r"[0-9a-f]{64}")


def parse_checksum(text: str, fmt: str, file_name: str) -> str:
    """The digest of `file_name` in a checksum file of format `fmt`; ValueError says what is wrong with it."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if fmt == SHA256_FILE:
        if len(lines) != 1 or len(lines[0]) > 2 or (len(lines[0]) == 2 and lines[0][1].lstrip("*") != file_name):
            raise ValueError(f"must hold one digest (optionally followed by {file_name}), got {text[:200]!r}")
        digest = lines[0][0]
    elif fmt == SHA256SUMS:
        found = [fields[0] for fields in lines if len(fields) == 2 and fields[1].lstrip("*") == file_name]
        if len(found) != 1:
            raise ValueError(f"must hold exactly one line for {file_name}, has {len(found)}")
        digest = found[0]
    else:
        raise ValueError(f"unknown checksum format {fmt!r} (known: {', '.join(FORMATS)})")
    if not HEX64.fullmatch(digest):
        raise ValueError(f"holds {digest[:80]!r} for {file_name}, not a sha256 (64 lowercase hex characters)")
    return digest
