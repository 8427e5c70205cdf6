//! RFC 6455 conformance of `Connection`: frames in, events and frames out.
//!
//! Each test is named after the section whose rule it checks. Frames are built
//! and parsed by the independent codec in `common`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::IoSlice;

use bytes::Bytes;
use common::*;
use weft_proto::{
    CloseCode, CloseFrame, Config, Connection, DataKind, Error, Event, Fragment, LimitExceeded, Message, ProtocolError,
    Role, SendError, State,
};

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

fn client() -> Connection {
    Connection::new(Role::Client, Config::default())
}

fn server_with(config: Config) -> Connection {
    Connection::new(Role::Server, config)
}

fn text(s: &str) -> Event {
    Event::Message(Message::Text(s.into()))
}

fn binary(b: impl Into<Bytes>) -> Event {
    Event::Message(Message::Binary(b.into()))
}

fn ping(b: &'static [u8]) -> Event {
    Event::Ping(Bytes::from_static(b))
}

fn pong(b: &'static [u8]) -> Event {
    Event::Pong(Bytes::from_static(b))
}

fn protocol(p: ProtocolError) -> Error {
    Error::Protocol(p)
}

// ----- §5.7 examples, byte-exact ---------------------------------------------

#[test]
fn s5_7_server_encodes_unmasked_hello() {
    let mut s = server();
    s.send_text("Hello").unwrap();
    assert_eq!(&s.take_transmit()[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn s5_7_unmasked_hello_decoded_by_client() {
    let mut c = client();
    let events = feed_ok(&mut c, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(events, vec![text("Hello")]);
}

#[test]
fn s5_7_masked_hello_decoded_by_server() {
    let mut s = server();
    let events = feed_ok(
        &mut s,
        &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
    );
    assert_eq!(events, vec![text("Hello")]);
    assert!(!s.has_transmit());
}

#[test]
fn s5_7_fragmented_hel_lo() {
    let mut c = client();
    assert_eq!(feed_ok(&mut c, &[0x01, 0x03, 0x48, 0x65, 0x6c]), vec![]);
    assert_eq!(feed_ok(&mut c, &[0x80, 0x02, 0x6c, 0x6f]), vec![text("Hello")]);

    // The same two fragments in one read.
    let mut c = client();
    let events = feed_ok(&mut c, &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(events, vec![text("Hello")]);

    // And the server encodes them byte for byte.
    let mut s = server();
    s.send_fragment(DataKind::Text, "Hel", false).unwrap();
    s.send_fragment(DataKind::Text, "lo", true).unwrap();
    assert_eq!(
        &s.take_transmit()[..],
        &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
    );
}

#[test]
fn s5_7_unmasked_ping_and_masked_pong() {
    // A server's ping, byte for byte.
    let mut s = server();
    s.send_ping(&b"Hello"[..]).unwrap();
    let ping_bytes = s.take_transmit();
    assert_eq!(&ping_bytes[..], &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

    // The client answers it with a masked pong carrying the same data.
    let mut c = client();
    assert_eq!(feed_ok(&mut c, &ping_bytes), vec![ping(b"Hello")]);
    let out = c.take_transmit();
    assert_eq!(&out[..2], &[0x8a, 0x85]);
    let frames = parse_frames(&out);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].payload, b"Hello");

    // The masked pong of the example, received by the server.
    let events = feed_ok(
        &mut s,
        &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
    );
    assert_eq!(events, vec![pong(b"Hello")]);
}

#[test]
fn s5_7_256_bytes_and_64k_binary_headers() {
    let mut s = server();
    s.send_binary(vec![0xab; 256]).unwrap();
    let out = s.take_transmit();
    assert_eq!(&out[..4], &[0x82, 0x7e, 0x01, 0x00]);
    assert_eq!(out.len(), 4 + 256);
    let mut c = client();
    assert_eq!(feed_ok(&mut c, &out), vec![binary(vec![0xab; 256])]);

    s.send_binary(vec![0xcd; 65536]).unwrap();
    let out = s.take_transmit();
    assert_eq!(
        &out[..10],
        &[0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
    );
    assert_eq!(out.len(), 10 + 65536);
    assert_eq!(feed_ok(&mut c, &out), vec![binary(vec![0xcd; 65536])]);

    // The same headers, masked, decoded by a server.
    let mut s = server();
    let frame = RawFrame::binary(vec![7u8; 256]).encode();
    assert_eq!(&frame[..4], &[0x82, 0xfe, 0x01, 0x00]);
    assert_eq!(feed_ok(&mut s, &frame), vec![binary(vec![7u8; 256])]);
    let frame = RawFrame::binary(vec![9u8; 65536]).encode();
    assert_eq!(&frame[..10], &[0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    assert_eq!(feed_ok(&mut s, &frame), vec![binary(vec![9u8; 65536])]);
}

#[test]
fn s5_2_every_length_form_is_accepted_including_non_minimal() {
    // Receivers accept any of the three forms (the minimal-length rule binds
    // senders); a 64-bit length for a short payload still decodes.
    let mut s = server();
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
        let data = Rng(len as u64 + 1).bytes(len);
        let events = feed_ok(&mut s, &RawFrame::binary(&data).encode());
        assert_eq!(events, vec![binary(data.clone())], "len {len}");
        let events = feed_ok(&mut s, &RawFrame::binary(&data).len_form(LenForm::Long).encode());
        assert_eq!(events, vec![binary(data)], "len {len}, 64-bit form");
    }
}

#[test]
fn s5_2_server_encodes_the_shortest_length_form() {
    let mut s = server();
    for (len, header_len) in [(0usize, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
        s.send_binary(vec![0u8; len]).unwrap();
        let out = s.take_transmit();
        assert_eq!(out.len(), len + header_len, "len {len}");
        // parse_frames asserts that the length form is minimal.
        assert_eq!(parse_frames(&out)[0].payload.len(), len);
    }
}

// ----- §5.1 masking -----------------------------------------------------------

#[test]
fn s5_1_server_rejects_unmasked_frame_with_1002() {
    let mut s = server();
    let (err, code) = feed_err(&mut s, &RawFrame::text("hi").unmasked().encode());
    assert_eq!(err, protocol(ProtocolError::UnmaskedFrame));
    assert_eq!(code, Some(1002));
    // Also for control frames.
    let mut s = server();
    let (err, code) = feed_err(&mut s, &RawFrame::ping("hi").unmasked().encode());
    assert_eq!(err, protocol(ProtocolError::UnmaskedFrame));
    assert_eq!(code, Some(1002));
}

#[test]
fn s5_1_client_rejects_masked_frame_with_1002() {
    let mut c = client();
    let (err, code) = feed_err(&mut c, &RawFrame::text("hi").encode());
    assert_eq!(err, protocol(ProtocolError::MaskedFrame));
    assert_eq!(code, Some(1002));
    let mut c = client();
    let (err, _) = feed_err(&mut c, &RawFrame::close(1000, "").encode());
    assert_eq!(err, protocol(ProtocolError::MaskedFrame));
}

#[test]
fn s5_1_server_frames_are_never_masked() {
    let mut s = server();
    s.send_text("a").unwrap();
    s.send_binary(vec![1u8; 5000]).unwrap();
    s.send_ping(&b"p"[..]).unwrap();
    s.send_pong(&b"q"[..]).unwrap();
    s.send_fragment(DataKind::Binary, vec![2u8; 2000], false).unwrap();
    s.send_fragment(DataKind::Binary, vec![3u8; 10], true).unwrap();
    s.close(Some(CloseFrame::new(1000, "bye"))).unwrap();
    let frames = sent(&mut s);
    assert_eq!(frames.len(), 7);
    assert!(frames.iter().all(|f| f.mask.is_none()), "{frames:?}");
}

#[test]
fn s5_3_client_frames_are_always_masked_with_fresh_keys() {
    let mut c = client();
    for i in 0..300u32 {
        match i % 5 {
            0 => c.send_text("hello").unwrap(),
            1 => c.send_binary(vec![i as u8; i as usize * 10]).unwrap(),
            2 => c.send_ping(Bytes::from(i.to_be_bytes().to_vec())).unwrap(),
            3 => c.send_pong(Bytes::new()).unwrap(),
            _ => {
                c.send_fragment(DataKind::Binary, vec![1u8; 3], false).unwrap();
                c.send_fragment(DataKind::Binary, vec![2u8; 3], true).unwrap();
            }
        }
    }
    c.close(Some(CloseFrame::new(1001, "going"))).unwrap();
    let frames = sent(&mut c);
    assert_eq!(frames.len(), 300 + 60 + 1);
    let keys: Vec<[u8; 4]> = frames
        .iter()
        .map(|f| f.mask.expect("client frame without a mask"))
        .collect();
    let mut distinct = keys.clone();
    distinct.sort_unstable();
    distinct.dedup();
    // 361 keys from a CSPRNG: a repeat has a probability of about 1.5e-5.
    assert!(
        distinct.len() >= keys.len() - 1,
        "{} distinct keys of {}",
        distinct.len(),
        keys.len()
    );
    assert_ne!(keys[0], keys[1]);
    // What was masked decodes to what was sent.
    assert_eq!(frames[0].payload, b"hello");
    assert_eq!(frames[1].payload, vec![1u8; 10]);
    assert_eq!(frames.last().unwrap().close_code(), Some(1001));
}

#[test]
fn s5_3_every_masking_key_and_split_decodes() {
    // The server unmasks correctly whatever the key and wherever the reads split.
    let data = Rng(99).bytes(300);
    for key in [[0, 0, 0, 0], [0xff, 0xff, 0xff, 0xff], KEY, [1, 2, 3, 4]] {
        let wire = RawFrame::binary(&data).mask(key).encode();
        for split in 0..wire.len() {
            let mut s = server();
            let mut events = feed_ok(&mut s, &wire[..split]);
            events.extend(feed_ok(&mut s, &wire[split..]));
            assert_eq!(events, vec![binary(data.clone())], "key {key:x?} split {split}");
        }
    }
}

// ----- §5.2 reserved bits and opcodes, lengths --------------------------------

#[test]
fn s5_2_reserved_bits_1002() {
    for rsv in 1..8u8 {
        for frame in [
            RawFrame::text("x"),
            RawFrame::binary("x"),
            RawFrame::ping("x"),
            RawFrame::close(1000, ""),
        ] {
            let mut s = server();
            let (err, code) = feed_err(&mut s, &frame.clone().rsv(rsv).encode());
            assert_eq!(
                err,
                protocol(ProtocolError::ReservedBits(rsv)),
                "rsv {rsv:#b} on {frame:?}"
            );
            assert_eq!(code, Some(1002));
        }
        // On a continuation frame too.
        let mut s = server();
        let wire = wire(&[RawFrame::text("a").fin(false), RawFrame::cont("b").rsv(rsv)]);
        let (err, code) = feed_err(&mut s, &wire);
        assert_eq!(err, protocol(ProtocolError::ReservedBits(rsv)));
        assert_eq!(code, Some(1002));
    }
}

#[test]
fn s5_2_reserved_opcodes_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        let mut s = server();
        let (err, code) = feed_err(&mut s, &RawFrame::new(op, "x").encode());
        assert_eq!(err, protocol(ProtocolError::ReservedOpcode(op)));
        assert_eq!(code, Some(1002));

        let mut c = client();
        let (err, code) = feed_err(&mut c, &RawFrame::new(op, "").unmasked().encode());
        assert_eq!(err, protocol(ProtocolError::ReservedOpcode(op)));
        assert_eq!(code, Some(1002));

        // In the middle of a fragmented message.
        let mut s = server();
        let wire = wire(&[RawFrame::text("a").fin(false), RawFrame::new(op, "x")]);
        let (err, _) = feed_err(&mut s, &wire);
        assert_eq!(err, protocol(ProtocolError::ReservedOpcode(op)));
    }
}

#[test]
fn s5_2_length_2_pow_63_is_1002_without_allocating() {
    // The most significant bit of the 64-bit length must be 0. If the
    // connection tried to reserve 2^63 bytes the process would abort; the
    // error comes from the header alone.
    for len in [1u64 << 63, u64::MAX] {
        let mut s = server();
        let header = RawFrame::binary([]).len_form(LenForm::Announce(len)).encode();
        assert_eq!(header.len(), 14);
        let (err, code) = feed_err(&mut s, &header);
        assert_eq!(err, protocol(ProtocolError::InvalidLength));
        assert_eq!(code, Some(1002));
        assert!(s.read_buffer_mut().capacity() < 1024);
    }
    // Largest legal length: over the frame limit (1009), still nothing reserved.
    let mut s = server();
    let header = RawFrame::binary([]).len_form(LenForm::Announce((1 << 63) - 1)).encode();
    let (err, code) = feed_err(&mut s, &header);
    assert!(matches!(err, Error::MessageTooBig(LimitExceeded::FrameSize { len, .. }) if len == (1 << 63) - 1));
    assert_eq!(code, Some(1009));
    assert!(s.read_buffer_mut().capacity() < 1024);
}

// ----- §5.4 fragmentation -------------------------------------------------------

#[test]
fn s5_4_continuation_without_message_fails_1002() {
    let mut s = server();
    let (err, code) = feed_err(&mut s, &RawFrame::cont("x").encode());
    assert_eq!(err, protocol(ProtocolError::UnexpectedContinuation));
    assert_eq!(code, Some(1002));

    // Also right after a complete fragmented message.
    let mut s = server();
    let w = wire(&[RawFrame::text("a").fin(false), RawFrame::cont("b"), RawFrame::cont("c")]);
    let (events, err) = feed(&mut s, &w);
    assert_eq!(events, vec![text("ab")]);
    assert_eq!(err, Some(protocol(ProtocolError::UnexpectedContinuation)));
}

#[test]
fn s5_4_new_data_frame_inside_fragmented_message_fails_1002() {
    for second in [
        RawFrame::text("b"),
        RawFrame::binary("b"),
        RawFrame::text("b").fin(false),
    ] {
        let mut s = server();
        let (err, code) = feed_err(&mut s, &wire(&[RawFrame::binary("a").fin(false), second]));
        assert_eq!(err, protocol(ProtocolError::ExpectedContinuation));
        assert_eq!(code, Some(1002));
    }
}

#[test]
fn s5_4_control_frames_interleaved_between_fragments() {
    let mut s = server();
    let w = wire(&[
        RawFrame::text("He").fin(false),
        RawFrame::ping("p1"),
        RawFrame::cont("l").fin(false),
        RawFrame::pong("q"),
        RawFrame::cont("").fin(false),
        RawFrame::ping("p2"),
        RawFrame::cont("lo"),
    ]);
    let events = feed_ok(&mut s, &w);
    assert_eq!(events, vec![ping(b"p1"), pong(b"q"), ping(b"p2"), text("Hello")]);
    // A pong for each ping, in order.
    let frames = sent(&mut s);
    assert!(frames.iter().all(|f| f.opcode == OP_PONG));
    assert_eq!(
        frames.iter().map(|f| f.payload.clone()).collect::<Vec<_>>(),
        vec![b"p1".to_vec(), b"p2".to_vec()]
    );

    // A close between fragments ends the connection; the partial message is dropped.
    let mut s = server();
    let w = wire(&[
        RawFrame::binary("ab").fin(false),
        RawFrame::close(1000, ""),
        RawFrame::cont("c"),
    ]);
    let events = feed_ok(&mut s, &w);
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1000, "")))]);
}

