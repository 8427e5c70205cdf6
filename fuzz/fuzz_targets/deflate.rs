//! permessage-deflate (RFC 7692) on its own: negotiation with parameters from
//! the input, then messages both ways, whole or in pieces, and arbitrary
//! bytes given to the inflater.
//!
//! Input: 4 control bytes, then operations.
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | bits 0-2: the client's `server_max_window_bits` - 8; bits 3-5: its `client_max_window_bits` - 8; bit 6: `server_no_context_takeover`; bit 7: `client_no_context_takeover` |
//! | 1 | bits 0-3: compression level (mod 10); bit 4: threshold 0 (else 64); bits 5-7: the server's window limits (- 8, both) when not 7 |
//! | 2, 3 | the limit for inflating arbitrary bytes, 1..=65536 |
//!
//! Each operation is an opcode byte, a 2-byte length and that many bytes:
//! opcode % 4 is 0 a message client to server, 1 server to client, 2 a message
//! in pieces (sizes from the first bytes) client to server, 3 arbitrary bytes
//! inflated by a fresh server-side extension (fin when opcode bit 2 is set).
//!
//! Checked: a message encoded by one side decodes on the other to the same
//! bytes, for any sequence of messages and pieces (so the contexts kept
//! between messages agree); the choice to compress holds for every piece of a
//! message and sets RSV1 on the first only; inflating never writes more than
//! the limit, never allocates past it, and fails only with 1007 or 1009.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_proto::deflate::{DeflateConfig, PerMessageDeflate};
use weft_proto::frame::RSV1;
use weft_proto::{ClientExtension, CloseCode, DataKind, Encoded, Extension, ExtensionOffer, ServerExtension};

/// Room for decoding a message that the other side encoded.
const ROUND_TRIP_LIMIT: usize = 1 << 20;

fn negotiate(client: &PerMessageDeflate, server: &PerMessageDeflate) -> Option<(Box<dyn Extension>, Box<dyn Extension>)> {
    let offers = client.offers();
    let refs: Vec<&ExtensionOffer> = offers.iter().collect();
    let (response, server_ext) = ServerExtension::negotiate(server, &refs)?;
    // What the server answers must be acceptable to the client that offered.
    let client_ext = ClientExtension::accept(client, &response)
        .unwrap_or_else(|e| panic!("the client refused {response}: {e} (offered {offers:?})"));
    Some((client_ext, server_ext))
}

/// Send `pieces` of one message from `from` to `to` and check what arrives.
fn round_trip(from: &mut dyn Extension, to: &mut dyn Extension, kind: DataKind, pieces: &[&[u8]]) {
    let mut compressed = None;
    let mut out = BytesMut::new();
    let last = pieces.len() - 1;
    for (i, piece) in pieces.iter().enumerate() {
        let (first, fin) = (i == 0, i == last);
        let mut wire = BytesMut::new();
        let encoded = from.encode(kind, piece, first, fin, &mut wire).expect("encoding failed");
        let transformed = match encoded {
            Encoded::Transformed { rsv } => {
                assert_eq!(rsv, RSV1, "permessage-deflate sets RSV1");
                true
            }
            Encoded::Unchanged => false,
        };
        match compressed {
            None => compressed = Some(transformed),
            Some(c) => assert_eq!(c, transformed, "the choice to compress changed within a message"),
        }
        if transformed {
            to.decode(RSV1, &wire, fin, &mut out, ROUND_TRIP_LIMIT)
                .unwrap_or_else(|e| panic!("a message from the peer did not decode: {e}"));
        } else {
            out.extend_from_slice(piece);
        }
    }
    let sent: Vec<u8> = pieces.concat();
    assert_eq!(&out[..], &sent[..], "the message changed on the way (compressed: {compressed:?})");
}

fuzz_target!(|data: &[u8]| {
    let [c0, c1, l0, l1, rest @ ..] = data else { return };
    let client_cfg = DeflateConfig::default()
        .server_max_window_bits(8 + (c0 & 7))
        .client_max_window_bits(8 + ((c0 >> 3) & 7))
        .server_no_context_takeover(c0 & 0x40 != 0)
        .client_no_context_takeover(c0 & 0x80 != 0);
    let mut server_cfg = DeflateConfig::default()
        .level(u32::from(c1 & 0x0f) % 10)
        .threshold(if c1 & 0x10 != 0 { 0 } else { 64 });
    let server_bits = c1 >> 5;
    if server_bits != 7 {
        server_cfg = server_cfg
            .server_max_window_bits(8 + server_bits)
            .client_max_window_bits(8 + server_bits);
    }
    let client_cfg = client_cfg.level(u32::from(c1 & 0x0f) % 10).threshold(server_cfg.threshold);
    let (client, server) = (PerMessageDeflate::new(client_cfg), PerMessageDeflate::new(server_cfg));
    let Some((mut c, mut s)) = negotiate(&client, &server) else {
        panic!("a well-formed offer was declined");
    };
    let limit = usize::from(u16::from_be_bytes([*l0, *l1])) + 1;

    let mut ops = rest;
    while let [op, n0, n1, tail @ ..] = ops {
        let n = usize::from(u16::from_be_bytes([*n0, *n1])).min(tail.len());
        let (body, next) = tail.split_at(n);
        ops = next;
        let kind = if op & 8 != 0 { DataKind::Text } else { DataKind::Binary };
        match op % 4 {
            0 => round_trip(c.as_mut(), s.as_mut(), kind, &[body]),
            1 => round_trip(s.as_mut(), c.as_mut(), kind, &[body]),
            2 => {
                // Piece sizes from the first bytes of the body, then the rest.
                let mut pieces: Vec<&[u8]> = Vec::new();
                let (sizes, mut msg) = body.split_at(body.len().min(4));
                for &size in sizes {
                    let k = usize::from(size).min(msg.len());
                    pieces.push(&msg[..k]);
                    msg = &msg[k..];
                }
                pieces.push(msg);
                round_trip(c.as_mut(), s.as_mut(), kind, &pieces);
            }
            _ => {
                // Arbitrary bytes as a compressed frame, on a fresh extension so
                // that the pair above keeps its contexts.
                let Some((_, mut fresh)) = negotiate(&client, &server) else {
                    unreachable!("negotiated once already");
                };
                let mut out = BytesMut::new();
                let fin = op & 4 != 0;
                match fresh.decode(RSV1, body, fin, &mut out, limit) {
                    Ok(()) => {}
                    Err(e) => assert!(
                        e.code == CloseCode::INVALID_PAYLOAD || e.code == CloseCode::MESSAGE_TOO_BIG,
                        "inflating failed with {e}"
                    ),
                }
                assert!(out.len() <= limit, "inflated {} bytes past the limit of {limit}", out.len());
                assert!(
                    out.capacity() <= limit + 1,
                    "allocated {} bytes for a limit of {limit}",
                    out.capacity()
                );
            }
        }
    }
});
