"""The control-plane component: bootstraps etcd, kube-apiserver, controller-manager and scheduler over SSH.

It only knows the infra interface (hosts, API endpoint, health-check style, release source), never the cloud.
The whole order is `ControlPlane._bootstrap`; every step is a `remote.Command` whose create and update are the
same idempotent script, so a changed file re-runs in place what depends on it (content hashes are part of
each script), and whose delete removes what it installed.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_command as command

from components import host_files
from components.drift import HostState, HostStateArgs
from components.etcd_membership import EtcdMembership
from components.config import StackConfig
from components.infra import ControllerHost, HealthCheckStyle, InfraOutputs, api_server_url
from components.pki import Pki
from components.release_digests import ReleaseDigests, digest_key
from components.releases import ETCD_ARTIFACT, KUBERNETES_BINARIES
from components.render import content_hash, render, script
from components.version_skew import VersionGate

HEALTHZ_SITE_PATH = "/etc/nginx/sites-available/kubernetes-healthz"  # where scripts/nginx installs the site
ETCD_BACKUP_DIR = "/var/backups/etcd"  # where kthw-etcd-backup.timer keeps its snapshots
RESTORE_DIR = ".kthw-restore"  # under the login user's home, mode 0700: where a snapshot to restore is copied
SERVICES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
APISERVER_READY = "curl -fsS --max-time 3 --cacert /var/lib/kubernetes/ca.pem https://127.0.0.1:6443/readyz"
# controller-manager and scheduler serve /healthz with a self-signed cert on loopback only.
CONTROLLER_MANAGER_HEALTHY = "curl -fsSk --max-time 3 https://127.0.0.1:10257/healthz"
SCHEDULER_HEALTHY = "curl -fsSk --max-time 3 https://127.0.0.1:10259/healthz"
# Host-side waits poll this often (s); each wait's bound is in seconds and becomes a number of tries.
POLL_SECONDS = 0.25


def _tries(seconds: int) -> int:
    return int(seconds / POLL_SECONDS)


@dataclass
class ControlPlaneArgs:
    config: StackConfig
    infra: InfraOutputs
    pki: Pki


def as_root(body: str, step: str) -> str:
    """Run a script as root over SSH whether the login user is root or a sudoer; stdin passes through.

    The script travels as a quoted heredoc, so previews show it as it is written.
    """
    if "\nKTHW_SCRIPT\n" in f"\n{body}\n":
        raise ValueError("a host script must not contain the line KTHW_SCRIPT")
    return ('S=; [ "$(id -u)" -eq 0 ] || S="sudo -n"\n'
            f'$S bash -c "$(cat <<\'KTHW_SCRIPT\'\n{body.rstrip()}\nKTHW_SCRIPT\n)" kthw-{step}\n')


def _etcd_client_urls(ips: Sequence[str]) -> str:
    """Every etcd member's client URL, as etcd clients (apiserver, etcdctl) take them."""
    return ",".join(f"https://{ip}:2379" for ip in ips)


def _connection(host: ControllerHost) -> command.remote.ConnectionArgs:
    """How every step reaches `host`: its login user and the bootstrap's key (never the caller's SSH agent)."""
    return command.remote.ConnectionArgs(host=host.ssh_host, port=host.ssh_port, user=host.ssh_user,
                                         private_key=host.ssh_private_key, dial_error_limit=30, per_dial_timeout=10)


def _digest(digests: Optional[dict[str, str]], name: str, version: str) -> str:
    """An artifact's sha256 from the release digests; without one, nothing installs it (fail closed)."""
    digest = (digests or {}).get(digest_key(name, version))
    if not digest:
        raise ValueError(f"no sha256 for {name} {version}: refusing to install it unverified")
    return digest


def _after_shebang(body: str, line: str) -> str:
    """Insert a comment line after the script's shebang (or at the top when it has none)."""
    first, _, rest = body.partition("\n")
    return f"{first}\n{line}{rest}" if first.startswith("#!") else f"{line}{body}"


