#!/usr/bin/env bash
# Portico side by side with the floor (bare Pingora), pingap, nginx and HAProxy, one command
# from a clean clone:
#
#   benches/compare.sh
#
# Installs what it needs (Debian packages; pingap from crates.io into a cache), builds Portico
# and the floor (release), makes one ECDSA P-256 certificate, starts one origin (nginx, plain
# HTTP: /small and /1m) and six TLS-terminating proxies in front of it, each with one worker
# thread and upstream keep-alive, each adding X-Forwarded-For/-Proto/-Host, X-Real-IP and a
# request id (returned to the client):
#
#   Portico, the floor (benches/floor: the same job on Pingora alone), pingap, Portico with
#   five built-in plugins, nginx, HAProxy, and the origin direct (TLS).
#
# The proxy under test runs on core PROXY_CPU, the load generator and the origin on LOAD_CPU.
# Scenarios run in interleaved rounds (portico, floor, nginx, haproxy, pingap, portico5,
# direct, then again); the report gives medians. Every process started here is stopped by PID on exit, also on
# error or Ctrl-C. Results: $OUT/latest.md (table) and $OUT/raw.txt (one line per run).
#
# Knobs (environment): ROUNDS=3 DURATION=5 WARMUP=1 CONNS=50 IDLE_CONNS=2000
#   SCENARIOS="keepalive handshake h2 1m memory"
#   TARGETS="portico floor nginx haproxy pingap portico5 direct" (a target left out is not
#   measured; one that is listed and cannot be built, installed or started stops the run)
#   PORTICO_BIN=path FLOOR_BIN=path (skip the build)  PINGAP_BIN=path (skip the install)
#   PINGAP_VERSION=0.13.1 PINGAP_CACHE=benches/cache (where `cargo install` puts pingap; the
#   first install compiles for a long while, niced)  PORTICO_ALT=path (add target "alt": another Portico
#   binary with the plain config, or the five plugins with ALT_PLUGINS=5, or one more server
#   key with ALT_SERVER="header_case: normalize", for before/after comparisons; ALT_LABEL names
#   its row)  HOLD=1 (start and check everything, then keep it
#   running until interrupted, to profile by hand)  QUIET_WAIT=1200 QUIET_LOAD=0.7 (wait for a quiet
#   machine first)  PORT_BASE=18000  OUT=benches/results  KEEP=1 (keep the work dir)
#   FLOOR_TIMEOUTS=1 (the floor with Portico's default timeouts: benches/floor/src/main.rs)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/benches/compare
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-50}
HS_CONNS=${HS_CONNS:-16}
BIG_CONNS=${BIG_CONNS:-8}
H2_CLIENTS=${H2_CLIENTS:-16}
H2_STREAMS=${H2_STREAMS:-16}
IDLE_CONNS=${IDLE_CONNS:-2000}
SCENARIOS=${SCENARIOS:-"keepalive handshake h2 1m memory"}
TARGETS=${TARGETS:-"portico floor nginx haproxy pingap portico5 direct"}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
QUIET_WAIT=${QUIET_WAIT:-1200}
QUIET_LOAD=${QUIET_LOAD:-0.7}
PORT_BASE=${PORT_BASE:-18000}
OUT=${OUT:-$ROOT/benches/results}
PORTICO_BIN=${PORTICO_BIN:-}
PORTICO_ALT=${PORTICO_ALT:-}
FLOOR_BIN=${FLOOR_BIN:-}
PINGAP_BIN=${PINGAP_BIN:-}
# The newest pingap that builds with the toolchain here: 0.15 and 0.16 need rustc 1.96.
PINGAP_VERSION=${PINGAP_VERSION:-0.13.1}
PINGAP_CACHE=${PINGAP_CACHE:-$ROOT/benches/cache}

P_ORIGIN=$((PORT_BASE + 80))     # plain HTTP, what every proxy forwards to
P_DIRECT=$((PORT_BASE + 81))     # the origin over TLS: the direct row
P_RESUME=$((PORT_BASE + 82))     # the origin over TLS, logging $ssl_session_reused
P_PORTICO=$((PORT_BASE + 443))
P_PORTICO5=$((PORT_BASE + 444))
P_NGINX=$((PORT_BASE + 445))
P_HAPROXY=$((PORT_BASE + 446))
P_ALT=$((PORT_BASE + 447))       # PORTICO_ALT: a second Portico binary, plain config (A/B)
P_FLOOR=$((PORT_BASE + 448))
P_PINGAP=$((PORT_BASE + 449))
SMALL_BODY="hello from the origin, a short text body\n"
SMALL_LEN=41
BIG_LEN=1048576