#[test]
fn s5_4_many_fragments_and_empty_fragments() {
    let mut s = server();
    let mut frames = vec![RawFrame::binary([]).fin(false)];
    let mut expect = Vec::new();
    for i in 0..100u8 {
        frames.push(RawFrame::cont([i; 3]).fin(false));
        expect.extend_from_slice(&[i; 3]);
        frames.push(RawFrame::cont([]).fin(false));
    }
    frames.push(RawFrame::cont([]));
    assert_eq!(feed_ok(&mut s, &wire(&frames)), vec![binary(expect)]);
    // A message of only empty fragments.
    let w = wire(&[RawFrame::text("").fin(false), RawFrame::cont("")]);
    assert_eq!(feed_ok(&mut s, &w), vec![text("")]);
}

// ----- §5.5 control frames --------------------------------------------------------

#[test]
fn s5_5_control_frame_over_125_bytes() {
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        let mut payload = vec![b'a'; 126];
        payload[..2].copy_from_slice(&1000u16.to_be_bytes());
        let mut s = server();
        let (err, code) = feed_err(&mut s, &RawFrame::new(op, &payload).encode());
        assert_eq!(err, protocol(ProtocolError::ControlTooLong), "opcode {op}");
        assert_eq!(code, Some(1002));
        // 125 bytes is fine.
        let mut s = server();
        let (events, err) = feed(&mut s, &RawFrame::new(op, &payload[..125]).encode());
        assert_eq!(err, None, "opcode {op}");
        assert_eq!(events.len(), 1);
    }
    // Announced in the 16-bit form, the error comes before the payload.
    let mut s = server();
    let header = RawFrame::ping([]).len_form(LenForm::Announce(126)).encode();
    let (err, _) = feed_err(&mut s, &header);
    assert_eq!(err, protocol(ProtocolError::ControlTooLong));
}