class ControlPlane(pulumi.ComponentResource):
    """etcd and the Kubernetes control plane on every controller, in dependency order, nodes in parallel."""

    api_server_url: pulumi.Output[str]
    steps: dict[str, command.remote.Command]

    def __init__(self, name: str, args: ControlPlaneArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kthw:control_plane:ControlPlane", name, None, opts)
        self._name, self._cfg, self._infra, self._pki = name, args.config, args.infra, args.pki
        self.steps = {}
        self.api_server_url = api_server_url(self._cfg.api_server_dns_name, self._infra.public_address,
                                             self._infra.api_port)
        verify = self._bootstrap()
        self.register_outputs({"apiServerUrl": self.api_server_url, "verified": verify.stdout})

    # -- the order ---------------------------------------------------------------------------------
    def _bootstrap(self) -> command.local.Command:
        """version gate -> release digests -> certs + binaries (etcd's apart) -> etcd on every node (founding,
        joining or restoring a snapshot) -> etcd quorum -> snapshot timer, and apiserver on every node ->
        controller-manager and scheduler (and the LB's health proxy) -> RBAC, Secrets rewritten with a new key ->
        verify through the LB."""
        hosts = self._infra.hosts
        # A version change the skew policy refuses fails here, in the preview, before any host is touched.
        gate = VersionGate(f"{self._name}-versions", self._cfg.kubernetes_version, self._cfg.etcd_version,
                           opts=pulumi.ResourceOptions(parent=self))
        ready = [*self._infra.ready, gate]
        # Every artifact's sha256: pinned, or read once from the published checksum files into the state (after
        # `ready`: the local stack's mirror is up by then). The installs and the drift expectations use it.
        self._digests = ReleaseDigests(f"{self._name}-release-digests", self._infra.releases,
                                       self._cfg.kubernetes_version, self._cfg.etcd_version,
                                       opts=pulumi.ResourceOptions(parent=self, depends_on=ready)).digests
        self._groups = {h.name: host_files.node_file_groups(self._pki, h.name) for h in hosts}
        self._units = {h.name: {unit: self._unit(h, unit) for unit in SERVICES} for h in hosts}
        self._repairs = {h.name: self._host_state(h, ready).repairs for h in hosts}
        # etcd's download is its own step, so etcd forms its quorum while the kube binaries still download.
        install_etcd, install_kubernetes = self._install_binaries(etcd=True), self._install_binaries(kubernetes=True)
        etcd_binaries = {h.name: self._step(h, "etcd-binaries", install_etcd, self._remove("etcd-binaries"),
                                            depends_on=ready) for h in hosts}
        binaries = {h.name: self._step(h, "binaries", install_kubernetes, self._remove("binaries"),
                                       depends_on=ready) for h in hosts}
        files = {h.name: self._files_step(h, ready) for h in hosts}
        # Founders bootstrap etcd together; a member added later joins the running cluster (scale-up).
        founders = EtcdMembership(f"{self._name}-etcd-membership", {
            h.name: h.instance_id or h.private_ip for h in hosts}, opts=pulumi.ResourceOptions(parent=self)).founders
        restore = self._restore()
        snapshots = self._etcd_restore_source(hosts, ready, restore)
        etcd = {h.name: self._service(h, "etcd", depends_on=[etcd_binaries[h.name], files[h.name],
                                                             *snapshots.get(h.name, [])],
                                      prestart=self._etcd_membership(h, founders, restore))
                for h in hosts}
        etcd_ready = {h.name: self._step(h, "etcd-ready", self._etcd_wait(h), None,
                                         depends_on=list(etcd.values())) for h in hosts}
        install_backup = self._etcd_backup()
        backups = [self._step(h, "etcd-backup", install_backup, script("etcd/remove-backup.sh"),
                              depends_on=[etcd_ready[h.name]]) for h in hosts]
        apiserver = {h.name: self._service(h, "kube-apiserver",
                                           depends_on=[*etcd_ready.values(), binaries[h.name], files[h.name]])
                     for h in hosts}
        after_apiserver: list[pulumi.Resource] = []
        for h in hosts:
            after_apiserver.append(self._service(h, "kube-controller-manager", depends_on=[apiserver[h.name]]))
            after_apiserver.append(self._service(h, "kube-scheduler", depends_on=[apiserver[h.name]]))
            if self._infra.health_check == HealthCheckStyle.HTTP_HEALTHZ_PROXY:
                after_apiserver.append(self._healthz_proxy(h, depends_on=[apiserver[h.name]]))
        rbac = self._rbac(hosts[0], depends_on=list(apiserver.values()))
        rewrite = self._rewrite_secrets(hosts[0], depends_on=list(apiserver.values()))
        return self._verify(depends_on=[rbac, rewrite, *after_apiserver, *backups, *ready])

    # -- steps ---------------------------------------------------------------------------------------
    def _step(self, host: ControllerHost, step: str, body: pulumi.Input[str], delete: Optional[pulumi.Input[str]],
              depends_on: Sequence[pulumi.Resource], stdin: Optional[pulumi.Input[str]] = None,
              logging: Optional[command.remote.Logging] = None) -> command.remote.Command:
        """One remote step on one host: create and update run the same idempotent script.

        Its header names the host's instance and how often drift in this step's group was repaired: either
        changing makes the step run again.
        """
        repairs = self._repairs[host.name].apply(lambda r: int((r or {}).get(step, 0)))
        header = pulumi.Output.format("# kthw {0} on {1} (instance {2}, repair {3})\n", step, host.name,
                                      host.instance_id or "-", repairs)
        run = pulumi.Output.all(header, body).apply(lambda v: as_root(_after_shebang(v[1], v[0]), step))
        resource = command.remote.Command(
            f"{self._name}-{host.name}-{step}",
            connection=_connection(host),
            create=run, update=run,
            delete=pulumi.Output.from_input(delete).apply(lambda d: as_root(d, f"{step}-delete"))
            if delete is not None else None,
            stdin=stdin, logging=logging, add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on),
                                        custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m",
                                                                              delete="5m")))
        self.steps[f"{host.name}/{step}"] = resource
        return resource

    @staticmethod
    def _remove(what: str) -> str:
        return script(f"common/remove-{what}.sh")

    def _install_binaries(self, kubernetes: bool = False, etcd: bool = False) -> pulumi.Output[str]:
        """The download-verify-install script for the Kubernetes binaries and/or the etcd archive."""
        cfg, releases = self._cfg, self._infra.releases
        k8s_version, etcd_version = cfg.kubernetes_version, cfg.etcd_version

        def script_for(digests: dict[str, str]) -> str:
            def artifact(name: str, version: str, url: str) -> dict[str, str]:
                return {"name": name, "url": url, "sha256": _digest(digests, name, version)}

            return render("common/install-binaries.sh.j2", kubernetes_version=k8s_version,
                          kubernetes=[artifact(n, k8s_version, releases.kubernetes_url(n, k8s_version))
                                      for n in KUBERNETES_BINARIES] if kubernetes else [],
                          etcd={**artifact(ETCD_ARTIFACT, etcd_version, releases.etcd_url(etcd_version)),
                                "version": etcd_version} if etcd else None)
        return self._digests.apply(script_for)

    def _files_step(self, host: ControllerHost, ready: Sequence[pulumi.Resource]) -> command.remote.Command:
        files = host_files.merged(self._groups[host.name])
        body = host_files.fingerprint(files).apply(
            lambda digest: _after_shebang(script("common/put-files.sh"), f"# files: {digest}\n"))
        # Secrets travel only on stdin; the output is not logged.
        return self._step(host, "files", body, self._remove("files"), depends_on=ready,
                          stdin=host_files.payload(files), logging=command.remote.Logging.NONE)

    def _service(self, host: ControllerHost, unit: str, depends_on: Sequence[pulumi.Resource],
                 prestart: pulumi.Input[str] = ""):
        """Install and (re)start one unit; the inputs hash covers its unit, its files and the release versions.

        Restarts of a running service (etcd included: new certs) are serialized across nodes by an etcd lock
        (rolling), while a first start is not, so a fresh install brings every node up in parallel.
        """
        unit_content = self._units[host.name][unit]
        files = self._groups[host.name].get(unit, {})
        versions = f"{self._cfg.kubernetes_version} {self._cfg.etcd_version}"
        health = {"etcd": None, "kube-apiserver": APISERVER_READY,
                  "kube-controller-manager": CONTROLLER_MANAGER_HEALTHY, "kube-scheduler": SCHEDULER_HEALTHY}[unit]
        endpoints = pulumi.Output.all(*[h.private_ip for h in self._infra.hosts]).apply(
            _etcd_client_urls)
        body = pulumi.Output.all(unit_content, host_files.fingerprint(files), endpoints, prestart).apply(
            lambda v: render("common/service.sh.j2", unit=unit, unit_content=v[0].rstrip("\n"), prestart=v[3],
                             inputs_hash=content_hash(v[0], v[1], versions), no_block=unit == "etcd",
                             health=health, health_tries=_tries(180), poll=POLL_SECONDS, lock_endpoints=v[2]))
        delete = endpoints.apply(lambda e: render("etcd/remove.sh.j2", node_name=host.name, endpoints=e)) \
            if unit == "etcd" else render("common/remove-service.sh.j2", unit=unit)
        return self._step(host, unit, body, delete, depends_on=depends_on)

    def _unit(self, host: ControllerHost, unit: str) -> pulumi.Output[str]:
        cfg, hosts = self._cfg, self._infra.hosts
        ips = pulumi.Output.all(*[h.private_ip for h in hosts])
        # The service-account issuer is the API's own URL (the LB's address or apiServerDnsName).
        return pulumi.Output.all(host.private_ip, ips, self.api_server_url).apply(lambda v: render(
            f"{unit}/{unit}.service.j2", node_name=host.name, node_ip=v[0],
            etcd_servers=_etcd_client_urls(v[1]),
            heartbeat_ms=cfg.etcd_heartbeat_ms, election_ms=cfg.etcd_election_ms,
            service_account_issuer=v[2], service_cidr=cfg.service_cidr, cluster_cidr=cfg.cluster_cidr,
            shutdown_delay="5s"))

    def _host_state(self, host: ControllerHost, ready: Sequence[pulumi.Resource]) -> HostState:
        """What the bootstrap manages on `host`, observed on every refresh (see components/drift.py)."""
        files = host_files.merged(self._groups[host.name])
        expected: dict[str, pulumi.Input] = {
            "files": {"files": host_files.digests(files)},
            "binaries": {"files": self._digests.apply(lambda digests: {
                f"/usr/local/bin/{name}": _digest(digests, name, self._cfg.kubernetes_version)
                for name in KUBERNETES_BINARIES})},
        }
        for unit, content in self._units[host.name].items():
            expected[unit] = {"files": {f"/etc/systemd/system/{unit}.service": content.apply(
                lambda c: host_files.sha256(c.rstrip("\n") + "\n"))}, "units": [unit]}
        if self._infra.health_check == HealthCheckStyle.HTTP_HEALTHZ_PROXY:
            site = host_files.sha256(self._healthz_site().rstrip("\n") + "\n")
            expected["nginx-healthz"] = {"files": {HEALTHZ_SITE_PATH: site}, "units": ["nginx"]}
        return HostState(f"{self._name}-{host.name}-drift", HostStateArgs(
            name=host.name, host=host.ssh_host, port=host.ssh_port, user=host.ssh_user,
            private_key=host.ssh_private_key, expected=expected),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(ready)))

    def _etcd_backup(self) -> str:
        """The snapshot command, its service and its timer (kthw:etcdBackupSchedule, kthw:etcdBackupKeep)."""
        cfg = self._cfg
        backup = render("etcd/backup.sh.j2", backup_dir=ETCD_BACKUP_DIR, keep=cfg.etcd_backup_keep)
        return render("etcd/install-backup.sh.j2", schedule=cfg.etcd_backup_schedule,
                      backup_script=backup.rstrip("\n"),
                      service_unit=script("etcd/kthw-etcd-backup.service").rstrip("\n"),
                      timer_unit=render("etcd/kthw-etcd-backup.timer.j2", schedule=cfg.etcd_backup_schedule).rstrip("\n"))

    def _restore(self) -> Optional[dict[str, str]]:
        """The snapshot a new cluster starts from (kthw:etcdRestoreFrom): its digest and where hosts get it.

        `path` is relative to the login user's home (SFTP resolves it there): pulumi-command's CopyToRemote writes
        with the SFTP server's default mode (0644), so the copy lands in RESTORE_DIR, a 0700 directory made first.
        """
        path = self._cfg.etcd_restore_from
        if not path:
            return None
        with open(path, "rb") as snapshot:
            digest = hashlib.file_digest(snapshot, "sha256").hexdigest()
        return {"source": path, "sha256": digest, "path": f"{RESTORE_DIR}/etcd-{digest[:12]}.db"}

    def _etcd_restore_source(self, hosts: Sequence[ControllerHost], ready: Sequence[pulumi.Resource],
                             restore: Optional[dict[str, str]]) -> dict[str, list[pulumi.Resource]]:
        """With kthw:etcdRestoreFrom, copy the snapshot to every host before its etcd starts, into a directory
        only the login user (and root) can read."""
        if not restore:
            return {}
        copies: dict[str, list[pulumi.Resource]] = {}
        for h in hosts:
            private_dir = command.remote.Command(
                f"{self._name}-{h.name}-etcd-snapshot-dir", connection=_connection(h),
                create=f'install -d -m 0700 "$HOME/{RESTORE_DIR}"', delete=f'rm -rf "$HOME/{RESTORE_DIR}"',
                add_previous_output_in_env=False, opts=pulumi.ResourceOptions(parent=self, depends_on=list(ready)))
            copies[h.name] = [command.remote.CopyToRemote(
                f"{self._name}-{h.name}-etcd-snapshot", connection=_connection(h),
                source=pulumi.FileAsset(restore["source"]), remote_path=restore["path"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[private_dir]))]
        return copies

    def _etcd_membership(self, host: ControllerHost, founders: pulumi.Output[list],
                         restore: Optional[dict[str, str]]) -> pulumi.Output[str]:
        """The first-start part of the etcd step: found the cluster with the other founders, or join it."""
        hosts = self._infra.hosts
        ips = pulumi.Output.all(*[h.private_ip for h in hosts])

        def membership(args: list) -> str:
            founder_names, ips_now, me = set(args[0] or []), args[1], args[2]
            peers = {h.name: f"https://{ip}:2380" for h, ip in zip(hosts, ips_now)}
            return render("etcd/membership.sh.j2", node_name=host.name, node_ip=me,
                          founder=host.name in founder_names,
                          founders_cluster=",".join(f"{n}={u}" for n, u in peers.items() if n in founder_names),
                          all_members=",".join(f"{n}={u}" for n, u in peers.items()),
                          other_endpoints=_etcd_client_urls([ip for h, ip in zip(hosts, ips_now) if h is not host]),
                          join_tries=_tries(120), poll=POLL_SECONDS, restore=restore)
        return pulumi.Output.all(founders, ips, host.private_ip).apply(membership)

    def _etcd_wait(self, host: ControllerHost) -> pulumi.Output[str]:
        ips = pulumi.Output.all(host.private_ip, *[h.private_ip for h in self._infra.hosts])
        return ips.apply(lambda v: render(
            "etcd/wait-cluster.sh.j2", node_ip=v[0], tries=_tries(300), poll=POLL_SECONDS,
            endpoints=_etcd_client_urls(v[1:]), members_hash=content_hash(*v[1:])))

    def _healthz_site(self) -> str:
        return render("nginx/kubernetes-healthz.conf.j2", cluster_domain=self._cfg.cluster_domain,
                      listen_port=80, upstream_port=self._infra.api_port, ca_path="/var/lib/kubernetes/ca.pem")

    def _healthz_proxy(self, host: ControllerHost, depends_on: Sequence[pulumi.Resource]):
        site = self._healthz_site()
        body = render("nginx/install.sh.j2", site=site, probe_host=f"kubernetes.default.svc.{self._cfg.cluster_domain}")
        return self._step(host, "nginx-healthz", body, render("nginx/remove.sh.j2"), depends_on=depends_on)

    def _rbac(self, host: ControllerHost, depends_on: Sequence[pulumi.Resource]) -> command.remote.Command:
        manifest = script("rbac/rbac.yaml")
        body = render("rbac/apply.sh.j2", manifest=manifest.rstrip("\n"), manifest_hash=content_hash(manifest),
                      tries=_tries(180), poll=POLL_SECONDS)
        return self._step(host, "rbac", body, script("rbac/remove.sh"), depends_on=depends_on)

    def _rewrite_secrets(self, host: ControllerHost, depends_on: Sequence[pulumi.Resource]) -> command.remote.Command:
        """After every apiserver encrypts with a new key, store every Secret again with it (once per key)."""
        body = self._pki.encryption_key_name.apply(lambda name: render(
            "kube-apiserver/rewrite-secrets.sh.j2", key_name=name, tries=_tries(180), poll=POLL_SECONDS))
        return self._step(host, "rewrite-secrets", body, "rm -f /var/lib/kubernetes/.secrets-encrypted-with\n",
                          depends_on=depends_on)

    def _verify(self, depends_on: Sequence[pulumi.Resource]) -> command.local.Command:
        """GET /version through the load balancer from where Pulumi runs, trusting only the cluster CA."""
        checker = script("verify-api.py")
        run = pulumi.Output.concat(
            "python3 -c ", shlex.quote(checker), " ", self.api_server_url, " ", self._cfg.kubernetes_version, " 90")
        return command.local.Command(
            f"{self._name}-verify", create=run, update=run, stdin=self._pki.cas["ca"].cert_pem,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)))
