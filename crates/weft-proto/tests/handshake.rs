//! The opening handshake (RFC 6455 §4), both roles, and the extension hook
//! (§9) proven end to end with a toy extension.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use base64::Engine;
use common::*;
use weft_proto::frame::{RSV1, RSV2, RSV3};
use weft_proto::{
    Accept, ClientExtension, ClientHandshake, ClientHandshakeError, ClientRequest, Config, Connection, DataKind, Error,
    Event, HandshakeError, HandshakeLimits, HeadScanner, Message, ProtocolError, Request, Response, Role,
    ServerExtension, UpgradeRequest, accept_key,
};

const KEY_B64: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT_B64: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The opening handshake of RFC 6455 §1.3.
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

const BASE_HEADERS: &[(&str, &str)] = &[
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY_B64),
    ("Sec-WebSocket-Version", "13"),
];

/// A request head from a request line and the base headers, with `drop`
/// removed and `add` appended.
fn head(request_line: &str, drop: &[&str], add: &[(&str, &str)]) -> String {
    let mut s = format!("{request_line}\r\n");
    for (n, v) in BASE_HEADERS.iter().filter(|(n, _)| !drop.contains(n)).chain(add) {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

fn get(drop: &[&str], add: &[(&str, &str)]) -> String {
    head("GET /chat HTTP/1.1", drop, add)
}

/// What a server does with a complete head: scan, parse, check.
fn upgrade(raw: &[u8]) -> Result<UpgradeRequest, HandshakeError> {
    let limits = HandshakeLimits::default();
    let n = match HeadScanner::new(limits.max_head_size).scan(raw) {
        Ok(Some(n)) => n,
        Ok(None) => panic!("incomplete head"),
        Err(_) => return Err(HandshakeError::HeadTooLarge),
    };
    UpgradeRequest::new(Request::parse(&raw[..n], &limits)?)
}

/// Parse an HTTP response: status, headers (lower-cased names), body.
fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(raw).unwrap() {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("partial response"),
    };
    let headers = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8(h.value.to_vec()).unwrap(),
            )
        })
        .collect();
    (r.code.unwrap(), headers, raw[n..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Expect a refusal with `status`, and check that its response is a complete,
/// well-formed HTTP answer.
fn refused(raw: &str, status: u16) -> HandshakeError {
    let err = upgrade(raw.as_bytes()).expect_err("the request must be refused");
    assert_eq!(err.status(), status, "{err:?} for\n{raw}");
    let resp = err.response();
    let (code, headers, body) = parse_response(&resp);
    assert_eq!(code, status);
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(
        header(&headers, "content-length").unwrap().parse::<usize>().unwrap(),
        body.len()
    );
    assert!(body.ends_with(b"\n"));
    err
}

// ----- server side ---------------------------------------------------------------

#[test]
fn s1_3_accept_key_vector() {
    assert_eq!(accept_key(KEY_B64.as_bytes()), ACCEPT_B64);
}

#[test]
fn s4_2_1_full_valid_request_and_s4_2_2_response() {
    let up = upgrade(RFC_REQUEST.as_bytes()).unwrap();
    assert_eq!(up.path(), "/chat");
    assert_eq!(up.query(), None);
    assert_eq!(up.host(), Some("server.example.com"));
    assert_eq!(up.origin(), Some("http://example.com"));
    assert_eq!(up.protocols(), &["chat".to_owned(), "superchat".to_owned()]);
    assert!(up.extensions().is_empty());
    assert_eq!(up.key(), KEY_B64.as_bytes());
    assert_eq!(up.request().method, "GET");

    let accepted = up.accept(&Accept {
        protocol: Some("chat".into()),
        ..Accept::default()
    });
    // The response of §1.3, byte for byte.
    assert_eq!(
        String::from_utf8(accepted.response).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: chat\r\n\
         \r\n"
    );
    assert_eq!(accepted.protocol.as_deref(), Some("chat"));
    assert!(accepted.extension.is_none());
    assert!(accepted.extensions_header.is_none());
}

#[test]
fn s4_2_1_header_names_and_tokens_are_case_insensitive() {
    let raw = "GET /a/b?x=1&y=2 HTTP/1.1\r\n\
               hOST: h\r\n\
               upgrade: WebSocket\r\n\
               connection: keep-alive, UPGRADE\r\n\
               sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
               SEC-WEBSOCKET-VERSION: 13\r\n\
               \r\n";
    let up = upgrade(raw.as_bytes()).unwrap();
    assert_eq!((up.path(), up.query()), ("/a/b", Some("x=1&y=2")));
    // Connection split over two lines.
    let raw = get(
        &["Connection"],
        &[("Connection", "keep-alive"), ("Connection", "Upgrade")],
    );
    upgrade(raw.as_bytes()).unwrap();
}

#[test]
fn s4_2_1_method_must_be_get_405() {
    let err = refused(&head("POST /chat HTTP/1.1", &[], &[]), 405);
    assert_eq!(err, HandshakeError::MethodNotGet("POST".into()));
    let (_, headers, _) = parse_response(&err.response());
    assert_eq!(header(&headers, "allow"), Some("GET"));
}

#[test]
fn s4_2_1_http_1_0_is_400() {
    let err = refused(&head("GET /chat HTTP/1.0", &[], &[]), 400);
    assert_eq!(err, HandshakeError::HttpVersion);
}

#[test]
fn s4_2_1_missing_or_repeated_host_is_400() {
    assert_eq!(refused(&get(&["Host"], &[]), 400), HandshakeError::Host);
    assert_eq!(refused(&get(&[], &[("Host", "other")]), 400), HandshakeError::Host);
}

#[test]
fn s4_2_1_missing_upgrade_is_426() {
    for raw in [get(&["Upgrade"], &[]), get(&["Upgrade"], &[("Upgrade", "h2c")])] {
        let err = refused(&raw, 426);
        assert_eq!(err, HandshakeError::NotUpgrade);
        let (_, headers, _) = parse_response(&err.response());
        assert_eq!(header(&headers, "upgrade"), Some("websocket"));
    }
}

#[test]
fn s4_2_1_connection_without_upgrade_is_400() {
    for raw in [
        get(&["Connection"], &[("Connection", "keep-alive")]),
        get(&["Connection"], &[]),
    ] {
        assert_eq!(refused(&raw, 400), HandshakeError::ConnectionNotUpgrade);
    }
}

#[test]
fn s4_4_unsupported_or_missing_version_is_426_with_version_13() {
    for raw in [
        get(&["Sec-WebSocket-Version"], &[("Sec-WebSocket-Version", "14")]),
        get(&["Sec-WebSocket-Version"], &[("Sec-WebSocket-Version", "8")]),
        get(&["Sec-WebSocket-Version"], &[]),
        get(&[], &[("Sec-WebSocket-Version", "13")]),
    ] {
        let err = refused(&raw, 426);
        assert_eq!(err, HandshakeError::UnsupportedVersion);
        let (_, headers, _) = parse_response(&err.response());
        assert_eq!(header(&headers, "sec-websocket-version"), Some("13"));
    }
}

#[test]
fn s4_2_1_key_must_be_base64_of_16_bytes_400() {
    let ten = base64::engine::general_purpose::STANDARD.encode([7u8; 10]);
    let seventeen = base64::engine::general_purpose::STANDARD.encode([7u8; 17]);
    for key in [
        ten.as_str(),
        seventeen.as_str(),
        "not base64!!",
        "dGhlIHNhbXBsZSBub25jZQ",
        "",
    ] {
        let raw = get(&["Sec-WebSocket-Key"], &[("Sec-WebSocket-Key", key)]);
        assert_eq!(refused(&raw, 400), HandshakeError::InvalidKey, "key {key:?}");
    }
    assert_eq!(
        refused(&get(&["Sec-WebSocket-Key"], &[]), 400),
        HandshakeError::InvalidKey
    );
    let twice = get(&[], &[("Sec-WebSocket-Key", KEY_B64)]);
    assert_eq!(refused(&twice, 400), HandshakeError::InvalidKey);
}

#[test]
fn s4_2_1_malformed_protocol_or_extension_headers_are_400() {
    let raw = get(&[], &[("Sec-WebSocket-Protocol", "chat, bad proto")]);
    assert!(matches!(refused(&raw, 400), HandshakeError::InvalidHeader(_)));
    let raw = get(&[], &[("Sec-WebSocket-Extensions", "a; b=\"x y\"")]);
    assert!(matches!(refused(&raw, 400), HandshakeError::InvalidHeader(_)));
}

#[test]
fn malformed_http_is_400() {
    let err = refused("GET /chat HTTP/1.1\r\nHost server\r\n\r\n", 400);
    assert!(matches!(err, HandshakeError::Malformed(_)));
}

#[test]
fn too_many_headers_is_431() {
    let extra: Vec<(String, String)> = (0..64).map(|i| (format!("X-Extra-{i}"), "v".to_owned())).collect();
    let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let raw = get(&[], &extra);
    assert_eq!(refused(&raw, 431), HandshakeError::HeadTooLarge);
    // 64 lines in all is still fine.
    let raw = get(&[], &extra[..64 - BASE_HEADERS.len()]);
    upgrade(raw.as_bytes()).unwrap();
}

#[test]
fn head_over_the_size_limit_is_431() {
    let limits = HandshakeLimits::default().max_head_size(512);
    let big = get(&[], &[("X-Padding", "p".repeat(600).as_str())]);
    assert!(big.len() > 512);
    // The scanner gives up at the limit, without the head being complete...
    assert!(HeadScanner::new(512).scan(big.as_bytes()).is_err());
    // ...and before the terminator has arrived.
    assert!(HeadScanner::new(512).scan(&big.as_bytes()[..513]).is_err());
    // Request::parse enforces the same limit.
    assert_eq!(
        Request::parse(big.as_bytes(), &limits),
        Err(HandshakeError::HeadTooLarge)
    );
    assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
    let (code, ..) = parse_response(&HandshakeError::HeadTooLarge.response());
    assert_eq!(code, 431);

    // A head of exactly the limit is accepted by both.
    let pad = 512 - get(&[], &[("X-Padding", "")]).len();
    let exact = get(&[], &[("X-Padding", "p".repeat(pad).as_str())]);
    assert_eq!(exact.len(), 512);
    assert_eq!(HeadScanner::new(512).scan(exact.as_bytes()), Ok(Some(512)));
    Request::parse(exact.as_bytes(), &limits).unwrap();
}

#[test]
fn rejected_by_the_application() {
    let err = HandshakeError::reject(403, "origin not allowed\r\nX-Injected: 1");
    let (code, headers, body) = parse_response(&err.response());
    assert_eq!(code, 403);
    assert_eq!(header(&headers, "x-injected"), None);
    assert_eq!(body, b"origin not allowed  X-Injected: 1\n");
}

// ----- HeadScanner -------------------------------------------------------------------

#[test]
fn head_scanner_one_byte_at_a_time() {
    let raw = format!("{RFC_REQUEST}\u{1}\u{2}");
    let mut scanner = HeadScanner::new(16 * 1024);
    let mut found = None;
    for end in 1..=raw.len() {
        match scanner.scan(&raw.as_bytes()[..end]).unwrap() {
            None => assert!(end < RFC_REQUEST.len(), "head not found at {end}"),
            Some(n) => {
                assert_eq!(end, RFC_REQUEST.len(), "found as soon as the blank line is complete");
                found = Some(n);
                break;
            }
        }
    }
    assert_eq!(found, Some(RFC_REQUEST.len()));
}

#[test]
fn head_scanner_any_split_and_bytes_after_the_head() {
    let raw = format!("{RFC_REQUEST}GET /next");
    for split in 0..raw.len() {
        let mut scanner = HeadScanner::new(16 * 1024);
        let first = scanner.scan(&raw.as_bytes()[..split]).unwrap();
        let n = first.or_else(|| scanner.scan(raw.as_bytes()).unwrap());
        assert_eq!(n, Some(RFC_REQUEST.len()), "split {split}");
    }
    // A bare LF LF or CR CR is not the end of a head.
    assert_eq!(HeadScanner::new(1024).scan(b"GET / HTTP/1.1\n\nHost: x\r\r"), Ok(None));
}

#[test]
fn head_scanner_looks_at_each_byte_once() {
    // The scanner only looks at what is new (and the three bytes before it,
    // for a terminator split across reads). Proof: bytes it has already
    // scanned are not looked at again even if they change.
    let mut scanner = HeadScanner::new(1024);
    let mut buf = b"GET / HTTP/1.1\r\nHost: xxxxxxxx".to_vec();
    assert_eq!(scanner.scan(&buf), Ok(None));
    buf[16..20].copy_from_slice(b"\r\n\r\n"); // behind the scanner's position
    buf.extend_from_slice(b"yy");
    assert_eq!(scanner.scan(&buf), Ok(None), "already scanned bytes are not rescanned");
    buf.extend_from_slice(b"\r\n\r\n");
    assert_eq!(scanner.scan(&buf), Ok(Some(buf.len())));

    // And it is fast when fed a byte at a time: 1 MiB without a terminator
    // takes a moment, where rescanning would take about 5e11 steps.
    let mut scanner = HeadScanner::new(2 << 20);
    let big = vec![b'a'; 1 << 20];
    let start = std::time::Instant::now();
    for end in 1..=big.len() {
        assert_eq!(scanner.scan(&big[..end]), Ok(None));
    }
    assert!(start.elapsed().as_secs() < 20);
}

// ----- leftover bytes -----------------------------------------------------------------

#[test]
fn bytes_after_the_request_head_go_to_the_connection() {
    // The head, a whole frame and half of the next in one read.
    let second = RawFrame::text("second").encode();
    let mut raw = RFC_REQUEST.as_bytes().to_vec();
    raw.extend_from_slice(&RawFrame::text("first").encode());
    raw.extend_from_slice(&second[..4]);
    let limits = HandshakeLimits::default();
    let n = HeadScanner::new(limits.max_head_size).scan(&raw).unwrap().unwrap();
    assert_eq!(n, RFC_REQUEST.len());
    UpgradeRequest::new(Request::parse(&raw[..n], &limits).unwrap()).unwrap();
    let mut conn = Connection::new(Role::Server, Config::default());
    conn.receive_data(&raw[n..]);
    assert_eq!(poll_all(&mut conn), (vec![Event::Message("first".into())], None));
    conn.receive_data(&second[4..]);
    assert_eq!(poll_all(&mut conn), (vec![Event::Message("second".into())], None));
}

#[test]
fn bytes_after_the_response_head_go_to_the_connection() {
    let (mut hs, request) = ClientHandshake::new(for_host("example.com"), HandshakeLimits::default()).unwrap();
    let up = upgrade(&request).unwrap();
    let mut raw = up.accept(&Accept::default()).response;
    let head_len = raw.len();
    raw.extend_from_slice(&RawFrame::text("hi").unmasked().encode());
    // Fed a byte at a time, the head is found exactly when it is complete.
    let mut found = None;
    for end in 1..=raw.len() {
        if let Some((_, n)) = hs.parse_response(&raw[..end]).unwrap() {
            assert_eq!(end, head_len);
            found = Some(n);
            break;
        }
    }
    let n = found.unwrap();
    assert_eq!(n, head_len);
    let mut conn = Connection::new(Role::Client, Config::default());
    conn.receive_data(&raw[n..]);
    assert_eq!(poll_all(&mut conn), (vec![Event::Message("hi".into())], None));
}

// ----- subprotocols ----------------------------------------------------------------------

#[test]
fn s4_2_2_only_an_offered_subprotocol_is_echoed() {
    let up = upgrade(RFC_REQUEST.as_bytes()).unwrap();
    let pick = |p: Option<&str>| {
        up.accept(&Accept {
            protocol: p.map(str::to_owned),
            ..Accept::default()
        })
    };
    let a = pick(Some("superchat"));
    assert_eq!(a.protocol.as_deref(), Some("superchat"));
    let (_, headers, _) = parse_response(&a.response);
    assert_eq!(header(&headers, "sec-websocket-protocol"), Some("superchat"));

    for choice in [Some("other"), Some("Chat"), None] {
        let a = pick(choice);
        assert_eq!(a.protocol, None, "{choice:?}");
        let (_, headers, _) = parse_response(&a.response);
        assert_eq!(header(&headers, "sec-websocket-protocol"), None);
    }

    // No offer: nothing is echoed.
    let up = upgrade(get(&[], &[]).as_bytes()).unwrap();
    assert!(up.protocols().is_empty());
    let a = up.accept(&Accept {
        protocol: Some("chat".into()),
        ..Accept::default()
    });
    assert_eq!(a.protocol, None);
}

#[test]
fn accept_adds_extra_headers_but_not_injected_lines() {
    let up = upgrade(RFC_REQUEST.as_bytes()).unwrap();
    let a = up.accept(&Accept {
        headers: vec![
            ("X-Server".into(), "weft".into()),
            ("X-Evil".into(), "a\r\nSet-Cookie: x".into()),
        ],
        ..Accept::default()
    });
    let (code, headers, _) = parse_response(&a.response);
    assert_eq!(code, 101);
    assert_eq!(header(&headers, "x-server"), Some("weft"));
    assert_eq!(header(&headers, "x-evil"), None);
    assert_eq!(header(&headers, "set-cookie"), None);
}

// ----- client side -----------------------------------------------------------------------

/// A request for `host` with nothing else set.
fn for_host(host: &str) -> ClientRequest {
    ClientRequest {
        host: host.into(),
        ..ClientRequest::default()
    }
}

fn client_with_key(request: ClientRequest) -> (ClientHandshake, Vec<u8>) {
    ClientHandshake::with_key(request, HandshakeLimits::default(), KEY_B64).unwrap()
}

#[test]
fn s4_1_client_request() {
    let request = ClientRequest {
        host: "example.com:8080".into(),
        target: "/chat?room=1&x=%20".into(),
        origin: Some("https://example.com".into()),
        protocols: vec!["chat".into(), "v2.chat".into()],
        headers: vec![("Authorization".into(), "Bearer abc".into())],
        ..ClientRequest::default()
    };
    let (hs, bytes) = client_with_key(request);
    assert_eq!(hs.key(), KEY_B64);
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        "GET /chat?room=1&x=%20 HTTP/1.1\r\n\
         Host: example.com:8080\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Origin: https://example.com\r\n\
         Sec-WebSocket-Protocol: chat, v2.chat\r\n\
         Authorization: Bearer abc\r\n\
         \r\n"
    );
    // And the server reads back what was asked.
    let up = upgrade(&bytes).unwrap();
    assert_eq!(up.host(), Some("example.com:8080"));
    assert_eq!((up.path(), up.query()), ("/chat", Some("room=1&x=%20")));
    assert_eq!(up.origin(), Some("https://example.com"));
    assert_eq!(up.protocols(), &["chat".to_owned(), "v2.chat".to_owned()]);
    assert_eq!(up.request().headers.get_str("authorization"), Some("Bearer abc"));

    // An empty target is "/"; no Origin or protocol headers unless asked.
    let (_, bytes) = client_with_key(for_host("[::1]:9000"));
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("GET / HTTP/1.1\r\nHost: [::1]:9000\r\n"), "{text}");
    assert!(!text.contains("Origin") && !text.contains("Protocol") && !text.contains("Extensions"));
}

