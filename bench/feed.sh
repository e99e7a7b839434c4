# bench/feed.sh: the `feed` part of bench/run.sh (issue 12 item 6), sourced by it; uses its
# helpers (start_service, lg, add_row, note, …). See bench/README.md, "The event feed".

# The service without the feed: the first parent of the merge that brought the feed
# (05a3e5a). The feed writes its events inside CreateSession's transaction and cannot be
# switched off without breaking SPEC §11, so "feed off" is the code before it.
FEED_MERGE=05a3e5a
FEED_OFF_BIN=""

csv() { local IFS=,; echo "$*"; }

# Builds (once; kept between runs under the target directory) the pre-feed `checkout`.
build_feed_off() {
  local commit cache src
  commit=$(git rev-parse --verify -q "$FEED_MERGE^1") ||
    { note "feed off: commit $FEED_MERGE is not in this repository; the feed on/off row is skipped"; return 0; }
  cache="$TARGET_DIR/bench-feed-off"
  FEED_OFF_BIN="$cache/checkout-${commit:0:12}"
  [ -x "$FEED_OFF_BIN" ] && return 0
  # Its own target directory; seeded from this one's release build (same dependencies, so
  # only the checkout crate itself compiles).
  if [ ! -d "$cache/target/release" ] && [ -d "$TARGET_DIR/release/deps" ]; then
    mkdir -p "$cache/target"
    cp -a --reflink=auto "$TARGET_DIR/release" "$cache/target/release"
  fi
  src="$WORK/feed-off-src"
  log "feed off: building checkout at ${commit:0:12} (the parent of the feed's merge) into $cache"
  git worktree add -q --detach "$src" "$commit" || { note "feed off: git worktree add failed"; FEED_OFF_BIN=""; return 0; }
  if (cd "$src" && CARGO_TARGET_DIR="$cache/target" cargo build --release --quiet --bin checkout); then
    cp "$cache/target/release/checkout" "$FEED_OFF_BIN"
  else
    note "feed off: building ${commit:0:12} failed; the feed on/off row is skipped"
    FEED_OFF_BIN=""
  fi
  git worktree remove --force "$src" || true
}

# A fresh database for BACKEND; prints its URL (PostgreSQL databases are dropped on exit).
fresh_db() { # BACKEND NAME
  if [ "$1" = sqlite ]; then
    mkdir -p "$WORK/$2"
    echo "sqlite://$WORK/$2/checkout.db"
  else
    psql "$PG_URL/postgres" -X -q -c "CREATE DATABASE ${DB}_$2" >/dev/null || die "creating ${DB}_$2"
    echo "$PG_URL/${DB}_$2"
  fi
}

drop_db() { # BACKEND NAME
  if [ "$1" = sqlite ]; then
    rm -rf "${WORK:?}/$2"
  else
    psql "$PG_URL/postgres" -X -q -c "DROP DATABASE IF EXISTS ${DB}_$2 WITH (FORCE)" >/dev/null ||
      note "could not drop ${DB}_$2"
  fi
}

