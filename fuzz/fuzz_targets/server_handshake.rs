//! The server's opening handshake on arbitrary bytes: `HeadScanner` (fed a
//! growing buffer in steps whose size comes from the input), `Request::parse`
//! and `UpgradeRequest::new`. Contract:
//! - the scanner finds exactly the first blank line within the size limit,
//!   and fails exactly when there is none within it;
//! - every refusal has a status in {400, 405, 426, 431} and a complete HTTP
//!   response with that status, the headers the status calls for and a body
//!   of the announced length;
//! - an accepted request really is a valid upgrade (RFC 6455 §4.2.1, checked
//!   independently), and `accept()` writes a 101 that httparse reads back
//!   whole, with the right `Sec-WebSocket-Accept` and only offered choices.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use weft_fuzz::{expected_accept, has_token, head_end, header_values, is_valid_key};
use weft_proto::deflate::PerMessageDeflate;
use weft_proto::{Accept, HandshakeError, HandshakeLimits, HeadScanner, Request, ServerExtension, UpgradeRequest};

fn check_refusal(e: &HandshakeError) {
    let status = e.status();
    assert!(matches!(status, 400 | 405 | 426 | 431), "status {status} for {e:?}");
    let resp = e.response();
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(&resp) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("refusal response does not parse: {other:?}"),
    };
    assert_eq!(r.code, Some(status));
    let body = &resp[n..];
    let len = header_values(r.headers, "content-length");
    assert_eq!(len.len(), 1);
    assert_eq!(
        std::str::from_utf8(len[0]).ok().and_then(|l| l.parse().ok()),
        Some(body.len())
    );
    assert!(body.ends_with(b"\n") && !body[..body.len() - 1].iter().any(|&b| b == b'\n' || b == b'\r'));
    assert!(has_token(header_values(r.headers, "connection"), "close"));
    match e {
        HandshakeError::MethodNotGet(_) => assert_eq!(header_values(r.headers, "allow"), [b"GET"]),
        HandshakeError::NotUpgrade => assert!(has_token(header_values(r.headers, "upgrade"), "websocket")),
        HandshakeError::UnsupportedVersion => {
            assert_eq!(header_values(r.headers, "sec-websocket-version"), [b"13"])
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let limits = if ctl & 1 != 0 {
        HandshakeLimits::default().max_head_size(300).max_headers(6)
    } else {
        HandshakeLimits::default()
    };
    let max = limits.max_head_size;
    let step = 1 + usize::from(ctl >> 1);
    // Where the head ends, if it ends within the limit.
    let end_in_limit = head_end(&input[..input.len().min(max)]);

    let mut scanner = HeadScanner::new(max);
    let mut end = 0;
    let head_len = loop {
        end = (end + step).min(input.len());
        let expected = end_in_limit.filter(|&e| e <= end);
        match scanner.scan(&input[..end]) {
            Ok(Some(n)) => {
                assert_eq!(Some(n), expected, "head end");
                break n;
            }
            Ok(None) => assert!(expected.is_none() && end < max, "scan gave None at {end}"),
            Err(_) => {
                assert!(expected.is_none() && end >= max, "HeadTooLarge at {end}");
                check_refusal(&HandshakeError::HeadTooLarge);
                return;
            }
        }
        if end == input.len() {
            return;
        }
    };
    let head = &input[..head_len];

    let req = match Request::parse(head, &limits) {
        Err(e) => return check_refusal(&e),
        Ok(r) => r,
    };
    assert!(req.headers.iter().count() <= limits.max_headers);
    let up = match UpgradeRequest::new(req.clone()) {
        Err(e) => {
            match &e {
                HandshakeError::MethodNotGet(m) => assert_ne!(m, "GET"),
                HandshakeError::Host => assert_ne!(req.headers.count("host"), 1),
                HandshakeError::InvalidKey => {
                    let keys: Vec<_> = req.headers.get_all("sec-websocket-key").collect();
                    assert!(keys.len() != 1 || !is_valid_key(keys[0]));
                }
                _ => {}
            }
            return check_refusal(&e);
        }
        Ok(u) => u,
    };

    // §4.2.1, independently.
    assert_eq!(req.method, "GET");
    assert!(req.version >= 1);
    assert_eq!(req.headers.count("host"), 1);
    assert!(has_token(req.headers.get_all("upgrade"), "websocket"));
    assert!(has_token(req.headers.get_all("connection"), "upgrade"));
    let versions: Vec<_> = req.headers.get_all("sec-websocket-version").collect();
    assert_eq!(versions, [b"13"]);
    let keys: Vec<_> = req.headers.get_all("sec-websocket-key").collect();
    assert_eq!(keys.len(), 1);
    assert!(is_valid_key(keys[0]));
    assert_eq!(up.key(), keys[0]);

    // Choose the client's first subprotocol and negotiate permessage-deflate
    // when offered.
    let chosen = up.protocols().first().cloned();
    let accept = Accept {
        protocol: chosen.clone(),
        extensions: vec![Arc::new(PerMessageDeflate::default()) as Arc<dyn ServerExtension>],
        headers: vec![
            ("X-Served-By".into(), "weft".into()),
            ("Bad\r\nHeader".into(), "x".into()),
        ],
    };
    let accepted = up.accept(&accept);
    let resp = &accepted.response;
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(resp) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, resp.len(), "bytes after the 101 head"),
        other => panic!("101 response does not parse: {other:?}"),
    }
    assert_eq!(r.code, Some(101));
    assert!(has_token(header_values(r.headers, "upgrade"), "websocket"));
    assert!(has_token(header_values(r.headers, "connection"), "upgrade"));
    let expected = expected_accept(keys[0]);
    assert_eq!(header_values(r.headers, "sec-websocket-accept"), [expected.as_bytes()]);
    assert_eq!(header_values(r.headers, "x-served-by"), [b"weft"]);
    assert!(header_values(r.headers, "bad").is_empty());
    // The protocol chosen was offered, and is the one announced.
    assert_eq!(accepted.protocol, chosen);
    let announced = header_values(r.headers, "sec-websocket-protocol");
    match &accepted.protocol {
        Some(p) => {
            assert!(up.protocols().contains(p));
            assert_eq!(announced, [p.as_bytes()]);
        }
        None => assert!(announced.is_empty()),
    }
    let ext = header_values(r.headers, "sec-websocket-extensions");
    match &accepted.extensions_header {
        Some(h) => {
            assert_eq!(ext, [h.as_bytes()]);
            assert!(accepted.extension.is_some());
            assert!(
                up.extensions()
                    .iter()
                    .any(|o| o.name.eq_ignore_ascii_case("permessage-deflate"))
            );
        }
        None => {
            assert!(ext.is_empty());
            assert!(accepted.extension.is_none());
        }
    }
});
