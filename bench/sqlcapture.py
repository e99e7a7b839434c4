#!/usr/bin/env python3
"""Turns what the service sent to PostgreSQL during a few traced calls into numbers and
into a pgbench script.

Inputs (written by bench/run.sh during its capture step):
  * the PostgreSQL log from a byte offset, with `log_statement = 'all'` set on the bench
    database: every statement the service ran, with its `DETAIL: parameters:` line;
  * the call windows printed by `checkout-loadgen --trace-calls` (`call n start end code`,
    unix µs), calls made one at a time with pauses between them;
  * the flights recorded by bench/pgproxy.py (round trips, see there).

A statement belongs to a call when its log timestamp (ms) lies inside the call's window;
so does a flight. Background work (the expiry sweeper, the listener's probe) can fall into
a window, so the statement sequence used is the most common one among the calls, and the
round trips per call are the median of the flights on the call's own connection (all
flights in the window are reported too).

Outputs into --out: <name>.capture.json (the statements of one typical call, each parameter
marked constant or varying between calls), and for --pgbench <name>: <name>.pgbench (a
pgbench script) and <name>.defines (its -D arguments, one per line), <name>.txt (readable).
Prints a JSON summary line.
"""
import argparse
import collections
import datetime
import json
import os
import re
import statistics
import sys
from zoneinfo import ZoneInfo

LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+ \[(\d+)\] (\S*)@(\S*) ([A-Z]+):  (.*)$"
)
EXECUTE = re.compile(r"^execute (\S+): (.*)$", re.S)
PARAM = re.compile(r"\$(\d+) = (NULL|'((?:[^']|'')*)')", re.S)
INT = re.compile(r"^-?\d{1,18}$")


def read_log(path, offset, db, tz):
    """Statements of database `db`: [(ts_ms, pid, kind, sql, params)]."""
    zone = ZoneInfo(tz)
    entries = []
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    for raw in text.split("\n"):
        if raw.startswith("\t") and entries:
            entries[-1][5] += "\n" + raw[1:]
            continue
        m = LINE.match(raw)
        if not m:
            continue
        ts, pid, _user, database, level, msg = m.groups()
        if database != db:
            continue
        when = datetime.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=zone)
        entries.append([round(when.timestamp() * 1000), int(pid), database, level, None, msg])
    statements = []
    last_by_pid = {}
    for ts, pid, _db, level, _, msg in entries:
        if level == "LOG":
            if msg.startswith("statement: "):
                st = [ts, pid, "simple", msg[len("statement: "):].strip(), []]
            else:
                m = EXECUTE.match(msg)
                if not m:
                    continue
                st = [ts, pid, "extended", m.group(2).strip(), []]
            statements.append(st)
            last_by_pid[pid] = st
        elif level == "DETAIL" and msg.lower().startswith("parameters: "):
            st = last_by_pid.get(pid)
            if st is not None and not st[4]:
                st[4] = [
                    None if v == "NULL" else inner.replace("''", "'")
                    for (_n, v, inner) in PARAM.findall(msg)
                ]
    return statements


def read_calls(path):
    calls = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 5 and parts[0] == "call" and parts[4] == "OK":
                calls.append((int(parts[2]), int(parts[3])))
    return calls


def read_flights(path):
    flights = []
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                t, conn, executes, queries = map(int, line.split())
                flights.append((t, conn, executes + queries))
    return flights


def analyse(statements, calls, flights):
    per_call = []
    window_trips = []
    for start, end in calls:
        lo, hi = start // 1000, end // 1000
        seq = [s for s in statements if lo <= s[0] <= hi]
        # Likewise the call's statements are those of its backend (the one that ran the
        # most in its window): not the feed's announcement, which runs on another
        # connection after the COMMIT, at most once per 5 ms however many calls it covers.
        pids = collections.Counter(st[1] for st in seq)
        if pids:
            seq = [st for st in seq if st[1] == pids.most_common(1)[0][0]]
        every = [f for f in flights if start <= f[0] <= end]
        # The call's own round trips are those on its connection (the one with the most
        # flights in its window); others in the window (another connection: background
        # work, or the feed's announcement the call causes after its COMMIT, which the
        # call does not wait for) are counted apart.
        by_conn = collections.Counter(f[1] for f in every)
        own = by_conn.most_common(1)[0][0] if every else None
        fl = [f for f in every if f[1] == own]
        per_call.append((seq, fl))
        window_trips.append(len(every))
    keys = [tuple((s[2], s[3]) for s in seq) for seq, _ in per_call]
    counts = collections.Counter(k for k in keys if k)
    if not counts:
        return None
    mode, agreeing = counts.most_common(1)[0]
    trips = [len(fl) for _, fl in per_call]
    median_trips = statistics.median(trips) if flights else None
    chosen = [pc for pc, k in zip(per_call, keys) if k == mode]
    # A typical call: the mode's statements, the median number of flights, and flights
    # whose statement counts add up to the statements (so pipelines can be mirrored).
    rep = chosen[0]
    for seq, fl in chosen:
        if median_trips is not None and len(fl) == median_trips and sum(f[2] for f in fl) == len(seq):
            rep = (seq, fl)
            break
    return {
        "per_call": per_call,
        "mode": mode,
        "agreeing": agreeing,
        "chosen": chosen,
        "rep": rep,
        "trips": trips,
        "median_trips": median_trips,
        "window_trips": window_trips,
        "median_window_trips": statistics.median(window_trips) if flights else None,
    }


