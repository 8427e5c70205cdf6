#!/usr/bin/env bash
# Pub/sub fan-out over real sockets: `weft serve --threads 1` (/topic/NAME)
# and uWebSockets.js (bench/peers/uws_pubsub.mjs), each alone on core 0,
# driven by `weft bench --mode fanout` on core 1: SUBS subscribers of one
# topic and one publisher of SIZE-byte binary messages.
#
#   bash bench/fanout.sh                     # both servers, both runs, 3 repetitions
#   REPS=1 RUNS=paced SERVERS=weft bash bench/fanout.sh
#
# Runs:
#   paced  PACED_RATE msgs/s (100) for PACED_SECS s (10): SUBS × 100 deliveries/s
#   burst  BURST_RATE msgs/s (1000) for BURST_SECS s (5)
#
# Results: $OUT/results.jsonl (one line per point: run, server, repetition,
# load average, and the `weft bench --json` object) and $OUT/summary.md
# (medians). Servers listen on 127.0.0.1 only; every point is bounded by
# `timeout`; only the processes started here are stopped, by their PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

REPS=${REPS:-3}
SUBS=${SUBS:-10000}
SIZE=${SIZE:-64}
RUNS=${RUNS:-"paced burst"}
SERVERS=${SERVERS:-"weft uws"}
PACED_RATE=${PACED_RATE:-100}
PACED_SECS=${PACED_SECS:-10}
BURST_RATE=${BURST_RATE:-1000}
BURST_SECS=${BURST_SECS:-5}
SETTLE=${SETTLE:-2}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
PORT_BASE=${PORT_BASE:-19500}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET/bench-fanout/$(date +%Y%m%d-%H%M%S)}

# 10,000 subscribers and a publisher: the client and the server each need
# more than 10,000 descriptors.
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < SUBS + 100 )); then
  echo "ulimit -n is $(ulimit -n): too low for $SUBS subscribers" >&2
  exit 2
fi

run_args() {
  case $1 in
    paced) echo "--rate $PACED_RATE -d $PACED_SECS" ;;
    burst) echo "--rate $BURST_RATE -d $BURST_SECS" ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

echo "building weft (release) and the Node peers..." >&2
cargo build --release -q -p weft-cli
(cd bench/peers && npm install --no-audit --no-fund --silent >/dev/null)
WEFT=$TARGET/release/weft

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), node $(node --version)"
  echo "weft: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (modified)')"
  echo "command: REPS=$REPS SUBS=$SUBS SIZE=$SIZE PACED_RATE=$PACED_RATE PACED_SECS=$PACED_SECS BURST_RATE=$BURST_RATE BURST_SECS=$BURST_SECS bash bench/fanout.sh"
} >"$OUT/meta.txt"
cat "$OUT/meta.txt" >&2

# The server's threads' time on a CPU and waiting for one (run queue), in
# seconds since it started, from /proc/PID/task/*/schedstat: on a shared
# machine the wait shows how much of the latency is other work's.
sched_seconds() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ r += $1; w += $2 } END { printf "{\"run_s\":%.3f,\"wait_s\":%.3f}", r / 1e9, w / 1e9 }'
}

SERVER_PID=
stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap stop_server EXIT

# Start server $1 on port $2, pinned to the server core; sets SERVER_PID and URL.
start_server() {
  local name=$1 port=$2 log=$OUT/server-$1.log
  case $name in
    weft)
      taskset -c "$SERVER_CORE" "$WEFT" serve --listen "127.0.0.1:$port" --threads 1 \
        --max-connections $(( SUBS + 100 )) --log-level warn 2>>"$log" & ;;
    uws) taskset -c "$SERVER_CORE" node bench/peers/uws_pubsub.mjs "$port" 2>>"$log" & ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  SERVER_PID=$!
  URL=ws://127.0.0.1:$port/topic/bench
  for _ in $(seq 100); do
    if ss -Hltn "sport = :$port" | grep -q LISTEN; then
      sleep 0.2
      return 0
    fi
    sleep 0.05
  done
  echo "server $name did not start" >&2
  return 1
}

