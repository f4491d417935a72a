#!/usr/bin/env bash
# The whole test suite on a Debian machine with Rust: installs what the build and the tests
# need and is missing (Debian packages; sslyze in a venv under target/), then runs
# `cargo test --workspace` with the arguments given.
#
#   ./test.sh                          # everything (CI runs exactly this, from .ci/run)
#   ./test.sh --setup-only             # install what is missing, run nothing
#   ./test.sh --test blackbox routing::    # any `cargo test` arguments: here one module
#
# Installing needs root, or sudo; without either, and with something missing, it stops and
# prints the line to run as root. No test is skipped because a tool is missing: such a test
# fails, naming the package (tests/README.md).
set -euo pipefail
cd "$(dirname "$0")"

# program:Debian package. The build (Pingora builds zlib-ng and BoringSSL with cmake, BoringSSL's
# bindings with clang and libclang; the tests' OpenSSL clients with perl and make; etcd-client
# compiles etcd's API with protoc); the programs the tests run beside Portico (HAProxy, Redis,
# Prometheus, Pebble, etcd).
tools=(
    cmake:cmake cc:build-essential make:make perl:perl curl:curl
    openssl:openssl python3:python3 unshare:util-linux
    haproxy:haproxy redis-server:redis-server promtool:prometheus prometheus:prometheus
    pebble:pebble etcd:etcd-server etcdctl:etcd-client protoc:protobuf-compiler clang:clang
)
need=()
for tool in "${tools[@]}"; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
# No program to look for: libraries (the protobuf well-known types etcd-client's build compiles
# against; libclang), and the venv module sslyze is installed with.
for lib in libprotobuf-dev libclang-dev; do
    dpkg-query -W -f '${Status}' "$lib" 2>/dev/null | grep -q 'ok installed' || need+=("$lib")
done
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)

if [ ${#need[@]} -gt 0 ]; then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "test.sh: missing ${need[*]}; as root: apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "test.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The tests start their own haproxy, redis-server, prometheus and etcd; the services the
    # packages start would only hold ports.
    "${as_root[@]}" systemctl stop haproxy redis-server prometheus etcd 2>/dev/null || true
fi

# sslyze (tests/tls_audit.rs) is not packaged in Debian: a venv of its own, under target/.
venv=target/sslyze-venv
if ! "$venv/bin/python" -c 'import sslyze' >/dev/null 2>&1; then
    echo "test.sh: installing sslyze into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet sslyze
fi

if [ "${1:-}" = "--setup-only" ]; then
    exit 0
fi
exec cargo test --workspace "$@"