# One run of the load generator's feed mode against ADDR, its JSON into OUT; waits for its
# streams to go live, then for it. Sets FEED_LG_PID while it runs (for the RSS reading).
feed_round() { # OUT ADDR KEY PRODUCT [BEFORE_GO_COMMAND…]
  local f=$1 addr=$2 key=$3 product=$4 go="$1.go"
  shift 4
  "$LOADGEN" --addr "$addr" --api-key "$key" --product "$product" --mode feed --consumers "$CONSUMERS" \
    --events "$FEED_EVENTS" --gap-ms "$FEED_GAP_MS" --hold-file "$go" --hold-seconds 60 --json >"$f" 2>"$f.err" &
  FEED_LG_PID=$!
  PIDS+=("$FEED_LG_PID")
  await_line "$f.err" 'streams live' "$FEED_LG_PID" || { cat "$f.err" >&2; die "feed streams did not go live within 180 s"; }
  [ $# -gt 0 ] && "$@"
  touch "$go"
  wait "$FEED_LG_PID" || die "feed run failed: $(cat "$f.err")"
  forget "$FEED_LG_PID"
}

# CONSUMERS WatchEvents streams on a fresh service and database; FEED_EVENTS sessions
# created one at a time, FEED_GAP_MS apart; ROUNDS runs of the load generator on it (fresh
# streams each), each followed by the same run against bare tonic (checkout-ceiling, whose
# CreateSession sends the streams a new event: the fan-out without a database). RSS before
# and with the streams open, from the first round.
part_feed() { # LABEL BACKEND
  local label=$1 backend=$2 url r f rss0="" rss1=""
  url=$(fresh_db "$backend" feed)
  [ "$backend" = postgres ] && DATABASES+=("${DB}_feed")
  start_service "feed-$backend" "$url"
  local key=$SEED_KEY product=$SEED_PRODUCT pid=$SVC_PID addr=$SVC_ADDR
  "$LOADGEN" --addr "$addr" --api-key "$key" --product "$product" --mode get --concurrency 4 --seconds 1 --json >"$WORK/feed-$backend.warm" 2>&1 ||
    die "warming the feed service"
  "$LOADGEN" --addr "$addr" --api-key "$key" --product "$product" --mode get --concurrency 1 --requests 1 \
    --seconds 5 --dump-replies "$WORK/replies-feed-$backend" --json >/dev/null || die "capturing the feed's messages"
  # Its own ceiling, answering this service's messages; the other parts' comes back after.
  local outer_ceiling=$CEIL_PID outer_ceiling_addr=$CEIL_ADDR
  start_ceiling "$WORK/replies-feed-$backend"
  sleep 1
  rss0=$(rss_mib "$pid")
  local p99=() p50=() reply99=() exact=() missing=0 dups=0 lost=0 order=0 created=() opened=() ceil99=() ceil50=()
  for r in $(seq 1 "$ROUNDS"); do
    f="$WORK/feed-$backend-$r"
    if [ "$r" = 1 ]; then
      # shellcheck disable=SC2317 # called by feed_round
      read_rss() { sleep 1; rss1=$(rss_mib "$pid"); }
      feed_round "$f" "$addr" "$key" "$product" read_rss
    else
      feed_round "$f" "$addr" "$key" "$product"
    fi
    p99+=("$(jv "$f" fanout_from_send_p99_ms)")
    p50+=("$(jv "$f" fanout_from_send_p50_ms)")
    reply99+=("$(jv "$f" fanout_from_reply_p99_ms)")
    exact+=("$(jv "$f" exactly_once_in_order)")
    opened+=("$(jv "$f" opened)")
    created+=("$(jv "$f" created)")
    missing=$((missing + $(jv "$f" missing)))
    dups=$((dups + $(jv "$f" duplicates)))
    lost=$((lost + $(jv "$f" lost)))
    order=$((order + $(jv "$f" out_of_order)))
    # The ceiling's round counts only if its consumers all saw every event once (else its
    # figures would time nothing); one more try, then a note.
    local try
    for try in 1 2; do
      feed_round "$f.ceiling" "$CEIL_ADDR" any "$product"
      [ "$(jv "$f.ceiling" exactly_once_in_order)" = "$CONSUMERS" ] && break
      note "$label feed round $r, try $try: the ceiling's consumers did not all see every event once ($(jv "$f.ceiling" exactly_once_in_order) of $CONSUMERS; missing $(jv "$f.ceiling" missing), created $(jv "$f.ceiling" created))"
    done
    ceil99+=("$(jv "$f.ceiling" fanout_from_send_p99_ms)")
    ceil50+=("$(jv "$f.ceiling" fanout_from_send_p50_ms)")
    log "$label feed round $r/$ROUNDS: event → consumer p99 ${p99[-1]} ms (p50 ${p50[-1]} ms, from the reply p99 ${reply99[-1]} ms), bare tonic p99 ${ceil99[-1]} ms (p50 ${ceil50[-1]} ms); exactly once in order ${exact[-1]} of $CONSUMERS"
    [ "${opened[-1]}" = "$CONSUMERS" ] || note "$label feed round $r: ${opened[-1]} of $CONSUMERS streams opened; $(jv "$f" open_errors_by_code)"
    [ "${created[-1]}" = "$FEED_EVENTS" ] || note "$label feed round $r: ${created[-1]} of $FEED_EVENTS CreateSession calls succeeded; $(jv "$f" create_errors_by_code)"
    [ "$(jv "$f" lost_errors_by_code)" = "{}" ] || note "$label feed round $r: streams lost: $(jv "$f" lost_errors_by_code)"
  done
  stop_pid "$CEIL_PID"
  CEIL_PID=$outer_ceiling CEIL_ADDR=$outer_ceiling_addr
  add_row "$label" "$CONSUMERS WatchEvents consumers: server RSS before" MiB "" "$rss0" ""
  add_row "$label" "$CONSUMERS WatchEvents consumers: server RSS with them open" MiB "" "$rss1" "" "over 20 connections"
  add_row "$label" "$CONSUMERS WatchEvents consumers: new event → every consumer, p99 (vs bare tonic)" ms "service<50" "$(csv "${p99[@]}")" "$(csv "${ceil99[@]}")" \
    "from CreateSession sent, $FEED_EVENTS events ${FEED_GAP_MS} ms apart per round; p50 $(py report.py median "${p50[@]}" | cut -c1-6) ms (bare tonic $(py report.py median "${ceil50[@]}" | cut -c1-6) ms); from its reply p99 $(py report.py median "${reply99[@]}" | cut -c1-6) ms"
  add_row "$label" "consumers that saw every event exactly once, in order" "" "service>=$CONSUMERS" "$(csv "${exact[@]}")" "" \
    "all rounds: missing $missing, duplicates $dups, out of order $order (consumers), streams lost $lost"
  stop_pid "$pid"
  drop_db "$backend" feed
}

# CreateSession c32 throughput of this build (A) against the pre-feed build (B), each round
# on a fresh service and database, A B A B …; the part `create`'s load-generator arguments.
part_feed_off() { # LABEL BACKEND
  local label=$1 backend=$2 r f url side bin
  [ -n "$FEED_OFF_BIN" ] || return 0
  local on=() off=()
  for r in $(seq 1 "$ROUNDS"); do
    for side in a b; do
      bin="$BIN/checkout"
      [ "$side" = b ] && bin=$FEED_OFF_BIN
      f="$WORK/feedoff-$backend-$r.$side"
      url=$(fresh_db "$backend" "feedoff_$side")
      [ "$backend" = postgres ] && DATABASES+=("${DB}_feedoff_$side")
      CHECKOUT_BIN=$bin start_service "feedoff-$backend-$side" "$url"
      lg "$f" "$SVC_ADDR" "$SEED_KEY" "$SEED_PRODUCT" --mode create --concurrency "$CONCURRENCY" --seconds "$SECS" --idempotency
      stop_pid "$SVC_PID"
      drop_db "$backend" "feedoff_$side"
      if [ "$side" = a ]; then on+=("$(jv "$f" throughput)"); else off+=("$(jv "$f" throughput)"); fi
    done
    log "$label create c$CONCURRENCY round $r/$ROUNDS: feed on ${on[-1]}/s, feed off ${off[-1]}/s"
  done
  add_row "$label" "CreateSession c$CONCURRENCY throughput, feed on vs off" /s "ratio>=0.9" "$(csv "${on[@]}")" "$(csv "${off[@]}")" \
    "off: the build of $(git rev-parse --short=12 "$FEED_MERGE^1"), before the feed; fresh service and database each round"
}
