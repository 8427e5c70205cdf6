#!/usr/bin/env bash
# The interop matrix: the weft server and the weft client against Node's ws
# (with and without permessage-deflate), Python's websockets (compression on
# and off) and headless Chromium (a client only, so it covers weft's server
# role). Every case is a row: echo of text and binary messages of 0 B to
# 16 MiB, fragmented messages each way, close 4001 "bye" started by each side,
# subprotocol negotiation, and wss with a self-signed certificate.
#
# Installs its own peers (npm packages pinned in package-lock.json here; the
# websockets version pinned in requirements.txt, in a venv under the cargo
# target directory made with the machine's python3), starts every server on
# 127.0.0.1 port 0, stops them by PID, prints the matrix and ends with
# `interop: N passed, M failed`. Exit status is non-zero if any case failed.
#
#   bash tests/interop/run.sh
#   WEFT_BIN=path/to/weft bash tests/interop/run.sh      # reuse a built `weft`
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
note() { printf '\n== %s\n' "$*"; }
t_start=$(date +%s)

# ----- peers -------------------------------------------------------------
need_apt=()
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || need_apt+=(chromium)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  note "installing ${need_apt[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null || { echo "apt-get install failed"; exit 1; }
fi

note "npm packages (ws, playwright-core)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm ci failed"; exit 1; }

target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
venv="$target/interop-venv"
note "Python websockets in $venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt" || { echo "pip install failed"; exit 1; }
py="$venv/bin/python"
"$py" -c 'import websockets; print("websockets", websockets.__version__)'
echo "ws $(node -p 'require("./tests/interop/node_modules/ws/package.json").version'), node $(node --version), $("${CHROMIUM_PATH:-/usr/bin/chromium}" --version 2>/dev/null)"

note "building weft (examples interop_server, interop_client; weft serve)"
cargo build -q -p weft --example interop_server --example interop_client || exit 1
examples="$target/debug/examples"
if [ -z "${WEFT_BIN:-}" ]; then
  cargo build -q -p weft-cli || exit 1
  WEFT_BIN="$target/debug/weft"
fi
echo "weft binary: $WEFT_BIN"

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null || { echo "openssl failed"; exit 1; }
tls_args=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")

# ----- servers -------------------------------------------------------------
# Each server is started in the background with its output in a file (not a
# command substitution, which the server would hold open) and polled for the
# line that says where it listens.
declare -A url
wait_line() { # name, file, pattern
  for _ in $(seq 150); do
    if grep -q "$3" "$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server $1 did not start:" >&2; cat "$2" "$work/$1.err" >&2 2>/dev/null
  return 1
}
start_json() { # name, command... : prints {"ws":…,"wss":…}
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  wait_line "$name" "$work/$name.out" '"ws"' || return 1
  url[$name.ws]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ws"])' "$work/$name.out")
  url[$name.wss]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("wss",""))' "$work/$name.out")
}
start_serve() { # name, extra args... : weft serve
  local name=$1; shift
  "$WEFT_BIN" serve --listen 127.0.0.1:0 --log-level warn "$@" >/dev/null 2>"$work/$name.out" &
  pids+=($!)
  wait_line "$name" "$work/$name.out" 'http://127.0.0.1:[0-9]' || return 1
  url[$name]=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/$name.out" | head -1)
}

note "servers"
ok=1
start_serve serve-on || ok=0
start_serve serve-off --no-compression || ok=0
start_json weft-on "$examples/interop_server" --compression on "${tls_args[@]}" || ok=0
start_json weft-off "$examples/interop_server" --compression off "${tls_args[@]}" || ok=0
start_json ws-on node "$here/ws_server.mjs" --compression on "${tls_args[@]}" || ok=0
start_json ws-off node "$here/ws_server.mjs" --compression off "${tls_args[@]}" || ok=0
start_json py-on "$py" "$here/py_server.py" --compression on "${tls_args[@]}" || ok=0
start_json py-off "$py" "$here/py_server.py" --compression off "${tls_args[@]}" || ok=0
[ "$ok" = 1 ] || echo "*** some servers did not start: their columns fail ***"
for k in "${!url[@]}"; do echo "  $k ${url[$k]}"; done | sort

# ----- clients -------------------------------------------------------------
results="$work/results"
mkdir -p "$results"
run_client() { # column (peer.role), command...
  local col=$1; shift
  local t0=$(date +%s)
  timeout 240 "$@" >"$results/$col.jsonl" 2>"$results/$col.err"
  echo $? >"$results/$col.status"
  printf '  %-24s %3ss, %s cases, exit %s\n' "$col" "$(( $(date +%s) - t0 ))" \
    "$(grep -c '^{' "$results/$col.jsonl")" "$(cat "$results/$col.status")"
  if [ -s "$results/$col.err" ]; then sed 's/^/    stderr: /' "$results/$col.err" | head -5; fi
}
# Against the weft servers: echo rows go to `weft serve` /echo, the others to
# the interop_server example (same compression setting).
weft_side() { # on|off -> arguments for a peer client
  local c=$1 s=serve-$1 w=weft-$1
  echo --echo-url "ws://${url[$s]#http://}/echo" --url "${url[$w.ws]}" --tls-url "${url[$w.wss]}" --ca "$work/cert.pem" --compression "$c"
}

note "weft server, peers as clients"
run_client ws-pmd.server node "$here/ws_client.mjs" $(weft_side on)
run_client ws.server node "$here/ws_client.mjs" $(weft_side off)
run_client websockets-pmd.server "$py" "$here/py_client.py" $(weft_side on)
run_client websockets.server "$py" "$here/py_client.py" $(weft_side off)
run_client chromium.server node "$here/chromium_client.mjs" --echo-url "ws://${url[serve-on]#http://}/echo" \
  --url "${url[weft-on.ws]}" --tls-url "${url[weft-on.wss]}" --origin "${url[serve-on]}/healthz"

note "weft client, peers as servers"
peer_side() { # server name, on|off
  echo --url "${url[$1.ws]}" --tls-url "${url[$1.wss]}" --ca "$work/cert.pem" --compression "$2"
}
run_client ws-pmd.client "$examples/interop_client" $(peer_side ws-on on)
run_client ws.client "$examples/interop_client" $(peer_side ws-off off)
run_client websockets-pmd.client "$examples/interop_client" $(peer_side py-on on)
run_client websockets.client "$examples/interop_client" $(peer_side py-off off)

note "matrix ($(( $(date +%s) - t_start ))s)"
python3 "$here/matrix.py" "$results"
