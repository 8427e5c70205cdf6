//! Close codes and close frames (RFC 6455 §5.5.1, §7.4, and the IANA registry).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, ProtocolError};
use crate::utf8;

/// A close status code (RFC 6455 §7.4).
///
/// Any `u16` can be represented so that a peer's code can be reported as it was
/// received; [`CloseCode::is_sendable`] and [`CloseCode::is_valid_received`] say
/// which codes may appear on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose for which the connection was established has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: an endpoint is going away (server shutting down, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the endpoint is terminating the connection due to a protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data within a message was not consistent with its type (e.g. bad UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message is too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension it did not.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012 (IANA): the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013 (IANA): try again later (e.g. overloaded).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014 (IANA): a gateway or proxy received an invalid response upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: the TLS handshake failed. Never sent on the wire.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether a close frame received with this code is acceptable.
    ///
    /// RFC 6455 §7.4.1/§7.4.2 and the IANA registry: 1000–1003, 1007–1014 and
    /// 3000–4999 are valid. 1004 is reserved, 1005, 1006 and 1015 must never be
    /// sent, codes below 1000 are unused and 1016–2999 are unassigned; receiving
    /// any of them is a protocol error.
    pub fn is_valid_received(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether this endpoint may send the code. Same set as
    /// [`is_valid_received`](Self::is_valid_received).
    pub fn is_sendable(self) -> bool {
        self.is_valid_received()
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The largest reason a close frame can carry: 125 bytes of payload less the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// The body of a close frame: a code and a UTF-8 reason of at most 123 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason; may be empty.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with the given code and reason.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<String>) -> Self {
        CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }
    }

    /// Parse a received close payload (RFC 6455 §5.5.1).
    ///
    /// An empty payload is `Ok(None)` (the peer gave no code; applications see
    /// 1005). A 1-byte payload, a code that may not be received, or a reason
    /// that is not UTF-8 is an error.
    pub fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, Error> {
        match payload {
            [] => Ok(None),
            [_] => Err(Error::Protocol(ProtocolError::CloseTooShort)),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid_received() {
                    return Err(Error::Protocol(ProtocolError::InvalidCloseCode(code.0)));
                }
                let reason = utf8::validate(reason).map_err(|_| Error::InvalidUtf8)?.to_owned();
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// Encode as a close payload: the code in network order, then the reason.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(2 + self.reason.len());
        b.put_u16(self.code.0);
        b.put_slice(self.reason.as_bytes());
        b.freeze()
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.code, self.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_7_4_valid_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode(code).is_valid_received(), "{code}");
        }
        for code in [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(code).is_valid_received(), "{code}");
        }
    }

    #[test]
    fn rfc6455_5_5_1_close_payload() {
        assert_eq!(CloseFrame::parse(&[]).unwrap(), None);
        assert_eq!(
            CloseFrame::parse(&[0x03]).unwrap_err().close_code(),
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, b'o', b'k']).unwrap(),
            Some(CloseFrame::new(1000, "ok"))
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xed]).unwrap_err().close_code(),
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, 0xff]).unwrap_err().close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        let f = CloseFrame::new(4000, "bye");
        assert_eq!(CloseFrame::parse(&f.encode()).unwrap(), Some(f));
    }
}
