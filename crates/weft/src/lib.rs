//! # weft
//!
//! WebSocket server and client for tokio, over TCP (`ws://`) and TLS
//! (`wss://`), built on the sans-I/O [`weft_proto`] core.
//!
//! ```text
//!   accept(io) / Server::accept_with(io, decide)      connect(url) / Client
//!              │  handshake (weft-proto)                    │  DNS, TCP, TLS, handshake
//!              ▼                                            ▼
//!                         WebSocket<S>
//!     recv / recv_event ◀── read → weft_proto::Connection → events
//!     send / feed / flush ──▶ frames → vectored writes (batched)
//!     close ──▶ closing handshake with a timeout;  split() → ReadHalf + WriteHalf
//! ```
//!
//! - **Server**: [`accept`] any `AsyncRead + AsyncWrite` stream, or
//!   [`Server::accept_with`] to see the request (path, Origin, subprotocols)
//!   and accept or reject it with an HTTP status. axum users: [`axum`] (feature
//!   `axum`).
//! - **Client**: [`connect`] or [`Client`] (headers, subprotocols, Origin,
//!   timeouts, custom CA); [`browser::BrowserWebSocket`] mirrors the browser API.
//! - **Socket**: [`WebSocket`]: whole messages or fragments, automatic pongs,
//!   keepalive, bounded output with backpressure, cancel-safe receive,
//!   `Stream`/`Sink`, and split halves.
//!
//! ```no_run
//! # async fn run() -> Result<(), weft::Error> {
//! // An echo server in five lines.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! while let Ok((tcp, _)) = listener.accept().await {
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = weft::accept(tcp).await else { return };
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if ws.send(msg).await.is_err() { break; }
//!         }
//!     });
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
pub mod axum;
pub mod browser;
mod client;
mod config;
mod error;
mod keepalive;
pub mod policy;
mod server;
mod socket;
#[cfg(feature = "tls")]
pub mod tls;

pub use client::{Client, Handshake, MaybeTlsStream, WsUrl, client_handshake, connect};
pub use config::{Config, Keepalive};
pub use error::Error;
pub use server::{Server, accept};
pub use socket::{ReadHalf, WebSocket, WriteHalf};
pub use weft_proto as proto;
pub use weft_proto::{CloseCode, CloseFrame, DataKind, Event, Message, Text};
