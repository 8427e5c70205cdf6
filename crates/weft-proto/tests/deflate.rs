//! permessage-deflate (RFC 7692) through whole connections.
#![cfg(feature = "deflate")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use weft_proto::deflate::{DeflateConfig, PerMessageDeflate};
use weft_proto::*;

fn handshake(server: DeflateConfig, client: DeflateConfig, offer: bool) -> (Connection, Connection, Option<String>) {
    handshake_with(server, client, offer, Config::default())
}

fn handshake_with(
    server: DeflateConfig,
    client: DeflateConfig,
    offer: bool,
    server_config: Config,
) -> (Connection, Connection, Option<String>) {
    let pmd_c: Arc<dyn ClientExtension> = Arc::new(PerMessageDeflate::new(client));
    let req = ClientRequest {
        host: "example.com".into(),
        target: "/".into(),
        extensions: if offer { vec![pmd_c] } else { vec![] },
        ..ClientRequest::default()
    };
    let (mut hs, bytes) = ClientHandshake::new(req, HandshakeLimits::default()).unwrap();
    let up = UpgradeRequest::new(Request::parse(&bytes, &HandshakeLimits::default()).unwrap()).unwrap();
    let pmd_s: Arc<dyn ServerExtension> = Arc::new(PerMessageDeflate::new(server));
    let accepted = up.accept(&Accept {
        extensions: vec![pmd_s],
        ..Accept::default()
    });
    let (resp, n) = hs.parse_response(&accepted.response).unwrap().unwrap();
    assert_eq!(n, accepted.response.len());
    let header = resp.extensions_header.clone();
    let s = Connection::new(Role::Server, server_config).with_extension(accepted.extension);
    let c = Connection::new(Role::Client, Config::default().max_message_size(1 << 20)).with_extension(resp.extension);
    (s, c, header)
}

fn pump(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
    let bytes = from.take_transmit();
    let mut events = Vec::new();
    // Feed in awkward pieces to exercise incremental inflation.
    for chunk in bytes.chunks(7) {
        to.receive_data(chunk);
        while let Some(ev) = to.poll_event().unwrap() {
            events.push(ev);
        }
    }
    events
}

#[test]
fn rfc7692_negotiated_and_messages_round_trip() {
    let cfg = DeflateConfig::default().threshold(0);
    let (mut s, mut c, header) = handshake(cfg.clone(), cfg, true);
    assert_eq!(header.as_deref(), Some("permessage-deflate"));
    let text = "{\"from\":\"ann\",\"text\":\"hello, hello, hello\"}".repeat(50);
    for _ in 0..3 {
        c.send_text(&text).unwrap();
        let wire_len = c.buffered_amount();
        assert!(wire_len < text.len() / 4, "compressed to {wire_len} of {}", text.len());
        assert_eq!(pump(&mut c, &mut s), vec![Event::Message(Message::from(text.clone()))]);
        s.send_binary(Bytes::from(vec![7u8; 100_000])).unwrap();
        assert_eq!(
            pump(&mut s, &mut c),
            vec![Event::Message(Message::Binary(vec![7u8; 100_000].into()))]
        );
    }
}

#[test]
fn rfc7692_fragmented_compressed_messages_both_ways() {
    let cfg = DeflateConfig::default();
    let (mut s, mut c, _) = handshake(cfg.clone(), cfg, true);
    c.send_fragment(DataKind::Text, "Hel", false).unwrap();
    c.send_ping("between").unwrap();
    c.send_fragment(DataKind::Text, "lo, ", false).unwrap();
    c.send_fragment(DataKind::Text, "world", true).unwrap();
    let ev = pump(&mut c, &mut s);
    assert_eq!(
        ev,
        vec![Event::Ping("between".into()), Event::Message("Hello, world".into())]
    );
    s.send_fragment(DataKind::Binary, vec![1u8; 3000], false).unwrap();
    s.send_fragment(DataKind::Binary, vec![2u8; 3000], true).unwrap();
    let ev: Vec<Event> = pump(&mut s, &mut c)
        .into_iter()
        .filter(|e| !matches!(e, Event::Pong(_)))
        .collect();
    let mut want = vec![1u8; 3000];
    want.extend(vec![2u8; 3000]);
    assert_eq!(ev, vec![Event::Message(Message::Binary(want.into()))]);
}

