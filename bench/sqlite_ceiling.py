#!/usr/bin/env python3
"""The SQLite ceiling for CreateSession: the statements the service runs for one
CreateSession, run from one process on one connection, in a loop of transactions, for a
fixed time, with the PRAGMAs of the service's writer connection (src/db/connect.rs and
src/db/checkpoint.rs: busy_timeout 5000, WAL, synchronous NORMAL, foreign_keys ON,
secure_delete FAST, wal_autocheckpoint 0), its `BEGIN IMMEDIATE`, and its checkpoints (a
PASSIVE checkpoint every 100 ms from another connection, on another thread).

The statements come from PostgreSQL (bench/sqlcapture.py's <name>.capture.json: what the
service sent for one call), translated to SQLite: `$n` -> `?`, `= ANY($n)` -> `IN (?, …)`,
`BEGIN` -> `BEGIN IMMEDIATE`, `DEFAULT` in an INSERT's VALUES -> NULL (the columns' default),
booleans 't'/'f' -> 1/0, and the event feed's write (an insert from arrays, which SQLite
lacks) -> the statements the service runs for it on SQLite. Values naming rows of the Postgres
bench database (store, API key, products, versions, coupons) are mapped to the rows with
the same natural key (slug, product name, version number, coupon code) in the SQLite
database, which is a copy of the service's own database taken by --init. Parameters that
differ between calls (ids, keys, timestamps) get fresh values per transaction.

  sqlite_ceiling.py --init --capture C.json --service-db svc.db --db ceiling.db --pg-db NAME
  sqlite_ceiling.py --capture C.json --db ceiling.db --seconds 5 [--copy --service-db svc.db]
      # prints {"throughput": …}; with --copy it first takes a fresh copy of the service's
      # database, so both sides of a round start from the same rows
"""
import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

PRAGMAS = (
    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; "
    "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = FAST; "
    # The service's writer connection (src/db/checkpoint.rs): no automatic checkpoint ...
    "PRAGMA wal_autocheckpoint = 0;"
)
# ... and its checkpointer: every 100 ms a PASSIVE checkpoint from a connection of its own,
# on another thread, while the writer goes on; then the same again between two of the
# writer's transactions (here: the writer loop runs it when step 1 is done).
CHECKPOINT_EVERY = 0.1


class Checkpointer(threading.Thread):
    def __init__(self, path):
        super().__init__(daemon=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 5000")
        self.stop = threading.Event()
        self.step1_done = threading.Event()  # set: the writer loop owes step 2

    def run(self):
        while not self.stop.wait(CHECKPOINT_EVERY):
            if self.step1_done.is_set():
                continue  # the writer has not taken its turn yet
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.step1_done.set()

    def between_transactions(self):
        if self.step1_done.is_set():
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.step1_done.clear()

# Natural key -> ids, the same queries on both databases (only the service's schema).
MAPPINGS = [
    "SELECT 'store:' || slug, id FROM stores",
    "SELECT 'key:' || s.slug || ':' || k.environment, k.id FROM api_keys k JOIN stores s ON s.id = k.store_id",
    "SELECT 'hash:' || s.slug || ':' || k.environment, k.secret_hash FROM api_keys k JOIN stores s ON s.id = k.store_id",
    "SELECT 'product:' || s.slug || ':' || p.name, CAST(p.id AS TEXT) FROM products p JOIN stores s ON s.id = p.store_id",
    "SELECT 'version:' || s.slug || ':' || p.name || ':' || v.number, v.id FROM product_versions v JOIN products p ON p.id = v.product_id JOIN stores s ON s.id = p.store_id",
    "SELECT 'coupon:' || s.slug || ':' || c.code, c.id FROM coupons c JOIN stores s ON s.id = c.store_id",
]


def pg_rows(pg_url, query):
    out = subprocess.run(
        ["psql", pg_url, "-X", "-At", "-F", "\t", "-c", query],
        check=True, capture_output=True, text=True,
    ).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line]


def value_map(pg_url, conn):
    mapping = {}
    for q in MAPPINGS:
        pg = {}
        for k, v in pg_rows(pg_url, q):
            pg.setdefault(k, []).append(v)
        lite = {}
        for k, v in conn.execute(q).fetchall():
            lite.setdefault(k, []).append(str(v))
        for k, values in pg.items():
            if len(values) == 1 and len(lite.get(k, [])) == 1:
                mapping[values[0]] = lite[k][0]
    return mapping


def sqlite_value(v, mapping):
    v = mapping.get(v, v)
    if v in ("t", "f"):
        return 1 if v == "t" else 0
    if re.fullmatch(r"-?\d{1,18}", v):
        return int(v)
    return v


# The feed's write on PostgreSQL is one INSERT … SELECT … FROM unnest(…) that takes positions
# from column defaults (src/db/feed/write.rs, PgRecord); SQLite has neither arrays nor those
# defaults, and the service runs there what `RecordFeed for &mut SqliteConn` in that file
# runs: the counter upsert returning the new last position, then one insert of every event
# at positions counted back from it. Keep the two in step.
FEED_INSERT = re.compile(r"^\s*INSERT INTO feed_events \(store_id, environment, event_type\b", re.I)
FEED_UPSERT = (
    'INSERT INTO "event_counters" ("store_id", "environment", "last_position", "purged_through") '
    'VALUES (?, ?, ?, ?) ON CONFLICT ("store_id", "environment") DO UPDATE SET '
    '"last_position" = ("event_counters"."last_position" + ?) RETURNING "event_counters"."last_position"'
)
FEED_ROWS = (
    'INSERT INTO "feed_events" ("store_id", "environment", "position", "event_type", '
    '"session_id", "occurred_at") VALUES '
)


