//! The client's opening handshake: `ClientHandshake::with_key`, then
//! `parse_response` on arbitrary bytes, fed as a growing buffer in steps whose
//! size comes from the input. Contract:
//! - the request is a valid upgrade request carrying the key;
//! - `Ok(None)` exactly while no blank line has arrived within the limit;
//! - success only for a 101 with `Upgrade: websocket`, `Connection: Upgrade`,
//!   one correct `Sec-WebSocket-Accept` (computed independently), and a
//!   subprotocol and extension that were offered; the head length is exactly
//!   up to the first blank line;
//! - a non-101 status is reported as such, with the status httparse reads.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use weft_fuzz::{expected_accept, has_token, head_end, header_values};
use weft_proto::deflate::PerMessageDeflate;
use weft_proto::{ClientExtension, ClientHandshake, ClientHandshakeError, ClientRequest, HandshakeLimits};

/// The key of RFC 6455 §1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const OFFERED: [&str; 2] = ["chat", "superchat"];

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
    let request = ClientRequest {
        host: "example.com".into(),
        target: "/chat".into(),
        origin: Some("http://example.com".into()),
        protocols: OFFERED.iter().map(|p| p.to_string()).collect(),
        extensions: vec![Arc::new(PerMessageDeflate::default()) as Arc<dyn ClientExtension>],
        headers: Vec::new(),
    };
    let (mut hs, req) = ClientHandshake::with_key(request, limits, KEY).expect("a valid request");
    assert_eq!(hs.key(), KEY);
    {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut headers);
        assert_eq!(r.parse(&req), Ok(httparse::Status::Complete(req.len())));
        assert_eq!(r.method, Some("GET"));
        assert_eq!(header_values(r.headers, "sec-websocket-key"), [KEY.as_bytes()]);
        assert_eq!(header_values(r.headers, "sec-websocket-version"), [b"13"]);
    }
    let accept = expected_accept(KEY.as_bytes());
    assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    let end_in_limit = head_end(&input[..input.len().min(max)]);
    let mut end = 0;
    loop {
        end = (end + step).min(input.len());
        let expected_end = end_in_limit.filter(|&e| e <= end);
        let result = hs.parse_response(&input[..end]);
        let Some(head_len) = expected_end else {
            match result {
                Ok(None) => assert!(end < max),
                Err(ClientHandshakeError::HeadTooLarge) => assert!(end >= max),
                other => panic!("no head yet at {end}, got {other:?}"),
            }
            if end == input.len() || result.is_err() {
                return;
            }
            continue;
        };
        // A whole head: read it independently.
        let head = &input[..head_len];
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut r = httparse::Response::new(&mut headers);
        let parsed = r.parse(head);
        match result {
            Ok(None) => panic!("head of {head_len} bytes complete, parse_response wants more"),
            Ok(Some((resp, n))) => {
                assert_eq!(n, head_len);
                assert!(matches!(parsed, Ok(httparse::Status::Complete(_))));
                assert_eq!(r.code, Some(101));
                assert!(has_token(header_values(r.headers, "upgrade"), "websocket"));
                assert!(has_token(header_values(r.headers, "connection"), "upgrade"));
                assert_eq!(header_values(r.headers, "sec-websocket-accept"), [accept.as_bytes()]);
                if let Some(p) = &resp.protocol {
                    assert!(OFFERED.contains(&p.as_str()), "unoffered protocol {p}");
                }
                assert_eq!(resp.extension.is_some(), resp.extensions_header.is_some());
                if let Some(e) = &resp.extension {
                    assert!(e.name().eq_ignore_ascii_case("permessage-deflate"));
                }
            }
            Err(ClientHandshakeError::Status { status, .. }) => {
                assert!(matches!(parsed, Ok(httparse::Status::Complete(_))));
                assert_eq!(r.code, Some(status));
                assert_ne!(status, 101);
            }
            Err(ClientHandshakeError::HeadTooLarge) => {
                assert_eq!(parsed, Err(httparse::Error::TooManyHeaders));
            }
            Err(ClientHandshakeError::Malformed(_)) => {
                assert!(
                    !matches!(parsed, Ok(httparse::Status::Complete(_))) || r.code == Some(101),
                    "a well-formed response refused as malformed: {parsed:?}"
                );
            }
            Err(ClientHandshakeError::AcceptMismatch) => {
                assert_eq!(r.code, Some(101));
                assert_ne!(header_values(r.headers, "sec-websocket-accept"), [accept.as_bytes()]);
            }
            Err(ClientHandshakeError::NotUpgrade) => {
                assert!(!has_token(header_values(r.headers, "upgrade"), "websocket"));
            }
            Err(ClientHandshakeError::ConnectionNotUpgrade) => {
                assert!(!has_token(header_values(r.headers, "connection"), "upgrade"));
            }
            Err(
                ClientHandshakeError::UnofferedProtocol(_)
                | ClientHandshakeError::UnofferedExtension(_)
                | ClientHandshakeError::ExtensionRefused(_),
            ) => assert_eq!(r.code, Some(101)),
            Err(other) => panic!("undocumented refusal {other:?}"),
        }
        return;
    }
});