#[test]
fn s5_5_control_frames_sent_are_at_most_125_bytes() {
    let mut s = server();
    assert_eq!(s.send_ping(vec![0u8; 126]), Err(SendError::ControlTooLong));
    assert_eq!(s.send_pong(vec![0u8; 126]), Err(SendError::ControlTooLong));
    assert_eq!(
        s.close(Some(CloseFrame::new(1000, "r".repeat(124)))),
        Err(SendError::ControlTooLong)
    );
    assert!(!s.has_transmit());
    s.send_ping(vec![0u8; 125]).unwrap();
    s.close(Some(CloseFrame::new(1000, "r".repeat(123)))).unwrap();
    let frames = sent(&mut s);
    assert_eq!(frames[0].payload.len(), 125);
    assert_eq!(frames[1].payload.len(), 125);
}

#[test]
fn s5_5_fragmented_control() {
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        let mut s = server();
        let (err, code) = feed_err(&mut s, &RawFrame::new(op, []).fin(false).encode());
        assert_eq!(err, protocol(ProtocolError::FragmentedControl), "opcode {op}");
        assert_eq!(code, Some(1002));
    }
}

// ----- §5.5.1 close ---------------------------------------------------------------

#[test]
fn s5_5_1_close_echo_and_no_data_after_close() {
    let mut s = server();
    let w = wire(&[
        RawFrame::close(1001, "bye"),
        RawFrame::text("after close"),
        RawFrame::ping("x"),
    ]);
    let events = feed_ok(&mut s, &w);
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1001, "bye")))]);
    assert_eq!(s.state(), State::Closed);
    // The reply echoes the code.
    let frames = sent(&mut s);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].close_code(), Some(1001));
    // Nothing is processed after the close, however much arrives.
    assert!(!s.wants_data());
    assert_eq!(feed_ok(&mut s, &RawFrame::text("more").encode()), vec![]);
    assert_eq!(feed_ok(&mut s, &[0xff; 100]), vec![]);
    assert!(!s.has_transmit());
    // And nothing more may be sent.
    assert_eq!(s.send_text("no"), Err(SendError::Closed));
    assert_eq!(s.close(None), Err(SendError::Closed));
}

#[test]
fn s5_5_1_close_without_code_gets_empty_close() {
    let mut s = server();
    assert_eq!(
        feed_ok(&mut s, &RawFrame::close_empty().encode()),
        vec![Event::Close(None)]
    );
    let frames = sent(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].opcode, OP_CLOSE);
    assert!(frames[0].payload.is_empty());
}

#[test]
fn s5_5_1_close_payload_of_one_byte_1002() {
    let mut s = server();
    let (err, code) = feed_err(&mut s, &RawFrame::new(OP_CLOSE, [0x03]).encode());
    assert_eq!(err, protocol(ProtocolError::CloseTooShort));
    assert_eq!(code, Some(1002));
}

#[test]
fn s5_5_1_close_reason_invalid_utf8_1007() {
    for reason in [&b"\xff"[..], b"ok\xc0\xaf", b"\xed\xa0\x80", b"\xf0\x9f\x98"] {
        let mut s = server();
        let (err, code) = feed_err(&mut s, &RawFrame::close(1000, reason).encode());
        assert_eq!(err, Error::InvalidUtf8, "{reason:x?}");
        assert_eq!(code, Some(1007));
    }
    // A valid multi-byte reason is delivered.
    let mut s = server();
    let events = feed_ok(&mut s, &RawFrame::close(4000, "κόσμε").encode());
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(4000, "κόσμε")))]);
}

// ----- §5.5.2 ping, §5.5.3 pong ---------------------------------------------------

#[test]
fn s5_5_2_ping_gets_pong_with_same_payload() {
    for payload in [vec![], b"Hello".to_vec(), (0..125u8).collect()] {
        let mut s = server();
        let events = feed_ok(&mut s, &RawFrame::ping(&payload).encode());
        assert_eq!(events, vec![Event::Ping(payload.clone().into())]);
        let frames = sent(&mut s);
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].opcode, frames[0].fin, frames[0].mask), (OP_PONG, true, None));
        assert_eq!(frames[0].payload, payload);

        let mut c = client();
        feed_ok(&mut c, &RawFrame::ping(&payload).unmasked().encode());
        let frames = sent(&mut c);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].opcode, OP_PONG);
        assert!(frames[0].mask.is_some());
        assert_eq!(frames[0].payload, payload);
    }
}

#[test]
fn s5_5_2_pong_follows_data_queued_before_it() {
    let mut s = server();
    s.send_text("first").unwrap();
    feed_ok(&mut s, &RawFrame::ping("p").encode());
    let frames = sent(&mut s);
    assert_eq!(
        frames.iter().map(|f| f.opcode).collect::<Vec<_>>(),
        vec![OP_TEXT, OP_PONG]
    );
}

