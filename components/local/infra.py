"""LocalInfra: the `local` stack's controller hosts, load balancer and file server, on this machine.

Resources (all children of the component, named `<name>-<child>`), each a `pulumi_command.local.Command`
running a script under scripts/local/ from the project directory:

    <name>-ssh-key      tls.PrivateKey (ed25519): the login user's key on every host; the private half is a secret
    <name>-<host>-host-key  tls.PrivateKey (ed25519): the host's SSH host key, in its first-boot user data
                        (components/host_keys.py); SSH clients pin its public half
    <name>-mirror-ca    tls (ECDSA P-256): the release mirror's CA, trusted by every host like a public CA
    <name>-mirror       tls: the mirror's server cert for <gateway>, signed by it (key: a secret)
    <name>-base-root    base-root.sh: debootstrap'd Debian root with cloud-init, built once and cached (no delete)
    <name>-network      network.sh: the stack's bridge with the gateway/LB address
    <name>-<host>       host.sh: netns + veth + overlay (NoCloud seed, mirror CA) + booted systemd-nspawn
                        container, sshd answering
    <name>-<host>-booted  components/boot.py: over SSH, as the login user, until cloud-init is done
    <name>-lb           lb.sh: HAProxy on <gateway>:6443 with the chosen active health check
    <name>-file-server  fileserver.sh: the toolchain's mirror/ over HTTPS on <gateway>:8443

Change handling: a change of a part's identity (names, addresses, dirs) is in `triggers` and replaces it,
delete first (`delete_before_replace`, so the old `delete` never undoes the new `create`); every other
change (scripts, base root, authorized key, LB config, generation) is in `environment`/`stdin` and runs
the `update` command, which is the same idempotent `up` script: it converges in place. Each long-lived part
(network, hosts, LB, file server) gets its KTHW_GENERATION from its own `<name>-<part>-liveness` resource
(components/local/liveness.py), which looks at the part on refresh: a part found dead there gets the next
generation at the following `up` (`up --refresh`, or this project's `up`, which always refreshes), which runs
that update and rebuilds it. Evaluating the program reads nothing of this machine.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_command as command

from components import host_keys
from components.boot import DEFAULT_ADMIN_USERNAME, wait_for_boot
from components.cloud_common import ssh_key
from components.config import StackConfig
from components.infra import (API_PORT, LB_PROBES, ControllerHost, HealthChecks, HealthCheckStyle, Infra, InfraOutputs,
                              LbProbe)
from components.local import liveness
from components.machines import MachineSpecs, machine_options, spec_output
from components.local.layout import FILE_SERVER_PORT, LocalLayout
from components.local.releases import MIRROR, release_source
from components.pki.component import self_signed_ca, signed_cert
from components.pki.table import SERVER
from components.render import content_hash, render, script

# What makes a local host's machine: a change waits for scripts/replace-controller (components/machines.py).
HOST_SPEC = ("environment.KTHW_BASE_ROOT", "environment.KTHW_USER_DATA")
PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
SSH_USER = DEFAULT_ADMIN_USERNAME  # the image's default user (base-root.sh), as on the clouds
SCRIPTS = ("lib.sh", "network.sh", "host.sh", "lb.sh", "fileserver.sh")


@dataclass
class LocalInfraArgs:
    config: StackConfig
    stack: Optional[str] = None  # default: the current Pulumi stack
    state_root: Optional[str] = None  # default: $KTHW_STATE or ~/.local/state/kthw
    cache_root: Optional[str] = None  # default: $KTHW_CACHE or ~/.cache/kthw
    toolchain_dir: Optional[str] = None  # default: <cache_root>/toolchain
    file_server_port: int = FILE_SERVER_PORT
    project_dir: Optional[str] = None  # where scripts/local lives; default: this checkout


def render_haproxy(layout: LocalLayout, health_check: HealthCheckStyle, api_port: int = API_PORT,
                   ca_file: Optional[str] = None, probe: LbProbe = LB_PROBES["haproxy"],
                   cluster_domain: str = "cluster.local") -> str:
    return render("local/haproxy.cfg.j2", stack=layout.stack, health_check=health_check.value,
                  stats_socket=str(layout.stats_socket), bind_address=layout.gateway, api_port=api_port,
                  backends=[{"name": h.name, "ip": h.ip} for h in layout.hosts], ca_file=ca_file, probe=probe,
                  healthz_host=f"kubernetes.default.svc.{cluster_domain}")


def incarnation(part: command.local.Command, generation: pulumi.Input[Any]) -> pulumi.Output[str]:
    """A local part as it runs now: its id (new when it is replaced) and its generation (up when it is rebuilt)."""
    return pulumi.Output.format("{0} generation {1}", part.id, generation)


class LocalInfra(Infra):
    TYPE = "kthw:local:LocalInfra"
    # HAProxy runs each of them (scripts/local/haproxy.cfg.j2); https-readyz, as the Azure LB does, by default.
    health_checks = HealthChecks("local", (HealthCheckStyle.HTTPS_READYZ, HealthCheckStyle.TCP,
                                           HealthCheckStyle.HTTP_HEALTHZ_PROXY))
    layout: LocalLayout

    def _create(self, name: str, args: LocalInfraArgs) -> tuple[InfraOutputs, dict[str, Any]]:
        cfg = args.config
        layout = LocalLayout.build(args.stack or pulumi.get_stack(), cfg.controller_names, cfg.node_cidr,
                                   state_root=Path(args.state_root) if args.state_root else None,
                                   cache_root=Path(args.cache_root) if args.cache_root else None,
                                   file_server_port=args.file_server_port)
        self.layout = layout
        toolchain = Path(args.toolchain_dir) if args.toolchain_dir else layout.toolchain_dir
        # The release mirror's own CA and its server cert for the gateway address (hosts trust the CA like a
        # public one; the checksum fetches at `up` trust it through the ReleaseSource).
        mirror_ca = self_signed_ca(f"{name}-mirror-ca", f"kthw {layout.stack} release mirror CA", self)
        mirror_cert = signed_cert(f"{name}-mirror", mirror_ca, layout.gateway, None, [], [layout.gateway], SERVER,
                                  cfg.cert_validity_hours, self)
        base_url = f"https://{layout.gateway}:{layout.file_server_port}"
        releases = release_source(toolchain, cfg.kubernetes_version, cfg.etcd_version, base_url,
                                  ca_pem=mirror_ca.cert_pem)
        project_dir = str(Path(args.project_dir).absolute()) if args.project_dir else str(PROJECT_DIR)
        scripts_hash = content_hash(*(script(f"local/{f}") for f in SCRIPTS))

        def child(**kwargs) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, **kwargs)

        def cmd(resource: str, script_name: str, environment: dict, triggers: list, stdin=None,
                deletes: bool = True, depends_on: Optional[list] = None,
                opts: Optional[pulumi.ResourceOptions] = None) -> command.local.Command:
            run = f"bash scripts/local/{script_name}"
            return command.local.Command(
                f"{name}-{resource}",
                create=f"{run} up",
                update=f"{run} up",
                delete=f"{run} down" if deletes else None,
                dir=project_dir,
                environment=environment,
                stdin=stdin,
                triggers=triggers,
                opts=opts or child(delete_before_replace=True, depends_on=depends_on or []),
            )

        key = ssh_key(name, None, None, self)

        base_root = command.local.Command(
            f"{name}-base-root",
            create="bash scripts/local/base-root.sh",
            dir=project_dir,
            environment={"KTHW_CACHE": str(layout.cache_root), "KTHW_LOGIN_USER": SSH_USER},
            triggers=[content_hash(script("local/base-root.sh"), script("local/packages.txt"))],
            opts=child(delete_before_replace=True),
        )
        base_root_path = base_root.stdout.apply(lambda out: out.strip().splitlines()[-1] if out.strip() else "")

        network = cmd(
            "network", "network.sh",
            environment={**layout.network_env(), "KTHW_SCRIPTS": scripts_hash,
                         "KTHW_GENERATION": liveness.watch(f"{name}-network", f"bridge {layout.bridge}",
                                                           liveness.network_checks(layout),
                                                           layout.network_generation_file, self)},
            triggers=[layout.bridge, layout.gateway_cidr, str(layout.state_dir)])

        host_cmds: list[command.local.Command] = []
        specs: dict[str, pulumi.Output[str]] = {}
        keys: dict[str, host_keys.HostKey] = {}
        generations: dict[str, pulumi.Input[str]] = {}
        private_key = key.private_key
        for host in layout.hosts:
            generations[host.name] = liveness.watch(f"{name}-{host.name}", f"host {host.machine}",
                                                    liveness.host_checks(layout, host), host.generation_file, self)
            keys[host.name] = host_keys.host_key(f"{name}-{host.name}-host-key", self)
            first_boot = host_keys.first_boot(keys[host.name])
            host_cmd = cmd(
                host.name, "host.sh",
                environment={**layout.host_env(host), "KTHW_BASE_ROOT": base_root_path,
                             "KTHW_AUTHORIZED_KEY": key.public_key, "KTHW_USER_DATA": first_boot,
                             "KTHW_MIRROR_CA": mirror_ca.cert_pem, "KTHW_SCRIPTS": scripts_hash,
                             "KTHW_GENERATION": generations[host.name]},
                triggers=[host.name, host.ip_cidr, host.netns, host.machine, host.veth, str(host.dir)],
                # A new base root or first-boot data makes a new machine: one at a time (components/machines.py).
                opts=machine_options(host.name, cfg.replace_controller, HOST_SPEC, self, depends_on=[network]))
            host_cmds.append(host_cmd)
            specs[host.name] = spec_output(base_root_path, first_boot)

        machine_specs = MachineSpecs(f"{name}-machine-specs", specs, cfg.replace_controller, opts=child())
        booted: list[pulumi.Resource] = []
        hosts: list[ControllerHost] = []
        incarnations: list[pulumi.Output[str]] = []
        for host, host_cmd in zip(layout.hosts, host_cmds):
            controller = ControllerHost(
                name=host.name,
                instance_id=host_cmd.id,  # a new one for a replaced host: every step on it runs again
                machine_urn=host_cmd.urn,
                private_ip=host.ip,
                # Known up front, but an Output of the host resource so that whatever SSHes in waits for it.
                ssh_host=host_cmd.id.apply(lambda _, ip=host.ip: ip),
                ssh_port=22,
                ssh_user=SSH_USER,
                ssh_private_key=private_key,
                ssh_host_key=host_keys.pinned(machine_specs, host.name, specs[host.name], keys[host.name]),
            )
            hosts.append(controller)
            # A new incarnation (id) or a rebuilt one (generation) boots again: the bootstrap waits for it.
            incarnations.append(incarnation(host_cmd, generations[host.name]))
            booted.append(wait_for_boot(f"{name}-{host.name}-booted", controller, after=[host_cmd], parent=self,
                                        instance=incarnations[-1]))

        # HAProxy probes as the chosen LB would (kthw:localLbProbe: its own timings, or Azure's or GCP's).
        probe = LB_PROBES[cfg.local_lb_probe]
        haproxy_cfg = render_haproxy(layout, self.health_check, probe=probe, cluster_domain=cfg.cluster_domain)
        lb_generation = liveness.watch(f"{name}-lb", f"lb {layout.lb_dir}", liveness.lb_checks(layout),
                                       layout.lb_dir / "generation", self)
        lb = cmd(
            "lb", "lb.sh",
            environment={**layout.lb_env(API_PORT), "KTHW_SCRIPTS": scripts_hash, "KTHW_GENERATION": lb_generation},
            stdin=haproxy_cfg,
            triggers=[layout.gateway, API_PORT, str(layout.lb_dir)],
            depends_on=[network])

        mirror_dir = toolchain / MIRROR
        file_server = cmd(
            "file-server", "fileserver.sh",
            environment={**layout.file_server_env(mirror_dir), "KTHW_SCRIPTS": scripts_hash,
                         "KTHW_GENERATION": liveness.watch(f"{name}-file-server",
                                                           f"file server {layout.file_server_dir}",
                                                           liveness.file_server_checks(layout, mirror_dir),
                                                           layout.file_server_dir / "generation", self)},
            # The server's key and cert: a secret, on stdin only (never a command line or a log; fileserver.sh
            # keeps them for nginx in its state dir, mode 0600).
            stdin=pulumi.Output.secret(pulumi.Output.all(mirror_cert.key_pem, mirror_cert.cert_pem).apply(
                lambda pems: "".join(pem.rstrip("\n") + "\n" for pem in pems))),
            triggers=[layout.gateway, layout.file_server_port, str(layout.file_server_dir)],
            depends_on=[network])

        outputs = InfraOutputs(
            hosts=hosts,
            public_address=layout.gateway,
            health_check=self.health_check,
            releases=replace(releases, ready=[file_server]),  # its URLs answer once the server runs
            probe=probe,
            api_port=API_PORT,
            ready=[*host_cmds, *booted, lb, file_server],
            incarnations=[*incarnations, incarnation(lb, lb_generation)],
        )
        return outputs, {
            "bridge": layout.bridge,
            "stateDir": str(layout.state_dir),
            "fileServer": base_url,
            "mirrorCaPem": mirror_ca.cert_pem,
            "netns": {h.name: h.netns for h in layout.hosts},
            "sshPrivateKey": private_key,
        }
