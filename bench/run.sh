#!/usr/bin/env bash
# bench/run.sh: the performance benchmark of issue 9, in one command. Every number is a
# ratio against a ceiling measured in the same run, A and B interleaved (A B A B …), and the
# table shows medians. See bench/README.md.
#
#   bench/run.sh                      # everything, SQLite and PostgreSQL (≈ 10 min)
#   bench/run.sh get                  # one part: latency | get | create | watch | stale | feed
#   bench/run.sh create postgres      # one part, one backend (sqlite | postgres)
#   bench/run.sh --smoke              # every part, 1 short round each (≈ 2 min)
#
# Settings (environment): ROUNDS (5), SECS (throughput round, 4 s), LAT_SECS (latency
# round, 2 s), RATE_SECS (open-loop round, 2 s), CONCURRENCY (32), PGBENCH_CLIENTS (16),
# WATCHERS (10000), IDLE_SECS (20), STALE_ROWS (200000), CONSUMERS (1000), FEED_EVENTS (20),
# FEED_GAP_MS (100),
# PG_URL (postgres://postgres@127.0.0.1:5432), PG_LOG (the server log, found if unset),
# BENCH_TMP (work directory parent; default the cargo target directory), BENCH_KEEP=1 keeps
# the work directory.
#
# Loopback only; every loop is bounded in count and time; every process and database this
# script starts is stopped or dropped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-4}
LAT_SECS=${LAT_SECS:-2}
RATE_SECS=${RATE_SECS:-2}
CONCURRENCY=${CONCURRENCY:-32}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-16}
WATCHERS=${WATCHERS:-10000}
IDLE_SECS=${IDLE_SECS:-20}
STALE_ROWS=${STALE_ROWS:-200000}
CONSUMERS=${CONSUMERS:-1000}
FEED_EVENTS=${FEED_EVENTS:-20}
FEED_GAP_MS=${FEED_GAP_MS:-100}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
# Calls traced one at a time to read the service's SQL and round trips.
CAPTURE_CALLS=9

PARTS=()
BACKENDS=()
for arg in "$@"; do
  case "$arg" in
    latency | get | create | watch | stale | feed) PARTS+=("$arg") ;;
    all) PARTS=(latency get create watch stale feed) ;;
    sqlite | postgres) BACKENDS+=("$arg") ;;
    --smoke)
      ROUNDS=1 SECS=1 LAT_SECS=1 RATE_SECS=1 WATCHERS=1000 IDLE_SECS=2 STALE_ROWS=10000 CONSUMERS=200 ;;
    -h | --help)
      sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    *)
      echo "unknown argument: $arg (see bench/run.sh --help)" >&2
      exit 2 ;;
  esac
