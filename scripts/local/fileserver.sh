#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The local stack's release file server: nginx (one process, detached, sendfile) on
# KTHW_FS_ADDRESS:KTHW_FS_PORT serving KTHW_FS_ROOT (the toolchain's releases/ dir), from which the hosts
# download the binaries exactly as a cloud VM downloads them.  `fileserver.sh up|down|status`.
# Env: KTHW_FS_DIR (state dir: config, pidfile, logs), KTHW_FS_ROOT, KTHW_FS_ADDRESS, KTHW_FS_PORT; optional
# KTHW_GENERATION/KTHW_GENERATION_FILE (recorded by up).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LOG_TAG=fileserver
# shellcheck source=lib.sh
source "$here/lib.sh"
need KTHW_FS_DIR KTHW_FS_ADDRESS KTHW_FS_PORT

dir="$KTHW_FS_DIR"
pidfile="$dir/http.pid"
cfg="$dir/nginx.conf"
marker="-c $cfg" # the process serves what $cfg says (components/local/probe.py reads it too)

case "${1:-}" in
  up)
    need KTHW_FS_ROOT
    [[ -d "$KTHW_FS_ROOT" ]] || die "nothing to serve: $KTHW_FS_ROOT does not exist (run scripts/toolchain/build)"
    command -v nginx >/dev/null || die "nginx is not installed (scripts/setup installs it)"
    mkdir -p "$dir/tmp"
    cat >"$cfg.new" <<CONF
# kthw local stack: the release file server (written by fileserver.sh; do not edit).
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen $KTHW_FS_ADDRESS:$KTHW_FS_PORT;
        root $KTHW_FS_ROOT;
    }
}
CONF
    if pidfile_alive "$pidfile" "$marker" && cmp -s "$cfg.new" "$cfg"; then
      rm -f "$cfg.new"
      log "running"
    else
      stop_pidfile "$pidfile" "$marker" 5 # one serving another directory or address
      mv "$cfg.new" "$cfg"
      nginx -t -q -p "$dir/" -c "$cfg" 2>"$dir/http.log" || { cat "$dir/http.log" >&2; die "invalid nginx config $cfg"; }
      refuse_foreign_listener "$KTHW_FS_ADDRESS" "$KTHW_FS_PORT"
      daemonize "$pidfile" "$dir/http.log" nginx -p "$dir/" -c "$cfg"
      log "started (pid $(cat "$pidfile")) serving $KTHW_FS_ROOT"
    fi
    if ! wait_own_listen "$KTHW_FS_ADDRESS" "$KTHW_FS_PORT" "$pidfile" "$marker" 20; then
      tail -n 20 "$dir/http.log" "$dir/error.log" >&2 || true
      die "the file server is not listening on $KTHW_FS_ADDRESS:$KTHW_FS_PORT"
    fi
    record_generation
    ;;
  down)
    stop_pidfile "$pidfile" "$marker" 10
    if [[ -d "$dir" ]]; then rm -rf --one-file-system "$dir"; fi
    log "stopped"
    ;;
  status)
    if pidfile_alive "$pidfile" "$marker"; then echo running; else echo stopped; fi
    ;;
  *) die "usage: fileserver.sh up|down|status" ;;
esac
