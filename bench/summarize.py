#!/usr/bin/env python3
"""Medians and ratios of a bench/run.sh results file, as Markdown.

usage: summarize.py results.jsonl [meta.txt]
"""

import json
import statistics
import sys
from collections import defaultdict

BASE = "tungstenite"
NAMES = {
    "weft": "weft",
    "tungstenite": "tokio-tungstenite 0.30",
    "fastwebsockets": "fastwebsockets 0.10",
    "tokio-websockets": "tokio-websockets 0.13",
    "sockudo": "sockudo-ws 3.1",
    "ws": "Node ws 8",
    "uws": "uWebSockets.js 20.30 (C++ core)",
}
TITLES = {
    "a": "a: 100 connections, 1 in flight, 32 B text",
    "b": "b: 100 connections, 16 in flight each, 32 B text",
    "c": "c: 10 connections, 1 in flight, 64 KiB binary",
    "d": "d: 1 connection, 1 in flight, 16 MiB binary",
    "e": "e: 10,000 idle connections",
    "h": "handshakes: 10,000 connections opened (64 at a time)",
}
# (scenario, metric, peer, factor, higher is better)
TARGETS = [
    ("a", "msgs_per_sec", "fastwebsockets", 1.10, True),
    ("b", "msgs_per_sec", "tungstenite", 1.80, True),
    ("c", "msgs_per_sec", "sockudo", 1.10, True),
    ("d", "msgs_per_sec", "tungstenite", 1.70, True),
    ("h", "msgs_per_sec", "fastwebsockets", 2.0, True),
]


def fmt(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(v, base):
    if v is None or not base:
        return "–"
    return f"{v / base:.2f}"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    meta = open(sys.argv[2]).read().strip() if len(sys.argv) > 2 else ""
    # values[scenario][server][metric] = [per repetition]
    values = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    loads = [r["load1"] for r in rows]
    failures = []
    for r in rows:
        res = r["result"]
        v = values[r["scenario"]][r["server"]]
        if "error" in res or res.get("connections", 0) == 0:
            failures.append(f"{r['scenario']}/{r['server']}/rep {r['rep']}: no result")
            continue
        errs = res.get("errors") or {}
        if errs:
            failures.append(f"{r['scenario']}/{r['server']}/rep {r['rep']}: {errs}")
        for key in ("msgs_per_sec", "mb_per_sec", "server_cpu", "msgs_per_server_cpu_sec",
                    "server_rss_per_conn", "connections"):
            if key in res:
                v[key].append(res[key])
        lat = res.get("latency_ms") or {}
        for q in ("p50", "p99"):
            if q in lat:
                v[q].append(lat[q])

    def med(sc, server, key):
        xs = values[sc][server].get(key)
        return statistics.median(xs) if xs else None

    out = []
    if meta:
        out += ["```text", meta, "```", ""]
    if loads:
        out.append(f"1-minute load average at the start of each point: {min(loads):.2f}–{max(loads):.2f} "
                   f"(median {statistics.median(loads):.2f}).")
        out.append("")
    servers = [s for s in NAMES if any(s in values[sc] for sc in values)]
    for sc in ["a", "b", "c", "d", "e", "h"]:
        if sc not in values:
            continue
        out.append(f"### {TITLES[sc]}")
        out.append("")
        if sc == "e":
            out.append("| server | RSS per connection | × tokio-tungstenite |")
            out.append("|---|---:|---:|")
            base = med(sc, BASE, "server_rss_per_conn")
            for s in servers:
                v = med(sc, s, "server_rss_per_conn")
                out.append(f"| {NAMES[s]} | {fmt(v)} B | {ratio(v, base)} |")
        elif sc == "h":
            out.append("| server | handshakes/s | × t-t | server CPU | handshakes per server CPU s | × t-t |")
            out.append("|---|---:|---:|---:|---:|---:|")
            b1, b2 = med(sc, BASE, "msgs_per_sec"), med(sc, BASE, "msgs_per_server_cpu_sec")
            for s in servers:
                v1, v2 = med(sc, s, "msgs_per_sec"), med(sc, s, "msgs_per_server_cpu_sec")
                cpu = med(sc, s, "server_cpu")
                out.append(f"| {NAMES[s]} | {fmt(v1)} | {ratio(v1, b1)} | "
                           f"{fmt(cpu * 100 if cpu is not None else None)} % | {fmt(v2)} | {ratio(v2, b2)} |")
        else:
            big = sc in ("c", "d")
            head = "| server | msgs/s | × t-t |"
            if big:
                head += " MB/s |"
            head += " server CPU | msgs per server CPU s | × t-t | p50 ms | p99 ms |"
            out.append(head)
            out.append("|---" + "|---:" * (head.count("|") - 2) + "|")
            b1, b2 = med(sc, BASE, "msgs_per_sec"), med(sc, BASE, "msgs_per_server_cpu_sec")
            for s in servers:
                v1, v2 = med(sc, s, "msgs_per_sec"), med(sc, s, "msgs_per_server_cpu_sec")
                cpu = med(sc, s, "server_cpu")
                line = f"| {NAMES[s]} | {fmt(v1, 1 if big else 0)} | {ratio(v1, b1)} |"
                if big:
                    line += f" {fmt(med(sc, s, 'mb_per_sec'))} |"
                line += (f" {fmt(cpu * 100 if cpu is not None else None)} % | {fmt(v2, 1 if big else 0)} |"
                         f" {ratio(v2, b2)} | {fmt(med(sc, s, 'p50'), 3)} | {fmt(med(sc, s, 'p99'), 3)} |")
                out.append(line)
        out.append("")
    out.append("### Targets")
    out.append("")
    out.append("| target | weft | reference | ratio | met |")
    out.append("|---|---:|---:|---:|---|")
    for sc, key, peer, factor, _ in TARGETS:
        if sc not in values:
            continue
        w, p = med(sc, "weft", key), med(sc, peer, key)
        if w is None or p is None:
            continue
        cpu_key = "msgs_per_server_cpu_sec"
        wc, pc = med(sc, "weft", cpu_key), med(sc, peer, cpu_key)
        extra = f" (per server CPU s: {wc / pc:.2f})" if wc and pc else ""
        out.append(f"| {sc}: ≥ {factor:.2f} × {NAMES[peer]} | {fmt(w, 1)} | {fmt(p, 1)} | "
                   f"{w / p:.2f}{extra} | {'yes' if w / p >= factor else 'no'} |")
    if "e" in values:
        w = med("e", "weft", "server_rss_per_conn")
        if w is not None:
            out.append(f"| e: ≤ 1 KiB per idle connection | {fmt(w)} B | 1,024 B | – | "
                       f"{'yes' if w <= 1024 else 'no'} |")
    out.append("")
    if failures:
        out.append("Errors reported by `weft bench`:")
        out.append("")
        out += [f"- {f}" for f in failures]
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
