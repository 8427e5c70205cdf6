//! Property tests: round trips through both roles in any chunking, masking,
//! the streaming UTF-8 validator, and no panic on any input.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::IoSlice;

use bytes::Bytes;
use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use weft_proto::mask::apply_mask;
use weft_proto::utf8::Utf8Validator;
use weft_proto::{CloseFrame, Config, Connection, DataKind, Event, Message, Role, Text};

/// `n` cases; a failing case is saved next to this file.
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

// ----- round trips --------------------------------------------------------------

/// One thing the sender does.
#[derive(Clone, Debug)]
enum Op {
    Ping(Vec<u8>),
    Message {
        text: bool,
        len: usize,
        seed: u64,
        /// `None`: sent whole with `send`. `Some`: sent with `send_fragment`,
        /// cut at these byte offsets (any offset, even inside a code point),
        /// with a ping after the piece when the flag is set.
        pieces: Option<Vec<(usize, bool)>>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![4 => 0..130usize, 3 => 0..3000usize, 2 => 0..70_000usize];
    let message = (
        any::<bool>(),
        len,
        any::<u64>(),
        proptest::option::of(vec((any::<usize>(), any::<bool>()), 0..5)),
    )
        .prop_map(|(text, len, seed, pieces)| Op::Message {
            text,
            len,
            seed,
            pieces,
        });
    prop_oneof![1 => vec(any::<u8>(), 0..=125).prop_map(Op::Ping), 4 => message]
}

/// Read sizes, used in turn; some runs read a byte at a time.
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1..4usize, 1..200usize, 1..5000usize, 1..100_000usize], 1..6)
}

/// Send `ops` from `tx` and return the events the receiver must see.
fn send_all(tx: &mut Connection, ops: &[Op]) -> Vec<Event> {
    let mut expected = Vec::new();
    for op in ops {
        match op {
            Op::Ping(p) => {
                tx.send_ping(p.clone()).unwrap();
                expected.push(Event::Ping(p.clone().into()));
            }
            Op::Message {
                text,
                len,
                seed,
                pieces,
            } => {
                let mut rng = Rng(*seed);
                let (kind, payload) = if *text {
                    (DataKind::Text, rng.text(*len).into_bytes())
                } else {
                    (DataKind::Binary, rng.bytes(*len))
                };
                match pieces {
                    None => {
                        let msg = if *text {
                            Message::Text(Text::from_bytes(payload.clone().into()).unwrap())
                        } else {
                            Message::Binary(payload.clone().into())
                        };
                        tx.send(msg).unwrap();
                    }
                    Some(cuts) => {
                        let mut cuts: Vec<(usize, bool)> = cuts
                            .iter()
                            .map(|&(at, ping)| (at % (payload.len() + 1), ping))
                            .collect();
                        cuts.sort_unstable();
                        let mut start = 0;
                        for (at, ping) in cuts {
                            tx.send_fragment(kind, payload[start..at].to_vec(), false).unwrap();
                            start = at;
                            if ping {
                                tx.send_ping(Bytes::from_static(b"between")).unwrap();
                                expected.push(Event::Ping(Bytes::from_static(b"between")));
                            }
                        }
                        tx.send_fragment(kind, payload[start..].to_vec(), true).unwrap();
                    }
                }
                expected.push(Event::Message(if *text {
                    Message::Text(Text::from_bytes(payload.into()).unwrap())
                } else {
                    Message::Binary(payload.into())
                }));
            }
        }
    }
    expected
}

/// Feed `wire` to `rx` in reads of the given sizes, polling after each.
/// Streamed fragments are reassembled into messages, checking their flags.
fn receive_all(rx: &mut Connection, wire: &[u8], chunks: &[usize]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut partial: Option<(DataKind, Vec<u8>)> = None;
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < wire.len() {
        let n = (*sizes.next().unwrap()).min(wire.len() - at);
        let (got, err) = feed(rx, &wire[at..at + n]);
        assert_eq!(err, None);
        at += n;
        for e in got {
            match e {
                Event::Fragment(f) => {
                    match &mut partial {
                        None => {
                            assert!(f.first, "a message starts with a first piece");
                            partial = Some((f.kind, f.data.to_vec()));
                        }
                        Some((kind, buf)) => {
                            assert!(!f.first);
                            assert_eq!(*kind, f.kind);
                            buf.extend_from_slice(&f.data);
                        }
                    }
                    if f.fin {
                        let (kind, buf) = partial.take().unwrap();
                        events.push(Event::Message(match kind {
                            DataKind::Text => Message::Text(Text::from_bytes(buf.into()).unwrap()),
                            DataKind::Binary => Message::Binary(buf.into()),
                        }));
                    }
                }
                other => events.push(other),
            }
        }
    }
    assert!(partial.is_none(), "a message was left unfinished");
    events
}

