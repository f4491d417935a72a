#!/usr/bin/env bash
# A profile-guided (PGO) build of Portico and the floor, on top of the release profile (fat LTO,
# one codegen unit). Not how Portico is built by default: a PGO build is only as good as its
# training run, and the training here is benches/compare.sh's own workload, so what it measures
# is an upper bound for that workload, and code the training does not reach is laid out as cold
# (benches/README.md, "Profile-guided optimisation").
#
#   benches/pgo.sh      # -> target/<host>/pgo-use/portico and portico-floor
#
# Steps: an instrumented build (target/<host>/pgo-train/), one round of compare.sh's scenarios
# against it (Portico plain and with the five plugins, and the floor; each stops with SIGINT, so
# the profile is written at exit), llvm-profdata merge, the build that uses the merged profile.
# `--target` keeps RUSTFLAGS off build scripts and proc macros, which would otherwise be
# instrumented and add their runs to the profile.
#
# Needs llvm-profdata from rustc's own LLVM (`rustup component add llvm-tools`) and what
# compare.sh runs (nginx as the origin, wrk, h2load; it installs what is missing). Env:
# PGO_DATA=target/pgo-data.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DATA=${PGO_DATA:-$TARGET/pgo-data}
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA=$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata
[[ -x $PROFDATA ]] || { echo "pgo.sh: no $PROFDATA (rustup component add llvm-tools)" >&2; exit 1; }

build() { # profile, RUSTFLAGS
    (cd "$ROOT" && RUSTFLAGS=$2 cargo build --target "$HOST" --profile "$1" \
        --config "profile.$1.inherits=\"release\"" -p portico -p portico-floor)
}

rm -rf "$DATA"
mkdir -p "$DATA/raw"
build pgo-train "-Cprofile-generate=$DATA/raw"
bin=$TARGET/$HOST/pgo-train
PORTICO_BIN=$bin/portico FLOOR_BIN=$bin/portico-floor TARGETS="portico portico5 floor" \
    SCENARIOS="keepalive handshake h2 1m" ROUNDS=1 QUIET_LOAD=100 OUT=$DATA/train \
    "$ROOT/benches/compare.sh"
"$PROFDATA" merge -o "$DATA/merged.profdata" "$DATA"/raw/*.profraw
build pgo-use "-Cprofile-use=$DATA/merged.profdata"
echo "pgo.sh: $TARGET/$HOST/pgo-use/portico and portico-floor"
