//! The server's handshake decision and its answers to bad requests.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{listen, read_head, read_to_end, upgrade_request, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use weft::proto::{Accept, ClientHandshakeError, HandshakeError};
use weft::{Error, Server};

/// What the decision callback saw.
#[derive(Debug)]
struct Seen {
    path: String,
    query: Option<String>,
    origin: Option<String>,
    protocols: Vec<String>,
    custom: Option<String>,
}

/// Accepts `/chat` (choosing `chat.v2` if offered, else nothing), refuses any
/// other path with 404. Reports what the callback saw and how `accept_with`
/// ended.
async fn spawn_server() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(Option<Seen>, Result<Option<String>, Error>)>,
) {
    let (listener, addr) = listen().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = None;
                let r = Server::new()
                    .accept_with(tcp, |req| {
                        seen = Some(Seen {
                            path: req.path().to_owned(),
                            query: req.query().map(str::to_owned),
                            origin: req.origin().map(str::to_owned),
                            protocols: req.protocols().to_vec(),
                            custom: req.request().headers.get_str("x-custom").map(str::to_owned),
                        });
                        if req.path() != "/chat" {
                            return Err(HandshakeError::reject(404, "no such endpoint"));
                        }
                        let protocol = req.protocols().iter().find(|p| *p == "chat.v2").cloned();
                        Ok(Accept {
                            protocol,
                            headers: vec![("X-Served-By".into(), "weft-test".into())],
                            ..Accept::default()
                        })
                    })
                    .await;
                match r {
                    Ok(ws) => {
                        let protocol = ws.protocol().map(str::to_owned);
                        let _ = tx.send((seen, Ok(protocol)));
                        common::echo(ws).await;
                    }
                    Err(e) => {
                        let _ = tx.send((seen, Err(e)));
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_rejection_reaches_the_client_as_its_status() {
    let (addr, mut results) = spawn_server().await;
    let r = weft::connect(&format!("ws://{addr}/elsewhere")).await;
    match r {
        Err(Error::ClientHandshake(ClientHandshakeError::Status { status, reason })) => {
            assert_eq!(status, 404);
            assert_eq!(reason, "Not Found");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    let (seen, r) = within("server result", results.recv()).await.unwrap();
    assert_eq!(seen.unwrap().path, "/elsewhere");
    match r {
        Err(Error::Handshake(e)) => assert_eq!(e.status(), 404),
        other => panic!("expected the server to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rejection_as_raw_http() {
    let (addr, _results) = spawn_server().await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("/nope", "").as_bytes()).await.unwrap();
    let resp = String::from_utf8(within("response", read_to_end(&mut tcp)).await).unwrap();
    assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nno such endpoint\n"), "{resp}");
}

#[tokio::test]
async fn subprotocol_origin_query_and_headers_reach_the_callback() {
    let (addr, mut results) = spawn_server().await;
    let (mut ws, info) = weft::Client::new(format!("ws://{addr}/chat?room=7"))
        .origin("https://app.example")
        .protocol("chat.v1")
        .protocol("chat.v2")
        .header("X-Custom", "forty-two")
        .connect_with_response()
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("chat.v2"));
    assert_eq!(info.protocol.as_deref(), Some("chat.v2"));
    assert_eq!(info.headers.get_str("x-served-by"), Some("weft-test"));

    let (seen, r) = within("server result", results.recv()).await.unwrap();
    let seen = seen.unwrap();
    assert_eq!(seen.path, "/chat");
    assert_eq!(seen.query.as_deref(), Some("room=7"));
    assert_eq!(seen.origin.as_deref(), Some("https://app.example"));
    assert_eq!(seen.protocols, ["chat.v1", "chat.v2"]);
    assert_eq!(seen.custom.as_deref(), Some("forty-two"));
    assert_eq!(
        r.unwrap().as_deref(),
        Some("chat.v2"),
        "the server socket knows the protocol"
    );

    ws.send("after the handshake").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("after the handshake"));
}

#[tokio::test]
async fn no_common_subprotocol_means_none() {
    let (addr, mut results) = spawn_server().await;
    let ws = weft::Client::new(format!("ws://{addr}/chat"))
        .protocol("chat.v1")
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.protocol(), None);
    let (seen, r) = within("server result", results.recv()).await.unwrap();
    assert_eq!(seen.unwrap().origin, None, "no Origin was sent");
    assert_eq!(r.unwrap(), None);
}

/// Send `request` raw and return the whole response (the server closes).
async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    String::from_utf8(within("response", read_to_end(&mut tcp)).await).unwrap()
}

fn has_header(resp: &str, line: &str) -> bool {
    resp.lines().any(|l| l.eq_ignore_ascii_case(line))
}

#[tokio::test]
async fn version_14_gets_426_naming_version_13() {
    let (addr, mut results) = spawn_server().await;
    let req = upgrade_request("/chat", "").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 14");
    let resp = raw_exchange(addr, &req).await;
    assert!(resp.starts_with("HTTP/1.1 426 "), "{resp}");
    assert!(has_header(&resp, "Sec-WebSocket-Version: 13"), "{resp}");
    let (seen, r) = within("server result", results.recv()).await.unwrap();
    assert!(seen.is_none(), "the callback is not asked about a broken request");
    assert!(
        matches!(r, Err(Error::Handshake(HandshakeError::UnsupportedVersion))),
        "{r:?}"
    );
}

#[tokio::test]
async fn post_gets_405_allowing_get() {
    let (addr, mut results) = spawn_server().await;
    let req = upgrade_request("/chat", "").replacen("GET", "POST", 1);
    let resp = raw_exchange(addr, &req).await;
    assert!(resp.starts_with("HTTP/1.1 405 "), "{resp}");
    assert!(has_header(&resp, "Allow: GET"), "{resp}");
    let (_, r) = within("server result", results.recv()).await.unwrap();
    assert!(
        matches!(r, Err(Error::Handshake(HandshakeError::MethodNotGet(ref m))) if m == "POST"),
        "{r:?}"
    );
}

#[tokio::test]
async fn other_broken_requests_get_their_status() {
    let (addr, _results) = spawn_server().await;
    // A plain GET: 426 with Upgrade: websocket.
    let resp = raw_exchange(addr, "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 426 "), "{resp}");
    assert!(has_header(&resp, "Upgrade: websocket"), "{resp}");
    // A bad key: 400.
    let req = upgrade_request("/chat", "").replace(common::KEY, "c2hvcnQ=");
    assert!(raw_exchange(addr, &req).await.starts_with("HTTP/1.1 400 "));
    // HTTP/1.0: 400.
    let req = upgrade_request("/chat", "").replace("HTTP/1.1", "HTTP/1.0");
    assert!(raw_exchange(addr, &req).await.starts_with("HTTP/1.1 400 "));
    // A head over the 16 KiB limit: 431.
    let big = format!("X-Filler: {}\r\n", "a".repeat(20 * 1024));
    let resp = raw_exchange(addr, &upgrade_request("/chat", &big)).await;
    assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");
}

#[tokio::test]
async fn a_frame_in_the_same_packet_as_the_request_is_not_lost() {
    let (addr, _results) = spawn_server().await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut bytes = upgrade_request("/chat", "").into_bytes();
    bytes.extend(common::frame(0x81, b"early bird", Some([9, 8, 7, 6])));
    tcp.write_all(&bytes).await.unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (b0, payload) = within("echo", common::read_frame(&mut tcp)).await;
    assert_eq!((b0, &payload[..]), (0x81, &b"early bird"[..]));
}
