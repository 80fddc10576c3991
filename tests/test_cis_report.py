"""scripts/cis-report (scripts/cis.py) without a stack: its totals and exit status on the real recorded kube-bench
report (tests/data/kube-bench-cis-1.12.json: 54 PASS, 7 FAIL, 45 WARN), what it prints, what it copies beside
kube-bench, and what it does on a controller (a fake SSH client): everything it copied is removed, whatever fails."""
from __future__ import annotations

import copy
import io
import json
import re
import sys
import tarfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from components.paths import HOST

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import cis  # noqa: E402

DATA = ROOT / "tests" / "data" / "kube-bench-cis-1.12.json"
RECORDED = {"PASS": 54, "FAIL": 7, "WARN": 45, "INFO": 0}
RECORDED_FAILURES = ["1.1.1", "1.1.3", "1.1.5", "1.1.7", "1.1.12", "1.2.18", "1.2.30"]  # in the report's order


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(DATA.read_text())


@pytest.fixture(scope="module")
def checks(recorded) -> tuple[cis.Check, ...]:
    return tuple(cis.parse_report(recorded))


def fixed(checks) -> tuple[cis.Check, ...]:
    """The recorded checks with every FAIL made a PASS (what the templates of #17 give)."""
    return tuple(replace(c, status="PASS") if c.status == "FAIL" else c for c in checks)


# --- totals and exit status -------------------------------------------------------------------------------------

def test_totals_of_the_recorded_report_are_its_own(recorded, checks):
    assert cis.totals(list(checks)) == RECORDED
    assert cis.totals(list(checks)) == {s: recorded["Totals"][f"total_{s.lower()}"] for s in cis.STATUSES}
    report = cis.ControllerReport("controller-0", checks)
    assert report.totals == RECORDED
    assert [c.id for c in report.failures] == RECORDED_FAILURES
    assert all(c.scored for c in report.failures)  # every FAIL is an Automated check
    assert cis.totals([]) == {"PASS": 0, "FAIL": 0, "WARN": 0, "INFO": 0}  # every status named, even at 0


def test_exit_status_is_1_on_a_fail_0_without_and_2_when_a_controller_was_not_checked(checks):
    failing, clean = cis.ControllerReport("controller-0", checks), cis.ControllerReport("controller-1", fixed(checks))
    unreachable = cis.ControllerReport("controller-2", error="SSH: timed out")
    assert cis.exit_status([failing]) == 1
    assert cis.exit_status([clean]) == 0
    assert cis.exit_status([clean, failing]) == 1  # one controller's FAIL is the stack's
    assert cis.exit_status([clean, unreachable]) == 2  # an incomplete report is never clean
    assert cis.exit_status([failing, unreachable]) == 2
    assert cis.exit_status([]) == 2
    # WARN (Manual) and INFO never fail the report
    warn_only = tuple(replace(c, status="WARN") if c.status != "PASS" else c for c in checks)
    assert cis.exit_status([cis.ControllerReport("controller-0", warn_only)]) == 0


def test_the_text_report_has_each_controllers_totals_and_every_fail(checks):
    reports = [cis.ControllerReport("controller-0", checks),
               cis.ControllerReport("controller-1", fixed(checks), inactive=("kube-scheduler",)),
               cis.ControllerReport("controller-2", error="SSH: timed out")]
    lines = cis.render_text("prod", reports).splitlines()
    by_id = {c.id: c for c in checks}
    assert lines[0] == "CIS cis-1.12 (kube-bench: master, etcd, controlplane, policies) on stack prod:"
    assert lines[1] == "controller-0: PASS 54, FAIL 7, WARN 45, INFO 0"
    assert lines[2:9] == [f"  FAIL {i:7} [{by_id[i].target}] {by_id[i].text}" for i in RECORDED_FAILURES]
    assert lines[2] == ("  FAIL 1.1.1   [master] Ensure that the API server pod specification file permissions are "
                        "set to 600 or more restrictive (Automated)")
    assert lines[9] == "controller-1: PASS 61, FAIL 0, WARN 45, INFO 0"
    assert lines[10].startswith("  not running: kube-scheduler")
    assert lines[11] == "controller-2: not checked: SSH: timed out"
    assert lines[12] == "all 2 checked: PASS 115, FAIL 7, WARN 90, INFO 0; 1 not checked"
    assert "docs/hardening.md" in lines[13] and len(lines) == 14
    assert not [line for line in lines if line.startswith("  WARN")]  # WARNs are counted, not listed


