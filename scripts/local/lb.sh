#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The local stack's API load balancer: HAProxy (master-worker, detached) on KTHW_LB_ADDRESS:KTHW_LB_PORT.
# `lb.sh up` reads the rendered haproxy.cfg on stdin, validates it (haproxy -c), then starts HAProxy or,
# if it runs with another config, reloads it in place (SIGUSR2 to the master); `lb.sh down` stops it and
# removes its state dir; `lb.sh status`.
# Env: KTHW_LB_DIR (state dir: config, pidfile, log, stats socket), KTHW_LB_ADDRESS, KTHW_LB_PORT;
# optional KTHW_GENERATION/KTHW_GENERATION_FILE (recorded by up).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LOG_TAG=lb
# shellcheck source=lib.sh
source "$here/lib.sh"
need KTHW_LB_DIR KTHW_LB_ADDRESS KTHW_LB_PORT

dir="$KTHW_LB_DIR"
cfg="$dir/haproxy.cfg"
pidfile="$dir/haproxy.pid"
marker="$cfg"

alive() { pidfile_alive "$pidfile" "$marker"; }

ensure_haproxy() {
  command -v haproxy >/dev/null && return 0
  log "installing haproxy"
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q haproxy >&2
}

case "${1:-}" in
  up)
    ensure_haproxy
    mkdir -p "$dir"
    cat >"$cfg.new"
    haproxy -c -q -f "$cfg.new" || die "the rendered HAProxy config does not validate (kept as $cfg.new)"
    if alive; then
      if cmp -s "$cfg.new" "$cfg"; then
        rm -f "$cfg.new"
        log "running, config unchanged"
      else
        mv "$cfg.new" "$cfg"
        kill -USR2 "$(cat "$pidfile")"
        log "config changed: reloaded"
      fi
    else
      refuse_foreign_listener "$KTHW_LB_ADDRESS" "$KTHW_LB_PORT"
      mv "$cfg.new" "$cfg"
      rm -f "$pidfile"
      daemonize "$pidfile" "$dir/haproxy.log" haproxy -W -db -f "$cfg"
      log "started (pid $(cat "$pidfile"))"
    fi
    if ! wait_own_listen "$KTHW_LB_ADDRESS" "$KTHW_LB_PORT" "$pidfile" "$marker" 20; then
      tail -n 20 "$dir/haproxy.log" >&2 || true
      die "HAProxy is not listening on $KTHW_LB_ADDRESS:$KTHW_LB_PORT"
    fi
    record_generation
    ;;
  down)
    stop_pidfile "$pidfile" "$marker" 10
    if listening "$KTHW_LB_ADDRESS" "$KTHW_LB_PORT"; then
      log "warning: something still listens on $KTHW_LB_ADDRESS:$KTHW_LB_PORT"
    fi
    if [[ -d "$dir" ]]; then rm -rf --one-file-system "$dir"; fi
    log "stopped"
    ;;
  status)
    if alive; then echo running; else echo stopped; fi
    ;;
  *) die "usage: lb.sh up|down|status" ;;
esac
