#!/usr/bin/env bash
# Multi-node test of the hub: two `weft serve --redis` processes sharing one
# redis-server, 100 chat clients split across them, Redis killed and
# restarted mid-run (see tests/hub/multinode.py for the steps).
#
# Installs what it needs: Debian's redis-server if missing, and Python's
# `websockets` into a venv under the cargo target directory. The Python
# driver starts redis-server (on a free loopback port, no persistence) and
# the nodes, and stops them by PID at the end.
#
#   bash tests/hub/multinode.sh
#   WEFT_BIN=path/to/weft bash tests/hub/multinode.sh
#
# Prints `hub: N passed, M failed`; exits non-zero on failure.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (apt)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } || {
    echo "apt-get install redis-server failed"; echo "hub: 0 passed, 1 failed"; exit 1; }
fi

target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ -z "${WEFT_BIN:-}" ]; then
  echo "building weft"
  cargo build -q -p weft-cli || { echo "hub: 0 passed, 1 failed"; exit 1; }
  WEFT_BIN=$target/debug/weft
fi

venv=$target/hub-venv
if ! "$venv/bin/python" -c 'import websockets' >/dev/null 2>&1; then
  echo "installing websockets into $venv (pip)"
  python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check "websockets>=13,<18" || {
    echo "pip install websockets failed"; echo "hub: 0 passed, 1 failed"; exit 1; }
fi

timeout 300 "$venv/bin/python" tests/hub/multinode.py --weft "$WEFT_BIN"
