#!/usr/bin/env bash
# Instructions per request, deterministically: Portico under valgrind's callgrind, in front of
# an nginx origin, serving a fixed number of HTTPS requests (h2load over a few keep-alive
# connections). Counters are zeroed after a warm-up, so start-up and the warm-up's TLS
# handshakes are not counted. Unlike a timed benchmark this does not depend on what else the
# machine is doing, which makes it the way to judge small changes on a shared machine.
#
#   benches/profile.sh [PORTICO_BINARY]      (default: target/release/portico)
#   benches/profile.sh target/release/portico-floor
#
# The second form counts the floor (benches/floor: the same job on Pingora alone, built by
# `cargo build --release -p portico-floor`) in the same setting, so that the two counts give
# what Portico adds per request; a binary named portico-floor is started as the floor
# (KIND=floor|portico overrides the guess). FLOOR_TIMEOUTS=1 gives the floor Portico's default
# upstream and HTTP/2 idle timeouts (benches/floor/src/main.rs), to tell what Pingora's timers
# cost for them from what the rest of Portico costs.
#
# Env: REQUESTS=2000 CONNS=10 STREAMS=1 PROTO=h1|h2 PLUGINS=0|5 PATH_=/small OUT=dir (keeps the
# callgrind file there, for callgrind_annotate or kcachegrind). CONNS=REQUESTS gives one
# request per connection: every one a full TLS handshake (h2load does not resume sessions).
# CACHE_SIM=1 also simulates caches and branch prediction (callgrind's model, not the CPU's:
# this VM has no hardware counters) and prints misses per request; instructions alone
# understate a change that touches more code or data (benches/README.md, "The floor and pingap").
# TRACING=1 turns on server.tracing with sample_ratio 1.0, every span exported to the nginx
# origin (which answers the OTLP posts with 200): the cost of tracing every request.
# HEADER_CASE=normalize sets server.header_case (docs/configuration.md) to count its saving.
# BROWSER_HEADERS=1 sends eleven more request headers, as a browser's navigation does (Accept,
# Accept-Language, Cookie, Referer, Sec-Fetch-*, …; h2load's own are three or four).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$ROOT/target/release/portico}
REQUESTS=${REQUESTS:-2000}
CONNS=${CONNS:-10}
STREAMS=${STREAMS:-1}           # h2: concurrent streams per connection (h2load -m)
PROTO=${PROTO:-h1}
PLUGINS=${PLUGINS:-0}
URL_PATH=${PATH_:-/small}
PORT_BASE=${PORT_BASE:-17000}
KIND=${KIND:-$([[ $(basename "$BIN") == portico-floor* ]] && echo floor || echo portico)}
WORK=$(mktemp -d /tmp/portico-profile.XXXXXX)
chmod 755 "$WORK"
OUT=${OUT:-$WORK}
declare -A PID=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for name in "${!PID[@]}"; do
        kill -INT "${PID[$name]}" 2>/dev/null || true
    done
    for name in "${!PID[@]}"; do
        for _ in $(seq 100); do kill -0 "${PID[$name]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${PID[$name]}" 2>/dev/null || true
    done
    [[ $OUT == "$WORK" && $rc == 0 ]] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in valgrind callgrind_control callgrind_annotate h2load nginx openssl; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || { echo "needs $tool (apt-get install valgrind nghttp2-client nginx)" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "no binary at $BIN (cargo build --release -p portico -p portico-floor)" >&2; exit 1; }