#[test]
fn s5_5_2_every_ping_gets_its_own_pong_in_order() {
    // §5.5.3 would allow answering only the most recent of several pings; weft
    // answers each one while its output is not backed up (Autobahn 2.10, 2.11).
    let mut s = server();
    let events = feed_ok(
        &mut s,
        &wire(&[RawFrame::ping("1"), RawFrame::ping("2"), RawFrame::ping("3")]),
    );
    assert_eq!(events, vec![ping(b"1"), ping(b"2"), ping(b"3")]);
    let frames = sent(&mut s);
    assert!(frames.iter().all(|f| f.opcode == OP_PONG));
    assert_eq!(
        frames.iter().map(|f| f.payload.clone()).collect::<Vec<_>>(),
        vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
}

#[test]
fn s5_5_2_pong_goes_out_before_the_reply_to_a_message_completed_after_the_ping() {
    // A ping between the fragments of a message, all in one read: the pong is
    // queued when the ping is read, so an echo of the message, queued once it
    // is complete, follows it (Autobahn 5.6, 5.7, 5.19).
    let mut s = server();
    s.receive_data(&wire(&[
        RawFrame::text("frag1").fin(false),
        RawFrame::ping("p"),
        RawFrame::cont("frag2"),
    ]));
    assert_eq!(s.poll_event().unwrap(), Some(ping(b"p")));
    let Some(Event::Message(msg)) = s.poll_event().unwrap() else {
        panic!("expected the message")
    };
    assert_eq!(msg, Message::Text("frag1frag2".into()));
    s.send(msg).unwrap();
    let frames = sent(&mut s);
    assert_eq!(
        frames.iter().map(|f| f.opcode).collect::<Vec<_>>(),
        vec![OP_PONG, OP_TEXT]
    );
}

#[test]
fn s5_5_2_ping_while_closing_still_gets_pong() {
    // "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
    // response, unless it already received a Close frame." Having *sent* a
    // close is no exception: control frames may follow it (only data frames
    // may not, §5.5.1).
    let mut s = server();
    s.close(Some(CloseFrame::new(1000, ""))).unwrap();
    assert_eq!(s.state(), State::Closing);
    assert_eq!(feed_ok(&mut s, &RawFrame::ping("late").encode()), vec![ping(b"late")]);
    let frames = sent(&mut s);
    assert_eq!(
        frames.iter().map(|f| f.opcode).collect::<Vec<_>>(),
        vec![OP_CLOSE, OP_PONG]
    );
    assert_eq!(frames[1].payload, b"late");

    // A ping received but not yet answered when the close is sent is answered
    // too, ahead of the close.
    let mut s = server();
    feed_ok(&mut s, &RawFrame::ping("early").encode());
    s.close(None).unwrap();
    let frames = sent(&mut s);
    assert_eq!(
        frames.iter().map(|f| f.opcode).collect::<Vec<_>>(),
        vec![OP_PONG, OP_CLOSE]
    );
    assert_eq!(frames[0].payload, b"early");

    // A ping that arrived before the peer's close, in the same read, is
    // answered ahead of the close reply.
    let mut s = server();
    let events = feed_ok(
        &mut s,
        &wire(&[RawFrame::ping("just before"), RawFrame::close(1000, "")]),
    );
    assert_eq!(
        events,
        vec![ping(b"just before"), Event::Close(Some(CloseFrame::new(1000, "")))]
    );
    let frames = sent(&mut s);
    assert_eq!(
        frames.iter().map(|f| f.opcode).collect::<Vec<_>>(),
        vec![OP_PONG, OP_CLOSE]
    );
    assert_eq!(frames[0].payload, b"just before");

    // Once the peer's close has arrived no pong is owed: pings after it are
    // not even read.
    let mut s = server();
    let events = feed_ok(&mut s, &wire(&[RawFrame::close(1000, ""), RawFrame::ping("too late")]));
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1000, "")))]);
    assert_eq!(
        sent(&mut s).iter().map(|f| f.opcode).collect::<Vec<_>>(),
        vec![OP_CLOSE]
    );
}

#[test]
fn s5_5_2_ping_flood_with_unwritten_pongs_is_bounded() {
    // A peer that pings and never reads: the transport accepts nothing, so the
    // output is never advanced. It must not grow without bound.
    let mut s = server();
    let ping = RawFrame::ping([b'x'; 125]).encode();
    let mut burst = Vec::new();
    for _ in 0..100 {
        burst.extend_from_slice(&ping);
    }
    for _ in 0..200 {
        s.receive_data(&burst);
        loop {
            match s.poll_event() {
                Ok(Some(Event::Ping(_))) => {
                    // The driver tries to write after every event and fails.
                    let mut slices = [IoSlice::new(&[]); 16];
                    s.transmit_slices(&mut slices);
                }
                Ok(None) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            s.buffered_amount() <= 64 * 1024 + 127,
            "{} bytes buffered",
            s.buffered_amount()
        );
    }
    // 20,000 pings arrived, 2.5 MB of pongs were owed; the output stayed bounded.
    assert!(s.buffered_amount() <= 64 * 1024 + 127);
    // Once the transport drains, pongs flow again.
    let all = s.take_transmit();
    assert!(parse_frames(&all).iter().all(|f| f.opcode == OP_PONG));
    feed_ok(&mut s, &ping);
    assert_eq!(sent(&mut s).len(), 1);
}

#[test]
fn s5_5_3_unsolicited_pong_accepted() {
    let mut s = server();
    assert_eq!(feed_ok(&mut s, &RawFrame::pong("beat").encode()), vec![pong(b"beat")]);
    assert!(!s.has_transmit(), "a pong is not answered");
    assert_eq!(s.state(), State::Open);
    // And one can be sent.
    s.send_pong(&b"beat"[..]).unwrap();
    let frames = sent(&mut s);
    assert_eq!((frames[0].opcode, &frames[0].payload[..]), (OP_PONG, &b"beat"[..]));
}

// ----- §5.6 / §8.1 UTF-8 -----------------------------------------------------------

#[test]
fn s5_6_invalid_utf8_fails_fast_1007() {
    // κόσμε followed by a UTF-16 surrogate, in the first fragment of a message
    // whose FIN never arrives: fail at that fragment.
    let bad = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";
    let mut s = server();
    let (err, code) = feed_err(&mut s, &RawFrame::text(bad).fin(false).encode());
    assert_eq!(err, Error::InvalidUtf8);
    assert_eq!(code, Some(1007));

    // In a later fragment, before FIN.
    let mut s = server();
    let w = wire(&[RawFrame::text("fine ").fin(false), RawFrame::cont(b"\xff").fin(false)]);
    let (err, code) = feed_err(&mut s, &w);
    assert_eq!((err, code), (Error::InvalidUtf8, Some(1007)));

    // Within one large frame, before the rest of its payload has arrived.
    let mut payload = vec![b'a'; 10_000];
    payload[100] = 0xc0;
    let w = RawFrame::text(&payload).encode();
    let mut s = server();
    let (err, code) = feed_err(&mut s, &w[..300]);
    assert_eq!((err, code), (Error::InvalidUtf8, Some(1007)));

    // Inside a code point: F4 90 can begin nothing valid (> U+10FFFF).
    let mut s = server();
    assert_eq!(feed_ok(&mut s, &RawFrame::text(b"ok \xf4").fin(false).encode()), vec![]);
    let (err, _) = feed_err(&mut s, &RawFrame::cont(b"\x90").fin(false).encode());
    assert_eq!(err, Error::InvalidUtf8);
}

#[test]
fn s5_6_code_points_split_across_fragments_are_valid() {
    let smile = "\u{1f600}".as_bytes();
    let mut s = server();
    let w = wire(&[
        RawFrame::text(&smile[..1]).fin(false),
        RawFrame::cont(&smile[1..3]).fin(false),
        RawFrame::ping("between"),
        RawFrame::cont(&smile[3..]),
    ]);
    assert_eq!(feed_ok(&mut s, &w), vec![ping(b"between"), text("\u{1f600}")]);
}

#[test]
fn s5_6_message_ending_inside_a_code_point_1007() {
    let mut s = server();
    let (err, code) = feed_err(&mut s, &RawFrame::text(b"abc\xf0\x9f\x98").encode());
    assert_eq!((err, code), (Error::InvalidUtf8, Some(1007)));
    let mut s = server();
    let w = wire(&[RawFrame::text(b"abc\xe2").fin(false), RawFrame::cont(b"\x82")]);
    let (err, code) = feed_err(&mut s, &w);
    assert_eq!((err, code), (Error::InvalidUtf8, Some(1007)));
}

#[test]
fn s5_6_binary_is_not_checked() {
    let mut s = server();
    let w = RawFrame::binary(b"\xff\xfe\xed\xa0\x80").encode();
    assert_eq!(feed_ok(&mut s, &w), vec![binary(&b"\xff\xfe\xed\xa0\x80"[..])]);
}

// ----- §7.4 close codes -----------------------------------------------------------

#[test]
fn s7_4_invalid_close_codes_1002() {
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut s = server();
        let (err, sent_code) = feed_err(&mut s, &RawFrame::close(code, "").encode());
        assert_eq!(err, protocol(ProtocolError::InvalidCloseCode(code)), "code {code}");
        assert_eq!(sent_code, Some(1002));
    }
}

#[test]
fn s7_4_valid_close_codes_are_delivered_and_echoed() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
    ] {
        let mut s = server();
        let events = feed_ok(&mut s, &RawFrame::close(code, "r").encode());
        assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(code, "r")))]);
        assert_eq!(sent(&mut s)[0].close_code(), Some(code));
    }
}