fn round_trip(
    tx_role: Role,
    ops: &[Op],
    chunks: &[usize],
    streaming: bool,
    extension: bool,
) -> Result<(), TestCaseError> {
    let rx_role = if tx_role == Role::Client {
        Role::Server
    } else {
        Role::Client
    };
    let ext = || extension.then(|| Box::new(XorExtension::default()) as Box<dyn weft_proto::Extension>);
    let mut tx = Connection::new(tx_role, Config::default()).with_extension(ext());
    let mut rx = Connection::new(rx_role, Config::default().deliver_fragments(streaming)).with_extension(ext());
    let expected = send_all(&mut tx, ops);
    let wire = tx.take_transmit();
    // The sender's output is well-formed: masked exactly when a client sent it.
    for f in parse_frames(&wire) {
        prop_assert_eq!(f.mask.is_some(), tx_role == Role::Client);
    }
    let events = receive_all(&mut rx, &wire, chunks);
    prop_assert_eq!(events.len(), expected.len());
    for (i, (got, want)) in events.iter().zip(&expected).enumerate() {
        prop_assert!(got == want, "event {} differs", i);
    }
    // The receiver answered every ping (at least the latest of each batch).
    let answered = parse_frames(&rx.take_transmit());
    prop_assert!(answered.iter().all(|f| f.opcode == OP_PONG));
    if expected.iter().any(|e| matches!(e, Event::Ping(_))) {
        prop_assert!(!answered.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(192))]

    #[test]
    fn client_to_server_in_any_chunking(
        ops in vec(op(), 0..8),
        chunks in chunking(),
        streaming in any::<bool>(),
        extension in any::<bool>(),
    ) {
        round_trip(Role::Client, &ops, &chunks, streaming, extension)?;
    }

    #[test]
    fn server_to_client_in_any_chunking(
        ops in vec(op(), 0..8),
        chunks in chunking(),
        streaming in any::<bool>(),
        extension in any::<bool>(),
    ) {
        round_trip(Role::Server, &ops, &chunks, streaming, extension)?;
    }
}

// ----- masking -------------------------------------------------------------------

fn naive_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn mask_round_trips_from_every_offset_and_split(
        data in vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        offset in 0..64usize,
        split in any::<usize>(),
    ) {
        let split = split % (data.len() + 1);
        let mut whole = data.clone();
        apply_mask(&mut whole, key, offset);
        let mut expect = data.clone();
        naive_mask(&mut expect, key, offset);
        prop_assert_eq!(&whole, &expect);

        // In two pieces, the second resuming at its payload offset.
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(split);
        apply_mask(a, key, offset);
        apply_mask(b, key, offset + split);
        prop_assert_eq!(&pieces, &whole);

        // Masking is its own inverse.
        apply_mask(&mut whole, key, offset);
        prop_assert_eq!(&whole, &data);
    }
}

// ----- UTF-8 ---------------------------------------------------------------------------

/// Mostly-valid text with a few bytes changed, or raw bytes.
fn utf8ish() -> impl Strategy<Value = Vec<u8>> {
    let text = vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect::<String>().into_bytes());
    let mutated = (text.clone(), vec((any::<usize>(), any::<u8>()), 0..3)).prop_map(|(mut b, edits)| {
        for (at, byte) in edits {
            if !b.is_empty() {
                let i = at % b.len();
                b[i] = byte;
            }
        }
        b
    });
    let truncated = (text.clone(), any::<usize>()).prop_map(|(b, at)| b[..at % (b.len() + 1)].to_vec());
    prop_oneof![text, mutated, truncated, vec(any::<u8>(), 0..40)]
}

