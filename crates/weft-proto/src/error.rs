//! Errors, and the one place that maps each of them to a close code.
//!
//! Who misbehaved decides the category: [`ProtocolError`] is the peer breaking a
//! rule of RFC 6455 framing; [`Error::InvalidUtf8`] and [`Error::MessageTooBig`]
//! are payload problems; [`Error::Extension`] comes from a negotiated extension.
//! [`Error::close_code`] is the only mapping from an error to the wire.

use std::fmt;

use crate::close::CloseCode;

/// A fatal error on a WebSocket connection. Once returned it is sticky: the
/// connection keeps returning it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke a framing rule of RFC 6455 (close code 1002).
    Protocol(ProtocolError),
    /// A text message or a close reason was not valid UTF-8 (1007).
    InvalidUtf8,
    /// A frame, a message, or a message's fragment count was over the limit (1009).
    MessageTooBig(LimitExceeded),
    /// A negotiated extension failed to decode a message.
    Extension(ExtensionError),
    /// The transport ended before the closing handshake finished (1006, never sent).
    AbnormalClosure,
    /// The connection was aborted locally, e.g. by a keepalive or close timeout
    /// (1006, never sent).
    Aborted(&'static str),
}

/// Which limit a peer went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitExceeded {
    /// One frame announced a payload larger than `max_frame_size`.
    FrameSize {
        /// The announced payload length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A message grew past `max_message_size`.
    MessageSize {
        /// The limit.
        max: usize,
    },
    /// A message had more than `max_fragments` frames.
    Fragments {
        /// The limit.
        max: usize,
    },
}

/// Framing rules of RFC 6455 a peer broke. Each fails the connection with 1002.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// §5.1: a client sent an unmasked frame to a server.
    UnmaskedFrame,
    /// §5.1: a server sent a masked frame to a client.
    MaskedFrame,
    /// §5.2: an RSV bit that no negotiated extension claims was set.
    ReservedBits(u8),
    /// §5.2: opcodes 0x3–0x7 and 0xB–0xF are reserved.
    ReservedOpcode(u8),
    /// §5.2: the most significant bit of a 64-bit payload length must be 0.
    InvalidLength,
    /// §5.5: control frames must not be fragmented.
    FragmentedControl,
    /// §5.5: control frames carry at most 125 bytes of payload.
    ControlTooLong,
    /// §5.4: a continuation frame arrived with no message in progress.
    UnexpectedContinuation,
    /// §5.4: a new data frame arrived while a fragmented message was in progress.
    ExpectedContinuation,
    /// §5.5.1: a close frame with a 1-byte payload.
    CloseTooShort,
    /// §7.4: a close code that may not be received.
    InvalidCloseCode(u16),
}

/// An error from a negotiated extension, with the close code it warrants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionError {
    /// The close code to send (1002, 1007 or 1009 usually).
    pub code: CloseCode,
    /// A short human-readable reason.
    pub reason: &'static str,
}

impl Error {
    /// The close code this error is reported to the peer with (RFC 6455 §7.4.1).
    ///
    /// [`Error::AbnormalClosure`] and [`Error::Aborted`] map to 1006, which is
    /// never put on the wire: no close frame is sent for them.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(_) => CloseCode::PROTOCOL_ERROR,
            Error::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            Error::MessageTooBig(_) => CloseCode::MESSAGE_TOO_BIG,
            Error::Extension(e) => e.code,
            Error::AbnormalClosure | Error::Aborted(_) => CloseCode::ABNORMAL,
        }
    }

    /// A short reason suitable for a close frame (ASCII, under 123 bytes).
    pub fn close_reason(&self) -> &'static str {
        match self {
            Error::Protocol(p) => p.reason(),
            Error::InvalidUtf8 => "invalid UTF-8",
            Error::MessageTooBig(LimitExceeded::FrameSize { .. }) => "frame too big",
            Error::MessageTooBig(LimitExceeded::MessageSize { .. }) => "message too big",
            Error::MessageTooBig(LimitExceeded::Fragments { .. }) => "too many fragments",
            Error::Extension(e) => e.reason,
            Error::AbnormalClosure => "connection closed without a close frame",
            Error::Aborted(why) => why,
        }
    }
}

impl ProtocolError {
    fn reason(&self) -> &'static str {
        match self {
            ProtocolError::UnmaskedFrame => "unmasked client frame",
            ProtocolError::MaskedFrame => "masked server frame",
            ProtocolError::ReservedBits(_) => "reserved bits set",
            ProtocolError::ReservedOpcode(_) => "reserved opcode",
            ProtocolError::InvalidLength => "invalid payload length",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::ControlTooLong => "control frame too long",
            ProtocolError::UnexpectedContinuation => "unexpected continuation frame",
            ProtocolError::ExpectedContinuation => "expected continuation frame",
            ProtocolError::CloseTooShort => "close payload of 1 byte",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(ProtocolError::ReservedOpcode(op)) => {
                write!(f, "protocol error: reserved opcode {op:#x}")
            }
            Error::Protocol(ProtocolError::ReservedBits(bits)) => {
                write!(f, "protocol error: reserved bits {bits:#05b} set")
            }
            Error::Protocol(ProtocolError::InvalidCloseCode(code)) => {
                write!(f, "protocol error: invalid close code {code}")
            }
            Error::Protocol(p) => write!(f, "protocol error: {}", p.reason()),
            Error::MessageTooBig(LimitExceeded::FrameSize { len, max }) => {
                write!(f, "frame of {len} bytes is over the limit of {max}")
            }
            Error::MessageTooBig(LimitExceeded::MessageSize { max }) => {
                write!(f, "message is over the limit of {max} bytes")
            }
            Error::MessageTooBig(LimitExceeded::Fragments { max }) => {
                write!(f, "message has more than {max} fragments")
            }
            other => f.write_str(other.close_reason()),
        }?;
        write!(f, " (close code {})", self.close_code())
    }
}

impl std::error::Error for Error {}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close code {})", self.reason, self.code)
    }
}

impl std::error::Error for ExtensionError {}

/// Why a message or control frame could not be sent. Sending errors never fail
/// the connection; they reject the one call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent (§5.5.1: no data after a close) or the
    /// connection has failed.
    Closed,
    /// A ping, pong or close payload over 125 bytes (§5.5).
    ControlTooLong,
    /// A close code that may not be sent (§7.4).
    InvalidCloseCode(u16),
    /// A text fragment that makes the message invalid UTF-8.
    InvalidUtf8,
    /// A whole message was sent while a fragmented one was in progress, or a
    /// continuation with none in progress.
    FragmentSequence,
    /// The extension failed to encode the message.
    Extension(ExtensionError),
    /// [`Connection::send_raw_frame`](crate::Connection::send_raw_frame) on a
    /// client connection: client frames must be masked with a fresh key each
    /// (§5.3), so they cannot be encoded once and shared.
    RawFrameRole,
    /// A raw frame that is not one whole unmasked text or binary frame with
    /// FIN set and only the negotiated extension's RSV bits.
    InvalidRawFrame,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("the connection is closing or closed"),
            SendError::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            SendError::InvalidCloseCode(c) => write!(f, "close code {c} may not be sent"),
            SendError::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
            SendError::FragmentSequence => f.write_str("fragmented message out of sequence"),
            SendError::Extension(e) => write!(f, "extension: {e}"),
            SendError::RawFrameRole => f.write_str("raw frames can be sent by a server only"),
            SendError::InvalidRawFrame => f.write_str("not one whole unmasked data frame"),
        }
    }
}

impl std::error::Error for SendError {}
