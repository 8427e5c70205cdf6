//! The browser-style client: event order, readyState, the DOM exceptions,
//! failed connections and the negotiated subprotocol.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{closed_port, listen, within};
use weft::browser::{BrowserWebSocket, DomError, ReadyState, WsEvent};
use weft::proto::Accept;
use weft::{CloseCode, Message, Server};

/// Echo on `/`, chooses `chat.v2` when offered; on `/kick` says "bye" and
/// closes with 4001.
async fn spawn_server() -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut path = String::new();
                let Ok(mut ws) = Server::new()
                    .accept_with(tcp, |req| {
                        path = req.path().to_owned();
                        let protocol = req.protocols().iter().find(|p| *p == "chat.v2").cloned();
                        Ok(Accept {
                            protocol,
                            ..Accept::default()
                        })
                    })
                    .await
                else {
                    return;
                };
                if path == "/kick" {
                    let _ = ws.send("bye").await;
                    let _ = ws.close(CloseCode(4001), "kicked").await;
                } else {
                    common::echo(ws).await;
                }
            });
        }
    });
    addr
}

async fn next(ws: &mut BrowserWebSocket) -> Option<WsEvent> {
    within("browser event", ws.next_event()).await
}

#[tokio::test]
async fn open_message_close_in_order_with_ready_states() {
    let addr = spawn_server().await;
    let url = format!("ws://{addr}/");
    let mut ws = BrowserWebSocket::new(&url, &["chat.v1", "chat.v2"]);
    assert_eq!(ws.url(), url);

    // Nothing has run yet on this single-threaded runtime: still CONNECTING.
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    assert_eq!(ws.send("too early"), Err(DomError::InvalidState));
    assert_eq!(ws.protocol(), "");
    // Invalid close arguments throw whatever the state.
    assert_eq!(ws.close(Some(999), None), Err(DomError::InvalidAccess));
    assert_eq!(ws.close(Some(1001), None), Err(DomError::InvalidAccess));
    assert_eq!(ws.close(Some(1000), Some(&"x".repeat(124))), Err(DomError::Syntax));
    assert_eq!(
        ws.ready_state(),
        ReadyState::Connecting,
        "a refused close() changes nothing"
    );

    assert_eq!(next(&mut ws).await, Some(WsEvent::Open));
    assert_eq!(ws.ready_state(), ReadyState::Open);
    assert_eq!(ws.protocol(), "chat.v2");
    assert_eq!(ws.extensions(), "");

    ws.send("hello").unwrap();
    ws.send(vec![0u8, 1, 2, 255]).unwrap();
    assert_eq!(next(&mut ws).await, Some(WsEvent::Message(Message::from("hello"))));
    assert_eq!(
        next(&mut ws).await,
        Some(WsEvent::Message(Message::from(vec![0u8, 1, 2, 255])))
    );
    assert_eq!(ws.buffered_amount(), 0, "everything sent was written");

    ws.close(Some(1000), Some("done")).unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    match next(&mut ws).await {
        Some(WsEvent::Close { code, was_clean, .. }) => {
            assert_eq!(code, 1000);
            assert!(was_clean);
        }
        other => panic!("expected Close, got {other:?}"),
    }
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(next(&mut ws).await, None, "nothing after Close");

    // After closing, send() is accepted and discarded, counted as buffered.
    assert_eq!(ws.send("late"), Ok(()));
    assert_eq!(ws.buffered_amount(), 4);
    assert_eq!(ws.close(Some(1000), None), Ok(()), "close() when closed is a no-op");
}

#[tokio::test]
async fn server_close_reaches_the_close_event() {
    let addr = spawn_server().await;
    let mut ws = BrowserWebSocket::new(&format!("ws://{addr}/kick"), &[]);
    assert_eq!(next(&mut ws).await, Some(WsEvent::Open));
    assert_eq!(ws.protocol(), "", "no subprotocol was offered");
    assert_eq!(next(&mut ws).await, Some(WsEvent::Message(Message::from("bye"))));
    assert_eq!(
        next(&mut ws).await,
        Some(WsEvent::Close {
            code: 4001,
            reason: "kicked".into(),
            was_clean: true
        })
    );
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

#[tokio::test]
async fn a_refused_connection_gives_error_then_abnormal_close() {
    let (_held, port) = closed_port();
    let mut ws = BrowserWebSocket::new(&format!("ws://127.0.0.1:{port}/"), &[]);
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    assert!(matches!(next(&mut ws).await, Some(WsEvent::Error(_))));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(
        next(&mut ws).await,
        Some(WsEvent::Close {
            code: 1006,
            reason: String::new(),
            was_clean: false
        })
    );
    assert_eq!(next(&mut ws).await, None);
}

#[tokio::test]
async fn close_while_connecting_fails_the_connection() {
    let addr = spawn_server().await;
    let mut ws = BrowserWebSocket::new(&format!("ws://{addr}/"), &[]);
    ws.close(None, None).unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    assert!(matches!(next(&mut ws).await, Some(WsEvent::Error(_))));
    assert!(matches!(
        next(&mut ws).await,
        Some(WsEvent::Close {
            code: 1006,
            was_clean: false,
            ..
        })
    ));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

#[tokio::test]
async fn a_protocol_error_from_the_server_is_an_unclean_close() {
    // A server that answers the handshake, then sends a masked frame (servers
    // must not mask).
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut tcp, _) = listener.accept().await.unwrap();
        common::raw_server_handshake(&mut tcp).await;
        let _ = tcp.write_all(&common::frame(0x81, b"masked", Some([1, 2, 3, 4]))).await;
        // Keep the connection open until the client gives up on it.
        let _ = common::read_to_end(&mut tcp).await;
    });
    let mut ws = BrowserWebSocket::new(&format!("ws://{addr}/"), &[]);
    assert_eq!(next(&mut ws).await, Some(WsEvent::Open));
    assert!(matches!(next(&mut ws).await, Some(WsEvent::Error(_))));
    match next(&mut ws).await {
        Some(WsEvent::Close { code, was_clean, .. }) => {
            assert_eq!(code, 1002);
            assert!(!was_clean);
        }
        other => panic!("expected Close, got {other:?}"),
    }
}