proptest! {
    #![proptest_config(cases(4096))]

    #[test]
    fn utf8_validator_agrees_with_std_in_any_split(bytes in utf8ish(), cuts in vec(any::<usize>(), 0..6)) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let std_result = std::str::from_utf8(&bytes);

        let mut v = Utf8Validator::new();
        let mut start = 0;
        let mut failed_in: Option<(usize, usize)> = None;
        for &end in &cuts {
            if v.feed(&bytes[start..end]).is_err() {
                failed_in = Some((start, end));
                break;
            }
            start = end;
        }
        let ok = failed_in.is_none() && v.finish().is_ok();
        prop_assert_eq!(ok, std_result.is_ok(), "{:x?} cut at {:?}", bytes, cuts);
        prop_assert_eq!(weft_proto::utf8::validate(&bytes).is_ok(), std_result.is_ok());

        if let Err(err) = std_result {
            let first_bad = err.valid_up_to();
            match (err.error_len(), failed_in) {
                // Incomplete at the end: only `finish` can tell.
                (None, failed) => prop_assert_eq!(failed, None),
                // Fail fast: in the piece holding the byte that makes the text
                // invalid; never before the valid prefix ends, never later.
                (Some(n), Some((s, e))) => {
                    let decisive = (first_bad + n).min(bytes.len() - 1);
                    prop_assert!(e > first_bad, "failed in {}..{} before the error at {}", s, e, first_bad);
                    prop_assert!(s <= decisive, "failed in {}..{}, after byte {}", s, e, decisive);
                }
                (Some(_), None) => prop_assert!(false, "invalid bytes passed every feed"),
            }
        }
    }
}

#[test]
fn utf8_validator_fails_at_each_kind_of_error_as_early_as_possible() {
    // (input, index of the byte at which the error becomes certain)
    let cases: &[(&[u8], usize)] = &[
        (b"ab\xff", 2),
        (b"\xc0\xaf", 0),
        (b"\xe0\x80", 1),
        (b"\xed\xa0\x80", 1),
        (b"\xf4\x90", 1),
        (b"\xf0\x9f\x98\x41", 3),
        (b"\xe2\x82\x41", 2),
        (b"\x80", 0),
    ];
    for &(input, at) in cases {
        let mut v = Utf8Validator::new();
        for (i, b) in input.iter().enumerate() {
            let r = v.feed(std::slice::from_ref(b));
            assert_eq!(r.is_err(), i == at, "{input:x?} byte {i}");
            if r.is_err() {
                break;
            }
        }
    }
}

// ----- no input makes the connection panic -------------------------------------------------

/// Something almost like a frame: any opcode and bits, lengths that may lie.
/// Mostly well-formed so that the connection gets deep before it fails.
fn frameish() -> impl Strategy<Value = RawFrame> {
    let opcode = prop_oneof![12 => prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]), 1 => 0u8..16];
    let rsv = prop_oneof![12 => Just(0u8), 1 => 0u8..8];
    let fin = prop_oneof![3 => Just(true), 1 => Just(false)];
    let payload = prop_oneof![
        vec(any::<u8>(), 0..40),
        vec(any::<char>(), 0..20).prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
        (1000u16..5000, vec(any::<char>(), 0..5)).prop_map(|(code, c)| {
            let mut p = code.to_be_bytes().to_vec();
            p.extend(c.into_iter().collect::<String>().into_bytes());
            p
        }),
        vec(any::<u8>(), 100..300),
    ];
    let len_form = prop_oneof![
        12 => Just(LenForm::Shortest),
        1 => Just(LenForm::Long),
        1 => any::<u64>().prop_map(LenForm::Announce),
        1 => (0u64..400).prop_map(LenForm::Announce),
    ];
    (fin, rsv, opcode, any::<[u8; 4]>(), payload, len_form).prop_map(|(fin, rsv, opcode, key, payload, len_form)| {
        RawFrame {
            fin,
            rsv,
            opcode,
            mask: Some(key),
            payload,
            len_form,
        }
    })
}

/// A stream: frames (each with a flag to get its masking wrong for the
/// receiver's role), sometimes with garbage spliced in.
#[derive(Clone, Debug)]
struct Stream {
    frames: Vec<(RawFrame, bool)>,
    junk: Vec<u8>,
    junk_at: usize,
}

impl Stream {
    fn encode(&self, receiver: Role) -> Vec<u8> {
        let mut v = Vec::new();
        for (f, wrong) in &self.frames {
            let mut f = f.clone();
            if (receiver == Role::Client) != *wrong {
                f.mask = None;
            }
            v.extend(f.encode());
        }
        let at = self.junk_at % (v.len() + 1);
        v.splice(at..at, self.junk.iter().copied());
        v
    }
}

