//! The error type of the tokio layer.

use std::fmt;
use std::io;

use weft_proto::{ClientHandshakeError, CloseCode, HandshakeError, SendError};

/// An error from a WebSocket connection or handshake.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    Io(io::Error),
    /// The peer broke the protocol (a close frame with [`Error::close_code`]
    /// was sent), or the connection ended abnormally.
    Protocol(weft_proto::Error),
    /// Server: the upgrade request was refused (the HTTP response was sent).
    Handshake(HandshakeError),
    /// Client: the server's answer was refused.
    ClientHandshake(ClientHandshakeError),
    /// A send was refused (e.g. after close); the connection is unaffected.
    Send(SendError),
    /// The URL could not be used.
    Url(String),
    /// TLS setup or handshake failed.
    Tls(String),
    /// A bounded wait ran out (`"connect"`, `"handshake"`, `"write"`, `"close"`).
    Timeout(&'static str),
    /// `recv` was called in streaming mode; use `recv_event`.
    StreamingMode,
}

impl Error {
    /// The close code that describes this error, where one applies.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(e) => Some(e.close_code()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Protocol(e) => write!(f, "{e}"),
            Error::Handshake(e) => write!(f, "handshake refused ({}): {e}", e.status()),
            Error::ClientHandshake(e) => write!(f, "handshake failed: {e}"),
            Error::Send(e) => write!(f, "send refused: {e}"),
            Error::Url(e) => write!(f, "invalid URL: {e}"),
            Error::Tls(e) => write!(f, "TLS error: {e}"),
            Error::Timeout(what) => write!(f, "{what} timed out"),
            Error::StreamingMode => f.write_str("streaming mode delivers fragments: use recv_event"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::ClientHandshake(e) => Some(e),
            Error::Send(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<weft_proto::Error> for Error {
    fn from(e: weft_proto::Error) -> Self {
        Error::Protocol(e)
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        Error::Send(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<ClientHandshakeError> for Error {
    fn from(e: ClientHandshakeError) -> Self {
        Error::ClientHandshake(e)
    }
}
