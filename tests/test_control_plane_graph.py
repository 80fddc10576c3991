"""The bootstrap graph, asserted on the edges the engine sees (recorded RegisterResource requests)."""
import subprocess

import pytest

from components.infra import HealthCheckStyle
from fake_infra import FAKE_SHA, KUBERNETES_BASE, build, config
from harness import VERIFY, FakeCloud, evaluate, published_digest, release_digests_feeding_installs

NODES = ["controller-0", "controller-1", "controller-2"]


@pytest.fixture(scope="module")
def graph():
    return evaluate(lambda: build(), {"cloud": "local"})


def step(graph, node, name):
    return graph.named(f"kthw-control-plane-{node}-{name}")


def test_every_node_gets_every_step(graph):
    for node in NODES:
        for name in ("binaries", "etcd-binaries", "files", "etcd", "etcd-ready", "kube-apiserver", "kube-controller-manager",
                     "kube-scheduler"):
            assert step(graph, node, name).parent.endswith("kthw-control-plane")


def test_etcd_starts_after_its_binaries_and_files(graph):
    for node in NODES:
        etcd = step(graph, node, "etcd")
        assert graph.reaches(etcd, step(graph, node, "etcd-binaries"))
        assert graph.reaches(etcd, step(graph, node, "files"))


def test_apiserver_on_any_node_starts_after_every_etcd_start_not_after_the_quorum_wait(graph):
    """The apiservers wait for their storage themselves (/readyz): their start-up overlaps etcd's first election."""
    verify = graph.named("kthw-control-plane-verify")
    for node in NODES:
        apiserver = step(graph, node, "kube-apiserver")
        for other in NODES:
            assert graph.reaches(apiserver, step(graph, other, "etcd")), (node, other)
            assert not graph.reaches(apiserver, step(graph, other, "etcd-ready")), (node, other)
            assert graph.reaches(step(graph, other, "etcd-ready"), step(graph, node, "etcd"))
            assert graph.reaches(verify, step(graph, other, "etcd-ready"))


def test_controller_manager_and_scheduler_after_their_apiserver(graph):
    for node in NODES:
        for name in ("kube-controller-manager", "kube-scheduler"):
            assert graph.reaches(step(graph, node, name), step(graph, node, "kube-apiserver"))


def test_rbac_after_every_apiserver_and_verify_last(graph):
    rbac = step(graph, "controller-0", "rbac")
    verify = graph.named("kthw-control-plane-verify")
    for node in NODES:
        assert graph.reaches(rbac, step(graph, node, "kube-apiserver"))
    for cmd in graph.of_type("command:remote:Command"):
        assert graph.reaches(verify, cmd), f"verify does not wait for {cmd.name}"


def test_nodes_are_parallel_not_serial(graph):
    """No step of one node waits for a same-phase step of another (except the etcd quorum barrier)."""
    for node in NODES:
        for other in NODES:
            if node == other:
                continue
            for name in ("binaries", "etcd-binaries", "files", "etcd", "kube-apiserver", "kube-scheduler"):
                assert not graph.reaches(step(graph, node, name), step(graph, other, name)), (node, other, name)


def test_updates_run_in_place_not_by_replacement(graph):
    for cmd in graph.of_type("command:remote:Command"):
        assert cmd.input("update") == cmd.input("create"), cmd.name
        assert not cmd.input("triggers"), f"{cmd.name}: triggers replace the resource"


def test_every_installing_step_has_a_delete(graph):
    for cmd in graph.of_type("command:remote:Command"):
        if not cmd.name.endswith("-etcd-ready"):
            assert cmd.input("delete"), f"{cmd.name} has no delete"


def test_binaries_are_verified_against_the_pinned_or_published_digests(graph):
    apiserver = f"{KUBERNETES_BASE}/release/v1.36.3/bin/linux/amd64/kube-apiserver"
    script = step(graph, "controller-0", "binaries").input("create")
    assert script.count(VERIFY) == 1 and script.count("fetch \"") == 4
    assert f'fetch "{apiserver}" "{published_digest(apiserver + ".sha256")}"' in script  # resolved
    assert f'/kubectl" "{FAKE_SHA}"' in script and "etcd.tar.gz" not in script  # pinned
    etcd = step(graph, "controller-0", "etcd-binaries").input("create")
    assert etcd.count("fetch \"") == 1 and "release/v1.36.3" not in etcd
    assert f'fetch "https://dl.example/etcd/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz" "{FAKE_SHA}"' in etcd


