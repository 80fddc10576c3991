#!/usr/bin/env bash
# Build (once) and print the path of the local stack's Debian bookworm base root.
#
# The root is cached under ${KTHW_CACHE:-$HOME/.cache/kthw}/rootfs/<suite>-<key>/, where <key> hashes the
# package list, the mirror, the suite and RECIPE (bump it when the customisation below changes): hosts mount it read-only as an overlayfs lowerdir. Concurrent callers
# wait on a lock; a half-built root is never published (built in a temp dir, then renamed).
# Prints the root's path as the last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cache="${KTHW_CACHE:-$HOME/.cache/kthw}/rootfs"
suite="${KTHW_SUITE:-bookworm}"
RECIPE=3

log() { printf '[base-root] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

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
key="$(printf '%s\n%s\n%s\n%s\n' "$packages" "$url" "$suite" "$RECIPE" | sha256sum | cut -c1-12)"
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
# Many parallel SSH sessions (each pulumi-command resource opens its own connection).
mkdir -p "$tmp/etc/ssh/sshd_config.d"
cat >"$tmp/etc/ssh/sshd_config.d/kthw.conf" <<'CONF'
# kthw local host: one connection per Pulumi resource, many at once.
MaxStartups 100:30:200
MaxSessions 100
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
CONF
# Per-host identity is written when a host is made: no shared host keys or machine id in the base.
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
