//! Extensions: the `Sec-WebSocket-Extensions` header grammar and the hook a
//! negotiated extension (such as permessage-deflate) plugs into.
//!
//! RFC 6455 §9.1:
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//! "When using the quoted-string syntax variant, the value after quoted-string
//! unescaping MUST conform to the 'token' ABNF."

use std::fmt;

use bytes::BytesMut;

use crate::error::ExtensionError;
use crate::message::DataKind;

/// One extension in a `Sec-WebSocket-Extensions` header, with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Its parameters in the order given.
    pub params: Vec<ExtensionParam>,
}

/// An extension parameter: a token with an optional value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionParam {
    /// The parameter name.
    pub name: String,
    /// The value, unquoted; `None` when the parameter had no `=`.
    pub value: Option<String>,
}

impl ExtensionOffer {
    /// An offer with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        ExtensionOffer {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Add a parameter.
    pub fn param(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.params.push(ExtensionParam {
            name: name.into(),
            value: value.map(str::to_owned),
        });
        self
    }
}

impl fmt::Display for ExtensionOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for p in &self.params {
            write!(f, "; {}", p.name)?;
            if let Some(v) = &p.value {
                if !v.is_empty() && v.bytes().all(is_tchar) {
                    write!(f, "={v}")?;
                } else {
                    f.write_str("=\"")?;
                    for c in v.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
            }
        }
        Ok(())
    }
}

/// Format a list of extensions as a header value.
pub fn format_extensions(list: &[ExtensionOffer]) -> String {
    let mut s = String::new();
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&e.to_string());
    }
    s
}

/// The header value does not follow the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionSyntaxError;

impl fmt::Display for ExtensionSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed Sec-WebSocket-Extensions header")
    }
}

impl std::error::Error for ExtensionSyntaxError {}