fn stream() -> impl Strategy<Value = Stream> {
    let wrong_mask = prop_oneof![20 => Just(false), 1 => Just(true)];
    let junk = prop_oneof![3 => Just(vec![]), 1 => vec(any::<u8>(), 0..400)];
    (vec((frameish(), wrong_mask), 0..16), junk, any::<usize>()).prop_map(|(frames, junk, junk_at)| Stream {
        frames,
        junk,
        junk_at,
    })
}

/// What the driver does between reads.
#[derive(Clone, Debug)]
enum Action {
    SendText,
    SendFragment(bool),
    Ping,
    Close,
    WritePart(usize),
    Release,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::SendText),
        any::<bool>().prop_map(Action::SendFragment),
        Just(Action::Ping),
        Just(Action::Close),
        (0usize..500).prop_map(Action::WritePart),
        Just(Action::Release),
    ]
}

fn config(variant: u8) -> Config {
    match variant % 4 {
        0 => Config::default(),
        1 => Config::default()
            .max_frame_size(100)
            .max_message_size(150)
            .max_fragments(3),
        2 => Config::default().deliver_fragments(true),
        _ => Config::default().deliver_fragments(true).max_message_size(64),
    }
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn no_input_makes_poll_event_panic(
        stream in stream(),
        chunks in vec(1usize..64, 1..5),
        actions in vec(proptest::option::of(action()), 0..8),
        server in any::<bool>(),
        variant in any::<u8>(),
        extension in any::<bool>(),
        eof in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let ext = extension.then(|| Box::new(XorExtension::default()) as Box<dyn weft_proto::Extension>);
        let mut conn = Connection::new(role, config(variant)).with_extension(ext);
        let input = stream.encode(role);
        let mut written = Vec::new();
        let mut at = 0;
        let mut sizes = chunks.iter().cycle();
        let mut acts = actions.iter().cycle();
        let mut failure = None;
        while at < input.len() && failure.is_none() {
            let n = (*sizes.next().unwrap()).min(input.len() - at);
            conn.receive_data(&input[at..at + n]);
            at += n;
            let (_, err) = poll_all(&mut conn);
            failure = err;
            // Whatever the driver does in between must not panic either.
            match acts.next().cloned().flatten() {
                Some(Action::SendText) => { let _ = conn.send_text("x"); }
                Some(Action::SendFragment(fin)) => { let _ = conn.send_fragment(DataKind::Binary, vec![1u8; 3], fin); }
                Some(Action::Ping) => { let _ = conn.send_ping(Bytes::from_static(b"p")); }
                Some(Action::Close) => { let _ = conn.close(Some(CloseFrame::new(1000, "bye"))); }
                Some(Action::WritePart(k)) => {
                    let mut slices = [IoSlice::new(&[]); 4];
                    let filled = conn.transmit_slices(&mut slices);
                    let mut left = k;
                    for s in &slices[..filled] {
                        let take = s.len().min(left);
                        written.extend_from_slice(&s[..take]);
                        left -= take;
                    }
                    conn.advance_transmit(k - left);
                }
                Some(Action::Release) => conn.release_buffers(),
                None => {}
            }
        }
        if failure.is_none() && eof {
            conn.receive_eof();
            failure = poll_all(&mut conn).1;
        }
        if let Some(e) = &failure {
            // Sticky.
            prop_assert_eq!(conn.poll_event(), Err(e.clone()));
            prop_assert_eq!(conn.state(), weft_proto::State::Failed);
        }
        // Whatever the connection wrote is a sequence of well-formed frames,
        // masked by role, with at most one close frame and nothing after it.
        written.extend_from_slice(&conn.take_transmit());
        let frames = parse_frames(&written);
        let closes = frames.iter().filter(|f| f.opcode == OP_CLOSE).count();
        prop_assert!(closes <= 1);
        if closes == 1 {
            let close_at = frames.iter().position(|f| f.opcode == OP_CLOSE).unwrap();
            // Only a pong for a ping that arrived while closing may follow.
            prop_assert!(frames[close_at + 1..].iter().all(|f| f.opcode == OP_PONG));
        }
        for f in &frames {
            prop_assert_eq!(f.mask.is_some(), role == Role::Client);
            prop_assert!(f.opcode <= 2 || (8..=10).contains(&f.opcode));
        }
        if failure.is_some() {
            prop_assert!(conn.should_close_transport());
        }
    }
}
