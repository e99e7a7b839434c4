#!/usr/bin/env bash
# bench/storm.sh: does the service give memory back after storms of idle connections?
# (issue 10, item 10). Starts a fresh release `checkout` on SQLite in a temp directory,
# runs `checkout-storm` against it (ROUNDS rounds of CONNECTIONS connections, one
# Health/Check each, held HOLD_SECS, closed, SETTLE_SECS of quiet) and prints the server's
# RSS per round: before, peak, after. Not a test; nothing here runs under `cargo test`.
#
#   bench/storm.sh                       # 14 rounds of 5,000 connections (≈ 3 min)
#   ROUNDS=3 CONNECTIONS=2000 bench/storm.sh
#   SYSTEM_MALLOC=1 bench/storm.sh       # the same with glibc malloc, for comparison
#
# Loopback only; bounded (≤ 50 rounds of ≤ 20,000 connections); the service is stopped and
# its directory removed on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-14}
CONNECTIONS=${CONNECTIONS:-5000}
HOLD_SECS=${HOLD_SECS:-2}
SETTLE_SECS=${SETTLE_SECS:-5}
FEATURES=()
[ -n "${SYSTEM_MALLOC:-}" ] && FEATURES=(--no-default-features)

cargo build --release --quiet "${FEATURES[@]}" --bin checkout --bin checkout-storm
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
WORK=$(mktemp -d "${CARGO_TARGET_DIR:-$ROOT/target}/storm.XXXXXX")
SVC_PID=""
cleanup() {
  [ -n "$SVC_PID" ] && kill "$SVC_PID" 2>/dev/null && wait "$SVC_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

: >"$WORK/out"
env DATABASE_URL="sqlite://$WORK/checkout.db" CHECKOUT_LISTEN_ADDR=127.0.0.1:0 \
  CHECKOUT_RATE_LIMIT_PER_SECOND=0 RUST_LOG=warn CHECKOUT_SHUTDOWN_GRACE_SECONDS=2 \
  "$BIN/checkout" serve >"$WORK/out" 2>"$WORK/err" &
SVC_PID=$!
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's/^checkout is serving gRPC on .*:\([0-9]*\)$/\1/p' "$WORK/out")
  [ -n "$port" ] && break
  kill -0 "$SVC_PID" 2>/dev/null || { cat "$WORK/err" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "the service did not start within 60 s" >&2; exit 1; }

echo "# storm: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)," \
  "allocator: $([ -n "${SYSTEM_MALLOC:-}" ] && echo glibc || echo jemalloc)"
echo "# machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/checkout-storm" --target "http://127.0.0.1:$port" --pid "$SVC_PID" --rounds "$ROUNDS" \
  --connections "$CONNECTIONS" --hold-seconds "$HOLD_SECS" --settle-seconds "$SETTLE_SECS"
if [ -s "$WORK/err" ]; then echo "# service log (warnings):"; tail -5 "$WORK/err"; fi
