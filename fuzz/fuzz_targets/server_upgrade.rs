//! A whole server session from raw network bytes, as `weft serve` runs one:
//! the request head found with `HeadScanner` (fed in chunks), parsed with
//! `Request::parse`, checked with `UpgradeRequest::new` and accepted offering
//! permessage-deflate, then a server `Connection` (with the extension when the
//! request asked for it) that gets the bytes after the head and echoes every
//! message, until the input ends.
//!
//! Input: 4 control bytes, then the bytes from the network.
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | bits 0-5: chunk size - 1 (the network delivers at most this much at once); bit 6: small limits; bit 7: end of file after the input |
//! | 1 | bits 0-1: head limit (16 KiB, 1 KiB, 256 B, 64 B); bits 2-3: header count limit (64, 8, 3, 1); bit 4: choose the first subprotocol offered |
//! | 2, 3 | unused, so that seeds stay valid if settings are added |
//!
//! Checked:
//! - the head length `HeadScanner` finds is the first blank line, wherever
//!   the chunks split it; a head over the limit is refused;
//! - a refused request gets the status its error documents, and a response
//!   naming it, with `Connection: close` (and `Sec-WebSocket-Version: 13` for
//!   426 version refusals);
//! - an accepted one gets a 101 with the accept key (computed here), the
//!   chosen subprotocol only if offered, and permessage-deflate exactly when
//!   an extension was installed;
//! - the server's frames are unmasked, well formed and in order: every echo
//!   decodes (through a client-side permessage-deflate built from the 101's
//!   header, when compressed) to the message received; at most one close
//!   frame is sent, last, and after a failure it carries the error's code.
#![no_main]

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_fuzz::{expected_accept, head_end, read_frame};
use weft_proto::deflate::PerMessageDeflate;
use weft_proto::extension::parse_extensions;
use weft_proto::frame::RSV1;
use weft_proto::{
    Accept, ClientExtension, Config, Connection, Event, Extension, HandshakeError, HandshakeLimits, HeadScanner,
    Message, Request, Role, State, UpgradeRequest,
};

