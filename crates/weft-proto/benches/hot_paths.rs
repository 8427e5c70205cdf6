//! Criterion benchmarks of the protocol core's hot paths: unmasking, UTF-8
//! validation (whole and incremental), decoding small masked frames through a
//! server connection, and encoding small messages in both roles.
//!
//! Run with `cargo bench -p weft-proto --bench hot_paths`; the figures are
//! recorded in `docs/BENCHMARKS.md`.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::IoSlice;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft_proto::mask::apply_mask;
use weft_proto::utf8::{self, Utf8Validator};
use weft_proto::{Config, Connection, Message, Role};

mod common;
use common::{KEY, TEXT_32};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Exactly `len` bytes of valid UTF-8 mixing ASCII with 2-, 3- and 4-byte
/// sequences (about a third of the bytes are non-ASCII), padded with ASCII.
fn mixed_text(len: usize) -> Vec<u8> {
    const PIECES: &[&str] = &[
        "Hello, world! ",
        "κόσμε ",
        "Grüße aus Köln, ",
        "日本語のテキスト ",
        "emoji \u{1f600}\u{1f680} ",
        "plain ASCII words to keep the mix realistic; ",
        "Привет, мир! ",
        "\u{10ffff}\u{800}\u{7ff} ",
    ];
    let mut out = String::with_capacity(len);
    'fill: loop {
        for p in PIECES {
            if out.len() + p.len() > len {
                break 'fill;
            }
            out.push_str(p);
        }
    }
    while out.len() < len {
        out.push('.');
    }
    let out = out.into_bytes();
    assert_eq!(out.len(), len);
    assert!(
        out.iter().filter(|b| !b.is_ascii()).count() > len / 4,
        "enough multi-byte text"
    );
    out
}

/// A masked, final text frame carrying `payload`, as a client sends it.
fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for (name, len) in [("1KiB", KIB), ("1MiB", MIB)] {
        let mut buf: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(0)))
        });
    }
    g.finish();
}

fn utf8_validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for (name, len) in [("1KiB", KIB), ("1MiB", MIB)] {
        let text = mixed_text(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("validate/{name}"), |b| {
            b.iter(|| utf8::validate(black_box(&text)).is_ok())
        });
        // The incremental validator over the whole text in one piece.
        g.bench_function(format!("feed/{name}"), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(&text)).is_ok() && v.finish().is_ok()
            })
        });
    }
    // The incremental validator as a message arrives in reads of 4093 bytes
    // (a prime, so pieces end inside code points).
    let text = mixed_text(MIB);
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("feed_in_4093_byte_pieces/1MiB", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::new();
            for piece in black_box(&text).chunks(4093) {
                if v.feed(piece).is_err() {
                    return false;
                }
            }
            v.finish().is_ok()
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    for (name, role) in [("server_text_32B", Role::Server), ("client_text_32B", Role::Client)] {
        g.bench_function(name, |b| {
            let mut conn = Connection::new(role, Config::default());
            b.iter(|| {
                conn.send(black_box(Message::from(TEXT_32))).expect("open");
                // What a driver does: a vectored write of the queued output,
                // then report it written.
                let mut slices = [IoSlice::new(&[]); 4];
                let n = conn.transmit_slices(&mut slices);
                let written: usize = slices[..n].iter().map(|s| black_box(s.len())).sum();
                conn.advance_transmit(written);
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    common::decode(c, "decode");
}

criterion_group!(benches, unmask, utf8_validation, decode, encode);
criterion_main!(benches);
