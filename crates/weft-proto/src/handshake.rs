//! The opening handshake (RFC 6455 §4), both roles.
//!
//! Server: [`HeadScanner`] finds the end of the request head in linear time
//! (each byte is looked at once, however the head is split across reads),
//! [`Request::parse`] parses it with bounded header count and size, and
//! [`UpgradeRequest::new`] checks it against §4.2.1. The application then
//! [`accept`](UpgradeRequest::accept)s (choosing a subprotocol, negotiating
//! extensions, adding headers) or answers a [`HandshakeError`]'s response.
//!
//! Client: [`ClientHandshake::new`] builds the request with a fresh random key;
//! [`ClientHandshake::parse_response`] checks the server's answer (§4.1).
//!
//! In both roles the bytes after the head belong to the WebSocket: the caller
//! hands them to the [`Connection`](crate::Connection) so the first frame is
//! never lost.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use crate::extension::{
    ClientExtension, Extension, ExtensionOffer, ServerExtension, format_extensions, is_tchar, parse_extensions,
};

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The computed `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (§4.2.2).
///
/// ```
/// assert_eq!(weft_proto::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(h.finalize())
}

/// Bounds on the request or response head.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// The largest head, request line and headers included (default 16 KiB).
    pub max_head_size: usize,
    /// The most header lines (default 64).
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_head_size: 16 * 1024,
            max_headers: 64,
        }
    }
}

impl HandshakeLimits {
    /// Set `max_head_size`.
    pub fn max_head_size(mut self, n: usize) -> Self {
        self.max_head_size = n;
        self
    }
    /// Set `max_headers`.
    pub fn max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }
}

/// Finds the blank line that ends an HTTP head, scanning each byte once.
#[derive(Clone, Debug)]
pub struct HeadScanner {
    scanned: usize,
    max: usize,
}

/// The head grew past the size limit without ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadTooLarge;

impl HeadScanner {
    /// A scanner that gives up after `max_head_size` bytes.
    pub fn new(max_head_size: usize) -> Self {
        HeadScanner {
            scanned: 0,
            max: max_head_size,
        }
    }

    /// Look at `buf` (everything received so far, growing between calls) and
    /// return the head's length, blank line included, once it is complete.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, HeadTooLarge> {
        let start = self.scanned.saturating_sub(3);
        let end = buf.len().min(self.max);
        if let Some(i) = buf[start.min(end)..end].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(start + i + 4));
        }
        self.scanned = end;
        if buf.len() >= self.max {
            Err(HeadTooLarge)
        } else {
            Ok(None)
        }
    }
}

/// One header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The name as received.
    pub name: String,
    /// The raw value (surrounding whitespace trimmed).
    pub value: Vec<u8>,
}

/// Headers, looked up case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// The first value of `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// How many lines named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    /// Every header line.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    fn from_httparse(raw: &[httparse::Header<'_>]) -> Headers {
        Headers(
            raw.iter()
                .map(|h| Header {
                    name: h.name.to_owned(),
                    value: h.value.trim_ascii().to_vec(),
                })
                .collect(),
        )
    }
}

/// Whether a comma-separated header (Connection, Upgrade) holds `token`,
/// case-insensitively, across all its lines.
fn has_token<'a>(values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Splits comma-separated tokens (Sec-WebSocket-Protocol), skipping empty
/// elements; `None` if one is not a token.
fn token_list<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for t in values.flat_map(|v| v.split(|&b| b == b',')) {
        let t = t.trim_ascii();
        if t.is_empty() {
            continue;
        }
        if !t.iter().copied().all(is_tchar) {
            return None;
        }
        out.push(String::from_utf8_lossy(t).into_owned());
    }
    Some(out)
}

