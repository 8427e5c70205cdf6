//! An axum app with a page and a WebSocket echo route.
//!
//! Run: `cargo run -p weft --example axum_echo --features axum`, then connect
//! to ws://127.0.0.1:9003/echo.

use axum::{Router, response::Response, routing::get};
use weft::axum::WebSocketUpgrade;

async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut ws| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(|| async { "WebSocket echo at /echo\n" }))
        .route("/echo", get(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9003").await?;
    axum::serve(listener, app).await
}