/// Check a refusal's response against its error.
fn check_refusal(e: &HandshakeError) {
    let status = e.status();
    assert!(
        matches!(status, 400 | 405 | 426 | 431),
        "a parse or check error answered {status}: {e:?}"
    );
    let response = String::from_utf8(e.response()).expect("responses are UTF-8");
    assert!(response.starts_with(&format!("HTTP/1.1 {status} ")), "{response}");
    assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    let head = &response[..head_end(response.as_bytes()).expect("a complete head")];
    let body = &response[head.len()..];
    assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{response}");
    if matches!(e, HandshakeError::UnsupportedVersion) {
        assert!(head.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{response}");
    }
}

/// Everything the client side would check in the server's output.
struct Client {
    /// permessage-deflate as agreed in the 101, client side.
    deflate: Option<Box<dyn Extension>>,
    /// Output not yet parsed into frames.
    pending: Vec<u8>,
    /// Echoes due, in order.
    expected: VecDeque<Message>,
    /// A close frame was seen (its code, if any).
    closed: Option<Option<u16>>,
}

impl Client {
    fn take(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some((f, n)) = read_frame(&self.pending) {
            self.pending.drain(..n);
            assert!(!f.masked, "a server frame was masked");
            assert!(f.shortest, "a length not in its shortest form");
            assert!(self.closed.is_none(), "a frame after the close frame");
            assert!(f.fin, "the server sends whole messages here");
            match f.opcode {
                0x1 | 0x2 => {
                    let want = self.expected.pop_front().expect("an echo of nothing");
                    assert_eq!(f.opcode == 0x1, matches!(want, Message::Text(_)), "echo kind");
                    let got = if f.rsv == RSV1 {
                        let ext = self.deflate.as_mut().expect("RSV1 without permessage-deflate");
                        let mut out = BytesMut::new();
                        ext.decode(RSV1, &f.payload, true, &mut out, 1 << 24)
                            .unwrap_or_else(|e| panic!("the server's compressed echo did not inflate: {e}"));
                        out.to_vec()
                    } else {
                        assert_eq!(f.rsv, 0, "reserved bits on an echo");
                        f.payload
                    };
                    assert_eq!(&got[..], want.as_bytes(), "the echo differs from the message");
                }
                0xa => assert!(f.payload.len() <= 125 && f.rsv == 0, "a bad pong"),
                0x8 => {
                    assert!(f.payload.len() != 1 && f.payload.len() <= 125, "a bad close payload");
                    self.closed = Some((f.payload.len() >= 2).then(|| u16::from_be_bytes([f.payload[0], f.payload[1]])));
                }
                op => panic!("the server sent opcode {op:#x}"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [c0, c1, _, _, wire @ ..] = data else { return };
    let chunk = usize::from(c0 & 0x3f) + 1;
    let small = c0 & 0x40 != 0;
    let eof = c0 & 0x80 != 0;
    let limits = HandshakeLimits::default()
        .max_head_size([16 << 10, 1024, 256, 64][usize::from(c1 & 3)])
        .max_headers([64, 8, 3, 1][usize::from((c1 >> 2) & 3)]);

    // The head, as the network delivers it.
    let mut scanner = HeadScanner::new(limits.max_head_size);
    let mut buf = Vec::new();
    let mut chunks = wire.chunks(chunk);
    let head_len = loop {
        let Some(c) = chunks.next() else { return };
        buf.extend_from_slice(c);
        match scanner.scan(&buf) {
            Ok(Some(n)) => break n,
            Ok(None) => assert!(buf.len() < limits.max_head_size, "no verdict past the limit"),
            Err(_) => {
                assert!(buf.len() >= limits.max_head_size, "refused under the limit");
                let first = head_end(&buf).filter(|&n| n <= limits.max_head_size);
                assert_eq!(first, None, "a head within the limit was refused");
                check_refusal(&HandshakeError::HeadTooLarge);
                return;
            }
        }
    };
    assert_eq!(Some(head_len), head_end(&buf), "the head ends at the first blank line");
    assert!(head_len <= limits.max_head_size);

    let upgrade = match Request::parse(&buf[..head_len], &limits).and_then(UpgradeRequest::new) {
        Ok(u) => u,
        Err(e) => return check_refusal(&e),
    };
    let protocol = (c1 & 0x10 != 0).then(|| upgrade.protocols().first().cloned()).flatten();
    let accepted = upgrade.accept(&Accept {
        protocol: protocol.clone(),
        extensions: vec![Arc::new(PerMessageDeflate::default())],
        ..Accept::default()
    });
    let response = String::from_utf8(accepted.response.clone()).expect("the 101 is UTF-8");
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{response}");
    let accept_line = format!("\r\nSec-WebSocket-Accept: {}\r\n", expected_accept(upgrade.key()));
    assert!(response.contains(&accept_line), "{response}");
    assert_eq!(accepted.protocol, protocol, "a subprotocol the client offered is chosen as asked");
    let offered_deflate = upgrade
        .extensions()
        .iter()
        .any(|o| o.name.eq_ignore_ascii_case("permessage-deflate"));
    assert!(
        accepted.extension.is_none() || offered_deflate,
        "permessage-deflate agreed without an offer"
    );
    assert_eq!(accepted.extension.is_some(), accepted.extensions_header.is_some());
    let deflate = accepted.extensions_header.as_deref().map(|h| {
        assert!(response.contains(&format!("\r\nSec-WebSocket-Extensions: {h}\r\n")));
        let agreed = parse_extensions([h.as_bytes()]).expect("the server's answer parses");
        assert_eq!(agreed.len(), 1);
        ClientExtension::accept(&PerMessageDeflate::default(), &agreed[0])
            .unwrap_or_else(|e| panic!("a client refuses the server's answer {h}: {e}"))
    });

    // The WebSocket: the bytes after the head first, then the rest.
    let config = if small {
        Config::default().max_frame_size(512).max_message_size(2048).max_fragments(8)
    } else {
        Config::default().max_frame_size(64 << 10).max_message_size(256 << 10).max_fragments(256)
    };
    let mut conn = Connection::new(Role::Server, config).with_extension(accepted.extension);
    let mut client = Client {
        deflate,
        pending: Vec::new(),
        expected: VecDeque::new(),
        closed: None,
    };
    let mut input = vec![&buf[head_len..]];
    input.extend(chunks);
    let last = input.len() - 1;
    let mut failed = None;
    for (i, c) in input.into_iter().enumerate() {
        conn.receive_data(c);
        if eof && i == last {
            conn.receive_eof();
        }
        loop {
            match conn.poll_event() {
                Ok(Some(Event::Message(m))) => {
                    if conn.send(m.clone()).is_ok() {
                        client.expected.push_back(m);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(conn.poll_event(), Err(e.clone()), "errors are sticky");
                    assert_eq!(conn.state(), State::Failed);
                    failed = Some(e);
                    break;
                }
            }
        }
        let out = conn.take_transmit();
        client.take(&out);
        if failed.is_some() {
            break;
        }
    }
    assert!(client.pending.is_empty(), "the server's output ends inside a frame");
    assert!(client.expected.is_empty(), "{} echoes were not sent", client.expected.len());
    if let Some(e) = failed {
        let code = e.close_code().0;
        if code != 1006 {
            assert_eq!(client.closed, Some(Some(code)), "the close frame after {e:?}");
        }
        assert!(conn.should_close_transport());
    }
});