WORK=$(mktemp -d /tmp/portico-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers may run as nobody and read files from here
LOG=$WORK/compare.log
RAW=$WORK/raw.txt
declare -A PID=()
CLK_TCK=$(getconf CLK_TCK)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }
die() { log "ERROR: $*"; exit 1; }

stop() {
    local name=$1 sig=${2:-TERM} pid=${PID[$1]:-}
    [[ -n $pid ]] || return 0
    unset "PID[$name]"
    kill -"$sig" "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 7>&- 2>/dev/null || true
    for name in "${!PID[@]}"; do
        case $name in portico* | alt | floor | pingap) stop "$name" INT ;; *) stop "$name" TERM ;; esac
    done
    if [[ ${KEEP:-0} == 1 || $rc != 0 ]]; then
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "failed: line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# Tools, build, certificate
# ---------------------------------------------------------------------------------------
install_tools() {
    local need=()
    command -v wrk >/dev/null || need+=(wrk)
    command -v h2load >/dev/null || need+=(nghttp2-client)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
    command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
    command -v python3 >/dev/null || need+=(python3)
    command -v curl >/dev/null || need+=(curl)
    command -v openssl >/dev/null || need+=(openssl)
    command -v taskset >/dev/null || need+=(util-linux)
    command -v ss >/dev/null || need+=(iproute2)
    command -v cc >/dev/null || need+=(gcc libc6-dev)
    if wants pingap && [[ -z $PINGAP_BIN ]]; then
        # What pingap's dependencies run at build time: protoc (etcd-client), cmake
        # (aws-lc-sys), perl and make (the vendored OpenSSL).
        command -v protoc >/dev/null || need+=(protobuf-compiler)
        command -v cmake >/dev/null || need+=(cmake)
        command -v perl >/dev/null || need+=(perl)
        command -v make >/dev/null || need+=(make)
    fi
    if ((${#need[@]})); then
        log "installing ${need[*]}"
        local sudo=; [[ $(id -u) == 0 ]] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >>"$LOG"
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
}

wants() { [[ " $TARGETS " == *" $1 "* ]]; }

build_portico() {
    local packages=()
    [[ -n $PORTICO_BIN ]] || packages+=(-p portico)
    wants floor && [[ -z $FLOOR_BIN ]] && packages+=(-p portico-floor)
    if ((${#packages[@]})); then
        log "building (cargo build --release ${packages[*]})"
        (cd "$ROOT" && cargo build --release "${packages[@]}") 2>&1 | tail -n 3 | tee -a "$LOG" >&2
    fi
    local release=${CARGO_TARGET_DIR:-$ROOT/target}/release
    BIN=${PORTICO_BIN:-$release/portico}
    [[ -x $BIN ]] || die "no Portico binary at $BIN"
    if wants floor; then
        FLOOR=${FLOOR_BIN:-$release/portico-floor}
        [[ -x $FLOOR ]] || die "no floor binary at $FLOOR (cargo build --release -p portico-floor)"
    fi
}

# pingap from crates.io, installed once into PINGAP_CACHE and reused. Its release profile
# (fat LTO, one codegen unit) takes long to build: niced, so that it yields to other work.
# Its own target dir sits in the cache so that an interrupted install resumes.
install_pingap() {
    wants pingap || return 0
    if [[ -z $PINGAP_BIN ]]; then
        local root=$PINGAP_CACHE/pingap-$PINGAP_VERSION
        PINGAP_BIN=$root/bin/pingap
        if [[ ! -x $PINGAP_BIN ]]; then
            log "installing pingap $PINGAP_VERSION into $root (cargo install --locked; long, niced)"
            mkdir -p "$root"
            nice -n 19 cargo install --locked --root "$root" --target-dir "$root/build" pingap --version "$PINGAP_VERSION" \
                >"$root/install.log" 2>&1 || die "pingap $PINGAP_VERSION did not build (see $root/install.log); leave pingap out of TARGETS to run without it"
            rm -rf "$root/build"
        fi
    fi
    [[ -x $PINGAP_BIN ]] || die "no pingap binary at $PINGAP_BIN"
}

# wrk resumes TLS sessions on reconnect; this shim makes every handshake a full one.
build_shim() {
    cc -shared -fPIC -O2 -o "$WORK/no_resume.so" "$HERE/no_resume.c" -ldl
    NO_RESUME=$WORK/no_resume.so
}

make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>>"$LOG"
    cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/combined.pem"   # HAProxy's crt
    chmod 644 "$WORK"/*.pem
}

# ---------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------
write_configs() {
    mkdir -p "$WORK/www" "$WORK/tmp"
    head -c $BIG_LEN /dev/urandom >"$WORK/www/1m"
    chmod -R a+rX "$WORK/www"
    local temps="client_body_temp_path $WORK/tmp/body; proxy_temp_path $WORK/tmp/proxy;
        fastcgi_temp_path $WORK/tmp/fcgi; uwsgi_temp_path $WORK/tmp/uwsgi; scgi_temp_path $WORK/tmp/scgi;"

    cat >"$WORK/origin.conf" <<EOF
worker_processes 1;
pid $WORK/origin.pid;
error_log $WORK/origin.err warn;
worker_rlimit_nofile 20000;
events { worker_connections 10000; }
http {
    $temps
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    log_format resume '\$ssl_session_reused \$ssl_protocol \$ssl_cipher';
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$P_ORIGIN;
        listen 127.0.0.1:$P_DIRECT ssl http2;
        root $WORK/www;
        location = /small { default_type text/plain; return 200 "$SMALL_BODY"; }
        location = /1m { default_type application/octet-stream; }
        location = /headers {
            default_type text/plain;
            return 200 "host=\$http_host xff=\$http_x_forwarded_for proto=\$http_x_forwarded_proto xfh=\$http_x_forwarded_host real_ip=\$http_x_real_ip id=\$http_x_request_id\n";
        }
    }
    server {
        listen 127.0.0.1:$P_RESUME ssl;
        access_log $WORK/resume.log resume;
        location / { default_type text/plain; return 200 "$SMALL_BODY"; }
    }
}
EOF

    cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
worker_rlimit_nofile 20000;
events { worker_connections 10000; }
http {
    $temps
    access_log off;
    keepalive_requests 100000000;
    upstream origin {
        server 127.0.0.1:$P_ORIGIN;
        keepalive 128;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$P_NGINX ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Request-Id \$request_id;
            add_header X-Request-Id \$request_id always;
            # Buffer in memory, never in temp files (1 MiB responses would go to disk).
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF

    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:$P_HAPROXY ssl crt $WORK/combined.pem alpn h2,http/1.1
    unique-id-format %[uuid()]
    unique-id-header X-Request-Id
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Real-IP %[src]
    http-after-response set-header X-Request-Id %[unique-id]
    default_backend origin
backend origin
    http-reuse always
    server origin 127.0.0.1:$P_ORIGIN
EOF

    portico_config portico $P_PORTICO $((PORT_BASE + 901)) "" >"$WORK/portico.yaml"
    local five="
plugins:
  - headers: { request: { set: { X-Bench: \"1\" } }, response: { remove: [X-Powered-By] } }
  - cors: { allow_origins: [\"*\"], allow_methods: [GET, POST], allow_headers: [Content-Type] }
  - ip_filter: { allow: [127.0.0.0/8] }
  - rate_limit: { per_second: 1000000000, burst: 1000000000, key: client_ip }
  - access_log: { path: /dev/null }"
    portico_config portico5 $P_PORTICO5 $((PORT_BASE + 902)) "$five" >"$WORK/portico5.yaml"
    local alt_plugins=""
    [[ ${ALT_PLUGINS:-0} == 5 ]] && alt_plugins=$five
    portico_config alt $P_ALT $((PORT_BASE + 903)) "$alt_plugins" "${ALT_SERVER:-}" >"$WORK/alt.yaml"

    # pingap (its conf/*.toml documents every key): one server thread, the certificate as
    # its default, HTTP/2 on, the four forwarded headers, and its request_id plugin, which
    # sends the id upstream and back to the client. `$host` is the host without the port
    # (`$http_host` would be the header as sent, but HTTP/2 requests have none, and pingap
    # then leaves the header out). Upstream keep-alive is Pingora's connection pool, as in
    # Portico and the floor.
    cat >"$WORK/pingap.toml" <<EOF
[basic]
name = "bench"
pid_file = "$WORK/pingap.pid"
upgrade_sock = "$WORK/pingap-upgrade.sock"
threads = 1
grace_period = "1s"
graceful_shutdown_timeout = "1s"
log_level = "warn"

[upstreams.origin]
addrs = ["127.0.0.1:$P_ORIGIN"]

[plugins.requestId]
category = "request_id"
algorithm = "uuid"

[locations.all]
upstream = "origin"
path = "/"
proxy_set_headers = [
    "X-Forwarded-For:\$remote_addr",
    "X-Forwarded-Proto:\$scheme",
    "X-Forwarded-Host:\$host",
    "X-Real-IP:\$remote_addr",
]
plugins = ["requestId"]

[servers.bench]
addr = "127.0.0.1:$P_PINGAP"
locations = ["all"]
threads = 1
global_certificates = true
enabled_h2 = true
tls_min_version = "tls1.2"

[certificates.bench]
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"
is_default = true
EOF
}

portico_config() {
    local name=$1 port=$2 admin=$3 plugins=$4 server=${5:-}
    cat <<EOF
server:
  ${server}
  threads: 1
  grace_period: 1s
  shutdown_timeout: 1s
  pid_file: $WORK/$name.pid
  upgrade_sock: $WORK/$name-upgrade.sock
admin:
  listen: 127.0.0.1:$admin
listeners:
  - name: https
    listen: 127.0.0.1:$port
    tls:
      certificates:
        - { cert: $WORK/cert.pem, key: $WORK/key.pem }
upstreams:
  origin:
    backends:
      - { addr: 127.0.0.1:$P_ORIGIN }
routes:
  - name: all
    upstream: origin
$plugins
EOF
}

# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------
wait_port() {
    local port=$1 name=$2
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited at start (see $WORK/$name.out)"
        sleep 0.1
    done
    die "$name does not listen on $port"
}

start() {
    local name=$1
    case $name in
        origin)
            taskset -c "$LOAD_CPU" "$NGINX" -p "$WORK/" -e "$WORK/origin.err" -c "$WORK/origin.conf" -g 'daemon off;' \
                >"$WORK/origin.out" 2>&1 &
            PID[origin]=$!; wait_port $P_ORIGIN origin ;;
        nginx)
            taskset -c "$PROXY_CPU" "$NGINX" -p "$WORK/" -e "$WORK/nginx.err" -c "$WORK/nginx.conf" -g 'daemon off;' \
                >"$WORK/nginx.out" 2>&1 &
            PID[nginx]=$!; wait_port $P_NGINX nginx ;;
        haproxy)
            taskset -c "$PROXY_CPU" "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.out" 2>&1 &
            PID[haproxy]=$!; wait_port $P_HAPROXY haproxy ;;
        portico | portico5)
            taskset -c "$PROXY_CPU" "$BIN" -c "$WORK/$name.yaml" >"$WORK/$name.out" 2>&1 &
            PID[$name]=$!; wait_port "$(port_of "$name")" "$name" ;;
        floor)
            taskset -c "$PROXY_CPU" "$FLOOR" --listen 127.0.0.1:$P_FLOOR --upstream 127.0.0.1:$P_ORIGIN \
                --cert "$WORK/cert.pem" --key "$WORK/key.pem" >"$WORK/floor.out" 2>&1 &
            PID[floor]=$!; wait_port $P_FLOOR floor ;;
        pingap)
            taskset -c "$PROXY_CPU" "$PINGAP_BIN" -c "$WORK/pingap.toml" >"$WORK/pingap.out" 2>&1 &
            PID[pingap]=$!; wait_port $P_PINGAP pingap ;;
        alt)
            [[ -x $PORTICO_ALT ]] || die "target alt needs PORTICO_ALT=path to a portico binary"
            taskset -c "$PROXY_CPU" "$PORTICO_ALT" -c "$WORK/alt.yaml" >"$WORK/alt.out" 2>&1 &
            PID[alt]=$!; wait_port $P_ALT alt ;;
        direct) ;;
    esac
}

restart() {
    # SIGINT is Pingora's fast shutdown (SIGTERM would wait out a grace period).
    case $1 in portico* | alt | floor | pingap) stop "$1" INT ;; direct) return 0 ;; *) stop "$1" TERM ;; esac
    start "$1"
}

port_of() {
    case $1 in
        portico) echo $P_PORTICO ;; portico5) echo $P_PORTICO5 ;; nginx) echo $P_NGINX ;;
        haproxy) echo $P_HAPROXY ;; direct) echo $P_DIRECT ;; alt) echo $P_ALT ;;
        floor) echo $P_FLOOR ;; pingap) echo $P_PINGAP ;;
    esac
}

# The processes whose CPU and memory count for a target: nginx's master and its worker.
pids_of() {
    local name=$1
    [[ $name == direct ]] && name=origin
    local pid=${PID[$name]}
    echo "$pid"
    pgrep -P "$pid" 2>/dev/null || true
}

cpu_ticks() {   # utime + stime of the given processes, in clock ticks
    local total=0 stat rest
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        rest=${stat##*) }
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo $total
}

rss_kib() {
    local total=0 v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo $total
}

machine_busy() {   # busy ticks of the whole machine
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

builds_running() { pgrep -x 'cargo|rustc|cc1|cc1plus|ld|rust-lld' >/dev/null 2>&1; }

QUIET_SPENT=0
wait_quiet() {
    local load
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$load" -v q="$QUIET_LOAD" 'BEGIN {exit !(l < q)}' && ! builds_running; then
            return 0
        fi
        if ((QUIET_SPENT >= QUIET_WAIT)); then
            log "machine not quiet (load $load$(builds_running && echo ', builds running')); measuring anyway"
            NOT_QUIET=1
            return 0
        fi
        log "waiting for a quiet machine (load $load$(builds_running && echo ', builds running'))"
        sleep 30
        QUIET_SPENT=$((QUIET_SPENT + 30))
    done
}

# Between runs our own load keeps the load average up; only other people's builds count.
wait_no_builds() {
    while builds_running && ((QUIET_SPENT < QUIET_WAIT)); do
        log "a build is running; waiting"
        sleep 30
        QUIET_SPENT=$((QUIET_SPENT + 30))
    done
    builds_running && NOT_QUIET=1 || true
}

# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------
check_headers() {
    local t=$1 port body id
    port=$(port_of "$t")
    body=$(curl -sk --max-time 5 "https://localhost:$port/headers" -D "$WORK/h.$t")
    id=$(awk 'tolower($1) == "x-request-id:" {print $2}' "$WORK/h.$t" | tr -d '\r')
    log "  $t: origin saw: $body | response X-Request-Id: ${id:-MISSING}"
    [[ $t == direct ]] && return 0
    local re
    for k in xff proto xfh real_ip id; do
        re="(^| )$k=[^ ]"
        [[ $body =~ $re ]] || die "$t did not send the upstream $k header: $body"
    done
    [[ -n $id ]] || die "$t did not return X-Request-Id"
}

check_tls() {
    local t=$1 port out
    port=$(port_of "$t")
    out=$(openssl s_client -connect "127.0.0.1:$port" -servername localhost -brief </dev/null 2>&1 | grep -E 'Protocol version|Ciphersuite|Peer signature type|temp key|Temp Key' | tr -s ' ' | paste -sd';' -)
    log "  $t: $out"
    # Every server offers resumption, so the handshake scenario depends on the client not
    # asking for it (checked below).
    local r12 r13
    r12=$(openssl s_client -connect "127.0.0.1:$port" -servername localhost -tls1_2 -reconnect </dev/null 2>/dev/null | grep -c '^Reused' || true)
    printf 'GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        openssl s_client -connect "127.0.0.1:$port" -servername localhost -tls1_3 -quiet -sess_out "$WORK/sess.pem" >/dev/null 2>&1 || true
    r13=$(openssl s_client -connect "127.0.0.1:$port" -servername localhost -tls1_3 -sess_in "$WORK/sess.pem" </dev/null 2>/dev/null | grep -c '^Reused' || true)
    log "  $t: offers resumption: TLS 1.2 s_client -reconnect resumed $r12 of 5; TLS 1.3 ticket resumed: $r13 of 1"
}

# wrk must not resume sessions in the handshake scenario: run it the same way against an
# origin port that logs $ssl_session_reused, and count.
check_no_resumption() {
    : >"$WORK/resume.log"
    LD_PRELOAD=$NO_RESUME taskset -c "$LOAD_CPU" wrk -t1 -c"$HS_CONNS" -d1s -H 'Connection: close' "https://127.0.0.1:$P_RESUME/small" >/dev/null 2>&1
    sleep 0.5
    local total reused
    total=$(wc -l <"$WORK/resume.log")
    reused=$(grep -c '^r ' "$WORK/resume.log" || true)
    log "  wrk with 'Connection: close': $total handshakes, $reused resumed ($(sort "$WORK/resume.log" | uniq -c | sort -rn | sed -n 1p | tr -s ' '))"
    ((total > 0)) || die "the resumption check saw no handshake"
    ((reused == 0)) || die "wrk resumed $reused TLS sessions: the handshake scenario would not be full handshakes"
    RESUME_NOTE="$total handshakes by wrk -H 'Connection: close' with benches/compare/no_resume.c preloaded, $reused resumed (nginx \$ssl_session_reused)"
}

verify_target() {   # every response a 200 with the right body and a request id
    local t=$1 port out
    port=$(port_of "$t")
    for spec in "/small $SMALL_LEN" "/1m $BIG_LEN"; do
        set -- $spec
        out=$(taskset -c "$LOAD_CPU" wrk -t1 -c4 -d1s -s "$HERE/verify.lua" "https://127.0.0.1:$port$1" -- "$2" 2>&1 | grep '^VERIFY')
        log "  $t $1: $out"
        local re='ok=([0-9]+) bad=0 noid=([0-9]+) errors=0'
        [[ $out =~ $re ]] || die "$t $1: not every response was a 200 of $2 bytes: $out"
        ((BASH_REMATCH[1] > 0)) || die "$t $1: no response"
        [[ $t == direct || ${BASH_REMATCH[2]} == 0 ]] || die "$t $1: responses without X-Request-Id"
    done
    out=$(taskset -c "$LOAD_CPU" h2load -t1 -c2 -m4 -n200 "https://127.0.0.1:$port/small" 2>&1)
    grep -q '^requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored, 0 timeout' <<<"$out" \
        || die "$t h2: $(grep -E '^requests:|^status codes:' <<<"$out")"
    grep -q '^status codes: 200 2xx' <<<"$out" || die "$t h2: $(grep '^status codes:' <<<"$out")"
    grep -q "($((200 * SMALL_LEN))) data" <<<"$out" || die "$t h2: wrong body bytes: $(grep '^traffic:' <<<"$out")"
    grep -q 'Application protocol: h2' <<<"$out" || die "$t h2: HTTP/2 was not negotiated"
    log "  $t h2: 200 of 200 requests a 2xx over h2"
}

# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------
# Runs the load command (already pinned), measuring the target's CPU, the load generator's
# CPU, and everything else on the machine around it. Sets R_* variables.
measure() {
    local t=$1; shift
    local pids origin_pids c0 o0 b0 w0 c1 o1 b1 w1 times
    pids=$(pids_of "$t")
    origin_pids=$(pids_of origin)
    [[ $t == direct ]] && origin_pids=
    c0=$(cpu_ticks $pids); o0=$(cpu_ticks $origin_pids); b0=$(machine_busy); w0=$(date +%s%N)
    local TIMEFORMAT='%3U %3S'
    { time "$@" >"$WORK/run.out" 2>&1; } 2>"$WORK/run.time" || true
    c1=$(cpu_ticks $pids); o1=$(cpu_ticks $origin_pids); b1=$(machine_busy); w1=$(date +%s%N)
    read -r lu ls <"$WORK/run.time"
    R_WALL=$(awk -v a="$w0" -v b="$w1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
    R_CPU=$(awk -v a="$c0" -v b="$c1" -v k="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / k}')
    # CPU of everything but the target, the origin and the load generator, in % of both cores.
    R_OTHER=$(awk -v b="$((b1 - b0))" -v c="$((c1 - c0))" -v o="$((o1 - o0))" -v u="$lu" -v s="$ls" -v k="$CLK_TCK" -v w="$R_WALL" \
        'BEGIN {x = (b - c - o) / k - u - s; if (x < 0) x = 0; printf "%.1f", 100 * x / (2 * w)}')
    if [[ $t == direct ]]; then
        R_CPU=$(awk -v a="$c0" -v b="$c1" -v k="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / k}')
    fi
}

run_wrk() {   # scenario target round path conns [header]
    local sc=$1 t=$2 r=$3 path=$4 conns=$5 hdr=${6:-}
    local url="https://127.0.0.1:$(port_of "$t")$path" want=$SMALL_LEN
    [[ $path == /1m ]] && want=$BIG_LEN
    local args=(-t1 -c"$conns") preload=
    # A new connection per request: a full handshake each time (no resumption, see no_resume.c).
    [[ -n $hdr ]] && args+=(-H "$hdr") && preload=$NO_RESUME
    LD_PRELOAD=$preload taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"${WARMUP}s" "$url" >/dev/null 2>&1
    measure "$t" env LD_PRELOAD="$preload" taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"${DURATION}s" --timeout 5s -s "$HERE/stats.lua" "$url"
    local line
    line=$(grep '^RESULT' "$WORK/run.out") || die "$sc $t: wrk printed no result: $(cat "$WORK/run.out")"
    declare -A v=()
    for kv in ${line#RESULT }; do v[${kv%%=*}]=${kv#*=}; done
    # Bytes read must cover every counted response's body, and no more than a response head
    # (under 1 KiB) each on top, plus what the connections were reading when time ran out.
    local check=ok n=${v[requests]} bytes=${v[bytes]}
    if ((${v[connect]} + ${v[read]} + ${v[write]} + ${v[status]} + ${v[timeout]} > 0)); then
        check="errors(connect=${v[connect]},read=${v[read]},write=${v[write]},status=${v[status]},timeout=${v[timeout]})"
    elif ((n == 0 || bytes < n * want || bytes > (n + conns) * (want + 1024))); then
        check="bytes=$bytes-for-$n-responses"
    fi
    local secs rps
    secs=$(awk -v d="${v[duration_us]}" 'BEGIN {printf "%.3f", d / 1e6}')
    rps=$(awk -v n="${v[requests]}" -v s="$secs" 'BEGIN {printf "%.1f", n / s}')
    local rec="kind=run scenario=$sc target=$t round=$r requests=${v[requests]} secs=$secs rps=$rps"
    rec+=" p50_ms=$(awk -v x="${v[p50_us]}" 'BEGIN {printf "%.3f", x / 1000}') p99_ms=$(awk -v x="${v[p99_us]}" 'BEGIN {printf "%.3f", x / 1000}')"
    rec+=" cpu_s=$R_CPU other_cpu_pct=$R_OTHER check=$check"
    rec+=" req_per_cpu=$(awk -v n="${v[requests]}" -v c="$R_CPU" 'BEGIN {printf "%.0f", (c > 0 ? n / c : 0)}')"
    if [[ $path == /1m ]]; then
        rec+=" mibps=$(awk -v n="${v[requests]}" -v s="$secs" 'BEGIN {printf "%.1f", n / s}')"
        rec+=" mib_per_cpu=$(awk -v n="${v[requests]}" -v c="$R_CPU" 'BEGIN {printf "%.1f", (c > 0 ? n / c : 0)}')"
    fi
    echo "$rec" >>"$RAW"
    log "  $rec"
    [[ $check == ok ]] || log "  WARNING: $sc $t round $r failed its check: $check"
}

run_h2() {
    local sc=$1 t=$2 r=$3
    local url="https://127.0.0.1:$(port_of "$t")/small"
    local args=(-t1 -c"$H2_CLIENTS" -m"$H2_STREAMS")
    taskset -c "$LOAD_CPU" h2load "${args[@]}" -D "$WARMUP" "$url" >/dev/null 2>&1
    rm -f "$WORK/h2.log"
    measure "$t" taskset -c "$LOAD_CPU" h2load "${args[@]}" -D "$DURATION" --log-file="$WORK/h2.log" "$url"
    local out reqs failed codes data pct
    out=$(cat "$WORK/run.out")
    reqs=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
    failed=$(sed -n 's/^requests: .* succeeded, \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3/p' <<<"$out")
    codes=$(sed -n 's/^status codes: \([0-9]*\) 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx.*/\1 \2 \3 \4/p' <<<"$out")
    data=$(sed -n 's/^traffic: .* (\([0-9]*\)) data.*/\1/p' <<<"$out")
    [[ -n $reqs && -n $codes && -n $data ]] || die "$sc $t: cannot read h2load's output: $out"
    read -r ok2 c3 c4 c5 <<<"$codes"
    local check=ok
    if [[ $failed != "0 0 0" ]] || ((c3 + c4 + c5 > 0)) || ((ok2 < reqs)); then
        check="failed=${failed// /,}_codes=${codes// /,}"
    elif ((reqs == 0 || data != reqs * SMALL_LEN)); then
        check="data=$data-for-$reqs"
    fi
    # h2load prints no percentiles: take them from its per-request log (microseconds).
    pct=$(awk -F'\t' '$2 == 200 {print $3}' "$WORK/h2.log" | sort -n | awk '{a[NR] = $1} END {if (NR) printf "%.3f %.3f", a[int(NR * 0.5) + 1] / 1000, a[int(NR * 0.99) + 1] / 1000}')
    read -r p50 p99 <<<"${pct:-nan nan}"
    local rec="kind=run scenario=$sc target=$t round=$r requests=$reqs secs=$DURATION"
    rec+=" rps=$(awk -v n="$reqs" -v s="$DURATION" 'BEGIN {printf "%.1f", n / s}') p50_ms=$p50 p99_ms=$p99"
    rec+=" cpu_s=$R_CPU other_cpu_pct=$R_OTHER check=$check"
    rec+=" req_per_cpu=$(awk -v n="$reqs" -v c="$R_CPU" 'BEGIN {printf "%.0f", (c > 0 ? n / c : 0)}')"
    echo "$rec" >>"$RAW"
    log "  $rec"
    [[ $check == ok ]] || log "  WARNING: $sc $t round $r failed its check: $check"
}

run_memory() {   # fresh process, short warm-up, RSS before and with IDLE_CONNS idle TLS connections
    local t=$1 r=$2 port pids before after open ready
    [[ $t == direct ]] && return 0
    port=$(port_of "$t")
    restart "$t"
    taskset -c "$LOAD_CPU" wrk -t1 -c8 -d1s "https://127.0.0.1:$port/small" >/dev/null 2>&1
    sleep 1
    pids=$(pids_of "$t")
    before=$(rss_kib $pids)
    ready=$WORK/idle.ready
    rm -f "$ready" "$WORK/idle.fifo"
    mkfifo "$WORK/idle.fifo"
    taskset -c "$LOAD_CPU" python3 "$HERE/idle.py" 127.0.0.1 "$port" "$IDLE_CONNS" request /small "$ready" \
        <"$WORK/idle.fifo" 2>>"$LOG" &
    PID[idle]=$!
    exec 7>"$WORK/idle.fifo"
    for _ in $(seq 1200); do [[ -s $ready ]] && break; kill -0 "${PID[idle]}" 2>/dev/null || break; sleep 0.1; done
    [[ -s $ready ]] || die "$t: the idle-connection client did not finish"
    sleep 1
    after=$(rss_kib $pids)
    open=$(ss -Htn state established "( sport = :$port )" | wc -l)
    exec 7>&-
    wait "${PID[idle]}" 2>/dev/null || true
    unset "PID[idle]"
    local per
    per=$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN {printf "%.1f", (a - b) / n}')
    local rec="kind=memory target=$t round=$r rss_before_kib=$before rss_after_kib=$after open=$open kib_per_conn=$per"
    echo "$rec" >>"$RAW"
    log "  $rec (client: $(tr -d '\n' <"$ready"))"
    ((open >= IDLE_CONNS * 99 / 100)) || log "  WARNING: $t held only $open of $IDLE_CONNS connections"
}

# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------
mkdir -p "$OUT"
: >"$RAW"
install_tools
build_portico
install_pingap
build_shim
make_cert
write_configs
log "work dir $WORK; proxy on CPU $PROXY_CPU, load generator and origin on CPU $LOAD_CPU"
start origin
for t in $TARGETS; do start "$t"; done

log "checks: forwarded headers and request id"
for t in $TARGETS; do check_headers "$t"; done
log "checks: TLS parameters and resumption"
for t in $TARGETS; do check_tls "$t"; done
check_no_resumption
log "checks: every response a 200 with the right body"
for t in $TARGETS; do verify_target "$t"; done

if [[ ${HOLD:-0} == 1 ]]; then   # keep everything running, e.g. to profile by hand
    for t in origin $TARGETS; do log "  $t: pid(s) $(pids_of "$t" | paste -sd' ' -)$([[ $t == origin ]] || echo ", https://127.0.0.1:$(port_of "$t")/small")"; done
    log "holding (HOLD=1) until interrupted; work dir $WORK"
    sleep infinity &
    PID[hold]=$!
    wait "${PID[hold]}" || true
    exit 0
fi

NOT_QUIET=0
wait_quiet
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for sc in $SCENARIOS; do
    for r in $(seq "$ROUNDS"); do
        log "scenario $sc, round $r of $ROUNDS"
        for t in $TARGETS; do
            wait_no_builds
            case $sc in
                keepalive) run_wrk "$sc" "$t" "$r" /small "$CONNS" ;;
                handshake) run_wrk "$sc" "$t" "$r" /small "$HS_CONNS" 'Connection: close' ;;
                h2) run_h2 "$sc" "$t" "$r" ;;
                1m) run_wrk "$sc" "$t" "$r" /1m "$BIG_CONNS" ;;
                memory) run_memory "$t" "$r" ;;
                *) die "unknown scenario $sc" ;;
            esac
        done
    done
