//! The small-frame decoding benchmarks of `hot_paths` under jemalloc, the
//! allocator `weft serve` uses: a received message is an owned `Bytes`, so
//! its allocation and release are part of every decode.
//!
//! Run with `cargo bench -p weft-proto --bench decode_jemalloc`; the figures
//! are recorded in `docs/BENCHMARKS.md`.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn decode(c: &mut Criterion) {
    common::decode(c, "decode_jemalloc");
}

criterion_group!(benches, decode);
criterion_main!(benches);
