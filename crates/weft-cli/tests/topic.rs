//! `weft serve`'s `/topic/{name}` pub/sub endpoint, through the real binary
//! on 127.0.0.1, port 0.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;
use weft::{CloseCode, Message};

/// A `weft serve` process, killed when dropped.
struct Serve {
    _child: Child,
    addr: SocketAddr,
}

impl Serve {
    async fn start() -> Serve {
        let s = common::start_serve(&[]).await;
        common::drain(s.lines);
        Serve {
            _child: s.child,
            addr: s.addr,
        }
    }

    fn url(&self, topic: &str) -> String {
        format!("ws://{}/topic/{topic}", self.addr)
    }
}

/// Bound an await so that a hang fails the test.
async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// The next message that is not a probe of [`subscribed`].
async fn next<S>(ws: &mut weft::WebSocket<S>, who: &str) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match within(5, who, ws.recv()).await.unwrap().unwrap() {
            Message::Text(t) if t.as_str().starts_with(PROBE) => {}
            m => return m,
        }
    }
}

const PROBE: &str = "probe from ";

/// Wait until the server has subscribed `ws`: a subscriber gets what it
/// publishes, so its own probe coming back proves the subscription. Call it
/// for one socket after another; [`next`] skips the probes that the others
/// get.
async fn subscribed<S>(ws: &mut weft::WebSocket<S>, who: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let probe = format!("{PROBE}{who}");
    ws.send(probe.clone()).await.unwrap();
    loop {
        match within(5, who, ws.recv()).await.unwrap().unwrap() {
            Message::Text(t) if t.as_str() == probe => return,
            Message::Text(t) if t.as_str().starts_with(PROBE) => {}
            other => panic!("{who}: {other:?} before its probe"),
        }
    }
}

#[tokio::test]
async fn every_subscriber_gets_every_message_verbatim() {
    let s = Serve::start().await;
    let mut a = weft::connect(&s.url("news")).await.unwrap();
    subscribed(&mut a, "a").await;
    let mut b = weft::connect(&s.url("news")).await.unwrap();
    subscribed(&mut b, "b").await;
    let mut publisher = weft::connect(&s.url("news")).await.unwrap();
    subscribed(&mut publisher, "the publisher").await;
    let mut elsewhere = weft::connect(&s.url("sports")).await.unwrap();
    subscribed(&mut elsewhere, "elsewhere").await;

    let binary = Bytes::from((0..=255u8).chain([0, 0xff, 0x80]).collect::<Vec<u8>>());
    publisher.send("héllo {\"not\":\"json-wrapped\"}").await.unwrap();
    publisher.send(Message::Binary(binary.clone())).await.unwrap();
    // One publisher's messages arrive in the order it sent them.
    for (ws, who) in [(&mut a, "a"), (&mut b, "b"), (&mut publisher, "the publisher")] {
        match next(ws, who).await {
            Message::Text(t) => assert_eq!(t.as_str(), "héllo {\"not\":\"json-wrapped\"}", "{who}"),
            other => panic!("{who}: {other:?}"),
        }
        match next(ws, who).await {
            Message::Binary(b) => assert_eq!(b, binary, "{who}: binary stays binary"),
            other => panic!("{who}: {other:?}"),
        }
    }
    // Any subscriber may publish, and reaches everyone, itself included.
    // (Messages from different publishers have no order between them, so
    // this one is sent once the others have arrived.)
    a.send("from a").await.unwrap();
    for (ws, who) in [(&mut a, "a"), (&mut b, "b"), (&mut publisher, "the publisher")] {
        match next(ws, who).await {
            Message::Text(t) => assert_eq!(t.as_str(), "from a", "{who}"),
            other => panic!("{who}: {other:?}"),
        }
    }
    // Another topic got none of it.
    elsewhere.send("sports only").await.unwrap();
    match next(&mut elsewhere, "the other topic").await {
        Message::Text(t) => assert_eq!(t.as_str(), "sports only"),
        other => panic!("{other:?}"),
    }
    // An empty message is a message too.
    b.send(Message::Binary(Bytes::new())).await.unwrap();
    assert_eq!(next(&mut a, "a").await, Message::Binary(Bytes::new()));
    for ws in [&mut a, &mut b, &mut publisher, &mut elsewhere] {
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    }
}

#[tokio::test]
async fn a_message_over_64_kib_gets_1009_and_reaches_nobody() {
    let s = Serve::start().await;
    let mut sub = weft::connect(&s.url("big")).await.unwrap();
    subscribed(&mut sub, "sub").await;
    let mut big = weft::connect(&s.url("big")).await.unwrap();
    subscribed(&mut big, "big").await;

    // 64 KiB exactly is allowed.
    big.send(Message::Binary(Bytes::from(vec![7u8; 64 * 1024])))
        .await
        .unwrap();
    match next(&mut sub, "the subscriber").await {
        Message::Binary(b) => assert_eq!(b.len(), 64 * 1024),
        other => panic!("{other:?}"),
    }
    big.send(Message::Binary(Bytes::from(vec![7u8; 64 * 1024 + 1])))
        .await
        .unwrap();
    loop {
        match within(5, "the close", big.recv()).await {
            Some(Ok(_)) => {} // its own copy of the 64 KiB message
            Some(Err(e)) => panic!("{e}"),
            None => break,
        }
    }
    assert_eq!(big.close_frame().map(|f| f.code), Some(CloseCode::MESSAGE_TOO_BIG));
    // The subscriber got nothing more and is still served.
    sub.send("still here").await.unwrap();
    match next(&mut sub, "the subscriber").await {
        Message::Text(t) => assert_eq!(t.as_str(), "still here"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_topic_names_get_400() {
    let s = Serve::start().await;
    for path in ["/topic/a%20b", &format!("/topic/{}", "x".repeat(65)), "/topic/a.b"] {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            s.addr
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = vec![0u8; 12];
        within(5, "the response", tcp.read_exact(&mut head)).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 400", "{path}");
    }
}