port=$PORT_BASE
for rep in $(seq "$REPS"); do
  for run in $RUNS; do
    for server in $SERVERS; do
      port=$(( port + 1 ))
      load=$(cut -d' ' -f1 /proc/loadavg)
      start_server "$server" "$port"
      # shellcheck disable=SC2046
      json=$(timeout 180 taskset -c "$CLIENT_CORE" "$WEFT" bench "$URL" --mode fanout -c "$SUBS" -s "$SIZE" \
        $(run_args "$run") --settle "$SETTLE" --server-pid "$SERVER_PID" --json 2>/dev/null || true)
      sched=$(sched_seconds "$SERVER_PID")
      stop_server
      [[ -n $json ]] || json='{"error":"no result"}'
      [[ -n $sched ]] || sched='{}'
      printf '{"run":"%s","server":"%s","rep":%d,"load1":%s,"server_sched":%s,"result":%s}\n' \
        "$run" "$server" "$rep" "$load" "$sched" "$json" >>"$RESULTS"
      echo "rep $rep $run $server (load $load): $(jq -r '.result | "\(.msgs_per_sec // "?") deliveries/s, lost \(.fanout.lost // "?"), p99 \(.latency_ms.p99 // "?") ms, server CPU \(.server_cpu // "?"), client CPU \(.fanout.client_cpu // "?")"' <<<"$(tail -n1 "$RESULTS")")" >&2
    done
  done
done

python3 - "$RESULTS" "$OUT/meta.txt" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
from collections import defaultdict

NAMES = {"weft": "weft serve --threads 1", "uws": "uWebSockets.js 20.30"}
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
meta = open(sys.argv[2]).read().strip()
vals = defaultdict(lambda: defaultdict(list))
notes = []
for r in rows:
    res = r["result"]
    if "error" in res or "fanout" not in res:
        notes.append(f"{r['run']}/{r['server']}/rep {r['rep']}: no result")
        continue
    f, lat = res["fanout"], res["latency_ms"]
    v = vals[(r["run"], r["server"])]
    for k, x in (("rate", res["msgs_per_sec"]), ("expected", f["expected"]), ("lost", f["lost"]),
                 ("lost_closed", f["lost_closed"]), ("closed", f["closed_subscribers"]),
                 ("p50", lat["p50"]), ("p99", lat["p99"]), ("p999", lat["p99_9"]), ("max", lat["max"]),
                 ("cpu", res.get("server_cpu")), ("per_cpu", res.get("msgs_per_server_cpu_sec")),
                 ("client", f.get("client_cpu")), ("subs", f["subscribers"])):
        if x is not None:
            v[k].append(x)
    sched = r.get("server_sched") or {}
    if sched.get("run_s") is not None and sched.get("wait_s") is not None:
        tot = sched["run_s"] + sched["wait_s"]
        if tot > 0:
            v["wait"].append(sched["wait_s"] / tot)
    if res.get("errors"):
        notes.append(f"{r['run']}/{r['server']}/rep {r['rep']}: {res['errors']}")
loads = [r["load1"] for r in rows]
med = lambda v, k: statistics.median(v[k]) if v.get(k) else None
fmt = lambda x, d=0: "–" if x is None else f"{x:,.{d}f}"
pct = lambda x: "–" if x is None else f"{x * 100:.0f} %"
out = ["```text", meta, "```", ""]
if loads:
    out += [f"1-minute load average at the start of each point: {min(loads):.2f}–{max(loads):.2f} "
            f"(median {statistics.median(loads):.2f}).", ""]
out += ["| run | server | subscribers | deliveries/s | expected | lost (at closed subscribers) | p50 ms | p99 ms | p99.9 ms | max ms | server CPU | deliveries per server CPU s | client CPU | server runnable but waiting |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for run in ["paced", "burst"]:
    for s in NAMES:
        v = vals.get((run, s))
        if not v:
            continue
        out.append(f"| {run} | {NAMES[s]} | {fmt(med(v, 'subs'))} | {fmt(med(v, 'rate'))} | {fmt(med(v, 'expected'))} | "
                   f"{fmt(med(v, 'lost'))} ({fmt(med(v, 'lost_closed'))}) | {fmt(med(v, 'p50'), 2)} | {fmt(med(v, 'p99'), 2)} | "
                   f"{fmt(med(v, 'p999'), 2)} | {fmt(med(v, 'max'), 2)} | {pct(med(v, 'cpu'))} | {fmt(med(v, 'per_cpu'))} | "
                   f"{pct(med(v, 'client'))} | {pct(med(v, 'wait'))} |")
out += ["", "*server runnable but waiting*: of the server's threads' time on a CPU or ready for one "
        "(over the whole point, connection set-up included), the share spent waiting in the run queue "
        "while other processes used the core.", ""]
if notes:
    out += ["Notes (errors reported by `weft bench`):", ""] + [f"- {n}" for n in notes] + [""]
print("\n".join(out))
EOF
cat "$OUT/summary.md"
echo "results in $OUT" >&2
