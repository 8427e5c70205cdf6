//! `weft serve` shutting down on SIGTERM: every open WebSocket gets a 1001
//! close ("server shutting down") and the process exits 0.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::time::Duration;

use weft::{CloseCode, Message};

async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

#[tokio::test]
async fn sigterm_closes_every_websocket_with_1001_and_exits_0() {
    let s = common::start_serve(&[]).await;
    common::drain(s.lines);
    let mut child = s.child;
    // Echo sockets (with and without a query string) and a chat member,
    // which wait for the shutdown in two different ways.
    let mut sockets = Vec::new();
    for i in 0..6 {
        let path = if i % 2 == 0 { "/echo" } else { "/echo?n=1" };
        let mut ws = weft::connect(&format!("ws://{}{path}", s.addr)).await.unwrap();
        ws.send(format!("hello {i}")).await.unwrap();
        match within(5, "the echo", ws.recv()).await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("hello {i}")),
            other => panic!("{other:?}"),
        }
        sockets.push((format!("echo {i}"), ws));
    }
    let mut chat = weft::connect(&format!("ws://{}/chat/lobby?nick=ada", s.addr))
        .await
        .unwrap();
    match within(5, "the welcome", chat.recv()).await {
        Some(Ok(Message::Text(t))) => assert!(t.as_str().contains("welcome"), "{t:?}"),
        other => panic!("{other:?}"),
    }
    sockets.push(("chat".to_owned(), chat));

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());

    for (who, ws) in &mut sockets {
        loop {
            match within(10, who, ws.recv()).await {
                Some(Ok(_)) => {} // a join notice, for the chat member
                Some(Err(e)) => panic!("{who}: {e}"),
                None => break,
            }
        }
        let frame = ws.close_frame().unwrap_or_else(|| panic!("{who}: no close frame"));
        assert_eq!(frame.code, CloseCode::GOING_AWAY, "{who}");
        assert_eq!(frame.reason, "server shutting down", "{who}");
    }
    let status = within(10, "the exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
}
