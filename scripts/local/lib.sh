# shellcheck shell=bash
# Helpers shared by the local stack's scripts (sourced, not run).

# ip, sysctl, mount, haproxy and debootstrap live in sbin, which a user's PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '[%s] %s\n' "${LOG_TAG:-kthw-local}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
  local var
  for var in "$@"; do
    [[ -n "${!var:-}" ]] || die "environment variable $var is required"
  done
}

# daemonize PIDFILE LOGFILE CMD...: start CMD fully detached (own session, stdin /dev/null, stdout and
# stderr appended to LOGFILE, cwd /, no inherited descriptors; with KTHW_JOIN_CGROUPS, a ":"-list of cgroup.procs
# files, in those cgroups) and write its pid to PIDFILE.
daemonize() {
  local pidfile="$1" logfile="$2"
  shift 2
  python3 - "$pidfile" "$logfile" "$@" <<'PY'
import os, subprocess, sys
pidfile, logfile, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
cgroups = [p for p in os.environ.get("KTHW_JOIN_CGROUPS", "").split(":") if p]

def join_cgroups():
    for procs in cgroups:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

with open(logfile, "ab") as out:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            cwd="/", start_new_session=True, close_fds=True,
                            preexec_fn=join_cgroups if cgroups else None)
tmp = pidfile + ".tmp"
with open(tmp, "w") as f:
    f.write(f"{proc.pid}\n")
os.replace(tmp, pidfile)
PY
}

# pid_alive PID [MARKER]: the process exists, is not a zombie and (if MARKER is given) its command line
# contains MARKER (so a recycled pid is never taken for ours).
pid_alive() {
  local pid="$1" marker="${2:-}" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 1
  [[ -z "$marker" ]] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# pidfile_alive PIDFILE [MARKER]
pidfile_alive() {
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 1
  pid_alive "$pid" "${2:-}"
}

# stop_pidfile PIDFILE MARKER SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL; removes PIDFILE.
stop_pidfile() {
  local pidfile="$1" marker="$2" seconds="$3" pid i
  pid="$(cat "$pidfile" 2>/dev/null)" || { rm -f "$pidfile"; return 0; }
  if pid_alive "$pid" "$marker"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < seconds * 5; i++)); do
      pid_alive "$pid" "$marker" || break
      sleep 0.2
    done
    if pid_alive "$pid" "$marker"; then
      log "pid $pid still alive after ${seconds}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 25; i++)); do pid_alive "$pid" "$marker" || break; sleep 0.2; done
    fi
  fi
  rm -f "$pidfile"
}

# wait_listen ADDR PORT SECONDS: until something listens on ADDR:PORT (TCP), bounded.
wait_listen() {
  local addr="$1" port="$2" seconds="$3" i
  for ((i = 0; i < seconds * 5; i++)); do
    ss -Hltn "src $addr:$port" 2>/dev/null | grep -q . && return 0
    sleep 0.2
  done
  return 1
}

# listener_pids ADDR PORT: the pids listening there (TCP), one a line.
listener_pids() { { ss -Hltnp "src $1:$2" 2>/dev/null || true; } | { grep -o 'pid=[0-9]*' || true; } | cut -d= -f2 | sort -u; }

# wait_own_listen ADDR PORT PIDFILE MARKER SECONDS: until the pidfile's process (or a child: HAProxy's
# worker) listens on ADDR:PORT, bounded; fails at once if that process exits. The marker is checked once the
# process is up: HAProxy's master re-executes itself into its wait mode right after starting, and during that
# exec its cmdline is briefly empty (a `lb.sh up` failed on exactly that).
wait_own_listen() {
  local addr="$1" port="$2" pidfile="$3" marker="$4" seconds="$5" i pid p
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  for ((i = 0; i < seconds * 5; i++)); do
    pid_alive "$pid" || return 1
    pid_alive "$pid" "$marker" || { sleep 0.2; continue; }
    for p in $(listener_pids "$addr" "$port"); do
      [[ "$p" == "$pid" || "$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)" == "$pid" ]] && return 0
    done
    sleep 0.2
  done
  return 1
}

# refuse_foreign_listener ADDR PORT: die if something that is not ours already listens there.
refuse_foreign_listener() {
  local pids
  pids="$(listener_pids "$1" "$2" | paste -sd, -)"
  [[ -z "$pids" ]] || die "$1:$2 is already in use by pid(s) $pids (another stack?)"
}

# listening ADDR PORT: whether something listens there now.
listening() { ss -Hltn "src $1:$2" 2>/dev/null | grep -q .; }

# record_generation: after a successful `up`, note the generation the program asked for (KTHW_GENERATION)
# in KTHW_GENERATION_FILE; components/local compares it with what it observes to decide on a repair.
record_generation() {
  [[ -n "${KTHW_GENERATION:-}" && -n "${KTHW_GENERATION_FILE:-}" ]] || return 0
  mkdir -p "$(dirname "$KTHW_GENERATION_FILE")"
  printf '%s\n' "$KTHW_GENERATION" >"$KTHW_GENERATION_FILE"
}

# yaml_quote STRING: STRING as a single-quoted YAML scalar.
yaml_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# nocloud_seed DIR NONCE HOSTNAME PUBLIC_KEY USER_DATA: the NoCloud seed cloud-init reads at boot (DIR/meta-data:
# instance-id, local-hostname, public-keys; DIR/user-data). The instance id is a digest of everything else, so
# it is new for a new NONCE (a new host) and whenever the seed changes. Sets seed_changed=1 when it wrote
# something, else 0.
# shellcheck disable=SC2034 # seed_changed is read by the caller
nocloud_seed() {
  local dir="$1" nonce="$2" host="$3" key="$4" user_data="$5" instance meta
  instance="i-$(printf '%s\n' "$nonce" "$host" "$key" "$user_data" | sha256sum | cut -c1-20)"
  meta="$(printf 'instance-id: %s\nlocal-hostname: %s\npublic-keys:\n  - %s' "$instance" "$(yaml_quote "$host")" \
    "$(yaml_quote "$key")")"
  seed_changed=0
  user_data="${user_data%$'\n'}"
  if cmp -s - "$dir/meta-data" <<<"$meta" && cmp -s - "$dir/user-data" <<<"$user_data"; then
    return 0
  fi
  mkdir -p "$dir"
  printf '%s\n' "$user_data" >"$dir/user-data"
  printf '%s\n' "$meta" >"$dir/meta-data"
  log "seeded instance $instance"
  seed_changed=1
}
