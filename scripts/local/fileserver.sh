#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The local stack's release mirror: nginx (one process, detached, sendfile) serving KTHW_FS_ROOT (the toolchain's
# mirror/ dir, laid out as dl.k8s.io and etcd's releases are) over HTTPS on KTHW_FS_ADDRESS:KTHW_FS_PORT, from
# which the hosts download the binaries and their checksum files exactly as a cloud VM does from the official
# sites.  `fileserver.sh up|down|status`.
# `up` reads the server's private key and certificate (PEM, issued for KTHW_FS_ADDRESS by the stack's mirror CA)
# on stdin: never an argument or a log line; kept for nginx in the state dir, mode 0600.
# Env: KTHW_FS_DIR (state dir: config, key and cert, pidfile, logs), KTHW_FS_ROOT, KTHW_FS_ADDRESS, KTHW_FS_PORT;
# optional KTHW_GENERATION/KTHW_GENERATION_FILE (recorded by up).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LOG_TAG=fileserver
# shellcheck source=lib.sh
source "$here/lib.sh"
need KTHW_FS_DIR KTHW_FS_ADDRESS KTHW_FS_PORT

dir="$KTHW_FS_DIR"
pidfile="$dir/http.pid"
cfg="$dir/nginx.conf"
tls="$dir/tls.pem" # the key and the cert chain: nginx reads each from the one file
marker="-c $cfg" # the process serves what $cfg says (components/local/liveness.py checks it too)

case "${1:-}" in
  up)
    need KTHW_FS_ROOT
    [[ -d "$KTHW_FS_ROOT" ]] || die "nothing to serve: $KTHW_FS_ROOT does not exist (run scripts/toolchain/build)"
    command -v nginx >/dev/null || die "nginx is not installed (scripts/setup installs it)"
    mkdir -p "$dir/tmp"
    (
      umask 077
      cat >"$tls.new"
    )
    if ! grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$tls.new" || ! grep -q -- '-----BEGIN CERTIFICATE-----' "$tls.new"; then
      rm -f "$tls.new"
      die "stdin must hold the server's private key and certificate (PEM)"
    fi
    cat >"$cfg.new" <<CONF
# kthw local stack: the release mirror, HTTPS (written by fileserver.sh; do not edit).
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
        listen $KTHW_FS_ADDRESS:$KTHW_FS_PORT ssl;
        ssl_certificate $tls;
        ssl_certificate_key $tls;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $KTHW_FS_ROOT;
    }
}
CONF
    if pidfile_alive "$pidfile" "$marker" && cmp -s "$cfg.new" "$cfg" && cmp -s "$tls.new" "$tls"; then
      rm -f "$cfg.new" "$tls.new"
      log "running"
    else
      stop_pidfile "$pidfile" "$marker" 5 # one serving another directory, address or certificate
      mv "$tls.new" "$tls"
      mv "$cfg.new" "$cfg"
      nginx -t -q -p "$dir/" -c "$cfg" 2>"$dir/http.log" || { cat "$dir/http.log" >&2; die "invalid nginx config $cfg"; }
      refuse_foreign_listener "$KTHW_FS_ADDRESS" "$KTHW_FS_PORT"
      daemonize "$pidfile" "$dir/http.log" nginx -p "$dir/" -c "$cfg"
      log "started (pid $(cat "$pidfile")) serving $KTHW_FS_ROOT on https://$KTHW_FS_ADDRESS:$KTHW_FS_PORT"
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