#[test]
fn s4_1_client_key_is_fresh_base64_of_16_bytes() {
    let mut keys = Vec::new();
    for _ in 0..20 {
        let (hs, bytes) = ClientHandshake::new(for_host("h"), HandshakeLimits::default()).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(hs.key()).unwrap();
        assert_eq!(decoded.len(), 16);
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains(&format!("Sec-WebSocket-Key: {}\r\n", hs.key()))
        );
        keys.push(hs.key().to_owned());
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 20);
}

#[test]
fn client_request_fields_that_would_split_lines_are_refused() {
    let bad = [
        ClientRequest {
            headers: vec![("X-A".into(), "v\r\nX-Injected: 1".into())],
            ..for_host("h")
        },
        ClientRequest {
            headers: vec![("Bad Name".into(), "v".into())],
            ..for_host("h")
        },
        ClientRequest {
            target: "/a b".into(),
            ..for_host("h")
        },
        for_host("h\r\nX: y"),
        ClientRequest {
            origin: Some("o\n".into()),
            ..for_host("h")
        },
        ClientRequest {
            protocols: vec!["chat, other".into()],
            ..for_host("h")
        },
        ClientRequest {
            protocols: vec![String::new()],
            ..for_host("h")
        },
    ];
    for r in bad {
        let err = ClientHandshake::with_key(r.clone(), HandshakeLimits::default(), KEY_B64).unwrap_err();
        assert!(matches!(err, ClientHandshakeError::InvalidRequest(_)), "{r:?}: {err:?}");
    }
}