#[test]
fn s7_4_1_every_error_maps_to_a_sendable_code_and_a_short_reason() {
    use weft_proto::ExtensionError;
    let errors = [
        Error::Protocol(ProtocolError::UnmaskedFrame),
        Error::Protocol(ProtocolError::MaskedFrame),
        Error::Protocol(ProtocolError::ReservedBits(5)),
        Error::Protocol(ProtocolError::ReservedOpcode(0xb)),
        Error::Protocol(ProtocolError::InvalidLength),
        Error::Protocol(ProtocolError::FragmentedControl),
        Error::Protocol(ProtocolError::ControlTooLong),
        Error::Protocol(ProtocolError::UnexpectedContinuation),
        Error::Protocol(ProtocolError::ExpectedContinuation),
        Error::Protocol(ProtocolError::CloseTooShort),
        Error::Protocol(ProtocolError::InvalidCloseCode(1005)),
        Error::InvalidUtf8,
        Error::MessageTooBig(LimitExceeded::FrameSize {
            len: u64::MAX >> 1,
            max: 1,
        }),
        Error::MessageTooBig(LimitExceeded::MessageSize { max: 1 }),
        Error::MessageTooBig(LimitExceeded::Fragments { max: 1 }),
        Error::Extension(ExtensionError {
            code: CloseCode::MESSAGE_TOO_BIG,
            reason: "inflated too far",
        }),
    ];
    for e in &errors {
        let expected = match e {
            Error::Protocol(_) => 1002,
            Error::InvalidUtf8 => 1007,
            _ => 1009,
        };
        assert_eq!(e.close_code().0, expected, "{e:?}");
        assert!(e.close_code().is_sendable());
        let reason = e.close_reason();
        assert!(
            !reason.is_empty() && reason.len() <= 123 && reason.is_ascii(),
            "{reason:?}"
        );
        assert!(e.to_string().contains(&format!("close code {expected}")), "{e}");
    }
    for e in [Error::AbnormalClosure, Error::Aborted("timeout")] {
        assert_eq!(e.close_code(), CloseCode::ABNORMAL);
        assert!(!e.close_code().is_sendable(), "1006 is never put on the wire");
    }
}

#[test]
fn s7_4_codes_that_may_not_be_sent_are_refused() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let mut s = server();
        assert_eq!(
            s.close(Some(CloseFrame::new(code, ""))),
            Err(SendError::InvalidCloseCode(code))
        );
        assert_eq!(s.state(), State::Open);
        assert!(!s.has_transmit());
    }
}

// ----- §7.1 closing handshake and states --------------------------------------------

#[test]
fn s7_1_server_initiated_closing_handshake() {
    let mut s = server();
    let mut c = client();
    assert_eq!((s.state(), c.state()), (State::Open, State::Open));

    s.close(Some(CloseFrame::new(1000, "done"))).unwrap();
    assert_eq!(s.state(), State::Closing);
    assert_eq!(s.send_text("late"), Err(SendError::Closed));
    assert!(!s.should_close_transport());

    // The client gets the close and answers it.
    let out = s.take_transmit();
    assert_eq!(parse_frames(&out)[0].close_code(), Some(1000));
    // The client had a message in flight: it still reaches the server.
    c.send_text("in flight").unwrap();
    let in_flight = c.take_transmit();
    let events = feed_ok(&mut c, &out);
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1000, "done")))]);
    assert_eq!(c.state(), State::Closed);
    let reply = c.take_transmit();
    assert_eq!(parse_frames(&reply)[0].close_code(), Some(1000));
    // The client waits for the server to close the TCP connection.
    assert!(!c.should_close_transport());

    assert_eq!(feed_ok(&mut s, &in_flight), vec![text("in flight")]);
    assert_eq!(s.state(), State::Closing);
    let events = feed_ok(&mut s, &reply);
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1000, "")))]);
    assert_eq!(s.state(), State::Closed);
    // No second close from the server.
    assert!(!s.has_transmit());
    assert!(s.should_close_transport(), "the server closes the TCP connection first");

    // The server closed TCP: the client sees EOF and closes too, cleanly.
    c.receive_eof();
    assert_eq!(c.poll_event(), Ok(None));
    assert!(c.should_close_transport());
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), None);
}

#[test]
fn s7_1_client_initiated_closing_handshake() {
    let mut s = server();
    let mut c = client();
    c.close(Some(CloseFrame::new(1001, "leaving"))).unwrap();
    assert_eq!(c.state(), State::Closing);
    assert_eq!(c.send_binary(vec![1u8]), Err(SendError::Closed));

    let events = feed_ok(&mut s, &c.take_transmit());
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1001, "leaving")))]);
    assert_eq!(s.state(), State::Closed);
    // The reply must be written before the transport is closed.
    assert!(!s.should_close_transport());
    let reply = s.take_transmit();
    assert!(s.should_close_transport());

    assert!(!c.should_close_transport());
    assert_eq!(
        feed_ok(&mut c, &reply),
        vec![Event::Close(Some(CloseFrame::new(1001, "")))]
    );
    assert_eq!(c.state(), State::Closed);
    assert!(!c.has_transmit(), "the client does not answer the answer");
    assert!(!c.should_close_transport(), "the client waits for the server's EOF");
    c.receive_eof();
    assert!(c.should_close_transport());
    assert_eq!(c.poll_event(), Ok(None));
}

#[test]
fn s7_1_simultaneous_close() {
    let mut s = server();
    let mut c = client();
    s.close(Some(CloseFrame::new(1000, "s"))).unwrap();
    c.close(Some(CloseFrame::new(1001, "c"))).unwrap();
    let (from_s, from_c) = (s.take_transmit(), c.take_transmit());
    assert_eq!(
        feed_ok(&mut s, &from_c),
        vec![Event::Close(Some(CloseFrame::new(1001, "c")))]
    );
    assert_eq!(
        feed_ok(&mut c, &from_s),
        vec![Event::Close(Some(CloseFrame::new(1000, "s")))]
    );
    assert_eq!((s.state(), c.state()), (State::Closed, State::Closed));
    assert!(!s.has_transmit() && !c.has_transmit());
    assert!(s.should_close_transport());
}

#[test]
fn s7_1_close_without_code() {
    let mut c = client();
    c.close(None).unwrap();
    let frames = sent(&mut c);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].payload.is_empty());
}

#[test]
fn s7_1_7_eof_before_close_is_abnormal_closure() {
    // Open.
    let mut s = server();
    s.receive_eof();
    assert_eq!(s.poll_event(), Err(Error::AbnormalClosure));
    assert_eq!(s.state(), State::Failed);
    assert!(!s.has_transmit(), "no close frame on a closed transport");
    assert!(s.should_close_transport());

    // Frames before the EOF are delivered first.
    let mut s = server();
    s.receive_data(&wire(&[RawFrame::text("a"), RawFrame::text("b").fin(false)]));
    s.receive_eof();
    assert_eq!(s.poll_event(), Ok(Some(text("a"))));
    assert_eq!(s.poll_event(), Err(Error::AbnormalClosure));

    // Mid-frame.
    let mut c = client();
    c.receive_data(&RawFrame::binary([1u8; 50]).unmasked().encode()[..20]);
    assert_eq!(c.poll_event(), Ok(None));
    c.receive_eof();
    assert_eq!(c.poll_event(), Err(Error::AbnormalClosure));
    assert_eq!(Error::AbnormalClosure.close_code(), CloseCode::ABNORMAL);

    // Closing: our close was sent, the peer's never came.
    let mut c = client();
    c.close(None).unwrap();
    c.take_transmit();
    c.receive_eof();
    assert_eq!(c.poll_event(), Err(Error::AbnormalClosure));
    assert!(!c.has_transmit());
    assert!(c.should_close_transport());
}