def test_a_fail_whose_audit_found_nothing_says_so(checks):
    """kube-bench FAILs a check whose audit printed nothing (1.1.13/1.1.14 on a controller without an admin
    kubeconfig): the FAIL stays a FAIL, and its line says why."""
    emptied = tuple(replace(c, actual="") if c.id == "1.1.12" else c for c in checks)
    lines = cis.render_text("prod", [cis.ControllerReport("controller-1", emptied)]).splitlines()
    flagged = [line for line in lines if line.endswith(cis.NOTHING_FOUND)]
    assert [line.split()[1] for line in flagged] == ["1.1.12"]
    assert cis.exit_status([cis.ControllerReport("controller-1", emptied)]) == 1


def test_the_admin_credential_checks_do_not_apply_where_kthw_places_no_such_file(checks):
    """1.1.13/1.1.14 stat the administrative kubeconfig: on a controller other than the first there is none by
    design, kube-bench FAILs on the empty audit, and the report lists them as N/A with the reason. Where the file
    is there and wrong, they stay FAILs."""
    absent = tuple(replace(c, status="FAIL", actual="") if c.id in ("1.1.13", "1.1.14") else c for c in fixed(checks))
    report = cis.ControllerReport("controller-1", absent)
    assert report.failures == [] and [c.id for c in report.not_applicable] == ["1.1.13", "1.1.14"]
    assert cis.exit_status([report]) == 0
    lines = cis.render_text("prod", [report]).splitlines()
    assert [line.split()[:2] for line in lines if line.startswith("  N/A")] == [["N/A", "1.1.13"], ["N/A", "1.1.14"]]
    assert cis.render_json("prod", [report])["controllers"][0]["notApplicable"][0]["id"] == "1.1.13"
    wrong = tuple(replace(c, status="FAIL", actual="644") if c.id == "1.1.13" else c for c in fixed(checks))
    assert [c.id for c in cis.ControllerReport("controller-0", wrong).failures] == ["1.1.13"]
    assert cis.exit_status([cis.ControllerReport("controller-0", wrong)]) == 1


def test_the_json_report_says_the_same(checks):
    reports = [cis.ControllerReport("controller-0", checks), cis.ControllerReport("controller-1", fixed(checks)),
               cis.ControllerReport("controller-2", error="kube-bench printed no JSON")]
    document = json.loads(json.dumps(cis.render_json("prod", reports)))
    assert document["stack"] == "prod" and document["benchmark"] == "cis-1.12"
    assert document["targets"] == ["master", "etcd", "controlplane", "policies"]
    first, second, third = document["controllers"]
    assert first["name"] == "controller-0" and first["totals"] == RECORDED and first["error"] is None
    by_id = {c.id: c for c in checks}
    assert first["failures"] == [{"id": i, "target": by_id[i].target, "text": by_id[i].text}
                                 for i in RECORDED_FAILURES]
    assert second["totals"] == {"PASS": 61, "FAIL": 0, "WARN": 45, "INFO": 0} and second["failures"] == []
    assert third == {"name": "controller-2", "totals": None, "failures": [], "notApplicable": [], "inactive": [],
                     "error": "kube-bench printed no JSON"}
    assert document["totals"] == {"PASS": 115, "FAIL": 7, "WARN": 90, "INFO": 0}
    assert document["exit"] == 2
    assert cis.render_json("prod", reports[:2])["exit"] == 1 and cis.render_json("prod", reports[1:2])["exit"] == 0


