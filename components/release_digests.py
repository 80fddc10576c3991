"""The sha256 of every release artifact the hosts install, resolved once and pinned in the stack's state.

A digest pinned in components/releases.json always wins. Any other is read, at the resource's `create` (or at
the `update` that first asks for its version), from the checksum file published beside the artifact: the
`<binary>.sha256` of dl.k8s.io (the bare hex digest) or the `SHA256SUMS` of an etcd release (`<hex>  <file>`
lines; only the line for exactly the archive's name counts). The fetch is HTTPS only, trusts the system CAs plus
the release source's own CA (the local stack's mirror), and is bounded in time. A preview never fetches: a new
version's digests are simply unknown until `up`.

Once in the state, a digest stays: `refresh` does not look again, and an update resolves only the
(name, version) pairs the state does not have. A pair looked up again (its checksum URL moved, e.g. a mirror at
a new address) must publish the same digest, or the update is refused; the stack never switches silently.

The provider object is pickled into the state: it holds two numbers (its time bounds), nothing else.
"""
from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from concurrent import futures
from typing import Any, Callable, Mapping, Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, \
    UpdateResult

from components.checksums import FORMATS, HEX64, SHA256_FILE, SHA256SUMS, parse_checksum
from components.infra import ReleaseSource
from components.releases import ETCD_ARTIFACT, KUBERNETES_BINARIES

PINNED = "releases.json"  # the source recorded for a digest pinned in components/releases.json
FETCH_DEADLINE_SECONDS = 20  # per checksum file, every try included
FETCH_TRIES = 3
MAX_CHECKSUM_BYTES = 1 << 20
HOW_TO_PIN = ("pin the digests in components/releases.json (scripts/update-checksums on a machine that reaches "
              "the release site), or set kthw:requirePinnedDigests true to refuse unpinned versions up front")
_RETRY_HTTP = (408, 425, 429, 500, 502, 503, 504)


class DigestError(RuntimeError):
    """A digest could not be resolved, or the published one changed: the message names every URL."""


def digest_key(name: str, version: str) -> str:
    """How an artifact is keyed in the resource's inputs and outputs: "kube-apiserver@v1.36.3"."""
    return f"{name}@{version}"


def wanted(releases: ReleaseSource, kubernetes_version: str, etcd_version: str) -> dict[str, dict[str, str]]:
    """The artifacts the control plane installs, keyed by `digest_key`: where each is and where its digest is."""
    artifacts = {digest_key(name, kubernetes_version): {
        "name": name, "version": kubernetes_version, "url": releases.kubernetes_url(name, kubernetes_version),
        "checksum_url": releases.kubernetes_checksum_url(name, kubernetes_version), "format": SHA256_FILE,
        "file": name} for name in KUBERNETES_BINARIES}
    artifacts[digest_key(ETCD_ARTIFACT, etcd_version)] = {
        "name": ETCD_ARTIFACT, "version": etcd_version, "url": releases.etcd_url(etcd_version),
        "checksum_url": releases.etcd_checksum_url(etcd_version), "format": SHA256SUMS,
        "file": releases.etcd_archive(etcd_version)}
    return artifacts


def inputs(releases: ReleaseSource, kubernetes_version: str, etcd_version: str) -> dict[str, Any]:
    """The resource's inputs: the wanted artifacts, the pins among them, and the release source's own CA."""
    artifacts = wanted(releases, kubernetes_version, etcd_version)
    pinned = {digest_key(n, v): digest for (n, v), digest in releases.pinned.items()}
    return {"artifacts": artifacts, "pinned": {key: pinned[key] for key in artifacts if key in pinned},
            "ca_pem": releases.ca_pem}


# ---- fetching the published checksum files --------------------------------------------------------------

class _HttpsOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 - urllib's hook
        if not newurl.startswith("https://"):
            raise urllib.error.URLError(f"refused a redirect off HTTPS to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def https_context(ca_pem: Optional[str]) -> ssl.SSLContext:
    """Verify servers against the system CAs plus `ca_pem` (the release source's own CA), if any."""
    context = ssl.create_default_context()
    if ca_pem:
        try:
            context.load_verify_locations(cadata=ca_pem)
        except (ssl.SSLError, ValueError) as err:
            raise DigestError(f"the release source's CA is not a PEM certificate ({err})") from err
    return context


def fetch_text(url: str, context: ssl.SSLContext, deadline_seconds: float, tries: int = FETCH_TRIES) -> str:
    """GET `url` over HTTPS, a few tries with backoff, all within `deadline_seconds` (errors leave the URL to
    the caller, who names it)."""
    if not url.startswith("https://"):
        raise DigestError("checksum files are fetched over HTTPS only")
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _HttpsOnly())
    end = time.monotonic() + deadline_seconds
    problem = "no try fitted in the deadline"
    for attempt in range(tries):
        try:
            with opener.open(url, timeout=max(end - time.monotonic(), 0.1)) as response:
                body = b""
                while len(body) <= MAX_CHECKSUM_BYTES and time.monotonic() < end:
                    chunk = response.read(65536)
                    if not chunk:
                        return body.decode("utf-8", errors="replace")
                    body += chunk
                problem = "no complete answer within the deadline (or larger than a checksum file)"
        except urllib.error.HTTPError as err:
            problem = f"HTTP {err.code} {err.reason}"
            if err.code not in _RETRY_HTTP:
                break
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            problem = f"{type(reason).__name__}: {reason}"
            if isinstance(reason, ssl.SSLCertVerificationError):
                break  # an untrusted server stays untrusted
        pause = min(0.5 * 2 ** attempt, end - time.monotonic())
        if pause <= 0 or attempt == tries - 1:
            break
        time.sleep(pause)
    raise DigestError(f"{problem} (deadline {deadline_seconds:g} s, {tries} tries)")


