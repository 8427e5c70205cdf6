#!/usr/bin/env bash
# Side by side: `weft serve` and echo servers built on other WebSocket
# libraries (bench/peers), each alone on core 0, driven by `weft bench` on
# core 1. Scenarios and servers are interleaved over the repetitions, so a
# slow spell on the machine spreads over all servers instead of hitting one.
#
#   bash bench/run.sh                       # everything, 3 repetitions
#   REPS=1 SCENARIOS="a b" SERVERS="weft tungstenite" bash bench/run.sh
#
# Results: $OUT/results.jsonl (one line per point: scenario, server,
# repetition, load average, and the `weft bench --json` object) and
# $OUT/summary.md (medians and ratios, by bench/summarize.py).
#
# Every server listens on 127.0.0.1 only; every load is bounded in count and
# time (`timeout` around each point); only the processes started here are
# stopped, by their PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

REPS=${REPS:-3}
DURATION=${DURATION:-5}        # seconds measured per echo point
WARMUP=${WARMUP:-1}            # seconds of traffic before measuring
HOLD=${HOLD:-3}                # seconds the idle connections are held
SCENARIOS=${SCENARIOS:-"a b c d e h"}
SERVERS=${SERVERS:-"weft tungstenite fastwebsockets tokio-websockets sockudo ws uws"}
LOAD_MAX=${LOAD_MAX:-1.5}      # wait for the 1-minute load average to drop below this...
LOAD_WAIT=${LOAD_WAIT:-300}    # ...for at most this many seconds before each point,
LOAD_BUDGET=${LOAD_BUDGET:-900} # and this many in all (on a shared machine the load may never drop)
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
PORT_BASE=${PORT_BASE:-19100}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PEERS_TARGET=${PEERS_TARGET_DIR:-$TARGET/peers}
OUT=${OUT:-$TARGET/bench-side-by-side/$(date +%Y%m%d-%H%M%S)}

scenario_args() {
  case $1 in
    a) echo "--mode echo -c 100 -k 1 -s 32" ;;
    b) echo "--mode echo -c 100 -k 16 -s 32" ;;
    c) echo "--mode echo -c 10 -k 1 -s 65536 --binary" ;;
    d) echo "--mode echo -c 1 -k 1 -s 16777216 --binary" ;;
    e) echo "--mode idle -c 10000 --hold $HOLD" ;;
    h) echo "--mode handshake -c 10000" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

# How long a point may take before it is cut off.
scenario_timeout() {
  case $1 in
    a|b|c|d) awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN { printf "%d", w + d + 60 }' ;;
    *) awk -v h="$HOLD" 'BEGIN { printf "%d", h + 120 }' ;;
  esac
}

echo "building weft (release) and the peers (release)..." >&2
cargo build --release -q -p weft-cli
(cd bench/peers && CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release -q)
(cd bench/peers && npm install --no-audit --no-fund --silent >/dev/null)
WEFT=$TARGET/release/weft
PEERS=$PEERS_TARGET/release

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
  echo "weft: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (modified)')"
  echo "command: REPS=$REPS DURATION=$DURATION WARMUP=$WARMUP HOLD=$HOLD LOAD_MAX=$LOAD_MAX LOAD_WAIT=$LOAD_WAIT LOAD_BUDGET=$LOAD_BUDGET bash bench/run.sh"
} >"$OUT/meta.txt"
cat "$OUT/meta.txt" >&2

load1() { cut -d' ' -f1 /proc/loadavg; }

WAITED_TOTAL=0
wait_for_quiet() {
  local waited=0
  while awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l >= m) }'; do
    if (( waited >= LOAD_WAIT || WAITED_TOTAL >= LOAD_BUDGET )); then
      echo "  load average still $(load1) after ${waited}s (${WAITED_TOTAL}s waited in all): measuring anyway" >&2
      return
    fi
    sleep 5
    waited=$(( waited + 5 ))
    WAITED_TOTAL=$(( WAITED_TOTAL + 5 ))
  done
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
        --max-connections 20000 --log-level warn 2>>"$log" &
      URL=ws://127.0.0.1:$port/echo ;;
    tungstenite) taskset -c "$SERVER_CORE" "$PEERS/tungstenite_echo" "$port" 2>>"$log" & URL=ws://127.0.0.1:$port/ ;;
    fastwebsockets) taskset -c "$SERVER_CORE" "$PEERS/fastwebsockets_echo" "$port" 2>>"$log" & URL=ws://127.0.0.1:$port/ ;;
    tokio-websockets) taskset -c "$SERVER_CORE" "$PEERS/tokio_websockets_echo" "$port" 2>>"$log" & URL=ws://127.0.0.1:$port/ ;;
    sockudo) taskset -c "$SERVER_CORE" "$PEERS/sockudo_echo" "$port" 2>>"$log" & URL=ws://127.0.0.1:$port/ ;;
    ws) taskset -c "$SERVER_CORE" node bench/peers/ws_echo.mjs "$port" 2>>"$log" & URL=ws://127.0.0.1:$port/ ;;
    uws) taskset -c "$SERVER_CORE" node bench/peers/uws_echo.mjs "$port" 2>>"$log" & URL=ws://127.0.0.1:$port/ ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  SERVER_PID=$!
  # Ready once something listens on the port.
  for _ in $(seq 100); do
    if ss -Hltn "sport = :$port" | grep -q LISTEN; then
      sleep 0.2  # let the runtime settle (the baseline RSS of the idle test)
      return 0
    fi
    sleep 0.05
  done
  echo "server $name did not start" >&2
  return 1
}

port=$PORT_BASE
for rep in $(seq "$REPS"); do
  for sc in $SCENARIOS; do
    for server in $SERVERS; do
      port=$(( port + 1 ))
      wait_for_quiet
      load=$(load1)
      start_server "$server" "$port"
      # shellcheck disable=SC2046
      json=$(timeout "$(scenario_timeout "$sc")" taskset -c "$CLIENT_CORE" "$WEFT" bench "$URL" \
        $(scenario_args "$sc") --warmup "$WARMUP" -d "$DURATION" --server-pid "$SERVER_PID" --json 2>/dev/null || true)
      stop_server
      [[ -n $json ]] || json='{"error":"no result"}'
      printf '{"scenario":"%s","server":"%s","rep":%d,"load1":%s,"result":%s}\n' \
        "$sc" "$server" "$rep" "$load" "$json" >>"$RESULTS"
      echo "rep $rep scenario $sc $server (load $load): $(jq -r '.result | if .mode == "idle" then "\(.server_rss_per_conn // "?") B/conn" else "\(.msgs_per_sec // "?") /s, \(.msgs_per_server_cpu_sec // "?") per server CPU s" end' <<<"$(tail -n1 "$RESULTS")")" >&2
    done
  done
done

python3 bench/summarize.py "$RESULTS" "$OUT/meta.txt" >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results in $OUT" >&2