/// A 101 response for the §1.3 key with these extra lines.
fn response_101(extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT_B64}\r\n{extra}\r\n"
    )
}

fn client_parse(request: ClientRequest, response: &str) -> Result<Response, ClientHandshakeError> {
    let (mut hs, _) = client_with_key(request);
    hs.parse_response(response.as_bytes())
        .map(|r| r.expect("complete response").0)
}

fn chat_request() -> ClientRequest {
    ClientRequest {
        protocols: vec!["chat".into(), "superchat".into()],
        ..for_host("server.example.com")
    }
}

#[test]
fn s4_1_client_accepts_a_valid_response() {
    let r = client_parse(chat_request(), &response_101("")).unwrap();
    assert_eq!(r.protocol, None);
    assert!(r.extension.is_none());
    let r = client_parse(chat_request(), &response_101("Sec-WebSocket-Protocol: superchat\r\n")).unwrap();
    assert_eq!(r.protocol.as_deref(), Some("superchat"));
    // Tokens are matched case-insensitively; the accept value is trimmed.
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n\
         sec-websocket-accept:   {ACCEPT_B64}  \r\n\r\n"
    );
    client_parse(chat_request(), &resp).unwrap();
}

#[test]
fn s4_1_client_rejects_non_101() {
    let resp = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        client_parse(chat_request(), resp).unwrap_err(),
        ClientHandshakeError::Status {
            status: 403,
            reason: "Forbidden".into()
        }
    );
    let resp = "HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert!(matches!(
        client_parse(chat_request(), resp).unwrap_err(),
        ClientHandshakeError::Status { status: 200, .. }
    ));
}

