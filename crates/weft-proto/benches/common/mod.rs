//! What the benchmarks share: the test frame and the decoding benchmarks, which
//! run under the system allocator (`hot_paths`) and under jemalloc
//! (`decode_jemalloc`).

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use weft_proto::{Config, Connection, Event, Role};

/// The masking key of the RFC 6455 §5.7 examples.
pub(crate) const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A 32-byte text payload (ASCII).
pub(crate) const TEXT_32: &str = "The quick brown fox jumps over t";

/// A masked client text frame carrying `payload` (at most 125 bytes).
pub(crate) fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
    f
}

/// The small-frame decoding benchmarks, in a group named `group`.
pub(crate) fn decode(c: &mut Criterion, group: &str) {
    let frame = masked_text_frame(TEXT_32.as_bytes());
    let mut g = c.benchmark_group(group);

    // One frame per receive_data: the per-frame cost on a connection in its
    // steady state (buffers already allocated).
    g.throughput(Throughput::Elements(1));
    g.bench_function("masked_text_32B", |b| {
        let mut conn = Connection::new(Role::Server, Config::default());
        b.iter(|| {
            conn.receive_data(black_box(&frame));
            match conn.poll_event() {
                Ok(Some(Event::Message(m))) => {
                    black_box(m);
                }
                other => panic!("unexpected {other:?}"),
            }
        })
    });

    // 100 frames that arrived in one read.
    let batch: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 100).collect();
    g.throughput(Throughput::Elements(100));
    g.bench_function("masked_text_32B_batch_of_100", |b| {
        let mut conn = Connection::new(Role::Server, Config::default());
        b.iter(|| {
            conn.receive_data(black_box(&batch));
            for _ in 0..100 {
                match conn.poll_event() {
                    Ok(Some(Event::Message(m))) => {
                        black_box(m);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
    });
    g.finish();
}
