#!/usr/bin/env python3
"""Renders bench/run.sh's measurements as a markdown table.

Each row of the input TSV: backend, what, unit, target, service values, ceiling values,
note. Values are comma-separated, one per round (A and B of a round were measured back to
back). The table shows the median of the service's values, the median of the ceiling's,
and the median of the per-round ratios service/ceiling (not the ratio of the medians).

Targets: `ratio>=X` (the median ratio), `service<X`, `service<=X`, `service>=X` (the
service's median), or empty (information only).

  report.py table ROWS.tsv        # the table
  report.py rounds ROWS.tsv       # every round's values
  report.py get FILE.json KEY     # one value of a JSON object (for the shell script)
  report.py median V1 V2 …
"""
import json
import re
import statistics
import sys


def nums(csv):
    return [float(x) for x in csv.split(",") if x not in ("", "nan")]


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    if unit == "%":
        return f"{v:.2f} %"
    if unit == "B":
        return f"{v:.0f} B"
    if float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.2f}"


def target_text(target, unit):
    m = re.fullmatch(r"(ratio|service)(<=|>=|<|>)([\d.]+)", target)
    if not m:
        return "—", None
    who, op, x = m.group(1), m.group(2), float(m.group(3))
    pretty = {"<=": "≤", ">=": "≥", "<": "<", ">": ">"}[op]
    shown = f"ratio {pretty} {x:g}" if who == "ratio" else f"{pretty} {fmt(x, unit)}"
    return shown, (who, op, x)


def met(rule, service, ratio):
    if rule is None:
        return "—"
    who, op, x = rule
    v = ratio if who == "ratio" else service
    if v is None:
        return "no (not measured)"
    ok = {"<=": v <= x, ">=": v >= x, "<": v < x, ">": v > x}[op]
    return "yes" if ok else "no"


def rows(path):
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 7:
                yield parts


def table(path):
    out = [
        "| backend | what | service (median) | ceiling (median) | ratio (median of rounds) | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for backend, what, unit, target, svc, ceil, note in rows(path):
        s, c = nums(svc), nums(ceil)
        ms = statistics.median(s) if s else None
        mc = statistics.median(c) if c else None
        ratios = [a / b for a, b in zip(s, c) if b]
        mr = statistics.median(ratios) if ratios and len(s) == len(c) else None
        shown, rule = target_text(target, unit)
        what_cell = what + (f" ({note})" if note else "")
        ratio_cell = f"{mr:.2f}" if mr is not None else "—"
        out.append(
            f"| {backend} | {what_cell} | {fmt(ms, unit)} | {fmt(mc, unit)} | {ratio_cell} | {shown} | {met(rule, ms, mr)} |"
        )
    print("\n".join(out))


def rounds(path):
    for backend, what, unit, _target, svc, ceil, _note in rows(path):
        if len(nums(svc)) > 1 or ceil:
            print(f"- {backend} · {what} [{unit}]: service {svc or '—'}; ceiling {ceil or '—'}")


def main():
    cmd = sys.argv[1]
    if cmd == "table":
        table(sys.argv[2])
    elif cmd == "rounds":
        rounds(sys.argv[2])
    elif cmd == "get":
        with open(sys.argv[2]) as f:
            v = json.loads(f.read().strip().splitlines()[-1])
        for k in sys.argv[3].split("."):
            v = v[k]
        print(v if not isinstance(v, float) else f"{v:.6f}")
    elif cmd == "median":
        print(f"{statistics.median(float(x) for x in sys.argv[2:]):.6f}")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
