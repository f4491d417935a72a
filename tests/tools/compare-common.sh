# What path-compare.sh and smuggle-compare.sh share, sourced by both after `set -euo pipefail`
# with $work_name set: the programs, a work folder removed on exit, free ports, and starters
# for the origin and nginx.
cd "$(dirname "$0")/../.."
root=$PWD
portico=${PORTICO_BIN:-$root/target/debug/portico}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
for bin in "$portico" "$nginx" "$haproxy"; do
  [ -x "$bin" ] || { echo "missing $bin (build Portico with 'cargo build --bin portico'; apt-get install nginx haproxy)" >&2; exit 2; }
done

work=$(mktemp -d "/tmp/$work_name.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
origin_port=$(port); portico_port=$(port); admin_port=$(port); nginx_port=$(port); haproxy_port=$(port)
# The Python parts import tests/tools/compare_common.py.
export PYTHONPATH="$root/tests/tools"

# Runs $work/origin.py (a serve(conn) and serve_forever) on $origin_port, logging to
# $work/origin.log.
start_origin() {
  : > "$work/origin.log"
  python3 "$work/origin.py" "$origin_port" "$work/origin.log" & pids+=($!)
}

# Starts nginx in the foreground in $work, with the lines given (upstreams, a server) inside
# its `http` block.
start_nginx() {
  mkdir -p "$work/nginx"
  cat > "$work/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
$1
}
EOF
  "$nginx" -p "$work/nginx" -c "$work/nginx.conf" 2>"$work/nginx/stderr.log" & pids+=($!)
}

# Starts HAProxy in the foreground: the shared `global` and `defaults` (HTTP mode, short
# timeouts), then the lines on stdin (more `defaults` lines first, if any, then the frontend
# and backend).
start_haproxy() {
  {
    cat <<EOF
global
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 5s
  timeout server 5s
EOF
    cat
  } > "$work/haproxy.cfg"
  "$haproxy" -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" & pids+=($!)
}

# Starts Portico (RUST_LOG=$1) with a listener `web` on $portico_port and the `upstreams`
# and `routes` on stdin, then waits until all four servers listen.
start_portico_and_wait() {
  {
    cat <<EOF
server: { grace_period: 0s, shutdown_timeout: 1s, upgrade_sock: $work/portico.sock, pid_file: $work/portico.pid }
admin: { listen: 127.0.0.1:$admin_port }
listeners:
  - { name: web, listen: 127.0.0.1:$portico_port }
EOF
    cat
  } > "$work/portico.yaml"
  RUST_LOG=$1 "$portico" -c "$work/portico.yaml" 2>"$work/portico.log" >/dev/null & pids+=($!)
  python3 "$root/tests/tools/compare_common.py" wait $origin_port $portico_port $nginx_port $haproxy_port
}
