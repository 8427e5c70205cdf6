#!/usr/bin/env bash
# permessage-deflate side by side: weft-proto (examples/deflate_corpus.rs)
# and Node's ws (bench/peers/deflate_bench.mjs) compress and decompress the
# same corpus of JSON chat messages, message by message, with the same
# settings (level 6, memLevel 8, window 15, threshold 0; context takeover on
# and off).
#
#   bash bench/deflate.sh                 # 3 runs of 15 timed passes each
#   RUNS=5 REPS=25 bash bench/deflate.sh
#
# Runs alternate between the two implementations; the table gives, per case,
# the median over the runs of each run's median pass. Results:
# $OUT/results.jsonl (one line per case and run, with the load average) and
# $OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

RUNS=${RUNS:-3}
REPS=${REPS:-15}
COUNT=${COUNT:-5000}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET/bench-deflate/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

echo "building the weft side (release)..." >&2
cargo build --release -q -p weft-proto --example deflate_corpus
WEFT=$TARGET/release/examples/deflate_corpus
if [ ! -d bench/peers/node_modules/ws ]; then
  (cd bench/peers && npm ci --no-audit --no-fund --silent >/dev/null)
fi

CORPUS=$OUT/corpus.ndjson
"$WEFT" write "$CORPUS" "$COUNT"
echo "corpus: $CORPUS ($(wc -l <"$CORPUS") messages, $(wc -c <"$CORPUS") bytes," \
  "sha256 $(sha256sum "$CORPUS" | cut -c1-16))" >&2

RESULTS=$OUT/results.jsonl
: >"$RESULTS"
for run in $(seq 1 "$RUNS"); do
  for impl in weft ws; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "run $run/$RUNS: $impl (load average $load)" >&2
    case $impl in
      weft) "$WEFT" measure "$CORPUS" "$REPS" ;;
      ws) node bench/peers/deflate_bench.mjs "$CORPUS" "$REPS" ;;
    esac | while IFS= read -r line; do
      echo "{\"run\":$run,\"load\":$load,\"result\":$line}" >>"$RESULTS"
    done
  done
done

python3 - "$RESULTS" "$OUT/summary.md" <<'PY'
import json, statistics, sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1])]
by = defaultdict(list)
for r in rows:
    x = r["result"]
    by[(x["impl"], x["case"], x["context_takeover"])].append(x)

def med(xs, k):
    return statistics.median(x[k] for x in xs)

def cell(impl, case, takeover):
    xs = by.get((impl, case, takeover))
    if not xs:
        return "", "", ""
    return (f"{med(xs, 'mbps_median'):.1f}", f"{max(x['mbps_max'] for x in xs):.1f}", xs[0])

out = []
out.append("| implementation | context takeover | bytes in | bytes out | ratio | compress MB/s (median) | compress MB/s (best) | decompress MB/s (median) | decompress MB/s (best) |")
out.append("|---|---|---|---|---|---|---|---|---|")
for impl in ["weft", "ws"]:
    for takeover in [True, False]:
        c_med, c_best, c = cell(impl, "compress", takeover)
        d_med, d_best, _ = cell(impl, "decompress", takeover)
        if not c:
            continue
        out.append(f"| {impl} | {'on' if takeover else 'off'} | {c['bytes_in']} | {c['bytes_out']} | {c['ratio']:.4f} | {c_med} | {c_best} | {d_med} | {d_best} |")
out.append("")
out.append("Reference: the compression library alone, outside the extension:")
out.append("")
out.append("| what | context takeover | compress MB/s (median) | compress MB/s (best) | decompress MB/s (median) | decompress MB/s (best) |")
out.append("|---|---|---|---|---|---|")
for impl, case, label in [("weft", "flate2_only", "flate2 1.1 on zlib-rs (Rust)"),
                          ("ws", "zlib_sync_only", "Node zlib, deflateRawSync / inflateRawSync")]:
    for takeover in [True, False]:
        cm, cb, c = cell(impl, "compress_" + case, takeover)
        dm, db, d = cell(impl, "decompress_" + case, takeover)
        if c or d:
            out.append(f"| {label} | {'on' if takeover else 'off'} | {cm} | {cb} | {dm} | {db} |")
out.append("")
starts = {}
for r in rows:
    starts.setdefault((r["run"], r["result"]["impl"]), r["load"])
out.append(f"{len({k[0] for k in starts})} runs of {rows[0]['result'].get('reps', '?')} passes; 1-minute load average "
           "when each started: " + ", ".join(f"{impl} {load:.2f}" for (_, impl), load in starts.items()))
text = "\n".join(out)
open(sys.argv[2], "w").write(text + "\n")
print(text)
PY
echo "results: $RESULTS" >&2
