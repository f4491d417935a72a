#!/usr/bin/env bash
# The HA topology of docker-compose.yml, from local processes (no Docker needed):
#
#   client ─▶ HAProxy ─┬─ PROXY v2 ─▶ portico-1 ─┬─▶ backend-1
#             (L4)     └─ PROXY v2 ─▶ portico-2 ─┴─▶ backend-2
#
#   portico-1, portico-2 ─▶ redis-server   (the rate limits they share)
#
# HAProxy checks each Portico's /readyz on its admin port. The configs are the ones
# docker-compose.yml uses (conf/ha/haproxy.cfg, conf/ha/portico.yaml), filled in through
# environment variables: only addresses and file locations differ. The demo backends are
# Portico with a `respond` route (conf/ha/demo-backend.yaml). Redis is a throw-away
# redis-server (no persistence) that both instances keep their shared rate limits in
# (PORTICO_REDIS_URL). tests/ha_pair.rs runs this script.
#
# Runs in the foreground until Ctrl-C or SIGTERM, then stops every process it started. An
# instance that dies meanwhile is reported and the rest keep running (that is the point of
# a pair); only HAProxy's death ends the script. When everything is up it prints the
# addresses and creates $HA_RUN_DIR/ready.
#
# Environment (all optional):
#   PORTICO_BIN        the portico binary (default: target/release/portico, else
#                      target/debug/portico, else `portico` on PATH)
#   HAPROXY_BIN        default: haproxy
#   REDIS_BIN          default: redis-server
#   HA_RUN_DIR         logs, pid files, generated certificates (default: a new temp dir)
#   HA_LISTEN_ADDR     where HAProxy listens (default 127.0.0.1)
#   HA_HTTPS_PORT, HA_HTTP_PORT, HA_STATS_PORT                 HAProxy (8443, 8080, 8404)
#   PORTICO_1_HTTPS_PORT, PORTICO_1_HTTP_PORT, PORTICO_1_ADMIN_PORT   (9443, 9080, 9901)
#   PORTICO_2_HTTPS_PORT, PORTICO_2_HTTP_PORT, PORTICO_2_ADMIN_PORT   (9444, 9081, 9902)
#   BACKEND_1_PORT, BACKEND_2_PORT, BACKEND_1_ADMIN_PORT, BACKEND_2_ADMIN_PORT
#                                                      (9001, 9002, 9911, 9912)
#   HA_BACKEND_1, HA_BACKEND_2   host:port of backends that already run: no demo backend
#                      is started in their place
#   HA_REDIS_PORT      the Redis started here, on 127.0.0.1 (6380: a system Redis on 6379
#                      is left alone)
#   HA_REDIS_URL       a Redis that already runs (redis://host:port): none is started
#   HA_ADMIN_TOKEN     Portico's admin token (default: a random one, printed)
#   HA_PARENT_PID      stop everything once this process is gone (the tests set it)
#   RUST_LOG           Portico's log level (default: info)
#
# Files in $HA_RUN_DIR: <name>.pid and <name>.log (stdout and stderr) for each process
# (redis, backend-N, portico-N, haproxy),
# <name>.exit (its exit status) once it exited; portico-N/ holds that instance's own pid
# file, upgrade socket and generated certificate.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
conf=$repo/conf/ha

if [ -z "${PORTICO_BIN:-}" ]; then
    for candidate in "$repo/target/release/portico" "$repo/target/debug/portico"; do
        if [ -x "$candidate" ]; then PORTICO_BIN=$candidate; break; fi
    done
fi
PORTICO_BIN=${PORTICO_BIN:-portico}
HAPROXY_BIN=${HAPROXY_BIN:-haproxy}
REDIS_BIN=${REDIS_BIN:-redis-server}
tools=("$PORTICO_BIN" "$HAPROXY_BIN")
[ -n "${HA_REDIS_URL:-}" ] || tools+=("$REDIS_BIN")
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "ha-local: $tool not found (build with 'cargo build --release'; apt-get install haproxy redis-server)" >&2
        exit 2
    }
done

