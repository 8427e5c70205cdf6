//! # weft-proto
//!
//! The WebSocket protocol (RFC 6455) as a sans-I/O core: it does no networking,
//! reads no clock, spawns nothing and depends on no async runtime. Bytes from
//! the network go in, events come out; messages and commands go in, bytes to
//! write come out. The `weft` crate drives it on tokio; a fuzzer or another
//! runtime can drive it the same way.
//!
//! ```text
//!  network bytes ──▶ handshake::{HeadScanner, Request, UpgradeRequest}   (server)
//!                    handshake::ClientHandshake                          (client)
//!                         │  leftover bytes after the head are kept
//!                         ▼
//!                    Connection ── poll_event ──▶ Event::{Message, Fragment, Ping, Pong, Close}
//!   send / close ──▶ Connection ── transmit_slices / advance_transmit ──▶ network bytes
//! ```
//!
//! ## Call order
//! 1. Handshake: a server scans the head with [`HeadScanner`], parses it with
//!    [`Request::parse`], checks it with [`UpgradeRequest::new`] and writes
//!    either [`UpgradeRequest::accept`]'s 101 response or the error's
//!    [`HandshakeError::response`]. A client writes the bytes of
//!    [`ClientHandshake::new`] and feeds what it reads to
//!    [`ClientHandshake::parse_response`].
//! 2. Make a [`Connection`] for the role (install the negotiated extension),
//!    and give it the bytes that followed the head.
//! 3. Loop: feed bytes, drain [`Connection::poll_event`], write the output,
//!    close the transport when [`Connection::should_close_transport`].
//!
//! Every error a peer can cause is typed and knows its close code
//! ([`Error::close_code`]) or HTTP status ([`HandshakeError::status`]); the crate
//! has no `unsafe` and does not panic on any input.
//!
//! ```
//! use weft_proto::*;
//!
//! // Server side of a handshake, from raw bytes.
//! let raw = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
//!             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!             Sec-WebSocket-Version: 13\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
//! let limits = HandshakeLimits::default();
//! let head_len = HeadScanner::new(limits.max_head_size).scan(raw).unwrap().unwrap();
//! let upgrade = UpgradeRequest::new(Request::parse(&raw[..head_len], &limits).unwrap()).unwrap();
//! let accepted = upgrade.accept(&Accept::default());
//! assert!(accepted.response.starts_with(b"HTTP/1.1 101"));
//!
//! // The first frame arrived in the same read: it is not lost.
//! let mut conn = Connection::new(Role::Server, Config::default());
//! conn.receive_data(&raw[head_len..]);
//! assert_eq!(conn.poll_event().unwrap(), Some(Event::Message("Hello".into())));
//! ```

#![forbid(unsafe_code)]

pub mod close;
pub mod connection;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{Config, Connection, Role, State};
pub use error::{Error, ExtensionError, LimitExceeded, ProtocolError, SendError};
pub use extension::{ClientExtension, Encoded, Extension, ExtensionOffer, ExtensionParam, ServerExtension};
pub use frame::{FrameHeader, Opcode};
pub use handshake::{
    Accept, Accepted, ClientHandshake, ClientHandshakeError, ClientRequest, HandshakeError, HandshakeLimits,
    HeadScanner, Header, Headers, Request, Response, UpgradeRequest, accept_key,
};
pub use message::{DataKind, Event, Fragment, Message, Text};