#[test]
fn s7_1_7_errors_are_sticky_and_send_exactly_one_close() {
    let mut s = server();
    let first = s.send_text("before");
    assert_eq!(first, Ok(()));
    s.receive_data(&wire(&[
        RawFrame::text("ok"),
        RawFrame::new(0x3, "bad"),
        RawFrame::text("ignored"),
    ]));
    assert_eq!(s.poll_event(), Ok(Some(text("ok"))));
    let err = protocol(ProtocolError::ReservedOpcode(3));
    for _ in 0..5 {
        assert_eq!(s.poll_event(), Err(err.clone()));
        assert_eq!(s.error(), Some(&err));
        assert_eq!(s.state(), State::Failed);
        // More input changes nothing.
        s.receive_data(&RawFrame::close(1000, "").encode());
        s.receive_eof();
    }
    assert!(!s.wants_data());
    assert_eq!(s.send_text("after"), Err(SendError::Closed));
    assert_eq!(s.send_ping(Bytes::new()), Err(SendError::Closed));
    assert_eq!(s.close(None), Err(SendError::Closed));
    let frames = sent(&mut s);
    assert_eq!(
        frames.iter().map(|f| f.opcode).collect::<Vec<_>>(),
        vec![OP_TEXT, OP_CLOSE]
    );
    assert_eq!(frames[1].close_code(), Some(1002));
    assert!(s.should_close_transport());
    assert_eq!(s.poll_event(), Err(err));
    assert!(!s.has_transmit());
}

#[test]
fn s7_1_7_error_while_closing_sends_no_second_close() {
    let mut s = server();
    s.close(Some(CloseFrame::new(1000, ""))).unwrap();
    let (events, err) = feed(&mut s, &RawFrame::text(b"\xff").encode());
    assert_eq!((events, err), (vec![], Some(Error::InvalidUtf8)));
    let frames = sent(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1000));
}

#[test]
fn abort_sends_nothing_and_closes_the_transport() {
    let mut s = server();
    s.abort("keepalive timeout");
    assert_eq!(s.poll_event(), Err(Error::Aborted("keepalive timeout")));
    assert_eq!(s.state(), State::Failed);
    assert!(!s.has_transmit());
    assert!(s.should_close_transport());
    assert_eq!(s.send_text("x"), Err(SendError::Closed));
}

// ----- sending -----------------------------------------------------------------------

#[test]
fn s5_5_1_sending_after_close_is_closed() {
    let mut c = client();
    c.send_fragment(DataKind::Text, "part", false).unwrap();
    c.close(Some(CloseFrame::new(1000, ""))).unwrap();
    assert_eq!(c.send_text("x"), Err(SendError::Closed));
    assert_eq!(c.send_binary(vec![1u8]), Err(SendError::Closed));
    assert_eq!(c.send(Message::from("x")), Err(SendError::Closed));
    assert_eq!(c.send_fragment(DataKind::Text, "rest", true), Err(SendError::Closed));
    assert_eq!(c.send_ping(Bytes::new()), Err(SendError::Closed));
    assert_eq!(c.send_pong(Bytes::new()), Err(SendError::Closed));
    assert_eq!(c.close(None), Err(SendError::Closed));
    let frames = sent(&mut c);
    assert_eq!(
        frames.iter().map(|f| f.opcode).collect::<Vec<_>>(),
        vec![OP_TEXT, OP_CLOSE]
    );
}

#[test]
fn send_fragment_sequencing() {
    let mut c = client();
    c.send_fragment(DataKind::Binary, vec![1u8, 2], false).unwrap();
    assert_eq!(c.send_binary(vec![9u8]), Err(SendError::FragmentSequence));
    assert_eq!(c.send_text("no"), Err(SendError::FragmentSequence));
    assert_eq!(
        c.send_fragment(DataKind::Text, "no", true),
        Err(SendError::FragmentSequence)
    );
    c.send_ping(&b"between"[..]).unwrap();
    c.send_fragment(DataKind::Binary, vec![3u8], false).unwrap();
    c.send_fragment(DataKind::Binary, Bytes::new(), false).unwrap();
    c.send_fragment(DataKind::Binary, vec![4u8], true).unwrap();
    // A new message may start now.
    c.send_text("next").unwrap();
    c.send_fragment(DataKind::Text, "single", true).unwrap();

    let out = c.take_transmit();
    let frames = parse_frames(&out);
    let shape: Vec<(u8, bool)> = frames.iter().map(|f| (f.opcode, f.fin)).collect();
    assert_eq!(
        shape,
        vec![
            (OP_BINARY, false),
            (OP_PING, true),
            (OP_CONT, false),
            (OP_CONT, false),
            (OP_CONT, true),
            (OP_TEXT, true),
            (OP_TEXT, true)
        ]
    );
    let mut s = server();
    assert_eq!(
        feed_ok(&mut s, &out),
        vec![
            ping(b"between"),
            binary(vec![1u8, 2, 3, 4]),
            text("next"),
            text("single")
        ]
    );
}

#[test]
fn send_fragment_checks_text_as_one_utf8_stream() {
    let euro = "€".as_bytes(); // E2 82 AC
    let mut c = client();
    c.send_fragment(DataKind::Text, euro[..1].to_vec(), false).unwrap();
    // Bytes that cannot continue the code point are refused, and the message
    // goes on as if the call had not been made.
    assert_eq!(
        c.send_fragment(DataKind::Text, b"\x41".to_vec(), false),
        Err(SendError::InvalidUtf8)
    );
    assert_eq!(
        c.send_fragment(DataKind::Text, b"\xff".to_vec(), true),
        Err(SendError::InvalidUtf8)
    );
    c.send_fragment(DataKind::Text, euro[1..2].to_vec(), false).unwrap();
    // Ending the message inside the code point is refused.
    assert_eq!(
        c.send_fragment(DataKind::Text, Bytes::new(), true),
        Err(SendError::InvalidUtf8)
    );
    c.send_fragment(DataKind::Text, euro[2..].to_vec(), true).unwrap();
    let mut s = server();
    assert_eq!(feed_ok(&mut s, &c.take_transmit()), vec![text("€")]);

    // A new message starts with a fresh validator.
    c.send_fragment(DataKind::Text, b"\xe2\x82".to_vec(), false).unwrap();
    c.send_fragment(DataKind::Text, b"\xac".to_vec(), true).unwrap();
    assert_eq!(
        c.send_fragment(DataKind::Text, b"\x82\xac".to_vec(), true),
        Err(SendError::InvalidUtf8)
    );
    assert_eq!(feed_ok(&mut s, &c.take_transmit()), vec![text("€")]);
}

#[test]
fn partial_writes_give_the_same_bytes() {
    // transmit_slices / advance_transmit in small, uneven steps produce
    // exactly the stream take_transmit would have.
    fn load(s: &mut Connection) {
        s.send_text("small").unwrap();
        s.send_binary(vec![5u8; 3000]).unwrap();
        s.send_ping(&b"p"[..]).unwrap();
        s.send_fragment(DataKind::Binary, vec![6u8; 1500], false).unwrap();
        s.send_fragment(DataKind::Binary, vec![7u8; 10], true).unwrap();
        s.send_binary(vec![8u8; 70_000]).unwrap();
        s.close(Some(CloseFrame::new(1000, "x"))).unwrap();
    }
    let mut a = server();
    load(&mut a);
    let expected = a.take_transmit();

    for step in [1usize, 7, 1000, 4096] {
        let mut b = server();
        load(&mut b);
        assert_eq!(b.buffered_amount(), expected.len());
        let mut got = Vec::new();
        while b.has_transmit() {
            let mut slices = [IoSlice::new(&[]); 3];
            let n = b.transmit_slices(&mut slices);
            let mut budget = step;
            let mut written = 0;
            for s in &slices[..n] {
                let take = s.len().min(budget);
                got.extend_from_slice(&s[..take]);
                written += take;
                budget -= take;
                if budget == 0 {
                    break;
                }
            }
            b.advance_transmit(written);
        }
        assert_eq!(b.buffered_amount(), 0);
        assert!(got == expected[..], "step {step}");
        b.release_buffers();
        assert!(!b.has_transmit());
    }
}

// ----- limits ------------------------------------------------------------------------