/// Why a handshake was refused. On the server each variant knows its HTTP
/// status and a one-line reason; [`response`](HandshakeError::response) is
/// the whole answer to write before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head was not valid HTTP/1.1 (400).
    Malformed(&'static str),
    /// The head went past `max_head_size` or had more than `max_headers`
    /// lines (431).
    HeadTooLarge,
    /// §4.2.1/1: the method must be GET (405, with `Allow: GET`).
    MethodNotGet(String),
    /// §4.2.1/1: HTTP/1.1 or later is required (400).
    HttpVersion,
    /// §4.2.1/2: one `Host` header is required (400).
    Host,
    /// §4.2.1/3: no `Upgrade: websocket` (426, with `Upgrade: websocket`).
    NotUpgrade,
    /// §4.2.1/4: `Connection` lacks the `Upgrade` token (400).
    ConnectionNotUpgrade,
    /// §4.2.1/6: `Sec-WebSocket-Version` is not 13 (426, with
    /// `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// §4.2.1/5: `Sec-WebSocket-Key` is missing, repeated, or does not decode
    /// to 16 bytes (400).
    InvalidKey,
    /// `Sec-WebSocket-Protocol` or `Sec-WebSocket-Extensions` is malformed (400).
    InvalidHeader(&'static str),
    /// The application refused the request with this status and reason
    /// (e.g. 401, 403 for a disallowed Origin, 404 for an unknown path).
    Rejected {
        /// The HTTP status.
        status: u16,
        /// A one-line reason, sent as the body.
        reason: String,
    },
}

impl HandshakeError {
    /// The HTTP status the server answers with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::Malformed(_)
            | HandshakeError::HttpVersion
            | HandshakeError::Host
            | HandshakeError::ConnectionNotUpgrade
            | HandshakeError::InvalidKey
            | HandshakeError::InvalidHeader(_) => 400,
            HandshakeError::MethodNotGet(_) => 405,
            HandshakeError::HeadTooLarge => 431,
            HandshakeError::NotUpgrade | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::Rejected { status, .. } => *status,
        }
    }

    /// Refuse with `status` and a reason.
    pub fn reject(status: u16, reason: impl Into<String>) -> Self {
        HandshakeError::Rejected {
            status,
            reason: reason.into(),
        }
    }

    /// The complete HTTP response: status line, headers the status calls for,
    /// `Connection: close`, and the reason as a one-line text body.
    pub fn response(&self) -> Vec<u8> {
        let extra: &str = match self {
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n",
            HandshakeError::NotUpgrade => "Upgrade: websocket\r\n",
            HandshakeError::MethodNotGet(_) => "Allow: GET\r\n",
            _ => "",
        };
        let body = format!("{}\n", self.reason_line());
        let status = self.status();
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            reason_phrase(status),
            body.len()
        )
        .into_bytes()
    }

    fn reason_line(&self) -> String {
        let s = self.to_string();
        // One line, whatever an application passed in.
        s.replace(['\r', '\n'], " ")
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(why) => write!(f, "malformed HTTP request: {why}"),
            HandshakeError::HeadTooLarge => f.write_str("request head too large"),
            HandshakeError::MethodNotGet(m) => write!(f, "a WebSocket upgrade must use GET, not {m}"),
            HandshakeError::HttpVersion => f.write_str("a WebSocket upgrade requires HTTP/1.1 or later"),
            HandshakeError::Host => f.write_str("missing or repeated Host header"),
            HandshakeError::NotUpgrade => f.write_str("this is a WebSocket endpoint: send Upgrade: websocket"),
            HandshakeError::ConnectionNotUpgrade => f.write_str("the Connection header must include Upgrade"),
            HandshakeError::UnsupportedVersion => f.write_str("unsupported Sec-WebSocket-Version (13 is supported)"),
            HandshakeError::InvalidKey => f.write_str("Sec-WebSocket-Key must be base64 of 16 bytes"),
            HandshakeError::InvalidHeader(h) => write!(f, "malformed {h} header"),
            HandshakeError::Rejected { reason, .. } => f.write_str(reason),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// The reason phrase for the statuses a handshake answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A parsed HTTP request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target, path and query, e.g. `/chat?room=1`.
    pub target: String,
    /// The HTTP minor version (1 for HTTP/1.1).
    pub version: u8,
    /// The headers.
    pub headers: Headers,
}

