//! Shared helpers for the integration tests: a frame codec written
//! independently of the crate's (so the crate is not tested against itself),
//! and a toy extension for the extension hook.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use bytes::BytesMut;
use weft_proto::{
    ClientExtension, Connection, DataKind, Encoded, Error, Event, Extension, ExtensionError, ExtensionOffer,
    ServerExtension,
};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The masking key of the RFC 6455 §5.7 examples.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// How to write the payload length field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LenForm {
    /// The shortest form, as §5.2 requires of senders.
    Shortest,
    /// Always the 64-bit form.
    Long,
    /// Announce this length whatever the payload is (to lie about it).
    Announce(u64),
}

/// One frame, as raw as it gets. `payload` is always the unmasked payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    /// RSV1 is 0b100.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
    pub len_form: LenForm,
}

impl RawFrame {
    /// A final frame masked with [`KEY`] (what a client sends).
    pub fn new(opcode: u8, payload: impl AsRef<[u8]>) -> Self {
        RawFrame {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(KEY),
            payload: payload.as_ref().to_vec(),
            len_form: LenForm::Shortest,
        }
    }
    pub fn text(s: impl AsRef<[u8]>) -> Self {
        Self::new(OP_TEXT, s)
    }
    pub fn binary(b: impl AsRef<[u8]>) -> Self {
        Self::new(OP_BINARY, b)
    }
    pub fn cont(b: impl AsRef<[u8]>) -> Self {
        Self::new(OP_CONT, b)
    }
    pub fn ping(b: impl AsRef<[u8]>) -> Self {
        Self::new(OP_PING, b)
    }
    pub fn pong(b: impl AsRef<[u8]>) -> Self {
        Self::new(OP_PONG, b)
    }
    /// A close frame with a code and a reason.
    pub fn close(code: u16, reason: impl AsRef<[u8]>) -> Self {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_ref());
        Self::new(OP_CLOSE, p)
    }
    /// A close frame with an empty payload.
    pub fn close_empty() -> Self {
        Self::new(OP_CLOSE, [])
    }
    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }
    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }
    pub fn mask(mut self, key: [u8; 4]) -> Self {
        self.mask = Some(key);
        self
    }
    /// No mask (what a server sends).
    pub fn unmasked(mut self) -> Self {
        self.mask = None;
        self
    }
    pub fn len_form(mut self, f: LenForm) -> Self {
        self.len_form = f;
        self
    }

    /// The frame on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.payload.len() + 14);
        v.push((u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.opcode & 0x0f));
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        let len = match self.len_form {
            LenForm::Announce(n) => n,
            _ => self.payload.len() as u64,
        };
        let long = self.len_form == LenForm::Long || len > 0xffff;
        if long {
            v.push(m | 127);
            v.extend_from_slice(&len.to_be_bytes());
        } else if len > 125 {
            v.push(m | 126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            v.push(m | len as u8);
        }
        match self.mask {
            Some(key) => {
                v.extend_from_slice(&key);
                v.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => v.extend_from_slice(&self.payload),
        }
        v
    }

    /// The close code of a close frame, if it carries one.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Concatenate encoded frames.
pub fn wire(frames: &[RawFrame]) -> Vec<u8> {
    frames.iter().flat_map(RawFrame::encode).collect()
}

/// Parse one frame from the start of `buf`: the frame (unmasked) and its
/// length on the wire, or `None` if `buf` holds less than a whole frame.
pub fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (b0, b1) = (buf[0], buf[1]);
    let mut n = 2;
    let len = match b1 & 0x7f {
        126 => {
            let l = u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()));
            assert!(l > 125, "non-minimal 16-bit length {l}");
            n = 4;
            l
        }
        127 => {
            let l = u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap());
            assert!(l > 0xffff && l >> 63 == 0, "bad 64-bit length {l}");
            n = 10;
            l
        }
        l => u64::from(l),
    };
    let mask = if b1 & 0x80 != 0 {
        let k: [u8; 4] = buf.get(n..n + 4)?.try_into().unwrap();
        n += 4;
        Some(k)
    } else {
        None
    };
    let len = usize::try_from(len).unwrap();
    let raw = buf.get(n..n + len)?;
    let payload = match mask {
        Some(k) => raw.iter().enumerate().map(|(i, b)| b ^ k[i % 4]).collect(),
        None => raw.to_vec(),
    };
    Some((
        RawFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: b0 & 0x0f,
            mask,
            payload,
            len_form: LenForm::Shortest,
        },
        n + len,
    ))
}

/// Parse a buffer that must hold whole frames only.
pub fn parse_frames(mut buf: &[u8]) -> Vec<RawFrame> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (f, n) = parse_frame(buf).unwrap_or_else(|| panic!("trailing partial frame: {buf:x?}"));
        out.push(f);
        buf = &buf[n..];
    }
    out
}

/// Take a connection's output and parse it into frames.
pub fn sent(conn: &mut Connection) -> Vec<RawFrame> {
    parse_frames(&conn.take_transmit())
}

