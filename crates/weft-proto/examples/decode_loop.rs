//! A tight loop of `receive_data` + `poll_event` on one 32-byte masked text
//! frame, the `decode/masked_text_32B` benchmark without the harness, for
//! profilers:
//!
//! ```sh
//! cargo build --release -p weft-proto --example decode_loop
//! valgrind --tool=callgrind target/release/examples/decode_loop 100000
//! perf stat -e task-clock target/release/examples/decode_loop 20000000
//! ```
//!
//! A second argument sets the payload length (ASCII text, 32 bytes by
//! default), to profile other frame sizes the same way.

use std::hint::black_box;

use weft_proto::mask::apply_mask;
use weft_proto::{Config, Connection, Event, FrameHeader, Opcode, Role};

/// The masking key of the RFC 6455 §5.7 examples.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

#[inline(never)]
fn decode_one(conn: &mut Connection, frame: &[u8]) {
    conn.receive_data(black_box(frame));
    match conn.poll_event() {
        Ok(Some(Event::Message(m))) => {
            black_box(m);
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let len: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let payload: Vec<u8> = b"The quick brown fox jumps over t"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect();
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: Opcode::Text,
        mask: Some(KEY),
        payload_len: len as u64,
    };
    let mut frame = Vec::new();
    header.encode(&mut frame);
    let start = frame.len();
    frame.extend_from_slice(&payload);
    apply_mask(&mut frame[start..], KEY, 0);
    let mut conn = Connection::new(Role::Server, Config::default());
    for _ in 0..n {
        decode_one(&mut conn, &frame);
    }
}