/// RFC 7230 §3.2.6 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ows(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn token(&mut self) -> Result<String, ExtensionSyntaxError> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        if self.i == start {
            return Err(ExtensionSyntaxError);
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, ExtensionSyntaxError> {
        // Called at the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ExtensionSyntaxError),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    let c = *self.s.get(self.i + 1).ok_or(ExtensionSyntaxError)?;
                    out.push(c);
                    self.i += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        if out.is_empty() || !out.iter().copied().all(is_tchar) {
            return Err(ExtensionSyntaxError);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Parse one or more `Sec-WebSocket-Extensions` header values (repeated headers
/// are one comma-separated list). Linear in the input; empty list elements are
/// skipped as RFC 7230 §7 allows.
pub fn parse_extensions<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<ExtensionOffer>, ExtensionSyntaxError> {
    let mut out = Vec::new();
    for value in values {
        let mut c = Cursor { s: value, i: 0 };
        loop {
            c.skip_ows();
            match c.peek() {
                None => break,
                Some(b',') => {
                    c.i += 1;
                    continue;
                }
                Some(_) => {}
            }
            let mut ext = ExtensionOffer::new(c.token()?);
            loop {
                c.skip_ows();
                match c.peek() {
                    None => break,
                    Some(b',') => {
                        c.i += 1;
                        break;
                    }
                    Some(b';') => {
                        c.i += 1;
                        c.skip_ows();
                        let name = c.token()?;
                        c.skip_ows();
                        let value = if c.peek() == Some(b'=') {
                            c.i += 1;
                            c.skip_ows();
                            Some(if c.peek() == Some(b'"') {
                                c.quoted()?
                            } else {
                                c.token()?
                            })
                        } else {
                            None
                        };
                        ext.params.push(ExtensionParam { name, value });
                    }
                    Some(_) => return Err(ExtensionSyntaxError),
                }
            }
            out.push(ext);
        }
    }
    Ok(out)
}

/// What [`Extension::encode`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoded {
    /// The payload goes out as it was (e.g. under a compression threshold).
    Unchanged,
    /// `out` holds the transformed payload; set these RSV bits on the first frame.
    Transformed {
        /// RSV bits, RSV1 as `0b100`.
        rsv: u8,
    },
}

/// A negotiated extension that transforms data messages.
///
/// The connection calls it for data frames only (never for control frames).
/// An extension claims RSV bits with [`rsv_bits`](Extension::rsv_bits); a frame
/// with any other RSV bit set fails the connection with 1002.
pub trait Extension: Send + fmt::Debug {
    /// The extension token, as negotiated.
    fn name(&self) -> &str;

    /// The RSV bits this extension may set (RSV1 is `0b100`).
    fn rsv_bits(&self) -> u8;

    /// The negotiated parameters, for display (e.g. `permessage-deflate;
    /// server_no_context_takeover`).
    fn describe(&self) -> String {
        self.name().to_owned()
    }

    /// The extension as [`Any`](std::any::Any), so that code which knows the
    /// concrete type can look at it (e.g.
    /// [`SharedCompression::of`](crate::deflate::SharedCompression::of)).
    /// `None` (the default) keeps it opaque.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Decode one frame of a received message whose first frame carried
    /// `first_rsv` (only this extension's bits). Append the decoded bytes to
    /// `out`, never making `out` longer than `max_len` (fail with 1009 first).
    fn decode(
        &mut self,
        first_rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError>;

    /// Encode one piece of an outgoing message (`first`/`fin` mark its ends;
    /// a whole message is one piece with both set). The choice made on the
    /// first piece holds for the rest of the message.
    fn encode(
        &mut self,
        kind: DataKind,
        payload: &[u8],
        first: bool,
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<Encoded, ExtensionError>;
}

/// The server's side of negotiating one extension.
pub trait ServerExtension: Send + Sync + fmt::Debug {
    /// The extension token this negotiator answers to.
    fn name(&self) -> &str;

    /// Look at the client's offers for this extension, in the client's order
    /// of preference, and accept at most one: the response parameters for the
    /// `Sec-WebSocket-Extensions` header and the extension to run. Malformed
    /// offers are declined by skipping them.
    fn negotiate(&self, offers: &[&ExtensionOffer]) -> Option<(ExtensionOffer, Box<dyn Extension>)>;
}

/// The client's side of negotiating one extension.
pub trait ClientExtension: Send + Sync + fmt::Debug {
    /// The extension token.
    fn name(&self) -> &str;

    /// The offers to send, most preferred first.
    fn offers(&self) -> Vec<ExtensionOffer>;

    /// The server accepted with these parameters: check them and build the
    /// extension, or refuse (the client then fails the connection).
    fn accept(&self, response: &ExtensionOffer) -> Result<Box<dyn Extension>, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<ExtensionOffer>, ExtensionSyntaxError> {
        parse_extensions([s.as_bytes()])
    }

    #[test]
    fn rfc6455_9_1_tokens_params_and_quoted_strings() {
        let v = parse(
            "permessage-deflate; client_max_window_bits, permessage-deflate ;server_max_window_bits=\"10\" , x-foo",
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            ExtensionOffer::new("permessage-deflate").param("client_max_window_bits", None)
        );
        assert_eq!(
            v[1],
            ExtensionOffer::new("permessage-deflate").param("server_max_window_bits", Some("10"))
        );
        assert_eq!(v[2], ExtensionOffer::new("x-foo"));
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse(" , ,a").unwrap(), vec![ExtensionOffer::new("a")]);
    }

    #[test]
    fn rfc6455_9_1_malformed() {
        for bad in [
            "a;",
            "a;=1",
            "a; b=",
            "a b",
            "a; b=\"\"",
            "a; b=\"x y\"",
            "a; b=\"unterminated",
            ";a",
            "a; b=\"\\",
            "a=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        let e = ExtensionOffer::new("permessage-deflate")
            .param("client_max_window_bits", None)
            .param("server_max_window_bits", Some("10"));
        let s = format_extensions(&[e.clone(), ExtensionOffer::new("x")]);
        assert_eq!(
            s,
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x"
        );
        assert_eq!(parse(&s).unwrap(), vec![e, ExtensionOffer::new("x")]);
    }
}