impl Request {
    /// Parse a complete head (as delimited by [`HeadScanner`]).
    pub fn parse(head: &[u8], limits: &HandshakeLimits) -> Result<Request, HandshakeError> {
        if head.len() > limits.max_head_size {
            return Err(HandshakeError::HeadTooLarge);
        }
        let mut raw = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut req = httparse::Request::new(&mut raw);
        match req.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HandshakeError::Malformed("incomplete head")),
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadTooLarge),
            Err(e) => return Err(HandshakeError::Malformed(parse_error(e))),
        }
        Ok(Request {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            version: req.version.unwrap_or(0),
            headers: Headers::from_httparse(req.headers),
        })
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid HTTP version",
        _ => "invalid request",
    }
}

/// A request checked against RFC 6455 §4.2.1, waiting for the application to
/// accept or reject it.
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    request: Request,
    key: Vec<u8>,
    protocols: Vec<String>,
    extensions: Vec<ExtensionOffer>,
}

/// How the server accepts an upgrade.
#[derive(Clone, Debug, Default)]
pub struct Accept {
    /// The subprotocol chosen among those offered (§4.2.2/5.4).
    pub protocol: Option<String>,
    /// Extension negotiators, in the server's order of preference.
    pub extensions: Vec<Arc<dyn ServerExtension>>,
    /// Extra response headers (name, value).
    pub headers: Vec<(String, String)>,
}

/// What an accepted handshake produced.
#[derive(Debug)]
pub struct Accepted {
    /// The 101 response to write.
    pub response: Vec<u8>,
    /// The chosen subprotocol.
    pub protocol: Option<String>,
    /// The negotiated extension, to install on the connection.
    pub extension: Option<Box<dyn Extension>>,
    /// The `Sec-WebSocket-Extensions` value sent, if any.
    pub extensions_header: Option<String>,
}

impl UpgradeRequest {
    /// Check a request (§4.2.1). The first rule broken decides the error.
    pub fn new(request: Request) -> Result<UpgradeRequest, HandshakeError> {
        let h = &request.headers;
        // 1. "An HTTP/1.1 or higher GET request"
        if request.method != "GET" {
            return Err(HandshakeError::MethodNotGet(request.method.clone()));
        }
        if request.version < 1 {
            return Err(HandshakeError::HttpVersion);
        }
        // 2. "A |Host| header field"
        if h.count("host") != 1 {
            return Err(HandshakeError::Host);
        }
        // 3. "An |Upgrade| header field containing the value "websocket""
        if !has_token(h.get_all("upgrade"), "websocket") {
            return Err(HandshakeError::NotUpgrade);
        }
        // 4. "A |Connection| header field that includes the token "Upgrade""
        if !has_token(h.get_all("connection"), "upgrade") {
            return Err(HandshakeError::ConnectionNotUpgrade);
        }
        // 6. "A |Sec-WebSocket-Version| header field, with a value of 13"
        // (checked before the key so that a client of another version learns
        // which one we speak, §4.4).
        if h.count("sec-websocket-version") != 1 || h.get("sec-websocket-version") != Some(b"13".as_slice()) {
            return Err(HandshakeError::UnsupportedVersion);
        }
        // 5. "A |Sec-WebSocket-Key| header field with a base64-encoded value
        // that, when decoded, is 16 bytes in length."
        if h.count("sec-websocket-key") != 1 {
            return Err(HandshakeError::InvalidKey);
        }
        let key = h.get("sec-websocket-key").unwrap_or_default().to_vec();
        match BASE64.decode(&key) {
            Ok(k) if k.len() == 16 => {}
            _ => return Err(HandshakeError::InvalidKey),
        }
        // 8, 9. Optional protocols and extensions, which must parse.
        let protocols = token_list(h.get_all("sec-websocket-protocol"))
            .ok_or(HandshakeError::InvalidHeader("Sec-WebSocket-Protocol"))?;
        let extensions = parse_extensions(h.get_all("sec-websocket-extensions"))
            .map_err(|_| HandshakeError::InvalidHeader("Sec-WebSocket-Extensions"))?;
        Ok(UpgradeRequest {
            request,
            key,
            protocols,
            extensions,
        })
    }

