//! The axum upgrade extractor, served by `axum::serve`. Needs the `axum`
//! feature: `cargo test -p weft --all-features` (or `--features axum`).
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use common::{binary, listen, read_head, text, upgrade_request, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft::axum::WebSocketUpgrade;
use weft::proto::{Accept, State};
use weft::{CloseCode, CloseFrame, Message};

async fn echo(ws: WebSocketUpgrade) -> Response {
    let protocol = ws.request().protocols().iter().find(|p| *p == "echo.v1").cloned();
    ws.accept(Accept {
        protocol,
        ..Accept::default()
    })
    .on_upgrade(|mut ws| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    })
}

async fn spawn_app() -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { "not a websocket\n" }))
        .route("/echo", get(echo));
    let (listener, addr) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_weft_client_echoes_through_axum() {
    let addr = spawn_app().await;
    let mut ws = weft::Client::new(format!("ws://{addr}/echo"))
        .protocol("echo.v1")
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("echo.v1"));
    for n in [0, 125, 126, 65_536, 1 << 20] {
        let t = text(n);
        ws.send(t.clone()).await.unwrap();
        let got = within("text", ws.recv()).await.unwrap().unwrap();
        assert!(got.as_text() == Some(t.as_str()), "{n} B text differs");
        let b = binary(n);
        ws.send(b.clone()).await.unwrap();
        let got = within("binary", ws.recv()).await.unwrap().unwrap();
        assert!(got == Message::from(b), "{n} B binary differs");
    }
    within("close", ws.close(CloseCode::NORMAL, "done")).await.unwrap();
    assert_eq!(ws.state(), State::Closed);
    assert_eq!(ws.close_frame(), Some(&CloseFrame::new(1000, "")));
}

/// Send a raw request; return the response head.
async fn raw_head(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let head = within("response head", read_head(&mut tcp)).await;
    head.to_ascii_lowercase()
}

#[tokio::test]
async fn a_plain_get_gets_426() {
    let addr = spawn_app().await;
    let head = raw_head(addr, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 426 "), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    // The other route is untouched.
    let head = raw_head(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
}

#[tokio::test]
async fn version_14_gets_426_naming_version_13() {
    let addr = spawn_app().await;
    let req = upgrade_request("/echo", "").replace("Version: 13", "Version: 14");
    let head = raw_head(addr, &req).await;
    assert!(head.starts_with("http/1.1 426 "), "{head}");
    assert!(head.contains("\r\nsec-websocket-version: 13\r\n"), "{head}");
}

#[tokio::test]
async fn a_raw_upgrade_through_axum_gets_the_rfc_accept_value() {
    let addr = spawn_app().await;
    let head = raw_head(addr, &upgrade_request("/echo", "")).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(
        head.contains(&format!(
            "\r\nsec-websocket-accept: {}\r\n",
            common::ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
}
