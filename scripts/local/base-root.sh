#!/usr/bin/env bash
# Build (once) and print the path of the local stack's Debian bookworm base root.
#
# The root is cached under ${KTHW_CACHE:-$HOME/.cache/kthw}/rootfs/<suite>-<key>/, where <key> hashes the
# package list, the mirror, the suite, the login user and RECIPE (bump it when the customisation below changes):
# hosts mount it read-only as an overlayfs lowerdir. Concurrent callers wait on a lock; a half-built root is never
# published (built in a temp dir, then renamed).
# Like a cloud image, the root has cloud-init and its image config (the NoCloud datasource, the default login
# user KTHW_LOGIN_USER with passwordless sudo, no network config): each host's first boot applies the user data
# that host.sh seeds, as a cloud VM's does. Prints the root's path as the last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cache="${KTHW_CACHE:-$HOME/.cache/kthw}/rootfs"
suite="${KTHW_SUITE:-bookworm}"
RECIPE=4
login_user="${KTHW_LOGIN_USER:?is required: the login user of the hosts (components/local SSH_USER)}"

log() { printf '[base-root] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ "$login_user" =~ ^[a-z_][a-z0-9_-]{0,31}$ && "$login_user" != root ]] || die "KTHW_LOGIN_USER must be a Linux user name other than root, got '$login_user'"

# The machine's configured Debian mirror (deb822 or one-line sources), unless KTHW_MIRROR is set.
mirror() {
  if [[ -n "${KTHW_MIRROR:-}" ]]; then
    printf '%s\n' "$KTHW_MIRROR"
    return
  fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r "$f" ]] || continue
    uri="$(grep -hoE '^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[a-z]+://[^[:space:]]+/debian/?([[:space:]]|$)' "$f" \
      | grep -oE '[a-z]+://[^[:space:]]+' | grep -v -- '-security' | head -n1 || true)"
    if [[ -n "$uri" ]]; then
      printf '%s\n' "$uri"
      return
    fi
  done
  log "no Debian mirror found in /etc/apt/sources.list*; set KTHW_MIRROR"
  return 1
}

ensure_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q "${missing[@]}" >&2
  fi
}

packages="$(grep -vE '^[[:space:]]*(#|$)' "$here/packages.txt" | tr -d ' ' | sort -u | paste -sd, -)"
url="$(mirror)"
key="$(printf '%s\n%s\n%s\n%s\n%s\n' "$packages" "$url" "$suite" "$login_user" "$RECIPE" | sha256sum | cut -c1-12)"
root="$cache/$suite-$key"

if [[ -f "$root/.kthw-complete" ]]; then
  log "cached: $root"
  printf '%s\n' "$root"
  exit 0
fi

ensure_tools
mkdir -p "$cache"
exec 9>"$cache/.lock-$key"
timeout 1200 flock 9 || { log "timed out waiting for another build of $root"; exit 1; }
if [[ -f "$root/.kthw-complete" ]]; then
  printf '%s\n' "$root"
  exit 0
fi

tmp="$cache/.build-$key"
rm -rf "$tmp"
start=$SECONDS
log "debootstrap $suite from $url into $tmp (packages: $packages)"
buildlog="$cache/build-$key.log"
if ! timeout 1800 debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$url" >"$buildlog" 2>&1; then
  tail -n 40 "$buildlog" >&2
  die "debootstrap failed (full log: $buildlog)"
fi

# --- customise, without booting anything ---
mask() { local u; for u in "$@"; do ln -sfn /dev/null "$tmp/etc/systemd/system/$u"; done; }
# Offline hosts: no apt timers, no time sync (the container shares the machine's clock), no gettys on a
# console nobody reads, nothing that waits for a network that systemd does not manage.
mask apt-daily.service apt-daily.timer apt-daily-upgrade.service apt-daily-upgrade.timer \
  systemd-timesyncd.service dpkg-db-backup.service dpkg-db-backup.timer e2scrub_all.service e2scrub_all.timer \
  e2scrub_reap.service fstrim.service fstrim.timer man-db.service man-db.timer logrotate.timer \
  console-getty.service getty@tty1.service getty-static.service systemd-networkd-wait-online.service \
  systemd-resolved.service
# SSH sessions do not register with logind (pam_systemd): every remote step is one short session, and a
# logind busy on a loaded machine (D-Bus timeouts of 25 s) stalled sessions past a client's channel timeout.
sed -i '/pam_systemd\.so/d' "$tmp/etc/pam.d/common-session"
# The image's cloud-init config, as a cloud image's vendor ships it: where the instance data comes from, the
# default user the meta-data's public key logs in as, and nothing that a container cannot or must not do.
# sshd's own settings (limits, no root or password login) come from the user data, as on the clouds.
cat >"$tmp/etc/cloud/cloud.cfg.d/90_kthw.cfg" <<CONF
# kthw local host image (written by scripts/local/base-root.sh).
# The instance data is a NoCloud seed in /var/lib/cloud/seed/nocloud/, written by host.sh before the first boot.
datasource_list: [ NoCloud ]
# The host's network namespace is configured from outside (host.sh), as a cloud configures a VM's NIC.
network:
  config: disabled
system_info:
  default_user:
    name: $login_user
    lock_passwd: true
    gecos: kthw login user
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
# A container has no disk or partition of its own to grow.
growpart:
  mode: "off"
resize_rootfs: false
# Host keys are made at the first boot of each instance (no DSA: sshd no longer takes it).
ssh_genkeytypes: [ed25519, ecdsa, rsa]
CONF
# Per-host identity is made at a host's first boot (host keys: cloud-init) or by host.sh (machine id): none
# is shared through the base.
rm -f "$tmp"/etc/ssh/ssh_host_*
: >"$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
printf 'localhost\n' >"$tmp/etc/hostname"
# Offline hosts: no name server (debootstrap copied this machine's); names come from /etc/hosts.
rm -f "$tmp/etc/resolv.conf"
printf '# kthw local host: offline, names come from /etc/hosts\noptions timeout:1 attempts:1\n' >"$tmp/etc/resolv.conf"
# No locale files: keep pam_env quiet.
printf 'LANG=C.UTF-8\n' >"$tmp/etc/default/locale"
# Keep the journal small.
mkdir -p "$tmp/etc/systemd/journald.conf.d"
printf '[Journal]\nSystemMaxUse=64M\n' >"$tmp/etc/systemd/journald.conf.d/kthw.conf"
# apt inside a host must not try the network; the package lists are empty anyway.
printf 'Acquire::Retries "0";\n' >"$tmp/etc/apt/apt.conf.d/99kthw-offline"
rm -rf "$tmp/var/cache/apt/archives/"*.deb
touch "$tmp/.kthw-complete"

mv "$tmp" "$root"
log "built $root in $((SECONDS - start)) s ($(du -sh "$root" | cut -f1))"
printf '%s\n' "$root"
