#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# One local controller host: a systemd-nspawn container booted from an overlay of the base root, in its own
# network namespace joined to the stack's bridge by a veth pair.  `host.sh up|down|status`.
#
# It boots like a cloud VM: the base root is the image (cloud-init, its default sudo user), and before the boot
# `up` gives the host what a cloud gives a VM: a NoCloud seed (/var/lib/cloud/seed/nocloud/: meta-data with the
# instance id, hostname and the login user's public key; the user data) and the release mirror's CA in its trust
# store, as an image trusts public CAs (not while it boots: nothing outside a booting container writes into its
# root). The instance id is new for every new host (incarnation) and whenever the seed changes (then the running
# host reboots to apply it); a host rebuilt after its processes died keeps it, like a rebooted VM.
#
# `up` converges (idempotent): it (re)creates whatever is missing -- namespace, veth, overlay mount, host
# identity files, the running container -- and leaves what is already right alone, so it is both the
# create and the update/repair command.  `down` removes everything of the host, tolerating parts that are
# already gone, bounded in time.
#
# Env: KTHW_HOST (hostname), KTHW_HOST_DIR (per-host state dir), KTHW_NETNS, KTHW_BRIDGE, KTHW_VETH (host
# side, <= 15 chars), KTHW_MACHINE (nspawn machine name); for up also KTHW_BASE_ROOT, KTHW_IP_CIDR
# (e.g. 198.18.0.10/24), KTHW_GATEWAY, KTHW_AUTHORIZED_KEY (the login user's), KTHW_USER_DATA (#cloud-config),
# KTHW_MIRROR_CA (PEM); optional KTHW_ETC_HOSTS ("ip name" lines), KTHW_GENERATION and KTHW_GENERATION_FILE
# (recorded after a successful up), KTHW_BOOT_TIMEOUT (s, default 120).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LOG_TAG="host ${KTHW_HOST:-?}"
# shellcheck source=lib.sh
source "$here/lib.sh"
need KTHW_HOST KTHW_HOST_DIR KTHW_NETNS KTHW_BRIDGE KTHW_VETH KTHW_MACHINE