def test_main_prints_the_report_and_exits_with_its_status(monkeypatch, capsys, recorded, checks):
    """main() on a stack whose outputs name two controllers, both answering with the recorded report."""
    import operate
    import stacks

    outputs = {"controllers": [{"name": f"controller-{i}", "sshHost": "h", "sshUser": "u"} for i in range(2)],
               "sshPrivateKeys": {"controller-0": "k", "controller-1": "k"}}
    monkeypatch.setattr(cis, "toolchain_bench", lambda: "bench")
    monkeypatch.setattr(stacks, "select", lambda name: SimpleNamespace(name=name))
    monkeypatch.setattr(operate, "outputs", lambda stack: outputs)
    answers = {"controller-0": recorded, "controller-1": recorded}
    monkeypatch.setattr(cis, "check_controller", lambda name, connect, bench: cis.ControllerReport(
        name, tuple(cis.parse_report(answers[name]))))
    assert cis.main(["--stack", "prod"]) == 1
    out = capsys.readouterr().out
    assert out.count("PASS 54, FAIL 7, WARN 45, INFO 0") == 2 and out.count("  FAIL 1.2.30 ") == 2
    answers["controller-1"] = answers["controller-0"] = fixed_report(recorded)
    assert cis.main(["--stack", "prod", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [c["totals"] for c in document["controllers"]] == [{"PASS": 61, "FAIL": 0, "WARN": 45, "INFO": 0}] * 2
    outputs["controllers"] = []
    assert cis.main(["--stack", "prod"]) == 2
    assert "has no controllers" in capsys.readouterr().err


def fixed_report(recorded: dict) -> dict:
    """The recorded report with every FAIL made a PASS, its Totals to match."""
    report = copy.deepcopy(recorded)
    for control in report["Controls"]:
        for group in control["tests"]:
            for result in group["results"]:
                if result["status"] == "FAIL":
                    result["status"] = "PASS"
    report["Totals"]["total_pass"] += report["Totals"]["total_fail"]
    report["Totals"]["total_fail"] = 0
    return report


# --- what goes beside kube-bench ---------------------------------------------------------------------------------

def shipped_cfg(tmp_path: Path) -> Path:
    """A cfg/ shaped like kube-bench's: config.yaml, the benchmark's master.yaml with kubeadm's audits, another
    benchmark's file."""
    cfg = tmp_path / "cfg"
    (cfg / "cis-1.12").mkdir(parents=True)
    (cfg / "cis-1.10").mkdir()
    (cfg / "config.yaml").write_text(yaml.safe_dump({"master": {"components": ["apiserver"]},
                                                     "version_mapping": {"1.34": "cis-1.12"}}))
    (cfg / "cis-1.12" / "master.yaml").write_text("\n".join(old for _, old, _, count in cis.CHECK_PATHS
                                                            for _ in range(count)) + "\n")
    (cfg / "cis-1.12" / "etcd.yaml").write_text("etcd: checks\n")
    (cfg / "cis-1.10" / "master.yaml").write_text("untouched: /etc/kubernetes/pki/\n")
    return cfg


def test_bench_files_carry_kthws_paths_and_run_script(tmp_path):
    files = cis.bench_files(shipped_cfg(tmp_path))
    assert sorted(files) == ["cfg/cis-1.10/master.yaml", "cfg/cis-1.12/etcd.yaml", "cfg/cis-1.12/master.yaml",
                             "cfg/config.yaml", "kthw.yaml", "run.sh"]
    master = files["cfg/cis-1.12/master.yaml"].decode()
    assert "/etc/kubernetes" not in master
    assert master.count(f"{HOST.kubernetes}/") == 7 and master.count(f"{HOST.etcd}/") == 2
    assert files["cfg/cis-1.10/master.yaml"] == b"untouched: /etc/kubernetes/pki/\n"
    config = yaml.safe_load(files["kthw.yaml"])
    assert config["master"]["apiserver"]["confs"] == [HOST.unit("kube-apiserver")]
    assert config["etcd"]["etcd"]["datadirs"] == [HOST.etcd_data]
    assert config["version_mapping"] == {"1.34": "cis-1.12"}  # the rest of the shipped config stays
    run = files["run.sh"].decode()
    assert "--targets master,etcd,controlplane,policies --benchmark cis-1.12 --json" in run
    assert "--config-dir cfg --config kthw.yaml" in run and "exec env -i " in run and "timeout 300 " in run
    assert f"for f in {HOST.kubernetes}/admin.kubeconfig {HOST.kubernetes}/super-admin.kubeconfig;" in run


def test_bench_files_refuse_a_cfg_that_moved(tmp_path):
    cfg = shipped_cfg(tmp_path)
    (cfg / "cis-1.12" / "master.yaml").write_text("nothing of kubeadm's paths\n")
    with pytest.raises(cis.ReportError, match="expected 2 x"):
        cis.bench_files(cfg)
    (cfg / "cis-1.12" / "master.yaml").unlink()
    with pytest.raises(cis.ReportError, match="no cis-1.12/master.yaml"):
        cis.bench_files(cfg)


def test_the_archive_holds_the_files_owned_by_root(tmp_path):
    files = cis.bench_files(shipped_cfg(tmp_path))
    with tarfile.open(fileobj=io.BytesIO(cis.bench_archive(files))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == sorted(files)
        assert {name: tar.extractfile(m).read() for name, m in members.items()} == files
    assert {(m.uid, m.gid, m.uname) for m in members.values()} == {(0, 0, "root")}
    assert {name: m.mode for name, m in members.items() if m.mode != 0o644} == {"run.sh": 0o755}


# --- on a controller (a fake SSH client) ------------------------------------------------------------------------

class FakeController:
    """Answers the commands run_on sends, as a controller would, and keeps the directories they make."""

    def __init__(self, tmp_path: Path, report: object, *, broken: str = "", inactive: str = ""):
        self.report, self.broken, self.inactive = report, broken, inactive  # broken: the step that fails
        self.commands: list[tuple[str, float]] = []
        self.dirs: set[str] = set()
        self.files: dict[str, bytes] = {}
        self.closed = False
        self.binary = tmp_path / "kube-bench"
        self.binary.write_bytes(b"\x7fELF kube-bench")
        self.bench = cis.Bench(self.binary, b"archive")

    def step(self, command: str) -> str:
        for marker, step in (('"$PWD/.kthw-cis-upload.', "upload dir"), ("mktemp -d /opt/kthw-cis.", "run dir"),
                             ("install -m 0700", "move"), ("/opt/kthw-cis.Zz9Yy8Xx/run.sh", "run"),
                             ("rm -rf -- ", "remove")):
            if marker in command:
                return step
        raise AssertionError(f"unexpected command {command!r}")

    def answer(self, command: str) -> tuple[int, bytes, bytes]:
        step = self.step(command)
        if step == self.broken:
            return 1, b"", b"broken on purpose"
        if step == "upload dir":
            self.dirs.add("/home/kthw/.kthw-cis-upload.AbCd1234")
            return 0, b"/home/kthw/.kthw-cis-upload.AbCd1234\n", b""
        if step == "run dir":
            self.dirs.add("/opt/kthw-cis.Zz9Yy8Xx")
            return 0, b"/opt/kthw-cis.Zz9Yy8Xx\n", b""
        if step == "move":
            self.dirs.discard("/home/kthw/.kthw-cis-upload.AbCd1234")
            digest = "0" * 64 if self.broken == "sha" else self.bench.sha256
            states = ["inactive" if c == self.inactive else "active" for c in cis.COMPONENTS]
            return 0, "\n".join([digest, *states, ""]).encode(), b""
        if step == "run":
            out = self.report if isinstance(self.report, bytes) else json.dumps(self.report).encode()
            return 0, out, b""
        self.dirs -= set(re.findall(r"(/[^'\s]+)", command.split("rm -rf -- ", 1)[1].split("\n", 1)[0]))
        return 0, b"", b""

    # paramiko's SSHClient, as far as run_on uses it
    def exec_command(self, command: str, timeout: float):
        self.commands.append((command, timeout))
        status, out, err = self.answer(command)
        channel = SimpleNamespace(recv_exit_status=lambda: status)
        return None, SimpleNamespace(read=lambda: out, channel=channel), SimpleNamespace(read=lambda: err)

    def open_sftp(self):
        controller = self

        class Sftp:
            def get_channel(self):
                return SimpleNamespace(settimeout=lambda seconds: None)

            def put(self, local: str, remote: str, callback=None):
                if controller.broken == "sftp":
                    raise OSError("connection lost")
                controller.files[remote] = Path(local).read_bytes()
                callback(1, 1)

            def putfo(self, data, remote: str, callback=None):
                controller.files[remote] = data.read()
                callback(1, 1)

            def close(self):
                pass
        return Sftp()

    def close(self):
        self.closed = True


def test_run_on_copies_runs_and_removes_everything(tmp_path, recorded):
    host = FakeController(tmp_path, recorded)
    report, inactive = cis.run_on(host, host.bench)
    assert report == recorded and inactive == ()
    assert host.dirs == set()
    assert host.files == {"/home/kthw/.kthw-cis-upload.AbCd1234/kube-bench": b"\x7fELF kube-bench",
                          "/home/kthw/.kthw-cis-upload.AbCd1234/bench.tar.gz": b"archive"}
    assert all(0 < timeout <= cis.KUBE_BENCH_SECONDS + 60 for _, timeout in host.commands)  # every command bounded
    run = [command for command, _ in host.commands if "run.sh" in command]
    assert len(run) == 1 and "etcd" not in run[0]  # no shell line for kube-bench's `ps -ef | grep etcd` to find


@pytest.mark.parametrize("broken, error", [
    ("sftp", "connection lost"),
    ("run dir", "broken on purpose"),
    ("move", "broken on purpose"),
    ("sha", "kube-bench's copy has sha256 0000"),
    ("run", "kube-bench printed no JSON"),
])
def test_run_on_removes_what_it_copied_whatever_fails(tmp_path, recorded, broken, error):
    host = FakeController(tmp_path, recorded, broken=broken)
    with pytest.raises(Exception, match=re.escape(error)):
        cis.run_on(host, host.bench)
    assert host.dirs == set(), f"left behind: {host.dirs}"


def test_run_on_names_what_it_could_not_remove(tmp_path, recorded):
    host = FakeController(tmp_path, recorded, broken="remove")
    with pytest.raises(RuntimeError, match="could not remove /opt/kthw-cis.Zz9Yy8Xx"):
        cis.run_on(host, host.bench)


def test_a_controller_that_fails_is_reported_and_the_next_is_checked(tmp_path, recorded):
    hosts = {"controller-0": FakeController(tmp_path, b"not json"), "controller-2": FakeController(tmp_path, recorded,
                                                                                                  inactive="etcd")}
    bench = hosts["controller-2"].bench

    def connect(host, port, user, key, timeout, host_key, name):
        assert timeout == cis.SSH_SECONDS and key == f"key-{host}" and name == host
        assert host_key == (f"ssh-ed25519 pinned-{host}" if host == "controller-2" else None)  # handed on as pinned
        if host not in hosts:
            raise TimeoutError("timed out")
        return hosts[host]
    outputs = {"controllers": [{"name": n, "sshHost": n, "sshUser": "kthw",
                                **({"sshHostKey": f"ssh-ed25519 pinned-{n}"} if n == "controller-2" else {})}
                               for n in ("controller-0", "controller-1", "controller-2", "controller-3")],
               "sshPrivateKeys": {n: f"key-{n}" for n in ("controller-0", "controller-1", "controller-2")}}
    reports = cis.check_stack(outputs, bench, connect=connect)
    assert [r.name for r in reports] == ["controller-0", "controller-1", "controller-2", "controller-3"]
    assert reports[0].error.startswith("RuntimeError: kube-bench printed no JSON")
    assert reports[1].error == "SSH: timed out"
    assert reports[2].error is None and reports[2].totals == RECORDED and reports[2].inactive == ("etcd",)
    assert reports[3].error == "no SSH key in the stack's outputs"
    assert all(h.closed and not h.dirs for h in hosts.values())
    assert cis.exit_status(reports) == 2
