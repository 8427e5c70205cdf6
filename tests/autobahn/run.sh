#!/usr/bin/env bash
# Autobahn|Testsuite against weft, as a server and as a client.
#
#   bash tests/autobahn/run.sh            # all 517 cases for each role
#   bash tests/autobahn/run.sh --quick    # without 12.* and 13.* (compression)
#   bash tests/autobahn/run.sh --role server   # one role only (server|client)
#
# Server: `weft serve` on a free loopback port; `wstest -m fuzzingclient`
# runs every case against its /echo endpoint (permessage-deflate is offered
# there by default). Client: `wstest -m fuzzingserver` on a free loopback port;
# the example crates/weft/examples/autobahn_client.rs connects to it for each
# case and echoes. Reports go to target/autobahn/{server,client}/ (open
# index.html in a browser); tests/autobahn/check.py then prints a table per
# section and fails on any case that is not OK or INFORMATIONAL, on any
# unclean close, and on any difference from tests/autobahn/expected.json.
#
# Installs wstest first (tests/autobahn/install.sh: needs root the first time).
# wstest runs through tests/autobahn/wstest_loopback.py, which binds its
# fuzzing server to 127.0.0.1: every server listens on loopback only, and
# each is stopped by its PID.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

quick=0
roles=(server client)
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --role) shift; roles=("${1:?--role needs server or client}") ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for r in "${roles[@]}"; do
  case $r in server|client) ;; *) echo "run.sh: unknown role $r" >&2; exit 2 ;; esac
done

# Bounds per role, so that a hang cannot eat a CI run.
ROLE_TIMEOUT=${AUTOBAHN_ROLE_TIMEOUT:-1500}

pids=()
cleanup() {
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

bash tests/autobahn/install.sh
venv=${WEFT_AUTOBAHN_HOME:-/opt/weft-autobahn}/venv
wstest=("$venv/bin/python" "$root/tests/autobahn/wstest_loopback.py")

echo "autobahn: building weft and the client (release)"
cargo build --release -q -p weft-cli -p weft --bin weft --example autobahn_client
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
weft_bin=$target/release/weft
client_bin=$target/release/examples/autobahn_client

out=$root/target/autobahn
mkdir -p "$out"
if [ $quick = 1 ]; then
  exclude='["12.*", "13.*"]'
  mode=quick
else
  exclude='[]'
  mode=full
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port, pid
  for _ in $(seq 300); do
    kill -0 "$2" 2>/dev/null || return 1
    if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

times=()

run_server_role() {
  local dir=$out/server
  rm -rf "$dir"; mkdir -p "$dir"
  "$weft_bin" serve --listen 127.0.0.1:0 --log-level warn >/dev/null 2>"$dir/weft-serve.log" &
  local serve_pid=$!
  pids+=("$serve_pid")
  local url=""
  for _ in $(seq 100); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/weft-serve.log" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  if [ -z "$url" ]; then
    echo "autobahn: weft serve did not start:" >&2; cat "$dir/weft-serve.log" >&2
    return 1
  fi
  local ws_url="ws://${url#http://}/echo"
  cat >"$dir/spec.json" <<EOF
{
  "outdir": "$dir",
  "servers": [{"agent": "weft", "url": "$ws_url"}],
  "cases": ["*"],
  "exclude-cases": $exclude,
  "exclude-agent-cases": {}
}
EOF
  echo "autobahn: weft as SERVER ($mode): wstest -m fuzzingclient against $ws_url"
  local t0=$SECONDS rc=0
  (cd "$dir" && timeout "$ROLE_TIMEOUT" "${wstest[@]}" -m fuzzingclient -s spec.json >wstest.log 2>&1) || rc=$?
  local dt=$(( SECONDS - t0 ))
  stop "$serve_pid"
  times+=("server ${dt}s")
  echo "autobahn: server role took ${dt}s (wstest exit $rc, log target/autobahn/server/wstest.log)"
  echo "$dt" >"$dir/seconds"
  [ $rc = 0 ] || { tail -20 "$dir/wstest.log" >&2; return 1; }
}

run_client_role() {
  local dir=$out/client
  rm -rf "$dir"; mkdir -p "$dir"
  local port
  port=$(free_port)
  cat >"$dir/spec.json" <<EOF
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "$dir",
  "cases": ["*"],
  "exclude-cases": $exclude,
  "exclude-agent-cases": {}
}
EOF
  echo "autobahn: weft as CLIENT ($mode): wstest -m fuzzingserver on ws://127.0.0.1:$port"
  (cd "$dir" && exec "${wstest[@]}" -m fuzzingserver -s spec.json --webport 0 >wstest.log 2>&1) &
  local server_pid=$!
  pids+=("$server_pid")
  if ! wait_port "$port" "$server_pid"; then
    echo "autobahn: wstest fuzzingserver did not start:" >&2; tail -20 "$dir/wstest.log" >&2
    return 1
  fi
  local t0=$SECONDS rc=0
  timeout "$ROLE_TIMEOUT" "$client_bin" "ws://127.0.0.1:$port" weft 2>"$dir/client.log" || rc=$?
  local dt=$(( SECONDS - t0 ))
  stop "$server_pid"
  times+=("client ${dt}s")
  echo "autobahn: client role took ${dt}s (client exit $rc, log target/autobahn/client/client.log)"
  echo "$dt" >"$dir/seconds"
  [ $rc = 0 ] || { tail -20 "$dir/client.log" >&2; return 1; }
}

failed=0
for r in "${roles[@]}"; do
  "run_${r}_role" || failed=1
done

check_args=()
[ $quick = 1 ] && check_args+=(--quick)
for r in "${roles[@]}"; do check_args+=(--role "$r"); done
python3 tests/autobahn/check.py "${check_args[@]}" "$out" || failed=1
echo "autobahn: times (${mode}): ${times[*]:-none}"
exit $failed
