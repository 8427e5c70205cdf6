//! Keepalive: a silent peer is pinged and then dropped; a peer that answers
//! pings is kept.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{listen, raw_client, read_frame, within};
use tokio::io::AsyncReadExt;
use weft::{Config, Error, Event, Keepalive, Server};

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(200);

fn server() -> Server {
    server_with(INTERVAL, TIMEOUT)
}

fn server_with(interval: Duration, timeout: Duration) -> Server {
    Server::new().with_config(Config::default().keepalive(Some(Keepalive { interval, timeout })))
}

#[tokio::test]
async fn a_silent_peer_is_pinged_then_dropped() {
    let (listener, addr) = listen().await;
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = server().accept(tcp).await.unwrap();
        let start = Instant::now();
        let first = ws.recv().await;
        let elapsed = start.elapsed();
        let then = ws.recv().await;
        (first, elapsed, then, ws)
    });

    // Complete the handshake, then never send a byte.
    let mut tcp = raw_client(addr).await;
    let (b0, payload) = within("keepalive ping", read_frame(&mut tcp)).await;
    assert_eq!(b0, 0x89, "a final ping frame");
    assert_eq!(payload, b"weft-keepalive");

    let (first, elapsed, then, _ws) = within("server recv", server_side).await.unwrap();
    assert!(
        matches!(first, Some(Err(Error::Timeout("keepalive")))),
        "expected the keepalive timeout, got {first:?}"
    );
    // Not before interval + timeout; within a few seconds of it (a loose
    // bound: a busy machine may wake the timer late).
    assert!(elapsed >= INTERVAL + TIMEOUT, "dropped after only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "dropped only after {elapsed:?}");
    assert!(then.is_none(), "the error is reported once: {then:?}");

    // The server closed the transport although the socket is still held.
    let mut rest = Vec::new();
    let n = within("EOF at the silent peer", tcp.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing follows the ping: {rest:?}");
}

#[tokio::test]
async fn a_peer_that_answers_pings_is_kept() {
    let (listener, addr) = listen().await;
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // A second for each pong, so that a busy machine's stall does not
        // look like a dead peer.
        let mut ws = server_with(INTERVAL, Duration::from_secs(1)).accept(tcp).await.unwrap();
        // Several keepalive rounds pass with no application data at all.
        let quiet = tokio::time::timeout(Duration::from_millis(1500), ws.recv()).await;
        assert!(quiet.is_err(), "the connection ended: {quiet:?}");
        ws.send("still here").await.unwrap();
        let reply = ws.recv().await.unwrap().unwrap();
        assert_eq!(reply.as_text(), Some("still here, too"));
        ws
    });

    // A weft client answers pings on its own while it is being polled.
    let mut client = weft::connect(&format!("ws://{addr}/")).await.unwrap();
    let mut pings = 0;
    let msg = loop {
        match within("client event", client.recv_event()).await.unwrap().unwrap() {
            Event::Ping(p) => {
                assert_eq!(&p[..], b"weft-keepalive");
                pings += 1;
            }
            Event::Message(m) => break m,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(msg.as_text(), Some("still here"));
    // 1.5 s of 200 ms silence + 200 ms answer rounds: several pings.
    assert!(pings >= 2, "only {pings} keepalive pings");
    client.send("still here, too").await.unwrap();
    let ws = within("server", server_side).await.unwrap();
    assert_eq!(ws.state(), weft::proto::State::Open);
}

/// Far more than the gaps between the chatty peer's messages, so that a
/// stall of a busy machine does not make a silence.
const CHATTY_INTERVAL: Duration = Duration::from_millis(600);

#[tokio::test]
async fn a_chatty_peer_is_not_pinged() {
    let (listener, addr) = listen().await;
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        common::echo(server_with(CHATTY_INTERVAL, TIMEOUT).accept(tcp).await.unwrap()).await;
    });
    let mut client = weft::connect(&format!("ws://{addr}/")).await.unwrap();
    // A message every 50 ms for 2 s: the server never sees 600 ms of
    // silence, so it never pings (a keepalive that ignored the traffic would
    // ping three times).
    for i in 0..40 {
        client.send(format!("{i}")).await.unwrap();
        match within("echo", client.recv_event()).await.unwrap().unwrap() {
            Event::Message(m) => assert_eq!(m.as_text(), Some(format!("{i}").as_str())),
            other => panic!("expected only echoes, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close(weft::CloseCode::NORMAL, "").await.unwrap();
    within("server", server_side).await.unwrap();
}