dir="$KTHW_HOST_DIR"
root="$dir/root"
pidfile="$dir/nspawn.pid"
ns="$KTHW_NETNS"
veth="$KTHW_VETH"
machine="$KTHW_MACHINE"
((${#veth} <= 15)) || die "veth name $veth is longer than 15 characters"

alive() { pidfile_alive "$pidfile" "$machine"; }

netns_ok() { [[ -e "/run/netns/$ns" ]] && ip netns exec "$ns" true 2>/dev/null; }

ensure_netns() {
  if ! netns_ok; then
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    log "created netns $ns"
  fi
  ip -n "$ns" link set lo up
}

ensure_veth() {
  local ip_only="${KTHW_IP_CIDR%/*}"
  if ip -o link show dev "$veth" 2>/dev/null | grep -qF " master $KTHW_BRIDGE " \
    && ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | grep -qF " $KTHW_IP_CIDR "; then
    ip link set dev "$veth" up
    ip -n "$ns" link set eth0 up
  else
    ip link del dev "$veth" 2>/dev/null || true
    ip -n "$ns" link del dev eth0 2>/dev/null || true
    ip link add name "$veth" type veth peer name eth0 netns "$ns"
    ip link set dev "$veth" master "$KTHW_BRIDGE"
    ip link set dev "$veth" up
    ip -n "$ns" addr add "$KTHW_IP_CIDR" dev eth0
    ip -n "$ns" link set eth0 up
    log "veth $veth <-> $ns/eth0 ($ip_only) on $KTHW_BRIDGE"
  fi
  ip -n "$ns" route replace default via "$KTHW_GATEWAY" dev eth0
}

mounted_lower() { findmnt -n -o OPTIONS --mountpoint "$root" 2>/dev/null | tr ',' '\n' | sed -n 's/^lowerdir=//p'; }

ensure_mount() {
  mkdir -p "$dir/upper" "$dir/work" "$root"
  if mountpoint -q "$root"; then
    [[ "$(mounted_lower)" == "$KTHW_BASE_ROOT" ]] && return 0
    log "base root changed ($(mounted_lower) -> $KTHW_BASE_ROOT): restarting on the new one"
    stop_container
    unmount_root
  fi
  mount -t overlay "overlay-$machine" -o "lowerdir=$KTHW_BASE_ROOT,upperdir=$dir/upper,workdir=$dir/work" "$root"
}

write_identity() {
  printf '%s\n' "$KTHW_HOST" >"$root/etc/hostname"
  {
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
    printf '%s\t%s\n' "${KTHW_IP_CIDR%/*}" "$KTHW_HOST"
    if [[ -n "${KTHW_ETC_HOSTS:-}" ]]; then
      printf '%s\n' "$KTHW_ETC_HOSTS" | awk -v me="$KTHW_HOST" 'NF == 2 && $2 != me {print $1 "\t" $2}'
    fi
  } >"$root/etc/hosts"
  # Offline: no name server (glibc then asks 127.0.0.1 inside the host, which answers at once with a refusal).
  rm -f "$root/etc/resolv.conf"
  printf '# kthw local host: offline, names come from /etc/hosts\noptions timeout:1 attempts:1\n' >"$root/etc/resolv.conf"
  if [[ ! -s "$root/etc/machine-id" ]]; then
    tr -d '-' </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
  fi
}

# The release mirror's CA joins the host's trust store the way Debian adds a local CA (the bundle and the hashed
# links, by the host's own update-ca-certificates, run in its root before it boots).
trust_mirror_ca() {
  local out dest="$root/usr/local/share/ca-certificates/kthw-mirror-ca.crt" fresh=()
  # No pipes here: bash writes a line at a time, and a reader that stops early (grep -q, cmp) would kill the writer
  # with SIGPIPE, which pipefail reports as a failure.
  [[ "$KTHW_MIRROR_CA" == *"-----BEGIN CERTIFICATE-----"* ]] || die "KTHW_MIRROR_CA is not a PEM certificate"
  cmp -s - "$dest" <<<"$KTHW_MIRROR_CA" && return 0
  [[ -e "$dest" ]] && fresh=(--fresh) # another CA under the same name: its hashed link is redone too
  mkdir -p "${dest%/*}"
  printf '%s\n' "$KTHW_MIRROR_CA" >"$dest"
  chmod 0644 "$dest"
  out="$(TMPDIR=/tmp chroot "$root" update-ca-certificates "${fresh[@]}" 2>&1)" || { printf '%s\n' "$out" >&2; die "update-ca-certificates failed in $root"; }
  log "trusts the release mirror's CA"
}

# The host's own cgroup, in each hierarchy its systemd uses (cgroup v1's name=systemd and the unified one, or the
# one cgroup v2 tree). nspawn splits the cgroup it starts in into its own part and the container's (supervisor,
# payload): containers started from one cgroup would share theirs, and their systemds would fight over it (units
# failing now and then at boot with 219/CGROUP).
cgroup_dirs() {
  local tree
  for tree in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
    [[ -e "$tree/cgroup.procs" ]] && printf '%s\n' "$tree/kthw/$machine"
  done
  return 0
}

# remove_cgroups: the host's cgroups, what its systemd made in them first (each must be empty: call it once the
# container is gone); the shared kthw parent too, when it is empty.
remove_cgroups() {
  local cg
  while read -r cg; do
    [[ -d "$cg" ]] || continue
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d "$cg" ]] || log "cgroup $cg is still in use"
    rmdir "${cg%/*}" 2>/dev/null || true
  done < <(cgroup_dirs)
}

start_container() {
  local orphans i cg procs=()
  alive && return 0
  # A container whose nspawn died can leave its processes running in the namespace (a dead VM leaves
  # nothing): kill them first, or the new boot finds its ports taken.
  for ((i = 0; i < 20; i++)); do
    orphans="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    [[ -n "${orphans// /}" ]] || break
    # shellcheck disable=SC2086
    kill -KILL $orphans 2>/dev/null || true
    sleep 0.5
  done
  rm -f "$pidfile"
  remove_cgroups # a dead container's, with what its systemd left in them
  while read -r cg; do
    mkdir -p "$cg"
    procs+=("$cg/cgroup.procs")
  done < <(cgroup_dirs)
  log "booting $machine"
  KTHW_JOIN_CGROUPS="$(IFS=:; echo "${procs[*]}")" \
    daemonize "$pidfile" "$dir/nspawn.log" systemd-nspawn -D "$root" -b --register=no --keep-unit \
      --network-namespace-path="/run/netns/$ns" -M "$machine" --console=read-only --link-journal=no \
      --resolv-conf=off --timezone=off
}

ssh_answers() {
  local banner
  # shellcheck disable=SC2016
  banner="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/22" && head -c 4 <&3' _ "${KTHW_IP_CIDR%/*}" 2>/dev/null)" || return 1
  [[ "$banner" == SSH- ]]
}

wait_ssh() {
  local limit="${KTHW_BOOT_TIMEOUT:-120}" start=$SECONDS
  while ((SECONDS - start < limit)); do
    if ssh_answers; then
      log "sshd answers on ${KTHW_IP_CIDR%/*}:22 ($((SECONDS - start)) s)"
      return 0
    fi
    if ! alive; then
      log "container $machine exited while booting; last lines of $dir/nspawn.log:"
      tail -n 30 "$dir/nspawn.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  log "sshd did not answer within ${limit}s; last lines of $dir/nspawn.log:"
  tail -n 30 "$dir/nspawn.log" >&2 || true
  return 1
}

# Stop the container: SIGTERM to nspawn (a clean poweroff of the container), bounded; then SIGKILL to
# whatever still runs in the host's network namespace (the container's init and everything under it).
stop_container() {
  local pids i
  stop_pidfile "$pidfile" "$machine" "${KTHW_STOP_TIMEOUT:-30}"
  [[ -e "/run/netns/$ns" ]] || return 0
  for ((i = 0; i < 50; i++)); do
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    [[ -n "${pids// /}" ]] || return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  log "processes still in $ns after SIGKILL: $pids"
}

unmount_root() {
  local i
  for ((i = 0; i < 20; i++)); do
    mountpoint -q "$root" || return 0
    umount "$root" 2>/dev/null || sleep 0.5
  done
  mountpoint -q "$root" && umount -l "$root"
  ! mountpoint -q "$root"
}

case "${1:-}" in
  up)
    need KTHW_BASE_ROOT KTHW_IP_CIDR KTHW_GATEWAY KTHW_AUTHORIZED_KEY KTHW_USER_DATA KTHW_MIRROR_CA
    [[ "$KTHW_USER_DATA" == "#cloud-config"* ]] || die "KTHW_USER_DATA must be a #cloud-config document"
    [[ -f "$KTHW_BASE_ROOT/.kthw-complete" ]] || die "base root $KTHW_BASE_ROOT is missing or incomplete"
    ip link show dev "$KTHW_BRIDGE" >/dev/null 2>&1 || die "bridge $KTHW_BRIDGE does not exist (network.sh up)"
    start=$SECONDS
    mkdir -p "$dir"
    ensure_netns
    ensure_veth
    ensure_mount
    write_identity
    trust_mirror_ca
    # One nonce per incarnation of the host (its state dir): a new host is a new instance.
    [[ -s "$dir/incarnation" ]] || tr -d '-' </proc/sys/kernel/random/uuid >"$dir/incarnation"
    nocloud_seed "$root/var/lib/cloud/seed/nocloud" "$(cat "$dir/incarnation")" "$KTHW_HOST" "$KTHW_AUTHORIZED_KEY" \
      "$KTHW_USER_DATA"
    if ((seed_changed)) && alive; then
      log "new instance data: rebooting $machine to apply it"
      stop_container
    fi
    start_container
    wait_ssh
    record_generation
    log "up in $((SECONDS - start)) s"
    ;;
  down)
    start=$SECONDS
    stop_container
    remove_cgroups
    unmount_root || die "could not unmount $root"
    ip link del dev "$veth" 2>/dev/null || true
    if [[ -e "/run/netns/$ns" ]]; then ip netns del "$ns" || true; fi
    if [[ -d "$dir" ]]; then rm -rf --one-file-system "$dir"; fi
    log "down in $((SECONDS - start)) s"
    ;;
  status)
    if alive; then echo running; else echo stopped; fi
    ;;
  *) die "usage: host.sh up|down|status" ;;
esac