done

{
    echo "Run $STARTED on $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)."
    echo "Load average before measuring: $LOAD_START$([[ $NOT_QUIET == 1 ]] && echo ' — the machine was NOT quiet (other builds or tests ran)')."
    echo "Versions: $("$BIN" --version 2>/dev/null || echo portico); $("$NGINX" -v 2>&1 | sed 's/.*: //'); $("$HAPROXY" -v | sed -n '1s/ - .*//p'); $( { wrk -v 2>&1 || true; } | sed -n '1s/ Copyright.*//p'); h2load $(h2load --version | awk '{print $NF}')$(wants pingap && echo "; $("$PINGAP_BIN" --version 2>/dev/null | head -n 1)")$(wants floor && echo "; the floor on Pingora $(cd "$ROOT" && cargo pkgid -p pingora-core 2>/dev/null | sed 's/.*[@#]//')")."
    echo "Rounds: $ROUNDS × ${DURATION}s per run after a ${WARMUP}s warm-up; keep-alive -c$CONNS, handshake -c$HS_CONNS, 1 MiB -c$BIG_CONNS, h2 -c$H2_CLIENTS -m$H2_STREAMS."
    [[ -n ${RESUME_NOTE:-} ]] && echo "Session resumption check: $RESUME_NOTE."
    echo
    python3 "$HERE/report.py" "$RAW"
} >"$OUT/latest.md"
cp "$RAW" "$OUT/raw.txt"
cat "$OUT/latest.md"
log "results in $OUT/latest.md and $OUT/raw.txt"
