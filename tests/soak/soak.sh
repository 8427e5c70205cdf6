#!/usr/bin/env bash
# Soak test: `weft serve` under N echo connections for S seconds.
#
#   tests/soak/soak.sh [CONNECTIONS] [SECONDS]      (default 10000 600)
#
# Builds `weft` and the soak client (crates/weft/examples/soak_client.rs) in
# release mode, raises the open-file limit to the hard limit, starts the
# server on 127.0.0.1 (port 0), and runs the client against it: every
# connection exchanges echo messages with checksums about once a second; the
# server's RSS and descriptors are sampled every second. Fails if a message
# was lost or corrupted, a connection failed, or the server's RSS or
# descriptors grew after the warm-up beyond the tolerance. CI runs it short
# (1000 30). Extra arguments for the client can be given in SOAK_CLIENT_ARGS.
set -euo pipefail
cd "$(dirname "$0")/../.."

connections=${1:-10000}
seconds=${2:-600}
target=${CARGO_TARGET_DIR:-target}

ulimit -n "$(ulimit -Hn)"
need=$((connections + 200))
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "soak: the open-file limit is $(ulimit -n); $connections connections need about $need" >&2
  exit 2
fi

cargo build --release -q -p weft-cli --bin weft
cargo build --release -q -p weft --example soak_client

log=$(mktemp -t weft-soak-server.XXXXXX)
"$target/release/weft" serve --listen 127.0.0.1:0 --max-connections $((connections + 100)) \
  --log-level warn 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT

port=
for _ in $(seq 100); do
  port=$(sed -n 's|^weft serve: listening on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$log")
  [ -n "$port" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "soak: the server did not say where it listens" >&2; cat "$log" >&2; exit 1; }

echo "soak: weft serve (pid $server) on 127.0.0.1:$port; $connections connections for $seconds s; open files limit $(ulimit -n)"
rc=0
# shellcheck disable=SC2086
"$target/release/examples/soak_client" --url "ws://127.0.0.1:$port/echo" \
  --connections "$connections" --seconds "$seconds" --server-pid "$server" ${SOAK_CLIENT_ARGS:-} || rc=$?

warnings=$(grep -c ' WARN ' "$log" || true)
echo "soak: the server logged $warnings warning lines"
grep ' WARN ' "$log" | head -n 20 || true
exit "$rc"
