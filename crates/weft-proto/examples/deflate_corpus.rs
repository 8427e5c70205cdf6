//! permessage-deflate on a corpus of JSON chat messages: compression and
//! decompression throughput and the compression ratio, message by message as
//! a connection sends and receives them. `bench/deflate.sh` runs this beside
//! `bench/peers/deflate_bench.mjs` (Node `ws`) on the same file.
//!
//! ```sh
//! cargo run --release -p weft-proto --example deflate_corpus -- write corpus.ndjson
//! cargo run --release -p weft-proto --example deflate_corpus -- measure corpus.ndjson 15
//! ```
//!
//! `write FILE [COUNT] [SEED]` writes the corpus (one message a line) of
//! `benches/support/chat_corpus.rs`. `measure FILE [REPS] [LEVEL]` reads it
//! back and prints one JSON object a line for each case: the messages go
//! through the negotiated extension (level 6 unless given, window 15,
//! threshold 0), each pass with a
//! fresh codec pair after 3 passes of warm-up, and the figures are the
//! median, fastest and slowest of `REPS` passes. MB/s is 10^6 bytes of
//! uncompressed text a second, in both directions; ratio is compressed bytes
//! over uncompressed bytes.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "../benches/support/chat_corpus.rs"]
mod chat_corpus;
#[path = "../benches/support/pmd.rs"]
mod pmd;

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use pmd::{compress_all, decompress_all, pair};

const WARMUP: usize = 3;

/// flate2 (zlib-rs) alone, with the same settings: the floor under the
/// extension's own costs.
fn raw_flate2(msgs: &[Vec<u8>], no_context_takeover: bool, level: u32) -> usize {
    let mut c = Compress::new_with_window_bits(Compression::new(level), false, 15);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut total = 0;
    for m in msgs {
        out.clear();
        let before = c.total_in();
        loop {
            let consumed = (c.total_in() - before) as usize;
            out.reserve(m.len() / 2 + 64);
            c.compress_vec(&m[consumed..], &mut out, FlushCompress::Sync).unwrap();
            if (c.total_in() - before) as usize == m.len() && out.len() < out.capacity() {
                break;
            }
        }
        total += out.len() - 4;
        if no_context_takeover {
            c.reset();
        }
        black_box(&out);
    }
    total
}

/// flate2 (zlib-rs) alone inflating the same messages (the trailer appended
/// to a copy of each), into a reused `Vec`.
fn raw_inflate(wire: &[Bytes], no_context_takeover: bool) -> usize {
    let mut d = Decompress::new_with_window_bits(false, 15);
    let mut input = Vec::new();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut total = 0;
    for w in wire {
        input.clear();
        input.extend_from_slice(w);
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        out.clear();
        let before = d.total_in();
        loop {
            let consumed = (d.total_in() - before) as usize;
            out.reserve(4 * 1024);
            d.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .unwrap();
            if (d.total_in() - before) as usize == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        total += out.len();
        if no_context_takeover {
            d.reset(false);
        }
        black_box(&out);
    }
    total
}

/// 64-bit FNV-1a over every compressed message, to tell whether the bytes on
/// the wire changed between two builds.
fn fnv(wire: &[Bytes]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in wire {
        for &b in w.iter() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

struct Stats {
    reps: usize,
    median: f64,
    min: f64,
    max: f64,
}

/// MB/s over `reps` timed passes of `f` (after the warm-up), `bytes` a pass.
fn time(reps: usize, bytes: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..WARMUP {
        f();
    }
    let mut rates: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            bytes as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    Stats {
        reps,
        median: rates[rates.len() / 2],
        min: rates[0],
        max: rates[rates.len() - 1],
    }
}

/// The sizes behind one line of output.
struct Sizes {
    level: u32,
    messages: usize,
    raw: usize,
    compressed: usize,
}

/// One JSON line: `bytes_in` and `bytes_out` are what the case consumed and
/// produced (a `decompress` case consumes the compressed bytes).
fn line(case: &str, takeover: bool, z: &Sizes, s: &Stats, extra: &str) {
    let (bytes_in, bytes_out) = if case.starts_with("decompress") {
        (z.compressed, z.raw)
    } else {
        (z.raw, z.compressed)
    };
    println!(
        "{{\"impl\":\"weft\",\"case\":\"{case}\",\"context_takeover\":{takeover},\"messages\":{},\
         \"bytes_in\":{bytes_in},\"bytes_out\":{bytes_out},\"ratio\":{:.4},\
         \"level\":{},\"reps\":{},\"mbps_median\":{:.2},\"mbps_min\":{:.2},\"mbps_max\":{:.2}{extra}}}",
        z.messages,
        z.compressed as f64 / z.raw as f64,
        z.level,
        s.reps,
        s.median,
        s.min,
        s.max
    );
}

fn measure(path: &str, reps: usize, level: u32) {
    let text = std::fs::read_to_string(path).unwrap();
    let msgs: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let raw: usize = msgs.iter().map(Vec::len).sum();
    for takeover in [true, false] {
        let nct = !takeover;
        let mut wire = Vec::new();
        let (mut s, _) = pair(takeover, level);
        let compressed = compress_all(s.as_mut(), &msgs, Some(&mut wire));
        let (_, mut c) = pair(takeover, level);
        decompress_all(c.as_mut(), &wire, Some(&msgs));
        let sizes = Sizes {
            level,
            messages: msgs.len(),
            raw,
            compressed,
        };

        let st = time(reps, raw, || {
            let (mut s, _) = pair(takeover, level);
            black_box(compress_all(s.as_mut(), &msgs, None));
        });
        let extra = format!(",\"wire_fnv\":\"{:016x}\"", fnv(&wire));
        line("compress", takeover, &sizes, &st, &extra);

        let st = time(reps, raw, || {
            let (_, mut c) = pair(takeover, level);
            black_box(decompress_all(c.as_mut(), &wire, None));
        });
        line("decompress", takeover, &sizes, &st, "");

        let flate = raw_flate2(&msgs, nct, level);
        let st = time(reps, raw, || {
            black_box(raw_flate2(&msgs, nct, level));
        });
        line(
            "compress_flate2_only",
            takeover,
            &Sizes {
                compressed: flate,
                ..sizes
            },
            &st,
            "",
        );

        assert_eq!(raw_inflate(&wire, nct), raw);
        let st = time(reps, raw, || {
            black_box(raw_inflate(&wire, nct));
        });
        line("decompress_flate2_only", takeover, &sizes, &st, "");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("write") if args.len() >= 2 => {
            let count = args.get(2).map_or(chat_corpus::COUNT, |s| s.parse().unwrap());
            let seed = args.get(3).map_or(chat_corpus::SEED, |s| s.parse().unwrap());
            let mut out = chat_corpus::chat_corpus(seed, count).join("\n");
            out.push('\n');
            std::fs::write(&args[1], out).unwrap();
        }
        Some("measure") if args.len() >= 2 => {
            let reps = args.get(2).map_or(15, |s| s.parse().unwrap());
            let level = args.get(3).map_or(pmd::LEVEL, |s| s.parse::<u32>().unwrap().min(9));
            measure(&args[1], reps.max(1), level);
        }
        _ => {
            eprintln!("usage: deflate_corpus write FILE [COUNT] [SEED] | measure FILE [REPS] [LEVEL]");
            std::process::exit(2);
        }
    }
}