[[ $KIND == floor && $PLUGINS != 0 ]] && { echo "the floor has no plugins (PLUGINS=$PLUGINS)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
head -c 1048576 /dev/zero >"$WORK/1m"
cat >"$WORK/origin.conf" <<EOF
worker_processes 1;
pid $WORK/origin.pid;
error_log $WORK/origin.err warn;
events {}
http {
    client_body_temp_path $WORK/tmp-body; proxy_temp_path $WORK/tmp-proxy; fastcgi_temp_path $WORK/tmp-fcgi;
    uwsgi_temp_path $WORK/tmp-uwsgi; scgi_temp_path $WORK/tmp-scgi;
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$((PORT_BASE + 80));
        root $WORK;
        location = /small { default_type text/plain; return 200 "hello from the origin, a short text body\n"; }
        location = /1m { default_type application/octet-stream; }
        location = /v1/traces { return 200; }
    }
}
EOF
plugins=
if [[ $PLUGINS == 5 ]]; then
    plugins="plugins:
  - headers: { request: { set: { X-Bench: \"1\" } }, response: { remove: [X-Powered-By] } }
  - cors: { allow_origins: [\"*\"], allow_methods: [GET, POST], allow_headers: [Content-Type] }
  - ip_filter: { allow: [127.0.0.0/8] }
  - rate_limit: { per_second: 1000000000, burst: 1000000000, key: client_ip }
  - access_log: { path: /dev/null }"
fi
server_extra=
[[ -n ${HEADER_CASE:-} ]] && server_extra+=", header_case: $HEADER_CASE"
[[ ${TRACING:-0} == 1 ]] && server_extra+=", tracing: { sample_ratio: 1.0, otlp: { endpoint: \"http://127.0.0.1:$((PORT_BASE + 80))\" } }"
cat >"$WORK/portico.yaml" <<EOF
server: { threads: 1, grace_period: 1s, shutdown_timeout: 1s, pid_file: $WORK/portico.pid, upgrade_sock: $WORK/portico.sock$server_extra }
admin: { listen: 127.0.0.1:$((PORT_BASE + 901)) }
listeners:
  - { name: https, listen: 127.0.0.1:$((PORT_BASE + 443)), tls: { certificates: [ { cert: $WORK/cert.pem, key: $WORK/key.pem } ] } }
upstreams: { origin: { backends: [ { addr: 127.0.0.1:$((PORT_BASE + 80)) } ] } }
routes: [ { name: all, upstream: origin } ]
$plugins
EOF

"$NGINX" -p "$WORK/" -e "$WORK/origin.err" -c "$WORK/origin.conf" -g 'daemon off;' &
PID[origin]=$!
args=(-c "$WORK/portico.yaml")
[[ $KIND == floor ]] && args=(--listen 127.0.0.1:$((PORT_BASE + 443)) --upstream 127.0.0.1:$((PORT_BASE + 80))
    --cert "$WORK/cert.pem" --key "$WORK/key.pem")
sim=(); [[ ${CACHE_SIM:-0} == 1 ]] && sim=(--cache-sim=yes --branch-sim=yes)
valgrind --tool=callgrind --collect-atstart=yes "${sim[@]}" --callgrind-out-file="$OUT/callgrind.out" \
    "$BIN" "${args[@]}" >"$WORK/portico.log" 2>&1 &
PID[portico]=$!
url="https://127.0.0.1:$((PORT_BASE + 443))$URL_PATH"
for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((PORT_BASE + 443))") 2>/dev/null && break
    kill -0 "${PID[portico]}" 2>/dev/null || { cat "$WORK/portico.log" >&2; exit 1; }
    sleep 0.1
done
h2=(-m "$STREAMS"); [[ $PROTO == h1 ]] && h2=(--h1)
if [[ ${BROWSER_HEADERS:-0} == 1 ]]; then
    for header in 'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' \
        'Accept-Language: en-US,en;q=0.5' 'Cache-Control: max-age=0' 'Upgrade-Insecure-Requests: 1' \
        'Cookie: session=3f9a1c0e7b2d4a6f8e1c; theme=dark; consent=yes' \
        'Referer: https://localhost/index.html' 'Sec-Fetch-Dest: document' 'Sec-Fetch-Mode: navigate' \
        'Sec-Fetch-Site: same-origin' 'Sec-Fetch-User: ?1' 'Priority: u=0, i'; do
        h2+=(-H "$header")
    done
fi
h2load "${h2[@]}" -n 1000 -c "$CONNS" "$url" >/dev/null 2>&1        # warm-up
callgrind_control -z "${PID[portico]}" >/dev/null 2>&1
out=$(h2load "${h2[@]}" -n "$REQUESTS" -c "$CONNS" "$url" 2>&1)
callgrind_control -d "${PID[portico]}" >/dev/null 2>&1
grep -q "^requests: $REQUESTS total, $REQUESTS started, $REQUESTS done, $REQUESTS succeeded" <<<"$out" \
    || { echo "not every request succeeded:" >&2; grep -E '^requests|^status' <<<"$out" >&2; exit 1; }
grep -q "^status codes: $REQUESTS 2xx" <<<"$out" || { grep '^status' <<<"$out" >&2; exit 1; }

file=$(ls -t "$OUT"/callgrind.out.* | head -n 1)
total=$(awk '/^summary:/ {print $2}' "$file")
echo "binary:   $BIN ($KIND)"
echo "requests: $REQUESTS over $CONNS $PROTO connections to $URL_PATH (plugins: $PLUGINS), $CONNS TLS handshakes included"
echo "instructions: $total total, $((total / REQUESTS)) per request"
if [[ ${CACHE_SIM:-0} == 1 ]]; then
    # I1mr/D1mr/D1mw: first-level instruction and data misses; Bcm/Bim: mispredicted
    # conditional and indirect branches.
    awk -v n="$REQUESTS" '/^events:/ {for (i = 2; i <= NF; i++) e[i] = $i}
        /^summary:/ {s = "per request:"; for (i = 2; i <= NF; i++) if (e[i] ~ /^(I1mr|D1mr|D1mw|Bcm|Bim)$/) s = s sprintf(" %s %d", e[i], $i / n); print s}' "$file"
fi
echo
echo "Top functions by own instructions:"
callgrind_annotate --threshold=100 --inclusive=no "$file" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '3,$p' |
    grep -vE '\((9[0-9]\.[0-9]+|100\.0)%\)' | sed -n '1,25p' |
    sed -E 's#/root/.cargo/registry/src/[^/]+/##; s#/rustc/[0-9a-f]+/##' | cut -c1-170
echo
echo "Portico's own functions (the floor's, for the floor), inclusive:"
callgrind_annotate --threshold=100 --inclusive=yes "$file" 2>/dev/null | grep -E '(gateway|plugins|benches/floor)/src/[a-z_/]+\.rs:' |
    grep -vE 'process_new|Settle' | sed -n '1,15p' | sed -E 's#^([^ ]+ +\([^)]*\)) +[^ ]*/((gateway|plugins|benches/floor)/src)#\1  \2#' | cut -c1-170
[[ $OUT == "$WORK" ]] || echo "callgrind file: $file"
