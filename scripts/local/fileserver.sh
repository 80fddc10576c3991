#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The local stack's release file server: a static HTTP server (python3 -m http.server, detached) on
# KTHW_FS_ADDRESS:KTHW_FS_PORT serving KTHW_FS_ROOT (the toolchain's releases/ dir), from which the hosts
# download the binaries exactly as a cloud VM downloads them.  `fileserver.sh up|down|status`.
# Env: KTHW_FS_DIR (state dir: pidfile, log), KTHW_FS_ROOT, KTHW_FS_ADDRESS, KTHW_FS_PORT; optional
# KTHW_GENERATION/KTHW_GENERATION_FILE (recorded by up).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LOG_TAG=fileserver
# shellcheck source=lib.sh
source "$here/lib.sh"
need KTHW_FS_DIR KTHW_FS_ADDRESS KTHW_FS_PORT

dir="$KTHW_FS_DIR"
pidfile="$dir/http.pid"
any="http.server --bind $KTHW_FS_ADDRESS"

case "${1:-}" in
  up)
    need KTHW_FS_ROOT
    [[ -d "$KTHW_FS_ROOT" ]] || die "nothing to serve: $KTHW_FS_ROOT does not exist (run scripts/toolchain/build)"
    marker="$any --directory $KTHW_FS_ROOT $KTHW_FS_PORT"
    mkdir -p "$dir"
    if pidfile_alive "$pidfile" "$marker"; then
      log "running"
    else
      stop_pidfile "$pidfile" "$any" 5 # one serving another directory
      refuse_foreign_listener "$KTHW_FS_ADDRESS" "$KTHW_FS_PORT"
      daemonize "$pidfile" "$dir/http.log" python3 -m http.server --bind "$KTHW_FS_ADDRESS" \
        --directory "$KTHW_FS_ROOT" "$KTHW_FS_PORT"
      log "started (pid $(cat "$pidfile")) serving $KTHW_FS_ROOT"
    fi
    if ! wait_own_listen "$KTHW_FS_ADDRESS" "$KTHW_FS_PORT" "$pidfile" "$marker" 20; then
      tail -n 20 "$dir/http.log" >&2 || true
      die "the file server is not listening on $KTHW_FS_ADDRESS:$KTHW_FS_PORT"
    fi
    record_generation
    ;;
  down)
    stop_pidfile "$pidfile" "$any" 10
    if [[ -d "$dir" ]]; then rm -rf --one-file-system "$dir"; fi
    log "stopped"
    ;;
  status)
    if pidfile_alive "$pidfile" "$any"; then echo running; else echo stopped; fi
    ;;
  *) die "usage: fileserver.sh up|down|status" ;;
esac
