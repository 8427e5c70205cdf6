//! `Connection::send_raw_frame`: pre-encoded frames queued by reference.
#![allow(clippy::unwrap_used)]

use std::io::IoSlice;

use bytes::Bytes;
use weft_proto::frame::{encode_server_frame, encode_server_message};
use weft_proto::*;

fn pair() -> (Connection, Connection) {
    (
        Connection::new(Role::Server, Config::default()),
        Connection::new(Role::Client, Config::default()),
    )
}

fn deliver(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
    to.receive_data(&from.take_transmit());
    let mut evs = Vec::new();
    while let Some(ev) = to.poll_event().unwrap() {
        evs.push(ev);
    }
    evs
}

#[test]
fn one_frame_reaches_many_connections_without_a_copy() {
    // Small and large: the raw path never copies, whatever the size.
    for len in [5usize, 2000] {
        let text = "x".repeat(len);
        let frame = encode_server_frame(DataKind::Text, text.as_bytes()).unwrap();
        let mut servers: Vec<Connection> = (0..3)
            .map(|_| Connection::new(Role::Server, Config::default()))
            .collect();
        for s in &mut servers {
            s.send_raw_frame(frame.clone()).unwrap();
            assert_eq!(s.buffered_amount(), frame.len());
            let mut slices = [IoSlice::new(&[]); 4];
            let n = s.transmit_slices(&mut slices);
            assert_eq!(n, 1);
            assert_eq!(
                slices[0].as_ptr(),
                frame.as_ptr(),
                "the queued bytes are the frame's own"
            );
        }
        for mut s in servers {
            let mut c = Connection::new(Role::Client, Config::default());
            assert_eq!(
                deliver(&mut s, &mut c),
                vec![Event::Message(Message::Text(text.clone().into()))]
            );
        }
    }
}

#[test]
fn raw_frames_keep_their_place_among_ordinary_sends() {
    let (mut s, mut c) = pair();
    s.send_text("a").unwrap();
    s.send_raw_frame(encode_server_message(&Message::Binary(Bytes::from_static(b"b"))))
        .unwrap();
    s.send_ping("p").unwrap();
    s.send_raw_frame(encode_server_message(&"c".into())).unwrap();
    let evs = deliver(&mut s, &mut c);
    assert_eq!(
        evs,
        vec![
            Event::Message("a".into()),
            Event::Message(Message::Binary(Bytes::from_static(b"b"))),
            Event::Ping(Bytes::from_static(b"p")),
            Event::Message("c".into()),
        ]
    );
}

#[test]
fn client_role_is_refused() {
    let (_, mut c) = pair();
    let f = encode_server_frame(DataKind::Binary, b"x").unwrap();
    assert_eq!(c.send_raw_frame(f), Err(SendError::RawFrameRole));
    assert_eq!(c.buffered_amount(), 0);
}

#[test]
fn close_state_is_respected() {
    let (mut s, _) = pair();
    s.close(Some(CloseFrame::new(CloseCode::NORMAL, ""))).unwrap();
    let before = s.buffered_amount();
    let f = encode_server_frame(DataKind::Binary, b"x").unwrap();
    assert_eq!(s.send_raw_frame(f), Err(SendError::Closed));
    assert_eq!(s.buffered_amount(), before);
}

#[test]
fn a_fragmented_message_in_progress_is_not_interleaved() {
    let (mut s, mut c) = pair();
    s.send_fragment(DataKind::Text, "he", false).unwrap();
    let f = encode_server_frame(DataKind::Text, b"raw").unwrap();
    assert_eq!(s.send_raw_frame(f.clone()), Err(SendError::FragmentSequence));
    s.send_fragment(DataKind::Text, "llo", true).unwrap();
    s.send_raw_frame(f).unwrap();
    assert_eq!(
        deliver(&mut s, &mut c),
        vec![Event::Message("hello".into()), Event::Message("raw".into())]
    );
}

#[test]
fn malformed_raw_frames_are_refused() {
    let (mut s, _) = pair();
    let bad: [&[u8]; 7] = [
        b"",                              // no header
        b"\x81",                          // partial header
        b"\x81\x05Hel",                   // shorter than announced
        b"\x81\x02Hello",                 // longer than announced (two frames?)
        b"\x01\x05Hello",                 // FIN clear
        b"\x89\x00",                      // a control frame
        b"\x81\x85\x00\x00\x00\x00Hello", // masked
    ];
    for b in bad {
        assert_eq!(
            s.send_raw_frame(Bytes::from_static(b)),
            Err(SendError::InvalidRawFrame),
            "{b:?}"
        );
    }
    // RSV1 without a negotiated extension.
    assert_eq!(
        s.send_raw_frame(Bytes::from_static(b"\xc1\x01a")),
        Err(SendError::InvalidRawFrame)
    );
    assert_eq!(s.buffered_amount(), 0);
}

#[cfg(feature = "deflate")]
mod deflate {
    use std::sync::Arc;

    use weft_proto::deflate::PerMessageDeflate;

    use super::*;

    #[test]
    fn uncompressed_raw_frames_interleave_with_compressed_messages() {
        let pmd_c: Arc<dyn ClientExtension> = Arc::new(PerMessageDeflate::default());
        let req = ClientRequest {
            host: "example.com".into(),
            target: "/".into(),
            extensions: vec![pmd_c],
            ..ClientRequest::default()
        };
        let limits = HandshakeLimits::default();
        let (mut hs, bytes) = ClientHandshake::new(req, limits).unwrap();
        let up = UpgradeRequest::new(Request::parse(&bytes, &limits).unwrap()).unwrap();
        let pmd_s: Arc<dyn ServerExtension> = Arc::new(PerMessageDeflate::default());
        let accepted = up.accept(&Accept {
            extensions: vec![pmd_s],
            ..Accept::default()
        });
        let (resp, _) = hs.parse_response(&accepted.response).unwrap().unwrap();
        assert!(resp.extension.is_some(), "deflate negotiated");
        let mut s = Connection::new(Role::Server, Config::default()).with_extension(accepted.extension);
        let mut c = Connection::new(Role::Client, Config::default()).with_extension(resp.extension);

        // Compressed (context takeover), raw, compressed again: the windows
        // stay in step because the raw message is not part of the stream.
        let long = "the same words again and again ".repeat(20);
        s.send_text(&long).unwrap();
        let first = s.take_transmit();
        assert_eq!(first[0] & 0x40, 0x40, "RSV1: compressed");
        c.receive_data(&first);
        assert_eq!(c.poll_event().unwrap(), Some(Event::Message(long.clone().into())));

        let raw = encode_server_frame(DataKind::Text, long.as_bytes()).unwrap();
        s.send_raw_frame(raw.clone()).unwrap();
        s.send_text(&long).unwrap();
        let out = s.take_transmit();
        assert_eq!(&out[..raw.len()], &raw[..], "the raw frame goes out as it is");
        assert_eq!(out[raw.len()] & 0x40, 0x40, "the next message is compressed again");
        c.receive_data(&out);
        for _ in 0..2 {
            assert_eq!(c.poll_event().unwrap(), Some(Event::Message(long.clone().into())));
        }
        assert_eq!(c.poll_event().unwrap(), None);
    }
}