def test_one_digests_resource_read_while_the_hosts_boot_feeds_every_install_and_the_drift_expectations(graph):
    digests = release_digests_feeding_installs(graph)
    assert digests.name == "kthw-control-plane-release-digests"
    assert digests.parent == graph.named("kthw-control-plane").urn
    # It waits for the release source only (nothing here; the local mirror's server on the local stack), not for
    # the hosts' boot or the version gate; every step waits for the gate.
    assert not digests.depends_on()
    assert not graph.reaches(digests, graph.named("kthw-control-plane-versions"))
    assert not any(graph.reaches(digests, booted) for booted in graph.find(lambda r: r.name.endswith("-booted")))
    for step in graph.find(lambda r: r.type == "command:remote:Command" and r.name.startswith("kthw-control-plane-")):
        assert graph.reaches(step, graph.named("kthw-control-plane-versions")), step.name
    assert digests.input("pinned") == {"kubectl@v1.36.3": FAKE_SHA, "etcd@v3.6.14": FAKE_SHA}
    artifacts = digests.input("artifacts")
    assert artifacts["etcd@v3.6.14"]["checksum_url"] == "https://dl.example/etcd/v3.6.14/SHA256SUMS"
    assert artifacts["etcd@v3.6.14"]["file"] == "etcd-v3.6.14-linux-amd64.tar.gz"
    for node in NODES:
        drift = graph.named(f"kthw-control-plane-{node}-drift")
        assert digests.urn in drift.depends_on()
        expected = drift.input("expected")

        def published(name: str) -> str:
            return published_digest(f"{KUBERNETES_BASE}/release/v1.36.3/bin/linux/amd64/{name}.sha256")
        # The binaries step answers for the staged service binaries and the live kubectl ...
        assert expected["binaries"]["files"] == {
            "/usr/local/bin/kubectl": FAKE_SHA,
            **{f"/var/lib/kthw/staged/bin/{name}": published(name)
               for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}}
        # ... and each service's step for its live binary.
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            assert expected[name]["files"][f"/usr/local/bin/{name}"] == published(name)


def test_etcd_waits_only_for_its_own_download_and_the_apiserver_for_the_kube_binaries(graph):
    for node in NODES:
        assert graph.reaches(step(graph, node, "etcd"), step(graph, node, "etcd-binaries"))
        assert not graph.reaches(step(graph, node, "etcd-ready"), step(graph, node, "binaries"))
        assert graph.reaches(step(graph, node, "kube-apiserver"), step(graph, node, "binaries"))


def test_a_digest_missing_from_the_resolved_ones_refuses_to_install():
    class LosesOne(FakeCloud):
        def new_resource(self, args):
            rid, outputs = super().new_resource(args)
            if args.name.endswith("-release-digests"):
                del outputs["digests"]["kube-scheduler@v1.36.3"]
            return rid, outputs

    graph = evaluate(lambda: build(), {"cloud": "local"}, mocks=LosesOne(), expect_error=True)
    assert "no sha256 for kube-scheduler v1.36.3" in str(graph.error)


def test_a_changed_file_reruns_only_what_reads_it():
    """Changing the scheduler's config inputs changes only the scheduler step's command."""
    base = evaluate(lambda: build(), {"cloud": "local"})
    changed = evaluate(lambda: build(config(clusterCidr="10.201.0.0/16")), {"cloud": "local"})
    differs = {r.name for r in changed.of_type("command:remote:Command")
               if r.input("create") != base.named(r.name).input("create")}
    assert differs == {f"kthw-control-plane-{n}-kube-controller-manager" for n in NODES}


def test_oidc_and_admission_keys_rerun_only_the_files_and_the_apiserver():
    """The OIDC issuer (authentication-config.yaml) and the admission keys (admission-config.yaml, the apiserver's
    flags) change only the files step and the apiserver's step on each node: its rolling restart."""
    base = evaluate(lambda: build(), {"cloud": "local"})
    for change in ({"oidcIssuerUrl": "https://login.example.com", "oidcClientId": "kthw"},
                   {"podSecurityEnforce": "restricted"}, {"eventRateLimit": "false"}, {"alwaysPullImages": "true"}):
        changed = evaluate(lambda: build(config(**change)), {"cloud": "local"})
        differs = {r.name for r in changed.of_type("command:remote:Command")
                   if r.input("create") != base.named(r.name).input("create")}
        files = {f"kthw-control-plane-{n}-files" for n in NODES} if "alwaysPullImages" not in change else set()
        assert differs == files | {f"kthw-control-plane-{n}-kube-apiserver" for n in NODES}, change


def test_scale_to_five_adds_members_everywhere():
    graph = evaluate(lambda: build(config(controllerCount=5)), {"cloud": "local"})
    unit = step(graph, "controller-0", "etcd").input("create")
    assert "controller-4=https://10.240.0.14:2380" in unit
    apiserver = step(graph, "controller-2", "kube-apiserver").input("create")
    assert "https://10.240.0.14:2379" in apiserver
    assert len(graph.of_type("command:remote:Command")) == 5 * 9 + 2  # 9 steps a node, RBAC and the Secrets rewrite once


