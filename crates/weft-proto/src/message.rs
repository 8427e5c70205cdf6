//! Messages, events and the text type.

use std::fmt;

use bytes::Bytes;

use crate::close::CloseFrame;
use crate::utf8::{self, Utf8Error};

/// UTF-8 text held in reference-counted [`Bytes`], so that a received text
/// message is handed up without copying its payload again (a large one is
/// split off the receive buffer; one under 256 bytes is copied out of it once)
/// and can be echoed or fanned out without a copy.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Text(Bytes);

impl Text {
    /// Check `bytes` and wrap them.
    pub fn from_bytes(bytes: Bytes) -> Result<Text, Utf8Error> {
        utf8::validate(&bytes)?;
        Ok(Text(bytes))
    }

    /// Wrap bytes this crate has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Text {
        Text(bytes)
    }

    /// The text as a `&str`.
    ///
    /// The bytes were validated when the `Text` was made; because this crate
    /// has no `unsafe`, the view is re-checked with SIMD (tens of GB/s), which
    /// cannot fail.
    pub fn as_str(&self) -> &str {
        utf8::validate(&self.0).unwrap_or_default()
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&'static str> for Message {
    fn from(s: &'static str) -> Self {
        Message::Text(Text(Bytes::from_static(s.as_bytes())))
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Message::Binary(v.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// The two kinds of data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Binary data (opcode 0x2).
    Binary,
}

/// A whole data message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(Text),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// Whether it is text or binary.
    pub fn kind(&self) -> DataKind {
        match self {
            Message::Text(_) => DataKind::Text,
            Message::Binary(_) => DataKind::Binary,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload, as reference-counted bytes.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// A text message's text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
        }
    }
}

/// One piece of a message, delivered as it arrives when
/// [`Config::deliver_fragments`](crate::Config::deliver_fragments) is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The kind of the message this fragment belongs to.
    pub kind: DataKind,
    /// The payload of this piece. For text, the bytes seen so far are a valid
    /// UTF-8 prefix, but one piece may end inside a code point.
    pub data: Bytes,
    /// This is the first piece of a message.
    pub first: bool,
    /// This is the last piece of a message.
    pub fin: bool,
}

/// What the connection hands up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole message.
    Message(Message),
    /// A piece of a message (streaming mode only).
    Fragment(Fragment),
    /// A ping arrived; the pong is already queued.
    Ping(Bytes),
    /// A pong arrived (solicited or not).
    Pong(Bytes),
    /// The peer's close frame arrived (`None`: it carried no code, i.e. 1005).
    /// If this side had not sent a close, the reply is already queued. Nothing
    /// is delivered after it.
    Close(Option<CloseFrame>),
}
