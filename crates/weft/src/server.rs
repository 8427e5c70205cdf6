//! Accepting WebSocket connections on any transport.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weft_proto::{Accept, Connection, HandshakeError, HeadScanner, Request, Role, ServerExtension, UpgradeRequest};

use crate::config::Config;
use crate::error::Error;
use crate::socket::WebSocket;

/// Accept a WebSocket on `io` with the default configuration: any path, no
/// subprotocol, no extension.
///
/// ```no_run
/// # async fn run(tcp: tokio::net::TcpStream) -> Result<(), weft::Error> {
/// let mut ws = weft::accept(tcp).await?;
/// while let Some(msg) = ws.recv().await {
///     ws.send(msg?).await?;
/// }
/// # Ok(()) }
/// ```
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> Result<WebSocket<S>, Error> {
    Server::new().accept(io).await
}

/// A reusable server-side handshake configuration.
///
/// ```no_run
/// # async fn run(tcp: tokio::net::TcpStream) -> Result<(), weft::Error> {
/// use weft::{Server, proto::{Accept, HandshakeError}};
///
/// let server = Server::new();
/// let ws = server
///     .accept_with(tcp, |req| {
///         if req.path() != "/chat" {
///             return Err(HandshakeError::reject(404, "no such endpoint"));
///         }
///         let protocol = req.protocols().iter().find(|p| *p == "chat.v1").cloned();
///         Ok(Accept { protocol, ..Accept::default() })
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Server {
    config: Config,
    extensions: Vec<Arc<dyn ServerExtension>>,
}

impl Server {
    /// A server with the default [`Config`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Use `config`.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Offer to negotiate an extension (e.g. permessage-deflate).
    pub fn extension(mut self, ext: Arc<dyn ServerExtension>) -> Self {
        self.extensions.push(ext);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Accept any upgrade request.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> Result<WebSocket<S>, Error> {
        self.accept_with(io, |_| Ok(Accept::default())).await
    }

    /// Read the request, let `decide` accept it (choosing a subprotocol and
    /// headers) or reject it with an HTTP status, and answer. Requests that
    /// break RFC 6455 §4.2.1 get their status (400, 405, 426, 431) without
    /// `decide` being asked. The whole handshake is bounded by
    /// `handshake_timeout`.
    pub async fn accept_with<S, F>(&self, mut io: S, decide: F) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(&UpgradeRequest) -> Result<Accept, HandshakeError>,
    {
        let limits = self.config.handshake;
        let read = async {
            let mut buf = BytesMut::with_capacity(1024);
            let mut scanner = HeadScanner::new(limits.max_head_size);
            loop {
                match scanner.scan(&buf) {
                    Ok(Some(n)) => return Ok((buf, n)),
                    Ok(None) => {}
                    Err(_) => return Err(Error::Handshake(HandshakeError::HeadTooLarge)),
                }
                if buf.capacity() == buf.len() {
                    buf.reserve(1024);
                }
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
        };
        let outcome = match tokio::time::timeout(self.config.handshake_timeout, read).await {
            Err(_) => return Err(Error::Timeout("handshake")),
            Ok(Err(Error::Handshake(e))) => Err(e),
            Ok(Err(e)) => return Err(e),
            Ok(Ok((buf, n))) => Request::parse(&buf[..n], &limits)
                .and_then(UpgradeRequest::new)
                .and_then(|up| decide(&up).map(|a| (up, a)))
                .map(|(up, a)| (buf, n, up, a)),
        };
        match outcome {
            Err(e) => {
                // Best effort: the peer may already be gone.
                let _ = io.write_all(&e.response()).await;
                let _ = io.shutdown().await;
                Err(Error::Handshake(e))
            }
            Ok((buf, n, up, mut accept)) => {
                if accept.extensions.is_empty() {
                    accept.extensions = self.extensions.clone();
                }
                let accepted = up.accept(&accept);
                io.write_all(&accepted.response).await?;
                io.flush().await?;
                let conn =
                    Connection::new(Role::Server, self.config.protocol.clone()).with_extension(accepted.extension);
                Ok(WebSocket::from_parts(
                    io,
                    conn,
                    &self.config,
                    &buf[n..],
                    accepted.protocol,
                    accepted.extensions_header,
                ))
            }
        }
    }
}