    /// The HTTP request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request path, without the query.
    pub fn path(&self) -> &str {
        self.request.path()
    }

    /// The query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.request.query()
    }

    /// The `Origin` header (§4.2.1/7), if sent.
    pub fn origin(&self) -> Option<&str> {
        self.request.headers.get_str("origin")
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.request.headers.get_str("host")
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The extensions the client offered, in order.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// The client's `Sec-WebSocket-Key`.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Build the 101 response (§4.2.2). A chosen subprotocol that the client
    /// did not offer is not sent (the client would have to fail). Extension
    /// negotiators see the client's offers for their token in order; the first
    /// that accepts one is used.
    pub fn accept(&self, accept: &Accept) -> Accepted {
        let protocol = accept
            .protocol
            .clone()
            .filter(|p| self.protocols.iter().any(|o| o == p));
        let mut extension = None;
        let mut extensions_header = None;
        'offers: for offer in &self.extensions {
            for neg in &accept.extensions {
                if !neg.name().eq_ignore_ascii_case(&offer.name) {
                    continue;
                }
                let same: Vec<&ExtensionOffer> = self
                    .extensions
                    .iter()
                    .filter(|o| o.name.eq_ignore_ascii_case(&offer.name))
                    .collect();
                if let Some((params, ext)) = neg.negotiate(&same) {
                    extensions_header = Some(format_extensions(&[params]));
                    extension = Some(ext);
                    break 'offers;
                }
            }
        }
        let mut r = String::with_capacity(160);
        r.push_str(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        r.push_str(&accept_key(&self.key));
        r.push_str("\r\n");
        if let Some(p) = &protocol {
            r.push_str("Sec-WebSocket-Protocol: ");
            r.push_str(p);
            r.push_str("\r\n");
        }
        if let Some(e) = &extensions_header {
            r.push_str("Sec-WebSocket-Extensions: ");
            r.push_str(e);
            r.push_str("\r\n");
        }
        for (n, v) in &accept.headers {
            if is_header_safe(n) && is_header_safe(v) {
                r.push_str(n);
                r.push_str(": ");
                r.push_str(v);
                r.push_str("\r\n");
            }
        }
        r.push_str("\r\n");
        Accepted {
            response: r.into_bytes(),
            protocol,
            extension,
            extensions_header,
        }
    }
}