#[test]
fn s4_1_client_rejects_wrong_or_missing_accept() {
    let wrong = response_101("").replace(ACCEPT_B64, &accept_key(b"another key"));
    assert_eq!(
        client_parse(chat_request(), &wrong).unwrap_err(),
        ClientHandshakeError::AcceptMismatch
    );
    let missing = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(
        client_parse(chat_request(), missing).unwrap_err(),
        ClientHandshakeError::AcceptMismatch
    );
    let twice = response_101(&format!("Sec-WebSocket-Accept: {ACCEPT_B64}\r\n"));
    assert_eq!(
        client_parse(chat_request(), &twice).unwrap_err(),
        ClientHandshakeError::AcceptMismatch
    );
    // The accept of the key itself (not of its base64 decoding).
    let decoded = base64::engine::general_purpose::STANDARD.decode(KEY_B64).unwrap();
    let of_decoded = response_101("").replace(ACCEPT_B64, &accept_key(&decoded));
    assert_eq!(
        client_parse(chat_request(), &of_decoded).unwrap_err(),
        ClientHandshakeError::AcceptMismatch
    );
}

#[test]
fn s4_1_client_rejects_missing_upgrade_or_connection() {
    let no_upgrade = response_101("").replace("Upgrade: websocket\r\n", "");
    assert_eq!(
        client_parse(chat_request(), &no_upgrade).unwrap_err(),
        ClientHandshakeError::NotUpgrade
    );
    let no_connection = response_101("").replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n");
    assert_eq!(
        client_parse(chat_request(), &no_connection).unwrap_err(),
        ClientHandshakeError::ConnectionNotUpgrade
    );
}

