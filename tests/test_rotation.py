"""Encryption key rotation (scripts/operate.py) stopped after any config write or any `up`, even one that dies
half-way, and then re-run: it finishes, and no Secret is ever left encrypted with a key the config lost."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import operate  # noqa: E402

K, HOST_KEY = "a2V5LWsta2V5LWsta2V5LWsta2V5LWsta2V5LWsta2U=", "aG9zdC1rZXktaG9zdC1rZXktaG9zdC1rZXktaG9zdC0="


class Cluster:
    """The stack's config and what the hosts do with it: each `up` makes the apiservers encrypt with
    kthw:encryptionKey and rewrites every Secret with it; an `up` that dies half-way rewrote only some."""

    def __init__(self, config: dict[str, str]):
        self.config = dict(config)
        self.secrets = {config.get(operate.KEY) or HOST_KEY}  # the keys some Secret is encrypted with
        self.ups = 0
        self.die_in_up: int | None = None

    def readable(self) -> set[str]:
        """Keys the apiservers can decrypt with: what the config lists, or the generated key if it lists none."""
        return {v for v in self.config.values() if v} or {HOST_KEY}

    def up(self, _stack) -> None:
        self.ups += 1
        lost = self.secrets - self.readable()
        assert not lost, f"up {self.ups}: Secrets encrypted with a key the config lost ({len(lost)})"
        encrypting = self.config.get(operate.KEY) or HOST_KEY
        if self.ups == self.die_in_up:
            self.secrets.add(encrypting)  # some Secrets rewritten, the others not
            raise RuntimeError("up died half-way")
        self.secrets = {encrypting}

    def stack(self):
        def get_all_config():
            return {f"kthw:{k}": SimpleNamespace(value=v) for k, v in self.config.items()}

        def remove_config(key):
            self.config.pop(key.removeprefix("kthw:"), None)
        return SimpleNamespace(name="test", get_all_config=get_all_config, remove_config=remove_config)


def run(cluster: Cluster, monkeypatch, stop_at: str | None = None) -> None:
    monkeypatch.setattr(operate, "up", cluster.up)
    monkeypatch.setattr(operate.stacks, "set_secret_config",
                        lambda _s, key, value: cluster.config.__setitem__(key.removeprefix("kthw:"), value))
    monkeypatch.setattr(operate, "on_a_controller", lambda *_: ("controller-0", b""))
    monkeypatch.setattr(operate, "_encrypting_key", lambda _: ("secretbox", HOST_KEY))
    if stop_at:
        monkeypatch.setenv("KTHW_ROTATE_STOP_AT", stop_at)
    else:
        monkeypatch.delenv("KTHW_ROTATE_STOP_AT", raising=False)
    operate.rotate_encryption_key(cluster.stack())


STOPS = [f"{stage}-write-{n}" for stage, n in (("1/3", 1), ("1/3", 2), ("2/3", 1), ("2/3", 2), ("2/3", 3),
                                              ("3/3", 1))] + ["1/3-up", "2/3-up", "3/3-up"]


@pytest.mark.parametrize("initial", [{operate.KEY: K}, {}], ids=["configured key", "generated key"])
@pytest.mark.parametrize("stop", STOPS + [f"dies in up {n}" for n in (1, 2, 3)])
def test_a_rotation_stopped_anywhere_finishes_when_run_again(initial, stop, monkeypatch):
    cluster = Cluster(initial)
    if stop.startswith("dies in up"):
        cluster.die_in_up = int(stop.rsplit(" ", 1)[1])
        with pytest.raises(RuntimeError):
            run(cluster, monkeypatch)
    else:
        with pytest.raises(SystemExit, match="stopped at"):
            run(cluster, monkeypatch, stop_at=stop)
    cluster.die_in_up = None
    run(cluster, monkeypatch)  # the operator runs it again
    [new_key] = cluster.config.values()
    assert set(cluster.config) == {operate.KEY} and new_key not in (K, HOST_KEY)
    assert cluster.secrets == {new_key}


def test_every_stop_point_exists():
    """The fault points the test uses are the ones the rotation passes (a renamed point would make a stop a no-op)."""
    seen: list[str] = []
    cluster = Cluster({operate.KEY: K})
    original = operate._fault
    operate._fault = seen.append
    try:
        with pytest.MonkeyPatch.context() as mp:
            run(cluster, mp)
    finally:
        operate._fault = original
    assert sorted(seen) == sorted(STOPS)


def test_twice_in_a_row_rotates_twice(monkeypatch):
    cluster = Cluster({operate.KEY: K})
    run(cluster, monkeypatch)
    first = cluster.config[operate.KEY]
    run(cluster, monkeypatch)
    assert cluster.config[operate.KEY] not in (first, K) and cluster.ups == 6
    assert list(itertools.chain(cluster.config)) == [operate.KEY]


def test_a_downloaded_snapshot_is_private_whatever_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        existing = tmp_path / "again.db"
        existing.write_bytes(b"old")
        existing.chmod(0o644)
        for path in (tmp_path / "new.db", existing):
            operate._write_private(path, b"every Secret")
            assert path.read_bytes() == b"every Secret" and path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
