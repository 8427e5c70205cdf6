#!/usr/bin/env bash
# Build the fuzz targets (stable toolchain, see .cargo/config.toml) and run
# each for SECONDS (default 30). Fails if any target finds a crash, a timeout
# or an out-of-memory input; what it found is in fuzz/artifacts/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (all targets when none is named)
#
# New inputs go to fuzz/scratch/<target>/ (not committed); the committed seeds
# in fuzz/corpus/<target>/ are only read.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-30}
shift || true
all=(frame_header server_session client_session server_handshake client_handshake deflate server_upgrade)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

cargo build --release --bins
bin_dir=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release

mkdir -p artifacts
failed=()
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "unknown fuzz target: $t" >&2; exit 2; }
  mkdir -p "scratch/$t"
  log="scratch/$t.log"
  rc=0
  "$bin_dir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t-" -print_final_stats=1 \
    "scratch/$t" "corpus/$t" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
  if [ "$rc" -eq 0 ]; then
    printf '%-18s ok    %10s runs in %ss  %s\n' "$t" "${runs:-?}" "$secs" "$cov"
  else
    printf '%-18s FAIL  exit %s\n' "$t" "$rc"
    grep -E 'panicked at|^(thread|==[0-9]+== ERROR)|SUMMARY|Test unit written' -A2 "$log" | head -n 30 || tail -n 30 "$log"
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/scratch/)" >&2
  exit 1
fi
