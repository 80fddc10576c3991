#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The local stack's bridge in the machine's own network namespace: `network.sh up|down|status`.
# Env: KTHW_BRIDGE (interface name, <= 15 chars), KTHW_GATEWAY_CIDR (e.g. 198.18.0.1/24); optional
# KTHW_GENERATION/KTHW_GENERATION_FILE (recorded by up), KTHW_STATE_DIR (the stack's state dir: `down`,
# which runs last, removes it once the hosts, LB and file server have removed their parts).
# No NAT and no forwarding: hosts reach only each other and the bridge address.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LOG_TAG=network
# shellcheck source=lib.sh
source "$here/lib.sh"
need KTHW_BRIDGE
br="$KTHW_BRIDGE"
((${#br} <= 15)) || die "bridge name $br is longer than 15 characters"

case "${1:-}" in
  up)
    need KTHW_GATEWAY_CIDR
    # Another stack (or anything else) holding our address on another interface would split the traffic.
    other="$(ip -4 -o addr show to "${KTHW_GATEWAY_CIDR%/*}" | awk -v br="$br" '$2 != br {print $2}' | head -n1)"
    [[ -z "$other" ]] || die "${KTHW_GATEWAY_CIDR%/*} is already on interface $other (another stack?): choose another kthw:nodeCidr"
    if ! ip link show dev "$br" >/dev/null 2>&1; then
      ip link add name "$br" type bridge
      log "created bridge $br"
    fi
    # Only the stack's own address on the bridge: drop any other, add ours.
    ip -4 -o addr show dev "$br" | awk '{print $4}' | while read -r a; do
      [[ "$a" == "$KTHW_GATEWAY_CIDR" ]] || ip addr del "$a" dev "$br"
    done
    ip -4 -o addr show dev "$br" | grep -qF " $KTHW_GATEWAY_CIDR " || ip addr add "$KTHW_GATEWAY_CIDR" dev "$br"
    # Never route the hosts' packets anywhere: with forwarding off on the bridge, the machine drops what
    # they send to any address but its own (even if net.ipv4.ip_forward is on), and there is no NAT.
    sysctl -qw "net.ipv4.conf.$br.forwarding=0"
    sysctl -qw "net.ipv6.conf.$br.disable_ipv6=1"
    ip link set dev "$br" up
    record_generation
    log "bridge $br up with $KTHW_GATEWAY_CIDR"
    ;;
  down)
    if ip link show dev "$br" >/dev/null 2>&1; then
      ip link del dev "$br"
      log "deleted bridge $br"
    else
      log "bridge $br already gone"
    fi
    if [[ -n "${KTHW_GENERATION_FILE:-}" ]]; then rm -f "$KTHW_GENERATION_FILE"; fi
    if [[ -n "${KTHW_STATE_DIR:-}" && -d "$KTHW_STATE_DIR" ]]; then
      rmdir "$KTHW_STATE_DIR/hosts" 2>/dev/null || true
      rmdir "$KTHW_STATE_DIR" 2>/dev/null || log "state dir $KTHW_STATE_DIR is not empty: left in place"
      rmdir "$(dirname "$KTHW_STATE_DIR")" 2>/dev/null || true # stacks/, once no stack is left
    fi
    ;;
  status)
    ip link show dev "$br" >/dev/null 2>&1 && echo up || echo down
    ;;
  *) die "usage: network.sh up|down|status" ;;
esac
