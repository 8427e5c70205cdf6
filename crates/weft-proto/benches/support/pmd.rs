//! permessage-deflate driven message by message as `Connection` drives it,
//! shared by `benches/deflate.rs` and `examples/deflate_corpus.rs`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use weft_proto::deflate::{DeflateConfig, PerMessageDeflate};
use weft_proto::extension::{ClientExtension, Encoded, Extension, ServerExtension};
use weft_proto::frame::RSV1;
use weft_proto::message::DataKind;

/// The message size limit of `Config::default()`.
const MAX_MESSAGE: usize = 64 << 20;

/// The level measured unless another is asked for: weft's default (and
/// zlib's).
pub(crate) const LEVEL: u32 = 6;

/// The settings measured: window 15 both ways, threshold 0 (every message
/// compressed), context takeover on or off in both directions.
pub(crate) fn config(context_takeover: bool, level: u32) -> DeflateConfig {
    DeflateConfig::default()
        .no_context_takeover(!context_takeover)
        .server_max_window_bits(15)
        .client_max_window_bits(15)
        .level(level)
        .threshold(0)
}

/// The server's and the client's codec for one connection, negotiated.
pub(crate) fn pair(context_takeover: bool, level: u32) -> (Box<dyn Extension>, Box<dyn Extension>) {
    let client = PerMessageDeflate::new(config(context_takeover, level));
    let server = PerMessageDeflate::new(config(context_takeover, level));
    let offers = client.offers();
    let refs: Vec<_> = offers.iter().collect();
    let (response, server_ext) = ServerExtension::negotiate(&server, &refs).expect("the server accepts");
    let client_ext = ClientExtension::accept(&client, &response).expect("the client accepts");
    (server_ext, client_ext)
}

/// Compress every message in order, as `Connection::send` does (the output
/// is split off the buffer and frozen, one `Bytes` a message). Returns the
/// compressed bytes in all; `keep` receives the messages.
pub(crate) fn compress_all(ext: &mut dyn Extension, msgs: &[Vec<u8>], mut keep: Option<&mut Vec<Bytes>>) -> usize {
    let mut buf = BytesMut::new();
    let mut total = 0;
    for m in msgs {
        buf.clear();
        match ext.encode(DataKind::Text, m, true, true, &mut buf) {
            Ok(Encoded::Transformed { .. }) => {}
            other => panic!("message not compressed: {other:?}"),
        }
        let wire = buf.split().freeze();
        total += wire.len();
        match keep.as_deref_mut() {
            Some(k) => k.push(wire),
            None => drop(black_box(wire)),
        }
    }
    total
}

/// Decompress every message in order, as `Connection` does on receipt.
/// Returns the decompressed bytes in all; with `check`, each message must
/// equal its original.
pub(crate) fn decompress_all(ext: &mut dyn Extension, wire: &[Bytes], check: Option<&[Vec<u8>]>) -> usize {
    let mut buf = BytesMut::new();
    let mut total = 0;
    for (i, w) in wire.iter().enumerate() {
        if let Err(e) = ext.decode(RSV1, w, true, &mut buf, MAX_MESSAGE) {
            panic!("message {i}: {e:?}");
        }
        let msg = buf.split().freeze();
        total += msg.len();
        if let Some(orig) = check {
            assert_eq!(&msg[..], &orig[i][..], "message {i} did not survive");
        }
        drop(black_box(msg));
    }
    total
}