#[test]
fn limit_frame_size_1009_before_the_payload() {
    let mut s = server_with(Config::default().max_frame_size(1000));
    assert_eq!(
        feed_ok(&mut s, &RawFrame::binary(vec![1u8; 1000]).encode()),
        vec![binary(vec![1u8; 1000])]
    );
    // Only the header of the 1001-byte frame is fed: it alone decides.
    let header = RawFrame::binary([]).len_form(LenForm::Announce(1001)).encode();
    let (err, code) = feed_err(&mut s, &header);
    assert_eq!(
        err,
        Error::MessageTooBig(LimitExceeded::FrameSize { len: 1001, max: 1000 })
    );
    assert_eq!(code, Some(1009));
}

#[test]
fn limit_message_size_across_fragments_1009_before_buffering_past_it() {
    for streaming in [false, true] {
        let config = Config::default().max_message_size(1000).deliver_fragments(streaming);
        // Exactly at the limit is fine.
        let mut s = server_with(config.clone());
        let w = wire(&[
            RawFrame::binary([1u8; 400]).fin(false),
            RawFrame::cont([2u8; 400]).fin(false),
            RawFrame::cont([3u8; 200]),
        ]);
        let (events, err) = feed(&mut s, &w);
        assert_eq!(err, None);
        let total: usize = events
            .iter()
            .map(|e| match e {
                Event::Message(m) => m.len(),
                Event::Fragment(f) => f.data.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 1000);

        // One byte over: the connection fails on the header of the fragment
        // that would cross the limit, having buffered only 800 bytes.
        let mut s = server_with(config.clone());
        let w = wire(&[
            RawFrame::binary([1u8; 400]).fin(false),
            RawFrame::cont([2u8; 400]).fin(false),
        ]);
        assert_eq!(feed(&mut s, &w).1, None);
        let header = RawFrame::cont([]).len_form(LenForm::Announce(201)).encode();
        let (err, code) = feed_err(&mut s, &header);
        assert_eq!(
            err,
            Error::MessageTooBig(LimitExceeded::MessageSize { max: 1000 }),
            "streaming {streaming}"
        );
        assert_eq!(code, Some(1009));

        // A single frame over the message limit (but within the frame limit).
        let mut s = server_with(config);
        let header = RawFrame::text([]).len_form(LenForm::Announce(1001)).encode();
        let (err, _) = feed_err(&mut s, &header);
        assert_eq!(err, Error::MessageTooBig(LimitExceeded::MessageSize { max: 1000 }));
    }
}

#[test]
fn limit_fragment_count_1009() {
    for streaming in [false, true] {
        let config = Config::default().max_fragments(4).deliver_fragments(streaming);
        let mut s = server_with(config.clone());
        let four = wire(&[
            RawFrame::text("a").fin(false),
            RawFrame::cont("b").fin(false),
            RawFrame::ping("control frames do not count"),
            RawFrame::cont("c").fin(false),
            RawFrame::cont("d"),
        ]);
        assert_eq!(feed(&mut s, &four).1, None);
        // The count is per message.
        assert_eq!(feed(&mut s, &four).1, None);

        let mut s = server_with(config);
        let five = wire(&[
            RawFrame::binary("a").fin(false),
            RawFrame::cont("b").fin(false),
            RawFrame::cont("c").fin(false),
            RawFrame::cont("d").fin(false),
            RawFrame::cont("e"),
        ]);
        let (err, code) = feed_err(&mut s, &five);
        assert_eq!(err, Error::MessageTooBig(LimitExceeded::Fragments { max: 4 }));
        assert_eq!(code, Some(1009));
    }
}

// ----- streaming mode ------------------------------------------------------------------

fn fragments(events: &[Event]) -> Vec<Fragment> {
    events
        .iter()
        .map(|e| match e {
            Event::Fragment(f) => f.clone(),
            other => panic!("expected a fragment, got {other:?}"),
        })
        .collect()
}

#[test]
fn streaming_delivers_pieces_of_a_large_frame_as_bytes_arrive() {
    let payload = Rng(5).bytes(100_000);
    let w = RawFrame::binary(&payload).encode();
    let mut s = server_with(Config::default().deliver_fragments(true));
    let mut got = Vec::new();
    let mut pieces = Vec::new();
    for chunk in w.chunks(10_007) {
        let events = feed_ok(&mut s, chunk);
        let f = fragments(&events);
        // Every read that carries payload bytes hands them up at once.
        assert_eq!(f.len(), 1, "one piece per read");
        got.extend_from_slice(&f[0].data);
        // Nothing is held back beyond the bytes of this read.
        assert_eq!(got.len(), (w.len().min(10_007 * (pieces.len() + 1))) - 14);
        pieces.push(f[0].clone());
    }
    assert_eq!(got, payload);
    assert!(pieces[0].first && !pieces[0].fin);
    assert!(pieces[1..pieces.len() - 1].iter().all(|p| !p.first && !p.fin));
    assert!(pieces.last().unwrap().fin && !pieces.last().unwrap().first);
    assert!(pieces.iter().all(|p| p.kind == DataKind::Binary));
}

#[test]
fn streaming_text_pieces_are_validated_and_may_split_code_points() {
    let text_payload = Rng(6).text(50_000);
    let w = RawFrame::text(&text_payload).fin(false).encode();
    let tail = RawFrame::cont("end").encode();
    let mut s = server_with(Config::default().deliver_fragments(true));
    let mut got = Vec::new();
    let mut pieces = Vec::new();
    for chunk in w.chunks(333).chain(std::iter::once(&tail[..])) {
        for f in fragments(&feed_ok(&mut s, chunk)) {
            got.extend_from_slice(&f.data);
            pieces.push(f);
        }
    }
    assert_eq!(got, format!("{text_payload}end").into_bytes());
    assert!(pieces.iter().all(|p| p.kind == DataKind::Text));
    assert_eq!(pieces.iter().filter(|p| p.first).count(), 1);
    assert_eq!(pieces.iter().filter(|p| p.fin).count(), 1);
    assert!(pieces.last().unwrap().fin);

    // Invalid UTF-8 fails at the piece that carries it.
    let mut bad = Rng(7).text(5000).into_bytes();
    bad[3000] = 0xff;
    let w = RawFrame::text(&bad).encode();
    let mut s = server_with(Config::default().deliver_fragments(true));
    let (events, err) = feed(&mut s, &w[..2000]);
    assert_eq!((fragments(&events).len(), err), (1, None));
    let (_, err) = feed(&mut s, &w[2000..3100]);
    assert_eq!(err, Some(Error::InvalidUtf8));
}

#[test]
fn streaming_whole_messages_and_control_frames_between_pieces() {
    let mut s = server_with(Config::default().deliver_fragments(true));
    let w = wire(&[
        RawFrame::text("one"),
        RawFrame::binary("ab").fin(false),
        RawFrame::ping("p"),
        RawFrame::cont("").fin(false),
        RawFrame::cont("cd"),
    ]);
    let events = feed_ok(&mut s, &w);
    let frag = |kind, data: &'static str, first, fin| {
        Event::Fragment(Fragment {
            kind,
            data: Bytes::from_static(data.as_bytes()),
            first,
            fin,
        })
    };
    assert_eq!(
        events,
        vec![
            frag(DataKind::Text, "one", true, true),
            frag(DataKind::Binary, "ab", true, false),
            ping(b"p"),
            frag(DataKind::Binary, "", false, false),
            frag(DataKind::Binary, "cd", false, true),
        ]
    );
}

// ----- the receive buffer ---------------------------------------------------------------

#[test]
fn read_buffer_mut_is_an_alternative_to_receive_data() {
    let mut s = server();
    s.read_buffer_mut()
        .extend_from_slice(&RawFrame::text("direct").encode());
    assert_eq!(poll_all(&mut s), (vec![text("direct")], None));
    s.release_buffers();
    s.read_buffer_mut().extend_from_slice(&RawFrame::text("again").encode());
    assert_eq!(poll_all(&mut s), (vec![text("again")], None));
}