def array_items(spec):
    if spec["kind"] == "null":
        return []
    return [i.strip('"') for i in spec["value"].strip("{}").split(",") if i]


def feed_statements(specs, by_value):
    """The SQLite statements for the feed insert whose parameters are `specs` ($1 store,
    $2 environment, $3 occurred_at, $4 event types, $5 session ids)."""
    store, env, at = specs[0], specs[1], specs[2]
    types, ids = array_items(specs[3]), array_items(specs[4])
    count = {"const": len(ids)}
    params = []
    for i, (kind, session) in enumerate(zip(types, ids)):
        # The session id is the one the same call inserted: the same varying parameter.
        sid = by_value.get(session, {"kind": "const", "value": session})
        position = {"prev_plus": 1 - len(ids) + i}
        params += [store, env, position, {"const": kind}, sid, at]
    rows = FEED_ROWS + ", ".join("(?, ?, ?, ?, ?, ?)" for _ in ids)
    return [(FEED_UPSERT, [store, env, count, {"const": 0}, count]), (rows, params)]


def param(spec, mapping):
    """A captured parameter as the replay uses it: None, {"const": v} (mapped to this
    database's rows), a varying spec (fresh per transaction), or already resolved."""
    if "const" in spec or "prev_plus" in spec:
        return spec
    if spec["kind"] == "null":
        return None
    if spec["kind"] == "const":
        return {"const": sqlite_value(spec["value"], mapping)}
    return spec


def translate(stmts, mapping):
    """[(sql, [param spec])] for SQLite, parameters in order of appearance."""
    out = []
    by_value = {
        p["value"]: p for st in stmts for p in st["params"] if p.get("kind") == "var"
    }
    for st in stmts:
        sql, specs = st["sql"], st["params"]
        if FEED_INSERT.match(sql):
            for fsql, fparams in feed_statements(specs, by_value):
                out.append((fsql, [param(p, mapping) for p in fparams]))
            continue
        if st["kind"] == "simple" and sql.strip().upper() in ("BEGIN", "BEGIN TRANSACTION"):
            out.append(("BEGIN IMMEDIATE", []))
            continue
        if re.match(r"\s*INSERT\b", sql, re.I):
            # diesel writes DEFAULT for an absent value on PostgreSQL; SQLite has no DEFAULT
            # in VALUES, and these columns' default is NULL.
            sql = re.sub(r"\bDEFAULT\b", "NULL", sql)
        order = []

        def sub(m):
            if m.group(1):
                items = array_items(specs[int(m.group(1)) - 1])
                for item in items:
                    order.append({"kind": "const", "value": item})
                return "IN (" + ", ".join("?" for _ in items) + ")"
            order.append(specs[int(m.group(2)) - 1])
            return "?"

        sql = re.sub(r"= ANY\(\$(\d+)\)|\$(\d+)", sub, sql)
        sql = re.sub(r"\s+FOR UPDATE(\s+SKIP LOCKED)?", "", sql)
        out.append((sql, [param(spec, mapping) for spec in order]))
    return out


def fresh(spec, run, n):
    if spec["int"]:
        return int(spec["value"]) + n
    tail = f"{run}x{n}"
    orig = spec["value"]
    return orig[: max(0, len(orig) - len(tail))] + tail


def value(p, run, n, prev):
    """A parameter's value in transaction n; `prev` is what the previous statement returned."""
    if p is None:
        return None
    if "const" in p:
        return p["const"]
    if "prev_plus" in p:
        return prev[0][0] + p["prev_plus"]
    return fresh(p, run, n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capture", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--init", action="store_true")
    ap.add_argument("--service-db", help="--init, or before a run with --copy: the service's database")
    ap.add_argument("--copy", action="store_true", help="copy --service-db over --db first (same data as the service)")
    ap.add_argument("--pg-url")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--warmup-seconds", type=float, default=0.5)
    args = ap.parse_args()
    with open(args.capture) as f:
        capture = json.load(f)
    map_path = args.db + ".map.json"
    if args.init:
        src = sqlite3.connect(args.service_db)
        dst = sqlite3.connect(args.db)
        src.backup(dst)
        src.close()
        mapping = value_map(args.pg_url, dst)
        dst.close()
        with open(map_path, "w") as f:
            json.dump(mapping, f)
        print(json.dumps({"mapped_values": len(mapping)}))
        return 0
    with open(map_path) as f:
        mapping = json.load(f)
    if args.copy:
        src = sqlite3.connect(args.service_db)
        dst = sqlite3.connect(args.db)
        src.backup(dst)
        src.close()
        dst.close()
    program = translate(capture["statements"], mapping)
    conn = sqlite3.connect(args.db, isolation_level=None)
    conn.executescript(PRAGMAS)
    checkpoints = Checkpointer(args.db)
    checkpoints.start()
    run = f"{os.getpid()}{int(time.time()) % 100000}"
    n, counted, errors = 0, 0, {}
    start = time.monotonic()
    measured_from = start + min(args.warmup_seconds, 10)
    deadline = measured_from + min(args.seconds, 300)
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        n += 1
        checkpoints.between_transactions()
        try:
            prev = []
            for sql, params in program:
                values = [value(p, run, n, prev) for p in params]
                prev = conn.execute(sql, values).fetchall()
            if now >= measured_from:
                counted += 1
        except sqlite3.Error as e:
            errors[str(e)[:120]] = errors.get(str(e)[:120], 0) + 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    elapsed = time.monotonic() - measured_from
    checkpoints.stop.set()
    checkpoints.join()
    print(json.dumps({
        "throughput": counted / elapsed if elapsed > 0 else 0,
        "transactions": counted,
        "statements_per_transaction": len(program),
        "errors": errors,
        "sqlite_version": sqlite3.sqlite_version,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
