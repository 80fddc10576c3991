# shellcheck shell=bash disable=SC2317
# Shared helpers for the host scripts; included into each rendered script (no sourcing at run time).

log() { printf '[kthw %s] %s\n' "$(hostname)" "$*" >&2; }

# wait_until TRIES DELAY WHAT CMD...: run CMD until it succeeds, at most TRIES times, DELAY s apart (DELAY may
# be a fraction: a fine poll keeps the bootstrap's critical path from waiting on a sleep).
wait_until() {
  local tries=$1 delay=$2 what=$3 i start=$SECONDS
  shift 3
  for ((i = 1; i <= tries; i++)); do
    if "$@" >/dev/null 2>&1; then
      log "$what: ok after $i tries ($((SECONDS - start))s)"
      return 0
    fi
    sleep "$delay"
  done
  log "$what: not ready after $tries tries ($((SECONDS - start))s)"
  return 1
}

# unit_failed UNIT: report a unit that did not become healthy, with its last journal lines.
unit_failed() {
  log "$1 did not become healthy; its last journal lines:"
  systemctl --no-pager --full status "$1" >&2 || true
  journalctl --no-pager -u "$1" -n 40 >&2 || true
  exit 1
}

# install_unit NAME CONTENT: write a unit file only when it changed; print "changed" when it did.
install_unit() {
  local path="/etc/systemd/system/$1.service" new
  new=$(mktemp)
  printf '%s\n' "$2" >"$new"
  if cmp -s "$new" "$path"; then
    rm -f "$new"
  else
    install -m 0644 "$new" "$path"
    rm -f "$new"
    systemctl daemon-reload
    echo changed
  fi
}

# stop_unit NAME: stop, disable and remove a unit; a unit that is already gone is fine.
stop_unit() {
  timeout 60 systemctl disable --now "$1" >/dev/null 2>&1 || true
  rm -f "/etc/systemd/system/$1.service"
  systemctl daemon-reload || true
}