#[test]
fn byte_at_a_time_gives_the_same_events() {
    let payload = Rng(8).bytes(1000);
    let w = wire(&[
        RawFrame::text("héllo").fin(false),
        RawFrame::ping("p"),
        RawFrame::cont(" wörld"),
        RawFrame::binary(&payload),
        RawFrame::close(1000, "bye"),
    ]);
    let mut s = server();
    let mut events = Vec::new();
    for b in &w {
        events.extend(feed_ok(&mut s, std::slice::from_ref(b)));
    }
    assert_eq!(
        events,
        vec![
            ping(b"p"),
            text("héllo wörld"),
            binary(payload),
            Event::Close(Some(CloseFrame::new(1000, "bye")))
        ]
    );
}

// ----- buffers -------------------------------------------------------------------------

/// A large message is split off the receive buffer, which keeps its handle on
/// the allocation: once the application drops the message, the next one can
/// be read into the same memory without allocating; while the application
/// holds it, the memory is never reclaimed under it.
#[test]
fn buffers_large_message_memory_is_reused_once_dropped() {
    let mut s = server();
    let frame = RawFrame::binary(vec![7u8; 300 * 1024]).encode();
    let receive = |s: &mut Connection| -> Bytes {
        match s.poll_event().unwrap() {
            Some(Event::Message(Message::Binary(b))) => b,
            other => panic!("unexpected {other:?}"),
        }
    };
    s.read_buffer_mut().extend_from_slice(&frame);
    let first = receive(&mut s);
    assert_eq!(first.len(), 300 * 1024);
    let at = first.as_ptr();

    // Held by the application: not reclaimable.
    assert!(!s.read_buffer_mut().try_reclaim(frame.len()));
    drop(first);
    // Released by the application; an idle driver that keeps the receive
    // buffer still has it.
    s.release_buffers_but_receive();
    assert!(s.read_buffer_mut().try_reclaim(frame.len()));
    s.read_buffer_mut().extend_from_slice(&frame);
    let second = receive(&mut s);
    assert_eq!(second.as_ptr(), at, "the second message reuses the first one's memory");
    assert!(second.iter().all(|&b| b == 7));
    drop(second);

    // release_buffers lets go of it.
    s.release_buffers();
    assert!(!s.read_buffer_mut().try_reclaim(frame.len()));
}

/// What a connection made of `wire` fed in `chunk`-byte pieces: its events,
/// its error, the frames it sent (masking keys left out: a client picks fresh
/// ones) and its state.
type Outcome = (Vec<Event>, Option<Error>, Vec<(bool, u8, Vec<u8>)>, State);

fn outcome(role: Role, config: &Config, wire: &[u8], chunk: usize) -> Outcome {
    let mut c = Connection::new(role, config.clone());
    let mut events = Vec::new();
    let mut error = None;
    'feed: for piece in wire.chunks(chunk) {
        c.receive_data(piece);
        loop {
            match c.poll_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    let frames = sent(&mut c).into_iter().map(|f| (f.fin, f.opcode, f.payload)).collect();
    let mut events = joined_pieces(events);
    if error.is_some() && matches!(events.last(), Some(Event::Fragment(f)) if !f.fin) {
        // The valid start of a message that then failed: how much of it was
        // handed up depends on how it arrived.
        events.pop();
    }
    (events, error, frames, c.state())
}

/// `events` with the streaming pieces of each frame joined: how a frame is
/// cut into pieces depends on how it arrived.
fn joined_pieces(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        if let (Some(Event::Fragment(last)), Event::Fragment(next)) = (out.last_mut(), &e)
            && !last.fin
            && !next.first
        {
            last.data = [&last.data[..], &next.data[..]].concat().into();
            last.fin = next.fin;
            continue;
        }
        out.push(e);
    }
    out
}

#[test]
fn small_frames_that_arrive_whole_are_decided_as_when_they_arrive_byte_by_byte() {
    // A small frame that is wholly in the buffer is decided in one step; the
    // same frame arriving a byte at a time goes through the general path
    // (except a frame with no payload, which is whole once its header is).
    // Both must agree on everything, in either role, with any limits.
    let ascii = Rng(3).bytes(125).iter().map(|b| b'a' + b % 26).collect::<Vec<_>>();
    let mut sequences: Vec<Vec<RawFrame>> = [0, 1, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 124, 125, 126, 200, 255, 256]
        .iter()
        .flat_map(|&n| {
            let text: Vec<u8> = ascii.iter().copied().cycle().take(n).collect();
            [vec![RawFrame::text(&text)], vec![RawFrame::binary(&text)]]
        })
        .collect();
    let mut high = ascii[..40].to_vec();
    high[37] = 0xc3;
    let cases: &[&[RawFrame]] = &[
        &[RawFrame::text("héllo wörld, κόσμε, 日本語")],
        &[RawFrame::text(&high)],
        &[RawFrame::binary(&high)],
        &[RawFrame::text(b"\xff")],
        &[RawFrame::text(b"ok \xe2\x82")],
        &[RawFrame::text(b"\xed\xa0\x80 surrogate")],
        &[RawFrame::text(b"\xf4\x90\x80\x80 too high")],
        &[RawFrame::binary(b"\xff\xfe\x00\x80")],
        &[RawFrame::text("a"), RawFrame::text("b"), RawFrame::binary("c")],
        &[RawFrame::text("a"), RawFrame::text("b").fin(false)],
        &[RawFrame::text("frag").fin(false), RawFrame::text("x")],
        &[RawFrame::text("frag").fin(false), RawFrame::cont("ment")],
        &[
            RawFrame::text("frag").fin(false),
            RawFrame::ping("p"),
            RawFrame::cont("ment"),
            RawFrame::text("next"),
        ],
        &[RawFrame::cont("x")],
        &[RawFrame::text("rsv").rsv(0b100)],
        &[RawFrame::binary("rsv").rsv(0b001)],
        &[RawFrame::text("long form").len_form(LenForm::Long)],
        &[RawFrame::ping("p"), RawFrame::text("after ping")],
        &[RawFrame::close(1000, "bye"), RawFrame::text("after close")],
        &[RawFrame::new(0x3, "reserved opcode")],
    ];
    sequences.extend(cases.iter().map(|c| c.to_vec()));
    let configs = [
        Config::default(),
        Config::default().deliver_fragments(true),
        Config::default().max_frame_size(4),
        Config::default().max_message_size(4),
        Config::default().max_frame_size(0),
        Config::default().max_fragments(0),
        Config::default().max_fragments(1),
        Config::default().max_frame_size(124).max_message_size(125),
        Config::default().max_message_size(200),
    ];
    // The 16-bit length form for short payloads (not minimal, but valid).
    let mut non_minimal = vec![0x81, 0x80 | 126, 0, 5];
    non_minimal.extend_from_slice(&KEY);
    non_minimal.extend(b"hello".iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
    for role in [Role::Server, Role::Client] {
        for config in &configs {
            let whole = outcome(role, config, &non_minimal, non_minimal.len());
            assert_eq!(whole, outcome(role, config, &non_minimal, 1), "{role:?}, {config:?}");
        }
    }
    let whole = outcome(Role::Server, &Config::default(), &non_minimal, non_minimal.len());
    assert_eq!(whole.0, vec![text("hello")]);
    for seq in &sequences {
        for masked in [true, false] {
            let frames: Vec<RawFrame> = seq
                .iter()
                .map(|f| {
                    if masked {
                        f.clone().mask(KEY)
                    } else {
                        f.clone().unmasked()
                    }
                })
                .collect();
            let w = wire(&frames);
            // A partial frame after the last one: the whole ones are still
            // taken in one step.
            let mut w_then_partial = w.clone();
            w_then_partial.extend_from_slice(&RawFrame::text("partial").mask(KEY).encode()[..5]);
            for role in [Role::Server, Role::Client] {
                for config in &configs {
                    for w in [&w, &w_then_partial] {
                        let whole = outcome(role, config, w, w.len());
                        let by_byte = outcome(role, config, w, 1);
                        assert_eq!(whole, by_byte, "{role:?}, {config:?}, {frames:?}");
                    }
                }
            }
        }
    }
}