/// Poll until `Ok(None)` or an error.
pub fn poll_all(conn: &mut Connection) -> (Vec<Event>, Option<Error>) {
    let mut events = Vec::new();
    loop {
        match conn.poll_event() {
            Ok(Some(e)) => events.push(e),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

/// Feed bytes and poll until `Ok(None)` or an error.
pub fn feed(conn: &mut Connection, bytes: &[u8]) -> (Vec<Event>, Option<Error>) {
    conn.receive_data(bytes);
    poll_all(conn)
}

/// Feed bytes and expect events without an error.
pub fn feed_ok(conn: &mut Connection, bytes: &[u8]) -> Vec<Event> {
    let (events, err) = feed(conn, bytes);
    assert_eq!(err, None, "unexpected error after events {events:?}");
    events
}

/// Feed bytes and expect the connection to fail; returns the error and the
/// close code of the single close frame it sent.
pub fn feed_err(conn: &mut Connection, bytes: &[u8]) -> (Error, Option<u16>) {
    let (events, err) = feed(conn, bytes);
    let err = err.unwrap_or_else(|| panic!("expected an error, got only {events:?}"));
    let frames = sent(conn);
    let closes: Vec<_> = frames.iter().filter(|f| f.opcode == OP_CLOSE).collect();
    assert_eq!(closes.len(), 1, "exactly one close frame expected in {frames:?}");
    assert_eq!(
        frames.last().map(|f| f.opcode),
        Some(OP_CLOSE),
        "close is the last frame"
    );
    (err, closes[0].close_code())
}

/// A deterministic byte generator (xorshift), for payloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
    /// UTF-8 text of exactly `len` bytes mixing 1-, 2-, 3- and 4-byte characters.
    pub fn text(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            let room = len - s.len();
            let c = match self.below(4) {
                0 => char::from_u32(0x80 + self.below(0x780) as u32),
                1 => char::from_u32(0x800 + self.below(0xF800 - 0x800) as u32),
                2 => char::from_u32(0x10000 + self.below(0x100000) as u32),
                _ => char::from_u32(0x20 + self.below(0x5f) as u32),
            }
            .filter(|c| c.len_utf8() <= room)
            .unwrap_or('a');
            s.push(c);
        }
        s
    }
}

// ----- a toy extension -----------------------------------------------------

/// The token of the toy extension.
pub const XOR_NAME: &str = "x-weft-xor";
/// The byte the toy extension XORs every payload byte with.
pub const XOR_BYTE: u8 = 0x5a;

/// A per-message "extension" claiming RSV1 that XORs each payload byte with
/// [`XOR_BYTE`]. Messages whose first piece is empty go out unchanged, so
/// both the transformed and the untransformed paths are exercised.
#[derive(Debug, Default)]
pub struct XorExtension {
    /// Whether the message being sent is transformed.
    sending_transformed: bool,
}

pub fn xor(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| b ^ XOR_BYTE).collect()
}

impl Extension for XorExtension {
    fn name(&self) -> &str {
        XOR_NAME
    }

    fn rsv_bits(&self) -> u8 {
        weft_proto::frame::RSV1
    }

    fn decode(
        &mut self,
        first_rsv: u8,
        payload: &[u8],
        _fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError> {
        assert_eq!(first_rsv, weft_proto::frame::RSV1);
        if out.len() + payload.len() > max_len {
            return Err(ExtensionError {
                code: weft_proto::CloseCode::MESSAGE_TOO_BIG,
                reason: "xor: message too big",
            });
        }
        out.extend_from_slice(&xor(payload));
        Ok(())
    }

    fn encode(
        &mut self,
        _kind: DataKind,
        payload: &[u8],
        first: bool,
        _fin: bool,
        out: &mut BytesMut,
    ) -> Result<Encoded, ExtensionError> {
        if first {
            self.sending_transformed = !payload.is_empty();
        }
        if !self.sending_transformed {
            return Ok(Encoded::Unchanged);
        }
        out.extend_from_slice(&xor(payload));
        Ok(Encoded::Transformed {
            rsv: weft_proto::frame::RSV1,
        })
    }
}

/// The server side: accepts the first offer that has no parameters.
#[derive(Debug)]
pub struct XorServer;

impl ServerExtension for XorServer {
    fn name(&self) -> &str {
        XOR_NAME
    }

    fn negotiate(&self, offers: &[&ExtensionOffer]) -> Option<(ExtensionOffer, Box<dyn Extension>)> {
        offers.iter().find(|o| o.params.is_empty()).map(|_| {
            (
                ExtensionOffer::new(XOR_NAME),
                Box::new(XorExtension::default()) as Box<dyn Extension>,
            )
        })
    }
}

/// The client side: offers the extension and accepts an answer without parameters.
#[derive(Debug)]
pub struct XorClient;

impl ClientExtension for XorClient {
    fn name(&self) -> &str {
        XOR_NAME
    }

    fn offers(&self) -> Vec<ExtensionOffer> {
        vec![ExtensionOffer::new(XOR_NAME)]
    }

    fn accept(&self, response: &ExtensionOffer) -> Result<Box<dyn Extension>, String> {
        if response.params.is_empty() {
            Ok(Box::new(XorExtension::default()))
        } else {
            Err(format!("unexpected parameters {:?}", response.params))
        }
    }
}
