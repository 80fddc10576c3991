"""The local stack's liveness resources (components/local/liveness.py): the provider's create, read, diff and
update against a real process this test starts (a `sleep` with a pidfile and a marker in its command line),
real files and /sys; and `RefreshingMocks`, which plays the engine's part for them (used by the e2e tests)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from components.local import liveness
from components.local.liveness import LivenessProvider
from tls_mocks import RealTls


class RefreshingMocks(RealTls):
    """RealTls, plus what the engine does with each `-liveness` dynamic resource, through the real provider:
    create it the first time; afterwards, when `refresh` is on, `read` it first (as `up --refresh` does), then
    `diff` against the program's inputs and `update` when it differs. One instance is one stack's state."""

    def __init__(self) -> None:
        super().__init__()
        self.refresh = True
        self.state: dict[str, tuple[str, dict]] = {}

    def new_resource(self, args):
        if not (args.typ == "pulumi-python:dynamic:Resource" and args.name.endswith("-liveness")):
            return super().new_resource(args)
        provider = LivenessProvider()
        news = {k: v for k, v in args.inputs.items() if k != "__provider"}
        if args.name not in self.state:
            created = provider.create(news)
            self.state[args.name] = (created.id, created.outs)
        else:
            id_, outs = self.state[args.name]
            if self.refresh:
                outs = provider.read(id_, outs).outs
            if provider.diff(id_, outs, news).changes:
                outs = provider.update(id_, outs, news).outs
            self.state[args.name] = (id_, outs)
        return self.state[args.name]


@pytest.fixture
def sleeper(tmp_path):
    """A real process with a unique marker in its command line, its pid in a pidfile; killed at the end."""
    marker = f"kthw-liveness-test-{uuid.uuid4().hex[:12]}"
    process = subprocess.Popen(["bash", "-c", f"exec -a {marker} sleep 600"])
    pidfile = tmp_path / "part.pid"
    pidfile.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + 10
    while marker not in Path(f"/proc/{process.pid}/cmdline").read_bytes().decode(errors="replace"):
        assert time.monotonic() < deadline, "the test process never showed its marker"
        time.sleep(0.02)
    yield process, pidfile, marker
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def props(checks, generation_file: Path) -> dict:
    """What the program passes (generation is an output only: None is not sent)."""
    return {"part": "test part", "checks": checks, "generation_file": str(generation_file), "alive": True,
            "failures": []}


def test_a_live_part_stays_a_dead_part_is_named_and_its_update_bumps_the_generation(sleeper, tmp_path):
    process, pidfile, marker = sleeper
    generation_file = tmp_path / "generation"
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    checks = [liveness.running(pidfile, marker), liveness.directory(root / "etc")]
    provider = LivenessProvider()
    inputs = props(checks, generation_file)

    created = provider.create(inputs)
    assert created.id == "test part"
    assert (created.outs["generation"], created.outs["alive"], created.outs["failures"]) == (1, True, [])

    seen = provider.read(created.id, created.outs).outs
    assert (seen["alive"], seen["failures"], seen["generation"]) == (True, [], 1)
    assert not provider.diff(created.id, seen, inputs).changes  # alive: no diff, no update

    process.kill()
    process.wait(timeout=10)
    dead = provider.read(created.id, seen).outs
    assert dead["alive"] is False and dead["generation"] == 1
    assert dead["failures"] == [f"no live process from {pidfile} with {marker!r} in its command line"]
    assert provider.diff(created.id, dead, inputs).changes  # the input says alive: a dead part is a diff
    repaired = provider.update(created.id, dead, inputs).outs
    assert (repaired["generation"], repaired["alive"], repaired["failures"]) == (2, True, [])
    assert repaired["checks"] == checks

    # The root dir going too is named as well; each failed check is one line.
    (root / "etc").rmdir()
    both = provider.read(created.id, repaired).outs
    assert len(both["failures"]) == 2 and both["failures"][1] == f"{root / 'etc'} is not a directory"
    assert provider.update(created.id, both, inputs).outs["generation"] == 3


def test_a_zombie_or_a_reused_pid_is_not_alive(sleeper, tmp_path):
    process, pidfile, marker = sleeper
    assert liveness.pid_alive(pidfile, marker)
    os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed process never became a zombie"
        time.sleep(0.02)
    assert not liveness.pid_alive(pidfile, marker)  # not reaped yet: a zombie is dead
    process.wait(timeout=10)
    assert not liveness.pid_alive(pidfile, marker)
    pidfile.write_text(f"{os.getpid()}\n")  # a live process, but not the part's (its pid reused)
    assert not liveness.pid_alive(pidfile, marker)
    pidfile.write_text("not a pid\n")
    assert not liveness.pid_alive(pidfile, marker)
    assert not liveness.pid_alive(tmp_path / "missing.pid", marker)


def test_create_keeps_a_live_parts_recorded_generation_and_repairs_a_dead_one(sleeper, tmp_path):
    """A stack made before these resources existed: its commands carry the generation their part recorded."""
    process, pidfile, marker = sleeper
    generation_file = tmp_path / "generation"
    generation_file.write_text("4\n")
    provider = LivenessProvider()
    inputs = props([liveness.running(pidfile, marker)], generation_file)
    assert provider.create(inputs).outs["generation"] == 4  # alive: its command's environment stays as it was
    process.kill()
    process.wait(timeout=10)
    assert provider.create(inputs).outs["generation"] == 5  # dead: the next one, so its command rebuilds it
    generation_file.unlink()
    assert provider.create(inputs).outs["generation"] == 1  # a new part: the first generation


def test_changed_checks_update_the_record_without_a_repair(sleeper, tmp_path):
    _, pidfile, marker = sleeper
    provider = LivenessProvider()
    inputs = props([liveness.running(pidfile, marker)], tmp_path / "generation")
    outs = provider.read("p", provider.create(inputs).outs).outs
    moved = {**inputs, "checks": [liveness.running(pidfile, marker), liveness.exists(str(tmp_path))]}
    assert provider.diff("p", outs, moved).changes
    updated = provider.update("p", outs, moved).outs
    assert updated["generation"] == 1 and updated["checks"] == moved["checks"]


def test_each_kind_of_check(tmp_path):
    config = tmp_path / "nginx.conf"
    config.write_text("root /srv/mirror;\n")
    assert liveness.failures([liveness.exists(str(config)), liveness.contains(config, "root /srv/mirror;")]) == []
    assert liveness.failures([liveness.exists(str(tmp_path / "gone")), liveness.contains(config, "listen x;"),
                              liveness.contains(tmp_path / "gone", "x")]) == [
        f"{tmp_path / 'gone'} is missing", f"{config} lacks 'listen x;'",
        f"{tmp_path / 'gone'} cannot be read (FileNotFoundError)"]
    assert liveness.failures([liveness.directory(config)]) == [f"{config} is not a directory"]
    # A real interface with no master (loopback), and one that does not exist.
    bridged = [liveness.on_bridge("lo", "kt-test-br"), liveness.on_bridge("kt-nothing-0", "kt-test-br")]
    assert liveness.failures(bridged) == [
        "lo is not on kt-test-br (no master)", "kt-nothing-0 is not on kt-test-br (no master)"]
    assert liveness.failures([{"kind": "guess"}]) == ["unknown check {'kind': 'guess'}"]
    assert liveness.alive([]) and not liveness.alive([liveness.exists(str(tmp_path / "gone"))])


def test_the_parts_checks(tmp_path):
    from components.local.layout import LocalLayout

    layout = LocalLayout.build("kt", ["controller-0"], "198.18.0.0/24", state_root=tmp_path, cache_root=tmp_path)
    host = layout.hosts[0]
    assert liveness.network_checks(layout) == [liveness.exists("/sys/class/net/kt-kt-br")]
    assert liveness.host_checks(layout, host) == [
        liveness.running(host.pidfile, "kthw-kt-controller-0"), liveness.exists("/run/netns/kthw-kt-controller-0"),
        liveness.on_bridge("kt-kt-0", "kt-kt-br"), liveness.directory(host.dir / "root" / "etc")]
    assert liveness.lb_checks(layout) == [liveness.running(layout.lb_dir / "haproxy.pid",
                                                           str(layout.lb_dir / "haproxy.cfg"))]
    config = layout.file_server_dir / "nginx.conf"
    assert liveness.file_server_checks(layout, Path("/m")) == [
        liveness.running(layout.file_server_dir / "http.pid", f"-c {config}"), liveness.contains(config, "root /m;"),
        liveness.contains(config, "listen 198.18.0.1:8443 ssl;")]
    # Nothing of this stack exists: every part is dead, for a reason each.
    assert len(liveness.failures(liveness.host_checks(layout, host))) == 4


def test_the_provider_holds_nothing(tmp_path):
    """It is pickled into the state: by reference, with no data of its own (no paths, no keys)."""
    import base64

    from pulumi.dynamic.dynamic import serialize_provider

    pickled = base64.b64decode(serialize_provider(LivenessProvider()))
    assert b"components.local.liveness" in pickled and b"LivenessProvider" in pickled
    assert len(pickled) < 120, pickled


def test_refreshing_mocks_follow_the_engine(sleeper, tmp_path):
    """The engine stand-in: no refresh, no look; with refresh, a dead part's generation goes up once."""
    from pulumi.runtime import mocks as pulumi_mocks

    process, pidfile, marker = sleeper
    inputs = {**props([liveness.running(pidfile, marker)], tmp_path / "generation"), "__provider": "p"}
    mocks = RefreshingMocks()

    def up() -> int:
        args = pulumi_mocks.MockResourceArgs("pulumi-python:dynamic:Resource", "x-liveness", inputs, None, None, False)
        return mocks.new_resource(args)[1]["generation"]

    assert up() == 1 and up() == 1
    process.kill()
    process.wait(timeout=10)
    mocks.refresh = False
    assert up() == 1  # a plain `up`: nothing is looked at
    mocks.refresh = True
    assert up() == 2 and mocks.state["x-liveness"][1]["alive"] is True
    assert up() == 3  # still dead on the next refresh: another repair