/// No CR or LF: a header cannot be split into two by an application value.
fn is_header_safe(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// What the client asks for.
#[derive(Clone, Debug, Default)]
pub struct ClientRequest {
    /// The `Host` header: the host, and the port when it is not the scheme's
    /// default; IPv6 literals in brackets.
    pub host: String,
    /// Path and query, e.g. `/chat?room=1` (`/` when empty).
    pub target: String,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// Subprotocols to offer, most preferred first.
    pub protocols: Vec<String>,
    /// Extensions to offer.
    pub extensions: Vec<Arc<dyn ClientExtension>>,
    /// Extra headers (name, value).
    pub headers: Vec<(String, String)>,
}

/// Why the server's answer was refused (§4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// The response head was not valid HTTP.
    Malformed(&'static str),
    /// The response head was larger than the limit.
    HeadTooLarge,
    /// The status was not 101; the body, if any, is not read.
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The response lacks `Upgrade: websocket`.
    NotUpgrade,
    /// The response's `Connection` lacks `Upgrade`.
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Accept` is missing or wrong.
    AcceptMismatch,
    /// The server chose a subprotocol that was not offered.
    UnofferedProtocol(String),
    /// The server answered with an extension that was not offered, or more
    /// than one.
    UnofferedExtension(String),
    /// The client's extension refused the server's parameters.
    ExtensionRefused(String),
    /// A request field could not be sent (contains CR or LF).
    InvalidRequest(&'static str),
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientHandshakeError::Malformed(w) => write!(f, "malformed HTTP response: {w}"),
            ClientHandshakeError::HeadTooLarge => f.write_str("response head too large"),
            ClientHandshakeError::Status { status, reason } => {
                write!(f, "server answered HTTP {status} {reason} instead of 101")
            }
            ClientHandshakeError::NotUpgrade => f.write_str("response lacks Upgrade: websocket"),
            ClientHandshakeError::ConnectionNotUpgrade => f.write_str("response lacks Connection: Upgrade"),
            ClientHandshakeError::AcceptMismatch => f.write_str("Sec-WebSocket-Accept is missing or wrong"),
            ClientHandshakeError::UnofferedProtocol(p) => {
                write!(f, "server chose subprotocol {p:?}, which was not offered")
            }
            ClientHandshakeError::UnofferedExtension(e) => {
                write!(f, "server chose extension {e:?}, which was not offered")
            }
            ClientHandshakeError::ExtensionRefused(e) => write!(f, "extension parameters refused: {e}"),
            ClientHandshakeError::InvalidRequest(w) => write!(f, "invalid request: {w}"),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

/// The server's accepted answer.
#[derive(Debug)]
pub struct Response {
    /// The response headers.
    pub headers: Headers,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
    /// The negotiated extension, to install on the connection.
    pub extension: Option<Box<dyn Extension>>,
    /// The `Sec-WebSocket-Extensions` value received.
    pub extensions_header: Option<String>,
}

/// The client's half of the opening handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    key: String,
    request: ClientRequest,
    scanner: HeadScanner,
    limits: HandshakeLimits,
}

impl ClientHandshake {
    /// Build the request (§4.1) with a fresh key of 16 bytes from the
    /// operating system's CSPRNG. Returns the handshake and the bytes to send.
    pub fn new(
        request: ClientRequest,
        limits: HandshakeLimits,
    ) -> Result<(ClientHandshake, Vec<u8>), ClientHandshakeError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|_| ClientHandshakeError::InvalidRequest("no randomness for the key"))?;
        Self::with_key(request, limits, &BASE64.encode(raw))
    }

    /// Build the request with a given key (for tests and reproducible runs).
    pub fn with_key(
        request: ClientRequest,
        limits: HandshakeLimits,
        key: &str,
    ) -> Result<(ClientHandshake, Vec<u8>), ClientHandshakeError> {
        let target = if request.target.is_empty() {
            "/"
        } else {
            &request.target
        };
        let mut r = String::with_capacity(256);
        r.push_str("GET ");
        r.push_str(target);
        r.push_str(" HTTP/1.1\r\nHost: ");
        r.push_str(&request.host);
        r.push_str("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
        r.push_str(key);
        r.push_str("\r\nSec-WebSocket-Version: 13\r\n");
        if let Some(o) = &request.origin {
            r.push_str("Origin: ");
            r.push_str(o);
            r.push_str("\r\n");
        }
        if !request.protocols.is_empty() {
            if request
                .protocols
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(is_tchar))
            {
                return Err(ClientHandshakeError::InvalidRequest("subprotocol is not a token"));
            }
            r.push_str("Sec-WebSocket-Protocol: ");
            r.push_str(&request.protocols.join(", "));
            r.push_str("\r\n");
        }
        let offers: Vec<ExtensionOffer> = request.extensions.iter().flat_map(|e| e.offers()).collect();
        if !offers.is_empty() {
            r.push_str("Sec-WebSocket-Extensions: ");
            r.push_str(&format_extensions(&offers));
            r.push_str("\r\n");
        }
        for (n, v) in &request.headers {
            if !is_header_safe(n) || !is_header_safe(v) || n.is_empty() || !n.bytes().all(is_tchar) {
                return Err(ClientHandshakeError::InvalidRequest("header name or value"));
            }
            r.push_str(n);
            r.push_str(": ");
            r.push_str(v);
            r.push_str("\r\n");
        }
        if !is_header_safe(target) || target.contains(' ') || !is_header_safe(&request.host) {
            return Err(ClientHandshakeError::InvalidRequest("target or host"));
        }
        if request.origin.as_deref().is_some_and(|o| !is_header_safe(o)) {
            return Err(ClientHandshakeError::InvalidRequest("origin"));
        }
        r.push_str("\r\n");
        let hs = ClientHandshake {
            key: key.to_owned(),
            request,
            scanner: HeadScanner::new(limits.max_head_size),
            limits,
        };
        Ok((hs, r.into_bytes()))
    }

    /// The key sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Look at the bytes received so far. `Ok(None)`: the head is not complete
    /// yet. `Ok(Some((response, n)))`: the first `n` bytes were the head; what
    /// follows is WebSocket data for the connection.
    pub fn parse_response(&mut self, buf: &[u8]) -> Result<Option<(Response, usize)>, ClientHandshakeError> {
        let Some(n) = self.scanner.scan(buf).map_err(|_| ClientHandshakeError::HeadTooLarge)? else {
            return Ok(None);
        };
        let mut raw = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut resp = httparse::Response::new(&mut raw);
        match resp.parse(&buf[..n]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(ClientHandshakeError::Malformed("incomplete head")),
            Err(httparse::Error::TooManyHeaders) => return Err(ClientHandshakeError::HeadTooLarge),
            Err(e) => return Err(ClientHandshakeError::Malformed(parse_error(e))),
        }
        let status = resp.code.unwrap_or(0);
        let headers = Headers::from_httparse(resp.headers);
        // §4.1: "If the status code received from the server is not 101, the
        // client handles the response per HTTP procedures."
        if status != 101 {
            return Err(ClientHandshakeError::Status {
                status,
                reason: resp.reason.unwrap_or_default().to_owned(),
            });
        }
        if !has_token(headers.get_all("upgrade"), "websocket") {
            return Err(ClientHandshakeError::NotUpgrade);
        }
        if !has_token(headers.get_all("connection"), "upgrade") {
            return Err(ClientHandshakeError::ConnectionNotUpgrade);
        }
        if headers.get("sec-websocket-accept") != Some(accept_key(self.key.as_bytes()).as_bytes())
            || headers.count("sec-websocket-accept") != 1
        {
            return Err(ClientHandshakeError::AcceptMismatch);
        }
        let protocol = match token_list(headers.get_all("sec-websocket-protocol")) {
            None => return Err(ClientHandshakeError::UnofferedProtocol("(malformed)".into())),
            Some(list) if list.is_empty() => None,
            Some(list) if list.len() == 1 && self.request.protocols.contains(&list[0]) => list.into_iter().next(),
            Some(list) => return Err(ClientHandshakeError::UnofferedProtocol(list.join(", "))),
        };
        let answered = parse_extensions(headers.get_all("sec-websocket-extensions"))
            .map_err(|_| ClientHandshakeError::Malformed("Sec-WebSocket-Extensions"))?;
        let mut extension = None;
        for e in &answered {
            if extension.is_some() {
                return Err(ClientHandshakeError::UnofferedExtension(e.name.clone()));
            }
            let offered = self
                .request
                .extensions
                .iter()
                .find(|c| c.name().eq_ignore_ascii_case(&e.name))
                .ok_or_else(|| ClientHandshakeError::UnofferedExtension(e.name.clone()))?;
            extension = Some(offered.accept(e).map_err(ClientHandshakeError::ExtensionRefused)?);
        }
        let extensions_header = (!answered.is_empty()).then(|| format_extensions(&answered));
        Ok(Some((
            Response {
                headers,
                protocol,
                extension,
                extensions_header,
            },
            n,
        )))
    }
}
