#!/usr/bin/env bash
# The suites that need more than cargo: headless Chromium against `weft serve`
# (ws and wss), `weft connect` driven through a pseudo-terminal, and the
# interop matrix (tests/interop/run.sh: the weft server and client against
# Node's ws, Python's websockets and Chromium).
# Installs what it needs (Debian's chromium and openssl, npm packages, PyPI's
# websockets in a venv), starts its own servers on free loopback ports, stops
# them by PID, and prints a matrix of what passed. Exit status is non-zero if
# any suite failed.
#
#   bash tests/suites.sh            # all suites
#   WEFT_BIN=path/to/weft bash tests/suites.sh
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

declare -A result
note() { printf '\n== %s\n' "$*"; }

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  note "installing ${need_apt[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null || { echo "apt-get install failed"; exit 1; }
fi

note "npm packages for the browser suite"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm ci failed"; exit 1; }

if [ -z "${WEFT_BIN:-}" ]; then
  note "building weft"
  cargo build -q -p weft-cli || exit 1
  WEFT_BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/weft
fi
echo "weft binary: $WEFT_BIN"

# A self-signed certificate for 127.0.0.1 and localhost.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null || { echo "openssl failed"; exit 1; }

# Start `weft serve` on port 0 and read the address it prints. Not in a
# command substitution: the server would hold its pipe open.
start_serve() { # name, extra args...
  local name=$1; shift
  "$WEFT_BIN" serve --listen 127.0.0.1:0 --log-level warn "$@" >/dev/null 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do
    url=$(grep -o 'https\?://127.0.0.1:[0-9]*' "$work/$name.log" | head -1)
    [ -n "$url" ] && { eval "$name=\$url"; return 0; }
    sleep 0.1
  done
  echo "weft serve ($name) did not start:" >&2; cat "$work/$name.log" >&2
  return 1
}

start_serve plain || exit 1
start_serve tls --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" || exit 1
echo "servers: $plain $tls"

note "browser suite: headless Chromium against weft serve (ws and wss)"
if (cd tests/browser && WEFT_URL=$plain WEFT_TLS_URL=$tls SCREENSHOT_DIR="$root/target/screenshots" \
    timeout 300 node --test --test-reporter=spec echo.test.mjs chat.test.mjs); then
  result[browser]=pass
else
  result[browser]=FAIL
fi

note "cli suite: weft connect in a pseudo-terminal"
if [ -f tests/cli/connect_pty.py ]; then
  if timeout 300 python3 tests/cli/connect_pty.py "$WEFT_BIN"; then result[cli]=pass; else result[cli]=FAIL; fi
else
  echo "*** SKIPPED: tests/cli/connect_pty.py is missing ***"
  result[cli]=SKIPPED
fi

note "hub suite: two weft serve nodes over Redis, 100 chat clients, Redis restarted mid-run"
if WEFT_BIN=$WEFT_BIN timeout 600 bash tests/hub/multinode.sh; then result[hub]=pass; else result[hub]=FAIL; fi

note "interop suite: weft server and client against ws, websockets and Chromium"
if WEFT_BIN=$WEFT_BIN timeout 600 bash tests/interop/run.sh; then result[interop]=pass; else result[interop]=FAIL; fi

note "matrix"
printf '%-10s %s\n' suite result
failed=0; passed=0
for s in browser cli hub interop; do
  printf '%-10s %s\n' "$s" "${result[$s]}"
  case "${result[$s]}" in pass) passed=$((passed+1));; FAIL) failed=$((failed+1));; esac
done
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