#[test]
fn rfc7692_6_1_rsv1_without_negotiation_is_1002() {
    let (mut s, _, header) = handshake(DeflateConfig::default(), DeflateConfig::default(), false);
    assert_eq!(header, None);
    // A masked text frame with RSV1 set.
    s.receive_data(&[0xc1, 0x80, 0, 0, 0, 0]);
    assert_eq!(s.poll_event().unwrap_err().close_code(), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn rfc7692_6_1_rsv1_on_continuation_or_control_is_1002() {
    let (mut s, _, _) = handshake(DeflateConfig::default(), DeflateConfig::default(), true);
    s.receive_data(&[0x01, 0x80, 0, 0, 0, 0, 0xc0, 0x80, 0, 0, 0, 0]);
    assert_eq!(s.poll_event().unwrap_err().close_code(), CloseCode::PROTOCOL_ERROR);
    let (mut s, _, _) = handshake(DeflateConfig::default(), DeflateConfig::default(), true);
    s.receive_data(&[0xc9, 0x80, 0, 0, 0, 0]);
    assert_eq!(s.poll_event().unwrap_err().close_code(), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn decompression_bomb_closes_1009_with_bounded_memory() {
    let cfg = DeflateConfig::default().threshold(0);
    let (mut s, mut c, _) = handshake(cfg.clone(), cfg, true);
    // 64 MiB of zeros: far over the client's 1 MiB message limit.
    s.send_binary(Bytes::from(vec![0u8; 64 << 20])).unwrap();
    let wire = s.take_transmit();
    assert!(wire.len() < 100_000, "{} bytes on the wire", wire.len());
    c.receive_data(&wire);
    let err = c.poll_event().unwrap_err();
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
    let out = c.take_transmit();
    assert_eq!(out[0], 0x88, "a close frame");
    let key = [out[2], out[3], out[4], out[5]];
    let code = [out[6] ^ key[0], out[7] ^ key[1]];
    assert_eq!(u16::from_be_bytes(code), 1009);
}

#[test]
fn invalid_utf8_after_inflating_is_1007() {
    let cfg = DeflateConfig::default().threshold(0);
    let (mut s, mut c, _) = handshake(cfg.clone(), cfg, true);
    // Send bytes that are not UTF-8 as a "binary" message, then relabel the
    // opcode as text on the wire.
    s.send_binary(Bytes::from_static(b"\xff\xfe not utf-8 \xff")).unwrap();
    let mut wire = s.take_transmit().to_vec();
    wire[0] = (wire[0] & 0xf0) | 0x1;
    c.receive_data(&wire);
    assert_eq!(c.poll_event().unwrap_err().close_code(), CloseCode::INVALID_PAYLOAD);
}

/// Incompressible bytes (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_message_of_max_frame_size_is_received_although_compression_made_it_larger() {
    let cfg = DeflateConfig::default().threshold(0);
    let (mut s, mut c, _) = handshake_with(cfg.clone(), cfg, true, Config::default().max_frame_size(1000));
    let data = noise(1000);
    // A message sent whole would go out uncompressed once deflate made it
    // larger; the first fragment of one sent in pieces is always compressed.
    c.send_fragment(DataKind::Binary, data.clone(), false).unwrap();
    let wire = c.buffered_amount() - 2 - 2 - 4; // header, extended length, mask
    assert!(wire > 1000, "random data should not compress: {wire} bytes");
    c.send_fragment(DataKind::Binary, Bytes::new(), true).unwrap();
    assert_eq!(pump(&mut c, &mut s), vec![Event::Message(Message::Binary(data.into()))]);
}

#[test]
fn a_compressed_frame_well_over_max_frame_size_is_1009() {
    let cfg = DeflateConfig::default().threshold(0);
    let (mut s, mut c, _) = handshake_with(cfg.clone(), cfg, true, Config::default().max_frame_size(1000));
    c.send_fragment(DataKind::Binary, noise(2000), false).unwrap();
    s.receive_data(&c.take_transmit());
    let err = s.poll_event().unwrap_err();
    assert!(
        matches!(err, Error::MessageTooBig(LimitExceeded::FrameSize { max: 1062, .. })),
        "{err:?}"
    );
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
}
