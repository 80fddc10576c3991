# shellcheck shell=bash
# The /healthz proxy site's install and removal; included into install.sh.j2 and remove.sh.j2 after
# common/lib.sh.j2 (apt_get).
# NGINX_DIR (default /etc/nginx) and KTHW_STATE_DIR (default /var/lib/kthw) exist for tests.

NGINX_DIR=${NGINX_DIR:-/etc/nginx}
HEALTHZ_SITE="$NGINX_DIR/sites-available/kubernetes-healthz"
HEALTHZ_LINK="$NGINX_DIR/sites-enabled/kubernetes-healthz"
NGINX_MARKER="${KTHW_STATE_DIR:-/var/lib/kthw}/nginx-installed-by-kthw"
export DEBIAN_FRONTEND=noninteractive

healthz_log() { printf '[kthw %s] nginx-healthz: %s\n' "$(hostname)" "$*" >&2; }

nginx_check() { nginx -t -q -c "$NGINX_DIR/nginx.conf"; }

# ensure_nginx: install nginx with apt-get only if it is missing, and remember that kthw did.
ensure_nginx() {
  command -v nginx >/dev/null 2>&1 && return 0
  healthz_log "installing nginx"
  # The lock timeout covers cloud-init or unattended-upgrades still running apt at first boot.
  apt_get update -q
  apt_get install -y -q --no-install-recommends nginx
  mkdir -p "$(dirname "$NGINX_MARKER")"
  touch "$NGINX_MARKER"
}

# install_site FILE: make FILE the only site on port 80; restore the previous site if nginx -t fails.
install_site() {
  local new=$1 backup
  if [[ ! -s "$new" ]]; then
    healthz_log "the site is empty; refusing to install it"
    return 1
  fi
  ensure_nginx
  mkdir -p "$NGINX_DIR/sites-available" "$NGINX_DIR/sites-enabled"
  backup=$(mktemp)
  cp "$HEALTHZ_SITE" "$backup" 2>/dev/null || rm -f "$backup"
  install -m 0644 "$new" "$HEALTHZ_SITE"
  ln -sfn "$HEALTHZ_SITE" "$HEALTHZ_LINK"
  rm -f "$NGINX_DIR/sites-enabled/default"  # nothing but the health check on port 80
  if ! nginx_check; then
    healthz_log "nginx -t rejected the site; restoring the previous one"
    if [[ -f "$backup" ]]; then install -m 0644 "$backup" "$HEALTHZ_SITE"; else rm -f "$HEALTHZ_SITE" "$HEALTHZ_LINK"; fi
    rm -f "$backup"
    return 1
  fi
  rm -f "$backup"
  systemctl enable --no-reload nginx >/dev/null 2>&1
  systemctl reload-or-restart nginx
  healthz_log "site installed"
}

# probe_healthz HOST PORT TRIES: wait (1 s apart) until GET /healthz with `Host: HOST` on 127.0.0.1:PORT
# answers 200, as the load balancer's check will; print nginx's last error lines if it never does.
probe_healthz() {
  local host=$1 port=$2 tries=$3 i
  for ((i = 1; i <= tries; i++)); do
    if curl -fsS -o /dev/null --max-time 3 -H "Host: $host" "http://127.0.0.1:$port/healthz" 2>/dev/null; then
      healthz_log "http://127.0.0.1:$port/healthz answers 200 (try $i)"
      return 0
    fi
    sleep 1
  done
  healthz_log "http://127.0.0.1:$port/healthz did not answer 200 after $tries tries; nginx's last errors:"
  tail -n 20 "${NGINX_ERROR_LOG:-/var/log/nginx/error.log}" >&2 || true
  return 1
}

# delete_site: remove the site; stop and purge nginx if kthw installed it. Tolerates nginx being gone.
delete_site() {
  rm -f "$HEALTHZ_LINK" "$HEALTHZ_SITE"
  if ! command -v nginx >/dev/null 2>&1; then
    healthz_log "nginx is not installed; nothing else to do"
    return 0
  fi
  if [[ -f "$NGINX_MARKER" ]]; then
    healthz_log "removing nginx (installed by kthw)"
    timeout 60 systemctl disable --now nginx >/dev/null 2>&1 || true
    apt_get purge -y -q nginx nginx-common || true
    rm -f "$NGINX_MARKER"
  elif nginx_check 2>/dev/null; then
    timeout 60 systemctl reload nginx || true
  fi
  healthz_log "site removed"
}