done
[ ${#PARTS[@]} -gt 0 ] || PARTS=(latency get create watch stale feed)
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(sqlite postgres)
for n in ROUNDS SECS LAT_SECS RATE_SECS CONCURRENCY PGBENCH_CLIENTS WATCHERS IDLE_SECS STALE_ROWS CONSUMERS FEED_EVENTS FEED_GAP_MS; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "$n must be a positive integer" >&2; exit 2; }
done
((ROUNDS <= 50 && SECS <= 60 && LAT_SECS <= 60 && RATE_SECS <= 60 && IDLE_SECS <= 120)) ||
  { echo "ROUNDS ≤ 50 and each round ≤ 60 s, please" >&2; exit 2; }

has_part() { local p; for p in "${PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
has_backend() { local b; for b in "${BACKENDS[@]}"; do [ "$b" = "$1" ] && return 0; done; return 1; }
log() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
py() { python3 "$ROOT/bench/$1" "${@:2}"; }
jv() { py report.py get "$@"; }

# The work directory lives under the cargo target directory (or BENCH_TMP), where no one
# else's /tmp clean-up reaches it.
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "${BENCH_TMP:-$TARGET_DIR}"
WORK=$(mktemp -d "${BENCH_TMP:-$TARGET_DIR}/bench-run.XXXXXX")
ROWS="$WORK/rows.tsv"
NOTES="$WORK/notes.md"
: >"$ROWS"
: >"$NOTES"
PIDS=()
DATABASES=()
RAND=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
DB="checkout_bench_$RAND"

cleanup() {
  local rc=$? pid db
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for db in "${DATABASES[@]}"; do
    psql "$PG_URL/postgres" -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
      log "could not drop database $db; drop it by hand"
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  # A worktree the feed part left behind when interrupted (bench/feed.sh).
  git -C "$ROOT" worktree prune 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { printf -- '- %s\n' "$*" >>"$NOTES"; log "note: $*"; }

# add_row BACKEND WHAT UNIT TARGET SERVICE_VALUES CEILING_VALUES [NOTE]
add_row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >>"$ROWS"; }
# csv V…: the values comma-separated, as add_row takes them.
csv() { local IFS=,; echo "$*"; }

# Forget a process that has ended (its id may be reused later).
forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

stop_pid() {
  local pid=$1
  forget "$pid"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------
log "building (release)"
cargo build --release --bins --quiet
BIN="$TARGET_DIR/release"
LOADGEN="$BIN/checkout-loadgen"
for b in checkout checkout-loadgen checkout-ceiling; do [ -x "$BIN/$b" ] || die "missing $BIN/$b"; done

COMMIT=$(git rev-parse --short=12 HEAD)
git diff --quiet HEAD -- 2>/dev/null || COMMIT="$COMMIT+dirty"
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
TICKS=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------
# The service: a fresh process with rate limits off; its seed output gives key and product.
SVC_PID="" SVC_ADDR="" SEED_KEY="" SEED_PRODUCT=""
# Required on PostgreSQL (webhook secrets are sealed with it); one per run, never kept.
BENCH_SECRETS_KEY=$(head -c 32 /dev/urandom | base64)
start_service() { # NAME DATABASE_URL [VAR=VALUE …]
  local name=$1 url=$2 out="$WORK/svc-$1.out" port=""
  shift 2
  SEED_KEY="" SEED_PRODUCT=""
  env DATABASE_URL="$url" CHECKOUT_LISTEN_ADDR=127.0.0.1:0 CHECKOUT_RATE_LIMIT_PER_SECOND=0 \
    RUST_LOG=warn CHECKOUT_DEMO_SEED=true CHECKOUT_PLATFORM_TOKEN="pt_bench_${RAND}_0123456789abcdefghijklmnop" \
    CHECKOUT_SECRETS_KEY="${CHECKOUT_SECRETS_KEY:-$BENCH_SECRETS_KEY}" CHECKOUT_SHUTDOWN_DELAY_SECONDS=0 \
    CHECKOUT_SHUTDOWN_GRACE_SECONDS=2 "$@" "${CHECKOUT_BIN:-$BIN/checkout}" serve >"$out" 2>"$WORK/svc-$name.err" &
  SVC_PID=$!
  PIDS+=("$SVC_PID")
  for _ in $(seq 1 600); do
    port=$(sed -n 's/^checkout is serving gRPC on .*:\([0-9]*\)$/\1/p' "$out")
    [ -n "$port" ] && break
    kill -0 "$SVC_PID" 2>/dev/null || { cat "$WORK/svc-$name.err" >&2; die "service $name did not start"; }
    sleep 0.1
  done
  [ -n "$port" ] || die "service $name did not print its address within 60 s"
  SVC_ADDR="http://127.0.0.1:$port"
  if grep -q '^Test API key' "$out"; then
    SEED_KEY=$(grep -A1 '^Test API key' "$out" | tail -1 | tr -d ' ')
    SEED_PRODUCT=$(awk '$1 == "product" && $3 == "Starter" {print $2; exit}' "$out")
  fi
}

CEIL_PID="" CEIL_ADDR=""
start_ceiling() { # REPLIES_DIR
  local out="$WORK/ceiling.out" port=""
  "$BIN/checkout-ceiling" --replies "$1" >"$out" 2>&1 &
  CEIL_PID=$!
  PIDS+=("$CEIL_PID")
  for _ in $(seq 1 100); do
    port=$(sed -n 's/^checkout-ceiling listening on .*:\([0-9]*\) .*/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$out" >&2; die "ceiling did not start"; }
  CEIL_ADDR="http://127.0.0.1:$port"
}

# lg OUT ADDR KEY PRODUCT LOADGEN_ARGS…: one loadgen run, JSON into OUT.
lg() {
  local out=$1 addr=$2 key=$3 product=$4
  shift 4
  "$LOADGEN" --addr "$addr" --api-key "$key" --product "$product" --warmup-ms 300 --json "$@" >"$out" 2>"$out.err" ||
    { cat "$out.err" >&2; die "checkout-loadgen $*"; }
  local errors
  errors=$(jv "$out" errors 2>/dev/null || echo 0)
  if [ "$errors" != 0 ]; then
    note "errors during a round ($addr, $*): $(jv "$out" errors_by_code)"
  fi
}

# await_line FILE PATTERN PID: waits (at most 180 s, and only while PID runs) for a line.
await_line() {
  local _
  for _ in $(seq 1 1800); do
    grep -q "$2" "$1" && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "$2" "$1"
}

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# ---------------------------------------------------------------------------------------
# Parts. Each takes: BACKEND_LABEL SERVICE_ADDR KEY PRODUCT.

# Concurrency 1: p50 of GetSession and CreateSession, service vs ceiling, interleaved.
part_latency() {
  local label=$1 addr=$2 key=$3 product=$4 r f mode
  for mode in get create; do
    local svc=() ceil=() extra=()
    [ "$mode" = create ] && extra=(--idempotency)
    for r in $(seq 1 "$ROUNDS"); do
      f="$WORK/lat-$label-$mode-$r"
      lg "$f.a" "$addr" "$key" "$product" --mode "$mode" --concurrency 1 --connections 1 --seconds "$LAT_SECS" "${extra[@]}"
      lg "$f.b" "$CEIL_ADDR" any "$product" --mode "$mode" --concurrency 1 --connections 1 --seconds "$LAT_SECS"
      svc+=("$(jv "$f.a" p50_ms)")
      ceil+=("$(jv "$f.b" p50_ms)")
      log "$label $mode c1 round $r/$ROUNDS: p50 service ${svc[-1]} ms, ceiling ${ceil[-1]} ms"
    done
    local what=GetSession
    [ "$mode" = create ] && what=CreateSession
    add_row "$label" "$what c1 p50 latency" ms "service<2" "$(IFS=,; echo "${svc[*]}")" "$(IFS=,; echo "${ceil[*]}")" "vs bare tonic"
  done
}

# c32 throughput vs the ceiling (closed loop), then p99 at half the service's throughput
# (open loop, both sides at the same rate).
part_get() {
  local label=$1 addr=$2 key=$3 product=$4 backend=$5 r f
  local svc=() ceil=() pgb=() bytes_a="" bytes_b="" defines=()
  # On PostgreSQL a second ceiling: its one statement from pgbench, without the service (what
  # the database alone can answer here, while sharing the machine the same way).
  local script="$WORK/capture/get.pgbench"
  [ "$backend" = postgres ] && [ -s "$script" ] && mapfile -t defines <"$WORK/capture/get.defines"
  for r in $(seq 1 "$ROUNDS"); do
    f="$WORK/get-$label-$r"
    lg "$f.a" "$addr" "$key" "$product" --mode get --concurrency "$CONCURRENCY" --seconds "$SECS"
    lg "$f.b" "$CEIL_ADDR" any "$product" --mode get --concurrency "$CONCURRENCY" --seconds "$SECS"
    svc+=("$(jv "$f.a" throughput)")
    ceil+=("$(jv "$f.b" throughput)")
    bytes_a=$(jv "$f.a" reply_bytes) bytes_b=$(jv "$f.b" reply_bytes)
    if [ "$backend" = postgres ] && [ -s "$script" ]; then
      pgbench -n -M prepared -c "$PGBENCH_CLIENTS" -j 2 -T "$SECS" -f "$script" \
        "${defines[@]}" "$PG_URL/$DB" >"$f.c" 2>"$f.c.err" || { cat "$f.c.err" >&2; die "pgbench (get)"; }
      pgb+=("$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$f.c" | tail -1)")
    fi
    log "$label get c$CONCURRENCY round $r/$ROUNDS: service ${svc[-1]}/s, ceiling ${ceil[-1]}/s${pgb:+, pgbench ${pgb[-1]}/s}"
  done
  add_row "$label" "GetSession c$CONCURRENCY throughput" /s "ratio>=0.5" "$(IFS=,; echo "${svc[*]}")" "$(IFS=,; echo "${ceil[*]}")" "vs bare tonic"
  if [ ${#pgb[@]} -gt 0 ]; then
    add_row "$label" "GetSession c$CONCURRENCY throughput" /s "" "$(IFS=,; echo "${svc[*]}")" "$(IFS=,; echo "${pgb[*]}")" "vs pgbench -c $PGBENCH_CLIENTS of its own statement"
  fi
  add_row "$label" "GetSession reply size" B "" "$bytes_a" "$bytes_b" "the ceiling answers the service's captured reply"
  half_rate "$label" get "$addr" "$key" "$product" "service<3" "$(py report.py median "${svc[@]}")"
}

# half_rate LABEL MODE ADDR KEY PRODUCT TARGET MAX_THROUGHPUT
half_rate() {
  local label=$1 mode=$2 addr=$3 key=$4 product=$5 target=$6 max=$7 r f rate
  rate=$(python3 -c "print(max(1, round($max / 2)))")
  local svc=() ceil=() extra=() lags=()
  [ "$mode" = create ] && extra=(--idempotency)
  for r in $(seq 1 "$ROUNDS"); do
    f="$WORK/rate-$label-$mode-$r"
    lg "$f.a" "$addr" "$key" "$product" --mode "$mode" --rate "$rate" --seconds "$RATE_SECS" "${extra[@]}"
    lg "$f.b" "$CEIL_ADDR" any "$product" --mode "$mode" --rate "$rate" --seconds "$RATE_SECS"
    svc+=("$(jv "$f.a" p99_ms)")
    ceil+=("$(jv "$f.b" p99_ms)")
    lags+=("$(jv "$f.a" start_lag_p99_ms)" "$(jv "$f.b" start_lag_p99_ms)")
    log "$label $mode at $rate/s round $r/$ROUNDS: p99 service ${svc[-1]} ms, ceiling ${ceil[-1]} ms (client start lag p99 ${lags[-2]} / ${lags[-1]} ms)"
  done
  local what=GetSession
  [ "$mode" = create ] && what=CreateSession
  add_row "$label" "$what p99 at half max ($rate/s, open loop)" ms "$target" "$(IFS=,; echo "${svc[*]}")" "$(IFS=,; echo "${ceil[*]}")" \
    "ceiling: bare tonic at the same rate; client start lag p99, median $(py report.py median "${lags[@]}" | cut -c1-5) ms"
}

# CreateSession c32 vs the same statements without the service: pgbench (Postgres) or one
# Python process (SQLite).
part_create() {
  local label=$1 addr=$2 key=$3 product=$4 backend=$5 r f out
  local svc=() ceil=()
  if [ "$backend" = postgres ] && [ ! -s "$WORK/capture/create.pgbench" ]; then
    note "Postgres CreateSession ceiling skipped: no captured statements"
  fi
  if [ "$backend" = sqlite ] && [ ! -s "$WORK/capture/create.capture.json" ]; then
    note "SQLite CreateSession ceiling skipped: its statements are read from the PostgreSQL log, and PostgreSQL was not available"
  fi
  local defines=()
  if [ "$backend" = postgres ] && [ -s "$WORK/capture/create.pgbench" ]; then
    mapfile -t defines <"$WORK/capture/create.defines"
  fi
  if [ "$backend" = sqlite ] && [ -s "$WORK/capture/create.capture.json" ]; then
    py sqlite_ceiling.py --init --capture "$WORK/capture/create.capture.json" \
      --service-db "$SQLITE_DB" --db "$WORK/sqlite-ceiling.db" --pg-url "$PG_URL/$DB" >"$WORK/sqlite-ceiling.init" ||
      die "preparing the SQLite ceiling"
  fi
  for r in $(seq 1 "$ROUNDS"); do
    f="$WORK/create-$label-$r"
    lg "$f.a" "$addr" "$key" "$product" --mode create --concurrency "$CONCURRENCY" --seconds "$SECS" --idempotency
    svc+=("$(jv "$f.a" throughput)")
    if [ "$backend" = postgres ] && [ -s "$WORK/capture/create.pgbench" ]; then
      pgbench -n -M prepared -c "$PGBENCH_CLIENTS" -j 2 -T "$SECS" -f "$WORK/capture/create.pgbench" \
        "${defines[@]}" "$PG_URL/$DB" >"$f.b" 2>"$f.b.err" || { cat "$f.b.err" >&2; die "pgbench"; }
      out=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$f.b" | tail -1)
      grep -q 'number of failed transactions: [1-9]' "$f.b" && note "pgbench round $r had failed transactions: $(grep 'failed' "$f.b")"
      ceil+=("$out")
    elif [ "$backend" = sqlite ] && [ -s "$WORK/capture/create.capture.json" ]; then
      py sqlite_ceiling.py --capture "$WORK/capture/create.capture.json" --db "$WORK/sqlite-ceiling.db" \
        --copy --service-db "$SQLITE_DB" --seconds "$SECS" >"$f.b" || die "SQLite ceiling"
      [ "$(jv "$f.b" errors)" = "{}" ] || note "SQLite ceiling round $r had errors: $(jv "$f.b" errors)"
      ceil+=("$(jv "$f.b" throughput)")
    fi
    log "$label create c$CONCURRENCY round $r/$ROUNDS: service ${svc[-1]}/s, ceiling ${ceil[-1]:-—}/s"
  done
  if [ "$backend" = postgres ]; then
    add_row "$label" "CreateSession c$CONCURRENCY throughput" /s "ratio>=0.8" "$(IFS=,; echo "${svc[*]}")" "$(IFS=,; echo "${ceil[*]}")" "vs pgbench -c $PGBENCH_CLIENTS of its own statements"
  else
    add_row "$label" "CreateSession c$CONCURRENCY throughput" /s "ratio>=0.4" "$(IFS=,; echo "${svc[*]}")" "$(IFS=,; echo "${ceil[*]}")" "vs its statements from one Python sqlite3 process"
    add_row "$label" "CreateSession c$CONCURRENCY throughput, absolute" /s "service>=2500" "$(IFS=,; echo "${svc[*]}")" ""
  fi
  local target=""
  [ "$backend" = postgres ] && target="service<10"
  half_rate "$label" create "$addr" "$key" "$product" "$target" "$(py report.py median "${svc[@]}")"
}

# watch_round OUT ADDR KEY PRODUCT PID IDLE: one loadgen watch run (WATCHERS fresh streams on
# a fresh session, then its ending) against ADDR, whose server process is PID. IDLE=1 also
# measures RSS and CPU of the idle streams (WR_RSS1, WR_CPU). WR_END_CPU_MS: the server's CPU
# from the ending until loadgen exits (10 ms ticks; it includes the streams' teardown).
WR_RSS1="" WR_CPU="" WR_END_CPU_MS=""
watch_round() {
  local f=$1 addr=$2 key=$3 product=$4 pid=$5 idle=$6 go="$1.go" lgpid rss1 rss2 t0 t1 e0 e1
  "$LOADGEN" --addr "$addr" --api-key "$key" --product "$product" --mode watch --watchers "$WATCHERS" \
    --hold-file "$go" --hold-seconds $((IDLE_SECS + 120)) --json >"$f" 2>"$f.err" &
  lgpid=$!
  PIDS+=("$lgpid")
  await_line "$f.err" 'streams open' "$lgpid" || { cat "$f.err" >&2; die "watch streams did not open within 180 s ($addr)"; }
  # Opening 10,000 streams keeps both sides busy for a while; the ending starts from quiet.
  sleep 1
  if [ "$idle" = 1 ]; then
    log "watch: $(grep 'streams open' "$f.err"); idle for $IDLE_SECS s"
    rss1=$(rss_mib "$pid")
    t0=$(cpu_ticks "$pid")
    sleep "$IDLE_SECS"
    t1=$(cpu_ticks "$pid")
    rss2=$(rss_mib "$pid")
    WR_CPU=$(python3 -c "print(f'{($t1 - $t0) / $TICKS / $IDLE_SECS * 100:.3f}')")
    WR_RSS1=$(python3 -c "print(max($rss1, $rss2))")
  fi
  e0=$(cpu_ticks "$pid")
  touch "$go"
  wait "$lgpid" || die "watch run failed: $(cat "$f.err")"
  forget "$lgpid"
  e1=$(cpu_ticks "$pid")
  WR_END_CPU_MS=$(python3 -c "print(($e1 - $e0) * 1000 / $TICKS)")
  local opened
  opened=$(jv "$f" opened)
  [ "$opened" = "$WATCHERS" ] || note "watch ($addr): $opened of $WATCHERS streams opened; open errors: $(jv "$f" open_errors_by_code)"
  [ "$(jv "$f" lost_errors_by_code)" = "{}" ] || note "watch ($addr): streams lost before the ending: $(jv "$f" lost_errors_by_code)"
}

# WATCHERS streams on one session, on a fresh service process and a fresh database (so the
# row is about watching, not about the rows earlier parts left). RSS and idle CPU from /proc,
# in the first round. The fan-out (ending → every watcher) is measured against the ceiling
# answering the service's own watch messages, A and B interleaved, fresh streams each round
# (and, on the service, a fresh session: loadgen creates one per run).
part_watch() { # LABEL BACKEND
  local label=$1 backend=$2 f="$WORK/watch-$2" url
  if [ "$backend" = sqlite ]; then
    mkdir -p "$WORK/watch-sqlite-db"
    url="sqlite://$WORK/watch-sqlite-db/checkout.db"
  else
    psql "$PG_URL/postgres" -X -q -c "CREATE DATABASE ${DB}_watch" >/dev/null || die "creating ${DB}_watch"
    DATABASES+=("${DB}_watch")
    url="$PG_URL/${DB}_watch"
  fi
  start_service "watch-$backend" "$url"
  local key=$SEED_KEY product=$SEED_PRODUCT
  local pid=$SVC_PID addr=$SVC_ADDR
  "$LOADGEN" --addr "$addr" --api-key "$key" --product "$product" --mode get --concurrency 4 --seconds 1 --json >"$f.warm" 2>&1 ||
    die "warming the watch service"
  "$LOADGEN" --addr "$addr" --api-key "$key" --product "$product" --mode get --concurrency 1 --requests 1 \
    --seconds 5 --dump-replies "$WORK/replies-watch-$backend" --json >/dev/null || die "capturing the watch messages"
  start_ceiling "$WORK/replies-watch-$backend"
  sleep 1
  local rss0 rss cpu r svc=() ceil=() svc50=() ceil50=() svccpu=() ceilcpu=() saw=() reply99=()
  rss0=$(rss_mib "$pid")
  for r in $(seq 1 "$ROUNDS"); do
    watch_round "$f-$r.a" "$addr" "$key" "$product" "$pid" "$([ "$r" = 1 ] && echo 1 || echo 0)"
    svccpu+=("$WR_END_CPU_MS")
    if [ "$r" = 1 ]; then rss=$WR_RSS1 cpu=$WR_CPU; fi
    watch_round "$f-$r.b" "$CEIL_ADDR" any "$product" "$CEIL_PID" 0
    ceilcpu+=("$WR_END_CPU_MS")
    svc+=("$(jv "$f-$r.a" fanout_from_send_p99_ms)") ceil+=("$(jv "$f-$r.b" fanout_from_send_p99_ms)")
    svc50+=("$(jv "$f-$r.a" fanout_from_send_p50_ms)") ceil50+=("$(jv "$f-$r.b" fanout_from_send_p50_ms)")
    saw+=("$(jv "$f-$r.a" saw_end)") reply99+=("$(jv "$f-$r.a" fanout_from_reply_p99_ms | cut -c1-6)")
    log "$label watch round $r/$ROUNDS: fan-out p99 service ${svc[-1]} ms, ceiling ${ceil[-1]} ms; p50 ${svc50[-1]} / ${ceil50[-1]} ms; server CPU for the ending ${svccpu[-1]} / ${ceilcpu[-1]} ms; ending seen by ${saw[-1]} / $(jv "$f-$r.b" saw_end) (load $(cut -d' ' -f1 /proc/loadavg))"
    [ "$(jv "$f-$r.b" saw_end)" = "$WATCHERS" ] || note "$label watch round $r: the ceiling's ending reached $(jv "$f-$r.b" saw_end) of $WATCHERS watchers"
  done
  log "$label watch: RSS $rss0 -> $rss MiB, idle CPU $cpu %"
  add_row "$label" "$WATCHERS WatchSession streams: server RSS before" MiB "" "$rss0" ""
  add_row "$label" "$WATCHERS WatchSession streams: server RSS with them open" MiB "service<150" "$rss" "" "opened $(jv "$f-1.a" opened) in $(jv "$f-1.a" open_seconds | cut -c1-5) s over 20 connections"
  add_row "$label" "$WATCHERS idle streams: server CPU over $IDLE_SECS s" % "service<2" "$cpu" "" "% of one core"
  add_row "$label" "ending of the session → each watcher, p99" ms "service<50" "$(csv "${svc[@]}")" "$(csv "${ceil[@]}")" \
    "from ExpireSession sent; ceiling: bare tonic sending the same events to as many streams; service from its reply p99 $(csv "${reply99[@]}") ms"
  add_row "$label" "ending of the session → each watcher, p50" ms "" "$(csv "${svc50[@]}")" "$(csv "${ceil50[@]}")" "from ExpireSession sent"
  add_row "$label" "server CPU from the ending until loadgen exits" ms "" "$(csv "${svccpu[@]}")" "$(csv "${ceilcpu[@]}")" "utime+stime, 10 ms ticks; includes the streams' teardown"
  add_row "$label" "watchers that saw the ending" "" "service>=$WATCHERS" "$(csv "${saw[@]}")" "" "ExpireSession $(jv "$f-1.a" expire_code) in $(jv "$f-1.a" expire_ms | cut -c1-6) ms (round 1); lost $(jv "$f-1.a" lost), no event within $(jv "$f-1.a" event_wait_seconds) s $(jv "$f-1.a" no_event_in_time)"
  stop_pid "$CEIL_PID"
  stop_pid "$pid"
}

# GetSession c32 on a fresh database vs one with STALE_ROWS sessions inserted by SQL while
# its service runs (autovacuum off on both tables, so no statistics), interleaved.
part_stale() {
  local fresh="${DB}_fresh" stale="${DB}_stale" r f
  for d in "$fresh" "$stale"; do
    psql "$PG_URL/postgres" -X -q -c "CREATE DATABASE $d" >/dev/null || die "creating $d"
    DATABASES+=("$d")
  done
  start_service stale-fresh "$PG_URL/$fresh"
  local fpid=$SVC_PID faddr=$SVC_ADDR fkey=$SEED_KEY fproduct=$SEED_PRODUCT
  start_service stale-stale "$PG_URL/$stale"
  local spid=$SVC_PID saddr=$SVC_ADDR skey=$SEED_KEY sproduct=$SEED_PRODUCT
  for d in "$fresh" "$stale"; do
    psql "$PG_URL/$d" -X -q -c "ALTER TABLE sessions SET (autovacuum_enabled = false); ALTER TABLE session_lines SET (autovacuum_enabled = false)" >/dev/null
  done
  # Both services run a little first, as a long-running service would have.
  "$LOADGEN" --addr "$faddr" --api-key "$fkey" --product "$fproduct" --mode get --concurrency 4 --seconds 1 --json >/dev/null
  "$LOADGEN" --addr "$saddr" --api-key "$skey" --product "$sproduct" --mode get --concurrency 4 --seconds 1 --json >/dev/null
  local store version pnum g sid
  store=$(psql "$PG_URL/$stale" -X -At -c "SELECT id FROM stores WHERE slug = 'demo'")
  read -r pnum version < <(psql "$PG_URL/$stale" -X -At -F ' ' -c \
    "SELECT p.id, a.product_version_id FROM products p JOIN product_activations a ON a.product_id = p.id AND a.environment = 'test' WHERE p.name = 'Starter Pack'")
  log "stale: inserting $STALE_ROWS sessions (one line each) into $stale"
  psql "$PG_URL/$stale" -X -q -v rows="$STALE_ROWS" -v store="$store" -v product="$pnum" -v version="$version" \
    -f "$ROOT/bench/stale_sessions.sql" >/dev/null || die "inserting sessions"
  # A session among them: the demo store, test environment, open (see stale_sessions.sql).
  g=$((STALE_ROWS / 2 / 20 * 20))
  while ((g % 7 == 0)); do g=$((g + 20)); done
  sid=$(printf 'cs_%022d' "$g")
  local svc=() ceil=()
  for r in $(seq 1 "$ROUNDS"); do
    f="$WORK/stale-$r"
    lg "$f.a" "$saddr" "$skey" "$sproduct" --mode get --session-id "$sid" --concurrency "$CONCURRENCY" --seconds "$SECS"
    lg "$f.b" "$faddr" "$fkey" "$fproduct" --mode get --concurrency "$CONCURRENCY" --seconds "$SECS"
    svc+=("$(jv "$f.a" throughput)")
    ceil+=("$(jv "$f.b" throughput)")
    log "stale round $r/$ROUNDS: after $STALE_ROWS rows ${svc[-1]}/s, fresh ${ceil[-1]}/s"
  done
  add_row PostgreSQL "GetSession c$CONCURRENCY after $STALE_ROWS sessions, no statistics" /s "ratio>=0.8" \
    "$(IFS=,; echo "${svc[*]}")" "$(IFS=,; echo "${ceil[*]}")" "ceiling: the same on a fresh database"
  stop_pid "$spid"
  stop_pid "$fpid"
}

# The event feed's part (issue 12): part_feed, part_feed_off.
. "$ROOT/bench/feed.sh"

# ---------------------------------------------------------------------------------------
# PostgreSQL: reachable? Then the bench database, and the capture of the service's SQL.
PG_OK=0
if has_backend postgres || has_part create || has_part stale; then
  if command -v psql >/dev/null && psql "$PG_URL/postgres" -X -q -At -c 'SELECT 1' >/dev/null 2>&1; then
    PG_OK=1
  else
    note "PostgreSQL unreachable at $PG_URL: skipped the PostgreSQL rows, the stale-statistics part, and the SQLite CreateSession ceiling (its statements come from the PostgreSQL log)"
  fi
fi
if ((PG_OK)) && ! command -v pgbench >/dev/null; then
  note "pgbench not found: the PostgreSQL CreateSession ceiling is skipped"
fi
PG_VERSION=""
if ((PG_OK)); then
  PG_VERSION=$(psql "$PG_URL/postgres" -X -At -c 'SHOW server_version')
  psql "$PG_URL/postgres" -X -q -c "CREATE DATABASE $DB" >/dev/null || die "creating $DB"
  DATABASES+=("$DB")
fi

# Statements and round trips per call, from PostgreSQL itself (see bench/README.md).
capture_sql() {
  local logfile tz offset proxy_pid port marker
  logfile=${PG_LOG:-$(psql "$PG_URL/postgres" -X -At -c "SELECT coalesce(current_setting('data_directory') || '/' || pg_current_logfile(), '')")}
  if [ -z "$logfile" ] || [ ! -r "$logfile" ]; then
    local major
    major=$(psql "$PG_URL/postgres" -X -At -c "SELECT current_setting('server_version_num')::int / 10000")
    logfile="/var/log/postgresql/postgresql-$major-main.log"
  fi
  if [ ! -r "$logfile" ]; then
    note "cannot read the PostgreSQL log ($logfile; set PG_LOG): statements per call and the pgbench ceiling are skipped"
    return 0
  fi
  tz=$(psql "$PG_URL/postgres" -X -At -c 'SHOW log_timezone')
  offset=$(stat -c %s "$logfile")
  psql "$PG_URL/postgres" -X -q -c "ALTER DATABASE $DB SET log_statement = 'all'" >/dev/null
  marker="checkout-bench-marker-$RAND"
  psql "$PG_URL/$DB" -X -q -At -c "SELECT '$marker'" >/dev/null
  sleep 0.5
  if ! tail -c +"$((offset + 1))" "$logfile" | grep -q "$marker"; then
    psql "$PG_URL/postgres" -X -q -c "ALTER DATABASE $DB RESET log_statement" >/dev/null
    note "$logfile does not receive this server's statements (set PG_LOG): statements per call and the pgbench ceiling are skipped"
    return 0
  fi
  python3 "$ROOT/bench/pgproxy.py" --upstream "$(python3 -c "import urllib.parse,sys; u=urllib.parse.urlsplit(sys.argv[1]); print(f'{u.hostname}:{u.port or 5432}')" "$PG_URL")" \
    --port-file "$WORK/proxy.port" --out "$WORK/flights.txt" --max-seconds 300 &
  proxy_pid=$!
  PIDS+=("$proxy_pid")
  for _ in $(seq 1 50); do [ -s "$WORK/proxy.port" ] && break; sleep 0.1; done
  port=$(cat "$WORK/proxy.port")
  local proxied
  proxied=$(python3 -c "import urllib.parse,sys; u=urllib.parse.urlsplit(sys.argv[1]); print(u._replace(netloc=(u.username + '@' if u.username else '') + '127.0.0.1:' + sys.argv[2]).geturl())" "$PG_URL" "$port")
  # The webhook dispatcher polls every 500 ms; off here to keep the windows clean (it has
  # nothing to do with CreateSession). The seed runs now, on the empty database.
  start_service pg-capture "$proxied/$DB" CHECKOUT_WEBHOOK_DISPATCHER=false
  PG_KEY=$SEED_KEY PG_PRODUCT=$SEED_PRODUCT
  local cpid=$SVC_PID caddr=$SVC_ADDR
  "$LOADGEN" --addr "$caddr" --api-key "$PG_KEY" --product "$PG_PRODUCT" --mode create --concurrency 1 --requests 5 --seconds 10 --json >/dev/null
  "$LOADGEN" --addr "$caddr" --api-key "$PG_KEY" --product "$PG_PRODUCT" --mode create --concurrency 1 --idempotency \
    --warmup-ms 0 --requests "$CAPTURE_CALLS" --pause-ms 150 --seconds 30 --trace-calls >"$WORK/calls-create.txt"
  "$LOADGEN" --addr "$caddr" --api-key "$PG_KEY" --product "$PG_PRODUCT" --mode get --concurrency 1 \
    --warmup-ms 300 --requests "$CAPTURE_CALLS" --pause-ms 150 --seconds 30 --trace-calls >"$WORK/calls-get.txt"
  stop_pid "$cpid"
  stop_pid "$proxy_pid"
  psql "$PG_URL/postgres" -X -q -c "ALTER DATABASE $DB RESET log_statement" >/dev/null
  sleep 0.5
  mkdir -p "$WORK/capture"
  py sqlcapture.py --log "$logfile" --offset "$offset" --db "$DB" --tz "$tz" --calls "$WORK/calls-create.txt" \
    --flights "$WORK/flights.txt" --name create --out "$WORK/capture" --pgbench >"$WORK/capture/create.summary" ||
    { note "capture of CreateSession failed: $(cat "$WORK/capture/create.summary")"; return 0; }
  py sqlcapture.py --log "$logfile" --offset "$offset" --db "$DB" --tz "$tz" --calls "$WORK/calls-get.txt" \
    --flights "$WORK/flights.txt" --name get --out "$WORK/capture" --pgbench >"$WORK/capture/get.summary" ||
    note "capture of GetSession failed: $(cat "$WORK/capture/get.summary")"
  local what
  for what in create get; do
    [ -s "$WORK/capture/$what.capture.json" ] || continue
    local name=GetSession
    [ "$what" = create ] && name=CreateSession
    local s="$WORK/capture/$what.summary" target=""
    [ "$what" = create ] && target="service<=4"
    add_row PostgreSQL "$name statements per call" "" "" "$(jv "$s" statements_per_call)" "" \
      "PostgreSQL log, $(jv "$s" calls_agreeing) of $(jv "$s" calls) calls alike"
    add_row PostgreSQL "$name round trips per call" "" "$target" "$(jv "$s" round_trips_per_call)" "" \
      "counting proxy, on the call's connection, median of $(jv "$s" round_trips_each_call | tr -d ' '); on any connection in its window $(jv "$s" round_trips_in_window_per_call), of $(jv "$s" round_trips_in_window_each_call | tr -d ' ')"
  done
  [ -s "$WORK/capture/create.pgbench" ] && ! grep -q startpipeline "$WORK/capture/create.pgbench" &&
    [ "$(jv "$WORK/capture/create.summary" flights_match_statements)" != True ] &&
    note "CreateSession's flights did not add up to its statements; the pgbench script sends every statement on its own"
  log "captured: $(cat "$WORK/capture/create.summary")"
}

PG_KEY="" PG_PRODUCT=""
if ((PG_OK)) && { has_part create || { has_backend postgres && { has_part latency || has_part get; }; }; }; then
  log "PostgreSQL $PG_VERSION: database $DB; capturing the service's SQL"
  capture_sql
fi

# ---------------------------------------------------------------------------------------
SQLITE_DB=""
run_backend() { # sqlite | postgres
  local backend=$1 label url key product
  if [ "$backend" = sqlite ]; then
    label=SQLite
    mkdir -p "$WORK/sqlite"
    SQLITE_DB="$WORK/sqlite/checkout.db"
    url="sqlite://$SQLITE_DB"
  else
    label=PostgreSQL
    url="$PG_URL/$DB"
  fi
  log "== $label"
  start_service "$backend" "$url"
  local pid=$SVC_PID addr=$SVC_ADDR
  if [ "$backend" = sqlite ] || [ -z "$PG_KEY" ]; then key=$SEED_KEY product=$SEED_PRODUCT; else key=$PG_KEY product=$PG_PRODUCT; fi
  if [ -z "$key" ] || [ -z "$product" ]; then die "no demo key/product for $label (was the database empty?)"; fi
  # The ceiling answers with this service's own replies.
  "$LOADGEN" --addr "$addr" --api-key "$key" --product "$product" --mode get --concurrency 1 --requests 1 \
    --seconds 5 --dump-replies "$WORK/replies-$backend" --json >/dev/null || die "capturing replies"
  start_ceiling "$WORK/replies-$backend"
  if has_part latency; then part_latency "$label" "$addr" "$key" "$product"; fi
  if has_part get; then part_get "$label" "$addr" "$key" "$product" "$backend"; fi
  if has_part create; then part_create "$label" "$addr" "$key" "$product" "$backend"; fi
  stop_pid "$CEIL_PID"
  stop_pid "$pid"
}

if has_part feed; then build_feed_off; fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for backend in sqlite postgres; do
  has_backend "$backend" || continue
  [ "$backend" = postgres ] && ((PG_OK == 0)) && continue
  if has_part latency || has_part get || has_part create; then run_backend "$backend"; fi
  if has_part watch; then
    label=SQLite
    [ "$backend" = postgres ] && label=PostgreSQL
    log "== $label: watch"
    part_watch "$label" "$backend"
  fi
  if has_part feed; then
    label=SQLite
    [ "$backend" = postgres ] && label=PostgreSQL
    log "== $label: feed"
    part_feed "$label" "$backend"
    part_feed_off "$label" "$backend"
  fi
done
if has_part stale && has_backend postgres && ((PG_OK)); then
  log "== stale statistics (PostgreSQL)"
  part_stale
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------
REPORT="$WORK/report.md"
{
  echo "# checkout benchmark: $STARTED, commit $COMMIT"
  echo
  echo "- command: \`bench/run.sh $*\` (ROUNDS=$ROUNDS SECS=$SECS LAT_SECS=$LAT_SECS RATE_SECS=$RATE_SECS CONCURRENCY=$CONCURRENCY PGBENCH_CLIENTS=$PGBENCH_CLIENTS WATCHERS=$WATCHERS IDLE_SECS=$IDLE_SECS STALE_ROWS=$STALE_ROWS CONSUMERS=$CONSUMERS FEED_EVENTS=$FEED_EVENTS FEED_GAP_MS=$FEED_GAP_MS)"
  echo "- machine: $(nproc) CPUs ($CPU), $MEM, Linux $(uname -r); load average before $LOAD_BEFORE, after $LOAD_AFTER"
  echo "- PostgreSQL: ${PG_VERSION:-not used}; SQLite ceiling: Python $(python3 -c 'import sqlite3,sys; print(sys.version.split()[0], "sqlite", sqlite3.sqlite_version)')"
  echo "- release build; service with CHECKOUT_RATE_LIMIT_PER_SECOND=0 RUST_LOG=warn; service, databases and load generator share this machine (loopback)"
  echo "- A (service) and B (ceiling) alternate within each round; medians over $ROUNDS rounds; ratio = median of per-round ratios"
  echo
  py report.py table "$ROWS"
  if [ -s "$NOTES" ]; then
    echo
    echo "Notes:"
    cat "$NOTES"
  fi
  echo
  echo "<details><summary>Every round</summary>"
  echo
  py report.py rounds "$ROWS"
  echo
  echo "</details>"
  if [ -s "$WORK/capture/create.txt" ]; then
    echo
    echo "<details><summary>What one CreateSession sent to PostgreSQL, and the pgbench script made from it</summary>"
    echo
    echo '```'
    cat "$WORK/capture/create.txt"
    [ -s "$WORK/capture/get.txt" ] && cat "$WORK/capture/get.txt"
    echo '```'
    echo
    echo '```'
    cat "$WORK/capture/create.pgbench"
    echo '```'
    echo
    echo "</details>"
  fi
} >"$REPORT"
mkdir -p "$ROOT/bench/results"
RESULT="$ROOT/bench/results/$(date -u +%Y-%m-%d-%H%M)-${COMMIT//+/-}.md"
cp "$REPORT" "$RESULT"
echo
cat "$REPORT"
echo
log "written to ${RESULT#"$ROOT"/}"
