#!/usr/bin/env bash
# The long soak: tests/soak.rs for 15 minutes (or SECS), its report kept in a log.
#
#   tests/soak/soak.sh                 # 900 s, debug build
#   SECS=3600 tests/soak/soak.sh --release
#
# Mixed load (HTTP/1.1, HTTP/1.1 over TLS with a handshake per request, HTTP/2, WebSockets,
# 256 KiB uploads) while the pool's two backends are stopped and started in turn every 4 s and
# the config is reloaded every 3 s; Portico's RSS and open fds are sampled every 10 s. It fails
# on a request a healthy backend could have served, a panic, RSS at the end more than
# max(32 MiB, 25 %) above RSS after the warm-up, or open fds more than 64 above the start.
# CI runs the same test for 60 s (`cargo test --test soak`).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${SECS:-900}
log=${LOG:-target/soak-$(date -u +%Y%m%dT%H%M%SZ).log}
mkdir -p "$(dirname "$log")"
echo "soak: ${secs} s, report in $log"
PORTICO_SOAK_SECS=$secs cargo test "$@" --test soak -- --nocapture 2>&1 | tee "$log" | grep -E '^soak|^  (Http1|Tls|Http2|WebSocket|Upload|RSS|samples)|test result|panicked'