#[test]
fn s4_1_client_rejects_unoffered_protocol() {
    for extra in [
        "Sec-WebSocket-Protocol: other\r\n",
        "Sec-WebSocket-Protocol: chat, superchat\r\n",
        "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: superchat\r\n",
    ] {
        assert!(
            matches!(
                client_parse(chat_request(), &response_101(extra)).unwrap_err(),
                ClientHandshakeError::UnofferedProtocol(_)
            ),
            "{extra}"
        );
    }
    // Nothing offered, something chosen.
    let err = client_parse(for_host("h"), &response_101("Sec-WebSocket-Protocol: chat\r\n"));
    assert!(matches!(err.unwrap_err(), ClientHandshakeError::UnofferedProtocol(_)));
}

#[test]
fn s4_1_client_rejects_unoffered_extension() {
    let err = client_parse(
        chat_request(),
        &response_101("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
    );
    assert_eq!(
        err.unwrap_err(),
        ClientHandshakeError::UnofferedExtension("permessage-deflate".into())
    );
    // Offered one, answered another.
    let request = ClientRequest {
        extensions: vec![Arc::new(XorClient)],
        ..chat_request()
    };
    let err = client_parse(request.clone(), &response_101("Sec-WebSocket-Extensions: x-other\r\n"));
    assert_eq!(
        err.unwrap_err(),
        ClientHandshakeError::UnofferedExtension("x-other".into())
    );
    // The offered one twice.
    let err = client_parse(
        request.clone(),
        &response_101(&format!("Sec-WebSocket-Extensions: {XOR_NAME}, {XOR_NAME}\r\n")),
    );
    assert!(matches!(err.unwrap_err(), ClientHandshakeError::UnofferedExtension(_)));
    // Parameters the client's extension refuses.
    let err = client_parse(
        request,
        &response_101(&format!("Sec-WebSocket-Extensions: {XOR_NAME}; bits=3\r\n")),
    );
    assert!(matches!(err.unwrap_err(), ClientHandshakeError::ExtensionRefused(_)));
}

#[test]
fn client_response_head_too_large() {
    let limits = HandshakeLimits::default().max_head_size(256);
    let (mut hs, _) = ClientHandshake::with_key(for_host("h"), limits, KEY_B64).unwrap();
    let resp = response_101(&format!("X-Pad: {}\r\n", "p".repeat(300)));
    assert_eq!(
        hs.parse_response(resp.as_bytes()).unwrap_err(),
        ClientHandshakeError::HeadTooLarge
    );
    // Incomplete and below the limit: wait for more.
    let (mut hs, _) = ClientHandshake::with_key(for_host("h"), limits, KEY_B64).unwrap();
    assert!(hs.parse_response(b"HTTP/1.1 101 Switching").unwrap().is_none());
}

// ----- the extension hook, end to end ----------------------------------------------------

/// Client and server connections after a real handshake offering and
/// accepting the toy extension.
fn negotiated(config: Config) -> (Connection, Connection) {
    let request = ClientRequest {
        extensions: vec![Arc::new(XorClient) as Arc<dyn ClientExtension>],
        ..for_host("example.com")
    };
    let (mut hs, request) = ClientHandshake::new(request, HandshakeLimits::default()).unwrap();
    let text = String::from_utf8(request.clone()).unwrap();
    assert!(
        text.contains(&format!("Sec-WebSocket-Extensions: {XOR_NAME}\r\n")),
        "{text}"
    );

    let up = upgrade(&request).unwrap();
    assert_eq!(up.extensions().len(), 1);
    assert_eq!(up.extensions()[0].name, XOR_NAME);
    let accepted = up.accept(&Accept {
        extensions: vec![Arc::new(XorServer) as Arc<dyn ServerExtension>],
        ..Accept::default()
    });
    assert_eq!(accepted.extensions_header.as_deref(), Some(XOR_NAME));
    let server_ext = accepted.extension.expect("the server accepted the extension");

    let (response, n) = hs.parse_response(&accepted.response).unwrap().unwrap();
    assert_eq!(n, accepted.response.len());
    assert_eq!(response.extensions_header.as_deref(), Some(XOR_NAME));
    let client_ext = response.extension.expect("the client accepted the answer");
    assert_eq!(client_ext.name(), XOR_NAME);

    (
        Connection::new(Role::Client, config.clone()).with_extension(Some(client_ext)),
        Connection::new(Role::Server, config).with_extension(Some(server_ext)),
    )
}

#[test]
fn s9_extension_negotiated_and_applied_both_ways() {
    let (mut c, mut s) = negotiated(Config::default());
    assert_eq!(s.extension().map(|e| e.name()), Some(XOR_NAME));

    c.send_text("hello").unwrap();
    let out = c.take_transmit();
    let frames = parse_frames(&out);
    assert_eq!(frames[0].rsv, RSV1, "the transformed frame carries RSV1");
    assert_eq!(frames[0].payload, xor(b"hello"), "the payload on the wire is encoded");
    assert_eq!(feed_ok(&mut s, &out), vec![Event::Message("hello".into())]);

    s.send_binary(vec![1u8, 2, 3]).unwrap();
    let out = s.take_transmit();
    let frames = parse_frames(&out);
    assert_eq!((frames[0].rsv, &frames[0].payload[..]), (RSV1, &xor(&[1, 2, 3])[..]));
    assert_eq!(
        feed_ok(&mut c, &out),
        vec![Event::Message(Message::Binary(vec![1u8, 2, 3].into()))]
    );

    // An untransformed message (the toy leaves empty first pieces alone).
    c.send_text("").unwrap();
    let out = c.take_transmit();
    assert_eq!(parse_frames(&out)[0].rsv, 0);
    assert_eq!(feed_ok(&mut s, &out), vec![Event::Message("".into())]);

    // Control frames are never transformed.
    c.send_ping(&b"ping"[..]).unwrap();
    let out = c.take_transmit();
    assert_eq!(
        (parse_frames(&out)[0].rsv, &parse_frames(&out)[0].payload[..]),
        (0, &b"ping"[..])
    );
    assert_eq!(feed_ok(&mut s, &out), vec![Event::Ping(b"ping".to_vec().into())]);
}

#[test]
fn s9_extension_on_fragmented_messages() {
    let (mut c, mut s) = negotiated(Config::default());
    c.send_fragment(DataKind::Text, "κό", false).unwrap();
    c.send_ping(&b"p"[..]).unwrap();
    c.send_fragment(DataKind::Text, "σμε", true).unwrap();
    let out = c.take_transmit();
    let frames = parse_frames(&out);
    // RSV1 on the first frame of the message only.
    assert_eq!(
        frames.iter().map(|f| (f.opcode, f.rsv)).collect::<Vec<_>>(),
        vec![(OP_TEXT, RSV1), (OP_PING, 0), (OP_CONT, 0)]
    );
    assert_eq!(
        feed_ok(&mut s, &out),
        vec![Event::Ping(b"p".to_vec().into()), Event::Message("κόσμε".into())]
    );
}

#[test]
fn s5_2_rsv1_is_accepted_only_with_the_extension() {
    let w = RawFrame::text(xor(b"hi")).rsv(RSV1).encode();
    // Without it: 1002.
    let mut plain = Connection::new(Role::Server, Config::default());
    let (err, code) = feed_err(&mut plain, &w);
    assert_eq!(
        (err, code),
        (Error::Protocol(ProtocolError::ReservedBits(RSV1)), Some(1002))
    );
    // With it: decoded.
    let (_, mut s) = negotiated(Config::default());
    assert_eq!(feed_ok(&mut s, &w), vec![Event::Message("hi".into())]);
    // Bits it does not claim are still errors.
    for rsv in [RSV2, RSV3, RSV1 | RSV2] {
        let (_, mut s) = negotiated(Config::default());
        let (err, code) = feed_err(&mut s, &RawFrame::text("x").rsv(rsv).encode());
        assert_eq!(
            (err, code),
            (Error::Protocol(ProtocolError::ReservedBits(rsv)), Some(1002))
        );
    }
    // RSV1 on a control frame or on a continuation frame is an error.
    let (_, mut s) = negotiated(Config::default());
    let (err, _) = feed_err(&mut s, &RawFrame::ping("x").rsv(RSV1).encode());
    assert_eq!(err, Error::Protocol(ProtocolError::ReservedBits(RSV1)));
    let (_, mut s) = negotiated(Config::default());
    let w = wire(&[
        RawFrame::text(xor(b"a")).rsv(RSV1).fin(false),
        RawFrame::cont(xor(b"b")).rsv(RSV1),
    ]);
    let (err, _) = feed_err(&mut s, &w);
    assert_eq!(err, Error::Protocol(ProtocolError::ReservedBits(RSV1)));
}

#[test]
fn s8_1_text_is_validated_after_decoding() {
    // "é" is C3 A9; on the wire it is 99 F3, which is not UTF-8: accepted.
    let (_, mut s) = negotiated(Config::default());
    let wire_bytes = xor("é".as_bytes());
    assert!(std::str::from_utf8(&wire_bytes).is_err());
    assert_eq!(
        feed_ok(&mut s, &RawFrame::text(&wire_bytes).rsv(RSV1).encode()),
        vec![Event::Message("é".into())]
    );
    // Decoding to invalid UTF-8 fails with 1007, before FIN.
    let (_, mut s) = negotiated(Config::default());
    let (err, code) = feed_err(&mut s, &RawFrame::text(xor(b"ok\xff")).rsv(RSV1).fin(false).encode());
    assert_eq!((err, code), (Error::InvalidUtf8, Some(1007)));
}

#[test]
fn s9_extension_message_size_limit_across_fragments() {
    for streaming in [false, true] {
        let config = Config::default().max_message_size(1000).deliver_fragments(streaming);
        // At the limit: fine.
        let (_, mut s) = negotiated(config.clone());
        let w = wire(&[
            RawFrame::binary(xor(&[1; 400])).rsv(RSV1).fin(false),
            RawFrame::cont(xor(&[2; 400])).fin(false),
            RawFrame::cont(xor(&[3; 200])),
        ]);
        let (events, err) = feed(&mut s, &w);
        assert_eq!(err, None, "streaming {streaming}");
        let total: usize = events
            .iter()
            .map(|e| match e {
                Event::Message(m) => m.len(),
                Event::Fragment(f) => f.data.len(),
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(total, 1000);
        // Over it: 1009, whether the message is reassembled or streamed.
        let (_, mut s) = negotiated(config);
        let w = wire(&[
            RawFrame::binary(xor(&[1; 400])).rsv(RSV1).fin(false),
            RawFrame::cont(xor(&[2; 400])).fin(false),
            RawFrame::cont(xor(&[3; 400])),
        ]);
        let (events, err) = feed(&mut s, &w);
        let delivered: usize = events
            .iter()
            .map(|e| match e {
                Event::Fragment(f) => f.data.len(),
                other => panic!("{other:?}"),
            })
            .sum();
        assert!(delivered <= 1000, "streaming {streaming}: {delivered} bytes delivered");
        let err = err.unwrap_or_else(|| panic!("streaming {streaming}: no error"));
        assert_eq!(err.close_code().0, 1009, "streaming {streaming}: {err:?}");
    }
}

#[test]
fn s9_extension_in_streaming_mode_hands_up_decoded_pieces() {
    let (mut c, mut s) = negotiated(Config::default().deliver_fragments(true));
    c.send_fragment(DataKind::Binary, vec![1u8; 10], false).unwrap();
    c.send_fragment(DataKind::Binary, vec![2u8; 5], true).unwrap();
    let events = feed_ok(&mut s, &c.take_transmit());
    let data: Vec<(Vec<u8>, bool, bool)> = events
        .iter()
        .map(|e| match e {
            Event::Fragment(f) => (f.data.to_vec(), f.first, f.fin),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(data, vec![(vec![1u8; 10], true, false), (vec![2u8; 5], false, true)]);
}

#[test]
fn s9_server_declines_what_it_does_not_support() {
    let raw = get(&[], &[("Sec-WebSocket-Extensions", "x-unknown, x-weft-xor; level=9")]);
    let up = upgrade(raw.as_bytes()).unwrap();
    assert_eq!(up.extensions().len(), 2);
    let a = up.accept(&Accept {
        extensions: vec![Arc::new(XorServer) as Arc<dyn ServerExtension>],
        ..Accept::default()
    });
    assert!(a.extension.is_none());
    assert!(a.extensions_header.is_none());
    let (_, headers, _) = parse_response(&a.response);
    assert_eq!(header(&headers, "sec-websocket-extensions"), None);

    // The first acceptable offer is taken, whatever came before it.
    let raw = get(
        &[],
        &[
            ("Sec-WebSocket-Extensions", "x-weft-xor; level=9"),
            ("Sec-WebSocket-Extensions", "x-weft-xor"),
        ],
    );
    let a = upgrade(raw.as_bytes()).unwrap().accept(&Accept {
        extensions: vec![Arc::new(XorServer) as Arc<dyn ServerExtension>],
        ..Accept::default()
    });
    assert!(a.extension.is_some());
    assert_eq!(a.extensions_header.as_deref(), Some(XOR_NAME));
}