run=${HA_RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/portico-ha.XXXXXX")}
mkdir -p "$run"
run=$(cd "$run" && pwd)
listen=${HA_LISTEN_ADDR:-127.0.0.1}
token=${HA_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
: "${RUST_LOG:=info}"
export RUST_LOG

: "${HA_HTTPS_PORT:=8443}" "${HA_HTTP_PORT:=8080}" "${HA_STATS_PORT:=8404}"
: "${PORTICO_1_HTTPS_PORT:=9443}" "${PORTICO_1_HTTP_PORT:=9080}" "${PORTICO_1_ADMIN_PORT:=9901}"
: "${PORTICO_2_HTTPS_PORT:=9444}" "${PORTICO_2_HTTP_PORT:=9081}" "${PORTICO_2_ADMIN_PORT:=9902}"
: "${BACKEND_1_PORT:=9001}" "${BACKEND_2_PORT:=9002}"
: "${BACKEND_1_ADMIN_PORT:=9911}" "${BACKEND_2_ADMIN_PORT:=9912}"
: "${HA_REDIS_PORT:=6380}"

log() { echo "ha-local: $*" >&2; }

# Every process started, in start order: names[i] has pid pids[i].
names=()
pids=()
reported=()

# start NAME COMMAND...: runs COMMAND in the background with the environment set by the
# caller, its output in $run/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$run/$name.log" 2>&1 &
    names+=("$name")
    pids+=("$!")
    reported+=("")
    echo "$!" >"$run/$name.pid"
}

stop_all() {
    trap - EXIT INT TERM
    local i pid deadline
    # HAProxy first, so no new connection goes to an instance that is stopping.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid=${pids[i]}
        kill -0 "$pid" 2>/dev/null || continue
        case ${names[i]} in
            haproxy) kill -TERM "$pid" 2>/dev/null || true ;;
            # SIGINT: Portico leaves at once (SIGTERM would drain for grace_period);
            # redis-server shuts down on either.
            *) kill -INT "$pid" 2>/dev/null || true ;;
        esac
    done
    deadline=$((SECONDS + 5))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$run/ready"
    log "stopped (logs in $run)"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# http_status HOST PORT PATH: the status code of GET PATH, or nothing (bash's /dev/tcp,
# so that no HTTP client is needed).
http_status() {
    local line
    exec 3<>"/dev/tcp/$1/$2" || return 0
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
    IFS=' ' read -r -t 2 _ line _ <&3 || true
    exec 3<&- 3>&-
    echo "${line:-}"
}

