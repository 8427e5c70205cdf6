// permessage-deflate in Node's `ws` on a corpus of JSON chat messages: the
// counterpart of crates/weft-proto/examples/deflate_corpus.rs (same file,
// same settings, same output format). Run by bench/deflate.sh:
//
//   node bench/peers/deflate_bench.mjs CORPUS [REPS] [LEVEL]
//
// Each message goes through ws's own PerMessageDeflate, compress() then the
// next message once the callback has run, as a ws socket sends a stream of
// messages; decompress() likewise as its receiver does. Settings: level 6
// unless given (zlib's default, weft's default), memLevel 8, window 15 both ways,
// threshold 0 (every message compressed), context takeover on or off. Each
// pass uses a fresh PerMessageDeflate pair; 3 passes of warm-up, then REPS
// timed passes; MB/s is 10^6 bytes of uncompressed text a second.
//
// The `compress_zlib_sync_only` and `decompress_zlib_sync_only` lines are
// zlib.deflateRawSync and zlib.inflateRawSync per message with the same
// parameters (context takeover off only: a one-shot call has no
// context to keep), the floor under ws's asynchronous stream machinery.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import zlib from 'node:zlib';

// ws/lib/permessage-deflate.js, reached through the package's exports.
const require = createRequire(import.meta.url);
const { PerMessageDeflate } = require('ws');

const WARMUP = 3;
const MAX_PAYLOAD = 64 << 20;

const [path, repsArg, levelArg] = process.argv.slice(2);
if (!path) {
  console.error('usage: node deflate_bench.mjs CORPUS [REPS] [LEVEL]');
  process.exit(2);
}
const reps = Math.max(1, Number(repsArg ?? 15));
const level = Math.min(9, Number(levelArg ?? 6));
const text = readFileSync(path);
const msgs = [];
for (let i = 0; i < text.length; ) {
  const nl = text.indexOf(0x0a, i);
  const end = nl < 0 ? text.length : nl;
  if (end > i) msgs.push(text.subarray(i, end));
  i = end + 1;
}
const raw = msgs.reduce((n, m) => n + m.length, 0);

function options(takeover, isServer) {
  return {
    isServer,
    serverNoContextTakeover: !takeover,
    clientNoContextTakeover: !takeover,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
    zlibDeflateOptions: { level, memLevel: 8 },
    threshold: 0,
    maxPayload: MAX_PAYLOAD,
  };
}

// The server's and the client's extension, negotiated as ws does it.
function pair(takeover) {
  const client = new PerMessageDeflate(options(takeover, false));
  const server = new PerMessageDeflate(options(takeover, true));
  const offer = client.offer();
  const asHeader = (p) =>
    Object.fromEntries(Object.entries(p).map(([k, v]) => [k, [v]]));
  const accepted = server.accept([asHeader(offer)]);
  client.accept([asHeader(accepted)]);
  return { server, client };
}

const compress = (ext, data) =>
  new Promise((resolve, reject) =>
    ext.compress(data, true, (err, out) => (err ? reject(err) : resolve(out))),
  );
const decompress = (ext, data) =>
  new Promise((resolve, reject) =>
    ext.decompress(data, true, (err, out) => (err ? reject(err) : resolve(out))),
  );

async function compressAll(ext, keep) {
  let total = 0;
  for (const m of msgs) {
    const out = await compress(ext, m);
    total += out.length;
    if (keep) keep.push(out);
  }
  return total;
}

async function decompressAll(ext, wire, check) {
  let total = 0;
  for (let i = 0; i < wire.length; i++) {
    const out = await decompress(ext, wire[i]);
    total += out.length;
    if (check && !out.equals(msgs[i])) throw new Error(`message ${i} did not survive`);
  }
  return total;
}

function zlibSyncOnly() {
  let total = 0;
  const opts = { level, memLevel: 8, windowBits: 15, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  for (const m of msgs) total += zlib.deflateRawSync(m, opts).length - 4;
  return total;
}

function zlibInflateSyncOnly(wire) {
  let total = 0;
  const opts = { windowBits: 15, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  const trailer = Buffer.from([0x00, 0x00, 0xff, 0xff]);
  for (const w of wire) total += zlib.inflateRawSync(Buffer.concat([w, trailer]), opts).length;
  return total;
}

async function time(f) {
  for (let i = 0; i < WARMUP; i++) await f();
  const rates = [];
  for (let i = 0; i < reps; i++) {
    const t = process.hrtime.bigint();
    await f();
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    rates.push(raw / s / 1e6);
  }
  rates.sort((a, b) => a - b);
  return { median: rates[rates.length >> 1], min: rates[0], max: rates[rates.length - 1] };
}

function line(c, takeover, bytesIn, bytesOut, ratio, s) {
  console.log(
    JSON.stringify({
      impl: 'ws',
      case: c,
      context_takeover: takeover,
      messages: msgs.length,
      bytes_in: bytesIn,
      bytes_out: bytesOut,
      ratio: Number(ratio.toFixed(4)),
      level,
      reps,
      mbps_median: Number(s.median.toFixed(2)),
      mbps_min: Number(s.min.toFixed(2)),
      mbps_max: Number(s.max.toFixed(2)),
    }),
  );
}

for (const takeover of [true, false]) {
  const wire = [];
  const compressed = await compressAll(pair(takeover).server, wire);
  await decompressAll(pair(takeover).client, wire, true);
  const ratio = compressed / raw;

  let s = await time(() => compressAll(pair(takeover).server, null));
  line('compress', takeover, raw, compressed, ratio, s);
  s = await time(() => decompressAll(pair(takeover).client, wire, false));
  line('decompress', takeover, compressed, raw, ratio, s);
  if (!takeover) {
    const z = zlibSyncOnly();
    s = await time(async () => zlibSyncOnly());
    line('compress_zlib_sync_only', takeover, raw, z, z / raw, s);
    if (zlibInflateSyncOnly(wire) !== raw) throw new Error('inflateRawSync lost bytes');
    s = await time(async () => zlibInflateSyncOnly(wire));
    line('decompress_zlib_sync_only', takeover, compressed, raw, ratio, s);
  }
}
