//! A tight loop of `receive_data` + `poll_event` on one 32-byte masked text
//! frame, the `decode/masked_text_32B` benchmark without the harness, for
//! profilers:
//!
//! ```sh
//! cargo build --release -p weft-proto --example decode_loop
//! valgrind --tool=callgrind target/release/examples/decode_loop 100000
//! perf stat -e task-clock target/release/examples/decode_loop 20000000
//! ```

use std::hint::black_box;

use weft_proto::{Config, Connection, Event, Role};

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
    let payload = b"The quick brown fox jumps over t";
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&KEY);
    frame.extend(payload.iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
    let mut conn = Connection::new(Role::Server, Config::default());
    for _ in 0..n {
        decode_one(&mut conn, &frame);
    }
}