def test_healthz_proxy_step_follows_its_apiserver():
    graph = evaluate(lambda: build(health=HealthCheckStyle.HTTP_HEALTHZ_PROXY), {"cloud": "local"})
    for node in NODES:
        proxy = step(graph, node, "nginx-healthz")
        assert graph.reaches(proxy, step(graph, node, "kube-apiserver"))
        assert graph.reaches(graph.named("kthw-control-plane-verify"), proxy)


def test_a_fresh_install_founds_etcd_with_every_member(graph):
    for node in NODES:
        script = step(graph, node, "etcd").input("create")
        assert "ETCD_INITIAL_CLUSTER_STATE=new" in script and "members_ctl member add" not in script
        assert ("controller-0=https://10.240.0.10:2380,controller-1=https://10.240.0.11:2380,"
                "controller-2=https://10.240.0.12:2380") in script
        unit = step(graph, node, "etcd").input("create").split("UNIT'")[1]
        assert "initial-cluster=" not in unit  # membership lives in cluster.env, written before the first start


def test_members_added_later_join_and_leaving_members_remove_themselves():
    from components.etcd_membership import next_founders
    from components.render import render

    members = {f"controller-{i}": f"10.240.0.{10 + i}" for i in range(3)}
    founders = sorted(members)
    five = {**members, "controller-3": "10.240.0.13", "controller-4": "10.240.0.14"}
    assert next_founders(founders, members, five) == founders          # 3 -> 5: the new two join
    assert next_founders(founders, five, members) == founders          # 5 -> 3: founders stay
    assert next_founders(founders, members, {"controller-0": "10.240.0.10"}) == ["controller-0"]
    replaced = {**members, "controller-1": "new-instance"}
    assert next_founders(founders, members, replaced) == ["controller-0", "controller-2"]  # a new host joins
    join = render("etcd/membership.sh.j2", node_name="controller-3", node_ip="10.240.0.13", founder=False,
                  founders_cluster="", all_members="controller-3=https://10.240.0.13:2380",
                  other_endpoints="https://10.240.0.10:2379", join_seconds=4, poll=0.25, restore=None)
    assert "member add controller-3 --peer-urls=\"$etcd_peer\"" in join
    assert "ETCD_INITIAL_CLUSTER_STATE=existing" in join and "ETCD_INITIAL_CLUSTER_STATE=new" not in join


def test_etcd_delete_leaves_the_cluster_first(graph):
    delete = step(graph, "controller-1", "etcd").input("delete")
    assert delete.index("member remove") < delete.index("systemctl disable --now etcd")
    assert "https://10.240.0.10:2379" in delete


def test_a_restore_copies_the_snapshot_before_etcd_and_founders_restore_it(tmp_path):
    import hashlib

    snapshot = tmp_path / "etcd.db"
    snapshot.write_bytes(b"an etcd snapshot")
    digest = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    graph = evaluate(lambda: build(config(etcdRestoreFrom=str(snapshot))), {"cloud": "local"})
    copies = graph.of_type("command:remote:CopyToRemote")
    assert len(copies) == 3
    for node in NODES:
        copy = graph.named(f"kthw-control-plane-{node}-etcd-snapshot")
        # CopyToRemote writes 0644 over SFTP: the snapshot lands in a 0700 directory of the login user's home,
        # made before the copy.
        assert copy.input("remotePath") == f".kthw-restore/etcd-{digest[:12]}.db"
        private_dir = graph.named(f"kthw-control-plane-{node}-etcd-snapshot-dir")
        assert private_dir.input("create") == 'install -d -m 0700 "$HOME/.kthw-restore"'
        assert graph.reaches(copy, private_dir)
        etcd = step(graph, node, "etcd")
        assert graph.reaches(etcd, copy)
        script = etcd.input("create")
        assert f'{digest}  $snapshot' in script and "etcdutl snapshot restore" in script
        assert '/.kthw-restore/etcd-' in script and '"${SUDO_USER:-root}"' in script
        assert script.index("etcdutl snapshot restore") < script.index("systemctl restart --no-block etcd")
    from test_rendered_files import body_of, tool

    checked = subprocess.run([tool("shellcheck"), "-s", "bash", "-"], input=body_of(script), text=True,
                             capture_output=True)
    assert checked.returncode == 0, checked.stdout


def test_without_a_restore_nothing_is_copied(graph):
    assert not graph.of_type("command:remote:CopyToRemote")
    assert "etcdutl snapshot restore" not in step(graph, "controller-0", "etcd").input("create")
