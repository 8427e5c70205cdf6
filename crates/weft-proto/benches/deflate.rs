//! Criterion benchmarks of permessage-deflate on a corpus of 5000 JSON chat
//! messages (`support/chat_corpus.rs`, about 1.28 MB): one iteration
//! compresses, or decompresses, every message in order through a fresh
//! negotiated codec, as a connection sends or receives them. Level 6, window
//! 15, threshold 0; context takeover on and off. Throughput is uncompressed
//! bytes. The compression ratio is printed to stderr before the runs.
//!
//! Run with `cargo bench -p weft-proto --bench deflate`; `bench/deflate.sh`
//! compares the same work with Node's `ws` (see `docs/BENCHMARKS.md`).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

#[path = "support/chat_corpus.rs"]
mod chat_corpus;
#[path = "support/pmd.rs"]
mod pmd;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pmd::{LEVEL, compress_all, decompress_all, pair};

fn name(context_takeover: bool) -> &'static str {
    if context_takeover {
        "context_takeover"
    } else {
        "no_context_takeover"
    }
}

fn deflate(c: &mut Criterion) {
    let msgs: Vec<Vec<u8>> = chat_corpus::chat_corpus(chat_corpus::SEED, chat_corpus::COUNT)
        .into_iter()
        .map(String::into_bytes)
        .collect();
    let raw: usize = msgs.iter().map(Vec::len).sum();
    let wires: Vec<_> = [true, false]
        .map(|takeover| {
            let mut wire = Vec::new();
            let compressed = compress_all(pair(takeover, LEVEL).0.as_mut(), &msgs, Some(&mut wire));
            decompress_all(pair(takeover, LEVEL).1.as_mut(), &wire, Some(&msgs));
            eprintln!(
                "deflate corpus, {}: {} messages, {raw} bytes -> {compressed} bytes, ratio {:.4}",
                name(takeover),
                msgs.len(),
                compressed as f64 / raw as f64
            );
            (takeover, wire)
        })
        .into();

    let mut g = c.benchmark_group("deflate/compress");
    g.throughput(Throughput::Bytes(raw as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    for takeover in [true, false] {
        g.bench_function(name(takeover), |b| {
            b.iter_batched(
                || pair(takeover, LEVEL).0,
                |mut ext| black_box(compress_all(ext.as_mut(), &msgs, None)),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("deflate/decompress");
    g.throughput(Throughput::Bytes(raw as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(6));
    for (takeover, wire) in &wires {
        g.bench_function(name(*takeover), |b| {
            b.iter_batched(
                || pair(*takeover, LEVEL).1,
                |mut ext| black_box(decompress_all(ext.as_mut(), wire, None)),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, deflate);
criterion_main!(benches);