# ---- resolving -------------------------------------------------------------------------------------------

Fetch = Callable[[Mapping[str, Any]], str]  # an artifact (see `wanted`) -> its published digest


def resolve(artifacts: Mapping[str, Mapping[str, Any]], pinned: Mapping[str, str],
            known: Mapping[str, Mapping[str, str]], fetch: Fetch,
            wait_seconds: Optional[float] = None) -> dict[str, dict[str, str]]:
    """Every digest on record, `known` (the state's) plus the artifacts': {key: {"sha256", "source"}}.

    A pinned digest wins; a known one whose source is its checksum URL (or the pin) stays; the others are
    fetched in parallel, all within `wait_seconds`. A known pair fetched again must not have changed.
    """
    records = {key: dict(record) for key, record in known.items()}
    missing = {}
    for key, artifact in artifacts.items():
        if key in pinned:
            records[key] = {"sha256": pinned[key], "source": PINNED}
        elif records.get(key, {}).get("source") not in (artifact["checksum_url"], PINNED):
            missing[key] = artifact
    problems = []
    pool = futures.ThreadPoolExecutor(max_workers=max(len(missing), 1), thread_name_prefix="release-digest")
    try:
        jobs = {pool.submit(fetch, artifact): key for key, artifact in missing.items()}
        _, late = futures.wait(jobs, timeout=wait_seconds)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for job, key in sorted(jobs.items(), key=lambda item: item[1]):
        artifact = missing[key]
        where = f"{artifact['name']} {artifact['version']} ({artifact['checksum_url']})"
        if job in late:
            problems.append(f"{where}: no answer within {wait_seconds:g} s")
            continue
        try:
            digest = job.result()
        except Exception as err:  # noqa: BLE001 - every failure is reported, each naming its URL
            problems.append(f"{where}: {err}")
            continue
        before = known.get(key, {}).get("sha256")
        if before and before != digest:
            problems.append(f"refused: the published digest of {where} changed from {before} to {digest}; the "
                            f"stack keeps {before} (pin the new one in components/releases.json if it is right)")
            continue
        records[key] = {"sha256": digest, "source": artifact["checksum_url"]}
    if problems:
        raise DigestError("could not resolve the release digests:\n" + "\n".join(f"  - {p}" for p in problems)
                          + f"\nRetry, or {HOW_TO_PIN}.")
    return records


def outputs(props: Mapping[str, Any], known: Mapping[str, Mapping[str, str]], fetch: Fetch,
            wait_seconds: Optional[float] = None) -> dict[str, Any]:
    """The resource's outputs for its inputs `props`: `resolved` (every digest on record) and `digests` (the
    wanted artifacts')."""
    resolved = resolve(props["artifacts"], props.get("pinned") or {}, known, fetch, wait_seconds)
    return {**props, "resolved": resolved, "digests": {key: resolved[key]["sha256"] for key in props["artifacts"]}}


class _DigestsProvider(ResourceProvider):
    """Resolves at create and update (never in a preview, never on refresh); holds only its time bounds."""

    def __init__(self, deadline_seconds: float = FETCH_DEADLINE_SECONDS, tries: int = FETCH_TRIES):
        self.deadline_seconds, self.tries = deadline_seconds, tries

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure("artifacts", f"{key}: {problem}") for key, artifact in
                    (news.get("artifacts") or {}).items() for problem in _artifact_problems(artifact)]
        failures += [CheckFailure("pinned", f"{key}: {digest!r} is not 64 lowercase hex characters")
                     for key, digest in (news.get("pinned") or {}).items() if not HEX64.fullmatch(str(digest))]
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("release-digests", self._outputs(props, {}))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # The CA only matters to a fetch; a new one alone changes nothing on record.
        changed = any((olds.get(k) or {}) != (news.get(k) or {}) for k in ("artifacts", "pinned"))
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._outputs(news, olds.get("resolved") or {}))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)  # the state is the pin: a refresh looks nowhere

    def _outputs(self, props: dict[str, Any], known: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
        context = https_context(props.get("ca_pem") or None)

        def fetch(artifact: Mapping[str, Any]) -> str:
            text = fetch_text(artifact["checksum_url"], context, self.deadline_seconds, self.tries)
            try:
                return parse_checksum(text, artifact["format"], artifact["file"])
            except ValueError as err:
                raise DigestError(f"the checksum file {err}") from err

        return outputs(props, known, fetch, wait_seconds=self.deadline_seconds + 5)


def _artifact_problems(artifact: Mapping[str, Any]) -> list[str]:
    problems = [f"has no {field}" for field in ("name", "version", "url", "checksum_url", "format", "file")
                if not artifact.get(field)]
    if artifact.get("format") and artifact["format"] not in FORMATS:
        problems.append(f"has the unknown checksum format {artifact['format']!r}")
    if artifact.get("checksum_url") and not str(artifact["checksum_url"]).startswith("https://"):
        problems.append(f"checksum URL {artifact['checksum_url']} is not HTTPS")
    return problems


class ReleaseDigests(pulumi.dynamic.Resource):
    """digests: {"name@version": sha256} of every wanted artifact; resolved: every digest ever on record."""

    digests: pulumi.Output[dict]
    resolved: pulumi.Output[dict]

    def __init__(self, name: str, releases: ReleaseSource, kubernetes_version: str, etcd_version: str,
                 opts: Optional[pulumi.ResourceOptions] = None):
        props = {**inputs(releases, kubernetes_version, etcd_version), "digests": None, "resolved": None}
        super().__init__(_DigestsProvider(), name, props, opts)