def describe_params(chosen, rep_seq):
    """For each statement of the typical call, its parameters: null, constant, or varying
    (different between calls: ids, keys, timestamps), varying ones named by value."""
    out = []
    names = {}
    for i, st in enumerate(rep_seq):
        params = []
        for j, v in enumerate(st[4]):
            seen = {seq[i][4][j] if j < len(seq[i][4]) else None for seq, _ in chosen}
            if v is None:
                params.append({"kind": "null"})
            elif len(seen) > 1:
                if v not in names:
                    names[v] = f"u{len(names) + 1}"
                is_int = all(x is not None and INT.match(x) for x in seen)
                params.append({"kind": "var", "name": names[v], "int": bool(is_int), "value": v})
            else:
                params.append({"kind": "const", "value": v})
        out.append({"kind": st[2], "sql": st[3], "params": params})
    return out


def flight_groups(rep):
    """Statement index ranges sent together, if the flights account for every statement."""
    seq, fl = rep
    sizes = [f[2] for f in sorted(fl)]
    if not fl or sum(sizes) != len(seq):
        return None
    groups, i = [], 0
    for n in sizes:
        groups.append(list(range(i, i + n)))
        i += n
    return groups


def pgbench_script(name, stmts, groups):
    lines = [
        f"-- {name}: generated by bench/sqlcapture.py from the statements the service ran for",
        "-- one typical call (PostgreSQL log, log_statement = 'all'). Run with -M prepared and",
        f"-- the -D arguments in {name}.defines. Parameters that differed between calls (ids,",
        "-- keys, timestamps) get fresh random values per transaction; NULLs are inlined.",
    ]
    defines, const_names = [], {}
    varying = {}
    for st in stmts:
        for p in st["params"]:
            if p["kind"] == "var" and p["name"] not in varying:
                varying[p["name"]] = p
    for vname, p in varying.items():
        if p["int"]:
            lines.append(f"\\set {vname} {int(p['value'])} + random(0, 1000000000)")
        else:
            lines.append(f"\\set {vname} random(1, 9000000000000000000)")

    def arg(p):
        if p["kind"] == "null":
            return "NULL"
        if p["kind"] == "var":
            # A varying array (the event feed's session ids) stays an array literal.
            if not p["int"] and p["value"].startswith("{") and p["value"].endswith("}"):
                return "('{' || :" + p["name"] + " || '}')"
            return ":" + p["name"]
        v = p["value"]
        if "\n" in v or "\r" in v:
            return "'" + v.replace("'", "''") + "'"
        if v not in const_names:
            const_names[v] = f"c{len(const_names) + 1}"
            defines.append(f"-D{const_names[v]}={v}")
        return ":" + const_names[v]

    in_group = {}
    if groups:
        for g in groups:
            if len(g) > 1:
                in_group[g[0]] = "start"
                in_group[g[-1]] = "end"
    for i, st in enumerate(stmts):
        if in_group.get(i) == "start":
            lines.append("\\startpipeline")
        sql = re.sub(r"\$(\d+)", lambda m: arg(st["params"][int(m.group(1)) - 1]), st["sql"])
        lines.append(sql.rstrip(";") + ";")
        if in_group.get(i) == "end":
            lines.append("\\endpipeline")
    return "\n".join(lines) + "\n", defines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--db", required=True)
    ap.add_argument("--tz", default="UTC")
    ap.add_argument("--calls", required=True)
    ap.add_argument("--flights")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pgbench", action="store_true")
    args = ap.parse_args()
    statements = read_log(args.log, args.offset, args.db, args.tz)
    calls = read_calls(args.calls)
    flights = read_flights(args.flights)
    a = analyse(statements, calls, flights)
    if a is None:
        print(json.dumps({"name": args.name, "error": f"no statements of {args.db} inside {len(calls)} call windows (log {args.log})"}))
        return 1
    rep_seq, rep_fl = a["rep"]
    stmts = describe_params(a["chosen"], rep_seq)
    groups = flight_groups(a["rep"])
    summary = {
        "name": args.name,
        "calls": len(calls),
        "calls_agreeing": a["agreeing"],
        "statements_per_call": len(a["mode"]),
        "round_trips_per_call": a["median_trips"],
        "round_trips_each_call": a["trips"],
        "round_trips_in_window_per_call": a["median_window_trips"],
        "round_trips_in_window_each_call": a["window_trips"],
        "connections_per_call": len({s[1] for s in rep_seq}),
        "pipelined_groups": [len(g) for g in groups if len(g) > 1] if groups else [],
        "flights_match_statements": groups is not None,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.name}.capture.json"), "w") as f:
        json.dump({"summary": summary, "statements": stmts, "flight_groups": groups}, f, indent=1)
    with open(os.path.join(args.out, f"{args.name}.txt"), "w") as f:
        f.write(f"{args.name}: {len(a['mode'])} statements, {a['median_trips']} round trips (median of {a['trips']})\n")
        def write(tag, st):
            f.write(f"[{tag}] {st['sql']}\n")
            if st["params"]:
                f.write("    params: " + ", ".join(
                    "NULL" if p["kind"] == "null" else (f"<{p['name']}>" if p["kind"] == "var" else repr(p["value"]))
                    for p in st["params"]) + "\n")

        if groups:
            for k, g in enumerate(groups):
                if not g:
                    f.write(f"[flight {k + 1}] (no Execute: a statement being prepared, Parse/Describe/Sync)\n")
                for i in g:
                    write(f"flight {k + 1}", stmts[i])
        else:
            for st in stmts:
                write("flight ?", st)
    if args.pgbench:
        script, defines = pgbench_script(args.name, stmts, groups)
        with open(os.path.join(args.out, f"{args.name}.pgbench"), "w") as f:
            f.write(script)
        with open(os.path.join(args.out, f"{args.name}.defines"), "w") as f:
            f.write("".join(d + "\n" for d in defines))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
