"""What lands on each controller: the PKI's file table (`components.pki.table.FILES`) resolved for one node,
and packed into one secret payload for the files step's stdin."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from dataclasses import dataclass
from typing import Any, Mapping

import pulumi

from components.pki import Pki
from components.pki.table import FILES, HostFile
from components.render import content_hash, render


@dataclass(frozen=True)
class NodeFiles:
    """One node's files: path -> content (secrets stay secret), mode and readers, from the file table; and the
    paths the table places on other nodes only (removed from this one)."""

    contents: dict[str, pulumi.Input[str]]
    modes: dict[str, int]
    readers: dict[str, tuple[str, ...]]
    placed: tuple[HostFile, ...] = ()
    absent: tuple[str, ...] = ()

    def read_by(self, component: str) -> dict[str, pulumi.Input[str]]:
        """The files `component` reads: a change of any of them restarts it."""
        return {path: c for path, c in self.contents.items() if component in self.readers[path]}


def node_files(pki: Pki, node: str, first: bool, values: Mapping[str, Any]) -> NodeFiles:
    """`node`'s files (`first`: the first controller, which alone gets the first-only ones; `values`: what the
    templates take)."""
    placed = tuple(f for f in FILES if first or not f.first_only)
    return NodeFiles(contents={f.path: content(pki, node, f.holds, values) for f in placed},
                     modes={f.path: f.mode for f in placed}, readers={f.path: f.readers for f in placed},
                     placed=placed, absent=tuple(f.path for f in FILES if f not in placed))


def content(pki: Pki, node: str, holds: str, values: Mapping[str, Any]) -> pulumi.Input[str]:
    """What a file table row's `holds` names, for `node` (per-node certificates are the node's own; templates are
    rendered with `values`)."""
    kind, _, name = holds.partition(":")
    if kind in ("cert", "key"):
        pair = pki.node_certs[name][node] if name in pki.node_certs else pki.certs[name]
        return pair.cert_pem if kind == "cert" else pair.key_pem
    if kind in ("ca", "ca-key"):
        return pki.cas[name].cert_pem if kind == "ca" else pki.cas[name].key_pem
    if kind == "kubeconfig":
        return pki.kubeconfigs[name]
    if kind == "template":
        return render(name, **values)
    return {"service-account-public": pki.service_account_public_pem,
            "service-account-key": pki.service_account_key_pem,
            "encryption-config": pki.encryption_config}[kind]


def pack(files: Mapping[str, str], modes: Mapping[str, int]) -> str:
    """A deterministic tar of `files` (absolute paths), base64-encoded, built in memory only."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            data = files[path].encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mtime, info.uid, info.gid, info.mode = len(data), 0, 0, 0, modes[path]
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


def payload(files: NodeFiles) -> pulumi.Output[str]:
    """The secret stdin of a node's files step."""
    paths = sorted(files.contents)
    return pulumi.Output.secret(pulumi.Output.all(*[files.contents[p] for p in paths]).apply(
        lambda contents: pack(dict(zip(paths, contents)), files.modes)))


def fingerprint(files: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """A hash of the files' content: not secret (it reveals nothing), used to trigger restarts."""
    paths = sorted(files)
    return pulumi.Output.unsecret(pulumi.Output.all(*[files[p] for p in paths]).apply(
        lambda contents: content_hash(*[f"{p}\n{c}" for p, c in zip(paths, contents)])))


def sha256(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def digests(files: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[dict[str, str]]:
    """path -> sha256 of each file as it lands on the host; not secret (a digest reveals nothing)."""
    paths = sorted(files)
    return pulumi.Output.unsecret(pulumi.Output.all(*[files[p] for p in paths]).apply(
        lambda contents: {p: sha256(c) for p, c in zip(paths, contents)}))