# http_body HOST PORT PATH: the whole answer to GET PATH (HTTP/1.0: read to the close).
http_body() {
    exec 3<>"/dev/tcp/$1/$2" || return 0
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
    timeout 2 cat <&3 || true
    exec 3<&- 3>&-
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND until it succeeds; gives up when the
# time is over or a process died.
wait_for() {
    local what=$1 limit=$2 deadline i
    shift 2
    deadline=$((SECONDS + limit))
    until "$@" 2>/dev/null; do
        for i in "${!pids[@]}"; do
            if ! kill -0 "${pids[i]}" 2>/dev/null; then
                log "${names[i]} exited while starting; the end of $run/${names[i]}.log:"
                tail -n 20 "$run/${names[i]}.log" >&2
                exit 1
            fi
        done
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$what: not ready within ${limit}s; see $run/*.log"
            exit 1
        fi
        sleep 0.1
    done
}

ready_200() { [ "$(http_status 127.0.0.1 "$1" /readyz)" = 200 ]; }

# redis_pong PORT: Redis on 127.0.0.1:PORT answers PING.
redis_pong() {
    local reply=
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || true
    exec 3<&- 3>&-
    [ "${reply%$'\r'}" = "+PONG" ]
}

# Both instances UP in HAProxy's view (its stats as CSV: pxname,svname,...,status,...).
both_up() {
    local csv
    csv=$(http_body 127.0.0.1 "$HA_STATS_PORT" '/;csv')
    [ "$(grep -c '^portico_https,portico-[12],.*,UP,' <<<"$csv")" = 2 ]
}

# --- Redis, for the rate limits the instances share ---------------------------------------
# Nothing is persisted: a token bucket lost with a restart only starts again full.
if [ -n "${HA_REDIS_URL:-}" ]; then
    redis_url=$HA_REDIS_URL
else
    start redis "$REDIS_BIN" --port "$HA_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
    redis_url=redis://127.0.0.1:$HA_REDIS_PORT
    wait_for redis 30 redis_pong "$HA_REDIS_PORT"
fi

# --- the demo backends -------------------------------------------------------------------
for n in 1 2; do
    given=HA_BACKEND_$n
    if [ -n "${!given:-}" ]; then
        declare "backend_$n=${!given}"
        continue
    fi
    port_var=BACKEND_${n}_PORT
    admin_var=BACKEND_${n}_ADMIN_PORT
    mkdir -p "$run/backend-$n"
    DEMO_NAME=backend-$n DEMO_LISTEN=127.0.0.1:${!port_var} \
        DEMO_ADMIN_LISTEN=127.0.0.1:${!admin_var} DEMO_RUN_DIR=$run/backend-$n \
        start "backend-$n" "$PORTICO_BIN" -c "$conf/demo-backend.yaml"
    declare "backend_$n=127.0.0.1:${!port_var}"
done
for n in 1 2; do
    given=HA_BACKEND_$n
    admin_var=BACKEND_${n}_ADMIN_PORT
    [ -z "${!given:-}" ] || continue
    wait_for "backend-$n" 30 ready_200 "${!admin_var}"
done

# --- the Portico pair --------------------------------------------------------------------
for n in 1 2; do
    https_var=PORTICO_${n}_HTTPS_PORT
    http_var=PORTICO_${n}_HTTP_PORT
    admin_var=PORTICO_${n}_ADMIN_PORT
    mkdir -p "$run/portico-$n"
    PORTICO_HTTPS_LISTEN=127.0.0.1:${!https_var} \
        PORTICO_HTTP_LISTEN=127.0.0.1:${!http_var} \
        PORTICO_ADMIN_LISTEN=127.0.0.1:${!admin_var} \
        PORTICO_ADMIN_TOKEN=$token \
        PORTICO_TRUSTED_PROXY=127.0.0.1/32 \
        PORTICO_TLS_CERT=$run/portico-$n/tls.crt \
        PORTICO_TLS_KEY=$run/portico-$n/tls.key \
        PORTICO_BACKEND_1=$backend_1 \
        PORTICO_BACKEND_2=$backend_2 \
        PORTICO_RUN_DIR=$run/portico-$n \
        PORTICO_REDIS_URL=$redis_url \
        start "portico-$n" "$PORTICO_BIN" -c "$conf/portico.yaml"
done
wait_for portico-1 30 ready_200 "$PORTICO_1_ADMIN_PORT"
wait_for portico-2 30 ready_200 "$PORTICO_2_ADMIN_PORT"

# --- HAProxy -----------------------------------------------------------------------------
HA_BIND_HTTPS=$listen:$HA_HTTPS_PORT \
    HA_BIND_HTTP=$listen:$HA_HTTP_PORT \
    HA_BIND_STATS=127.0.0.1:$HA_STATS_PORT \
    HA_PORTICO_1_HTTPS=127.0.0.1:$PORTICO_1_HTTPS_PORT \
    HA_PORTICO_1_HTTP=127.0.0.1:$PORTICO_1_HTTP_PORT \
    HA_PORTICO_1_ADMIN_PORT=$PORTICO_1_ADMIN_PORT \
    HA_PORTICO_2_HTTPS=127.0.0.1:$PORTICO_2_HTTPS_PORT \
    HA_PORTICO_2_HTTP=127.0.0.1:$PORTICO_2_HTTP_PORT \
    HA_PORTICO_2_ADMIN_PORT=$PORTICO_2_ADMIN_PORT \
    start haproxy "$HAPROXY_BIN" -db -f "$conf/haproxy.cfg"
wait_for "haproxy seeing both instances up" 30 both_up

touch "$run/ready"
cat >&2 <<EOF
ha-local: ready (logs and pid files in $run)
  https://$listen:$HA_HTTPS_PORT/   http://$listen:$HA_HTTP_PORT/   (through HAProxy; the certificate is self-signed: curl -k)
  HAProxy stats:  http://127.0.0.1:$HA_STATS_PORT/
  portico-1 admin: http://127.0.0.1:$PORTICO_1_ADMIN_PORT/readyz   portico-2 admin: http://127.0.0.1:$PORTICO_2_ADMIN_PORT/readyz
  admin token (for /status, POST /reload): $token
  Redis (shared rate limits, e.g. on /limited): $redis_url
  try: kill -TERM \$(cat $run/portico-1.pid)   (drains: no request fails)
EOF

# --- watch until told to stop --------------------------------------------------------------
while :; do
    if [ -n "${HA_PARENT_PID:-}" ] && ! kill -0 "$HA_PARENT_PID" 2>/dev/null; then
        log "parent process $HA_PARENT_PID is gone"
        exit 0
    fi
    for i in "${!pids[@]}"; do
        [ -z "${reported[i]}" ] || continue
        kill -0 "${pids[i]}" 2>/dev/null && continue
        status=0
        wait "${pids[i]}" || status=$?
        reported[i]=$status
        echo "$status" >"$run/${names[i]}.exit"
        log "${names[i]} (pid ${pids[i]}) exited with status $status"
        if [ "${names[i]}" = haproxy ]; then
            exit 1
        fi
    done
    # In the background so that a signal is handled at once.
    sleep 0.2 &
    wait $! || true
done
