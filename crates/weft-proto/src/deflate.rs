//! permessage-deflate (RFC 7692): negotiation for both roles and the codec.
//!
//! Compression is raw DEFLATE (flate2 on zlib-rs). Each message is compressed
//! and flushed with a sync flush; the `00 00 ff ff` that ends the flush is
//! removed before sending and put back before inflating (§7.2.1, §7.2.2).
//! Inflation is streaming and bounded: it stops with 1009 once a message would
//! pass `max_message_size`, having allocated at most that much plus one chunk.
//!
//! Window sizes: zlib cannot compress with an 8-bit window. When the agreed
//! window for our direction is 8, this side sends its messages uncompressed,
//! which RFC 7692 allows (compression is chosen per message, §6). Inflating
//! uses a window at least as large as the peer's, which is always correct.
//!
//! Fan-out: a server connection that negotiated `server_no_context_takeover`
//! compresses every message from a fresh context, so one compressed frame
//! serves every such connection ([`SharedCompression`],
//! [`MessageCompressor`]).
//!
//! Memory per connection (zlib's figures, level 6, memLevel 8): the
//! compressor, made when the connection first compresses a message, costs
//! about `2^(w+2) + 2^(8+9)` bytes (256 KiB at w = 15,
//! 132 KiB at w = 9), the decompressor about `2^w + 7 KiB` (39 KiB at 15).

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::close::CloseCode;
use crate::error::ExtensionError;
use crate::extension::{ClientExtension, Encoded, Extension, ExtensionOffer, ServerExtension};
use crate::frame::{FrameHeader, Opcode, RSV1};
use crate::message::DataKind;

/// The extension token.
pub const NAME: &str = "permessage-deflate";

const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The most output room one compression or decompression step asks for.
const CHUNK: usize = 32 * 1024;
/// The least output room one decompression step asks for.
const MIN_STEP: usize = 256;

/// What this side asks for, or accepts, in negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The largest window (8–15) the server compresses with.
    pub server_max_window_bits: u8,
    /// The largest window (8–15) the client compresses with.
    pub client_max_window_bits: u8,
    /// zlib compression level, 0–9.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 6,
            threshold: 128,
        }
    }
}

impl DeflateConfig {
    /// Set both no-context-takeover flags (lowest memory between messages).
    pub fn no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self.client_no_context_takeover = on;
        self
    }
    /// Set `server_no_context_takeover`.
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }
    /// Set `client_no_context_takeover`.
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }
    /// Set `server_max_window_bits` (clamped to 8–15).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(8, 15);
        self
    }
    /// Set `client_max_window_bits` (clamped to 8–15).
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(8, 15);
        self
    }
    /// Set the compression level (0–9).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }
    /// Set the size below which messages go uncompressed.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }
}

/// The parameters of one offer or response, checked (§7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// `server_no_context_takeover` present.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` present.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits` value.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`: `Some(None)` when present without a value.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer or response was malformed (§7.1: a duplicate or unknown
/// parameter, a value out of range, a value where none is allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError(pub String);

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn window_bits(v: &str) -> Option<u8> {
    // §7.1.2: "a decimal integer value without leading zeroes between 8 and 15".
    if v.len() > 2 || v.starts_with('0') {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

impl Params {
    /// Check the parameters of one `permessage-deflate` element.
    pub fn parse(offer: &ExtensionOffer) -> Result<Params, ParamError> {
        let mut p = Params::default();
        let mut seen = [false; 4];
        for param in &offer.params {
            let idx = match param.name.as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                other => return Err(ParamError(format!("unknown parameter {other}"))),
            };
            if std::mem::replace(&mut seen[idx], true) {
                return Err(ParamError(format!("duplicate parameter {}", param.name)));
            }
            let value = param.value.as_deref();
            match (idx, value) {
                (0, None) => p.server_no_context_takeover = true,
                (1, None) => p.client_no_context_takeover = true,
                (2, Some(v)) => {
                    p.server_max_window_bits =
                        Some(window_bits(v).ok_or_else(|| ParamError(format!("server_max_window_bits={v}")))?)
                }
                (3, None) => p.client_max_window_bits = Some(None),
                (3, Some(v)) => {
                    p.client_max_window_bits = Some(Some(
                        window_bits(v).ok_or_else(|| ParamError(format!("client_max_window_bits={v}")))?,
                    ))
                }
                _ => return Err(ParamError(format!("bad value for {}", param.name))),
            }
        }
        Ok(p)
    }

    fn to_offer(self) -> ExtensionOffer {
        let mut e = ExtensionOffer::new(NAME);
        if self.server_no_context_takeover {
            e = e.param("server_no_context_takeover", None);
        }
        if self.client_no_context_takeover {
            e = e.param("client_no_context_takeover", None);
        }
        if let Some(b) = self.server_max_window_bits {
            e = e.param("server_max_window_bits", Some(&b.to_string()));
        }
        match self.client_max_window_bits {
            Some(Some(b)) => e = e.param("client_max_window_bits", Some(&b.to_string())),
            Some(None) => e = e.param("client_max_window_bits", None),
            None => {}
        }
        e
    }
}

/// permessage-deflate as a negotiator, for either role.
///
/// Server: accepts the first well-formed offer, honouring the client's
/// limits and adding its own from the config. Client: offers the config's
/// parameters and checks the server's answer.
#[derive(Clone, Debug, Default)]
pub struct PerMessageDeflate {
    /// The policy.
    pub config: DeflateConfig,
}

impl PerMessageDeflate {
    /// A negotiator with `config`.
    pub fn new(config: DeflateConfig) -> Self {
        PerMessageDeflate { config }
    }

    /// The server's answer to one offer, or `None` to decline it.
    pub fn answer(&self, offer: &ExtensionOffer) -> Option<Params> {
        let o = Params::parse(offer).ok()?;
        let c = &self.config;
        let server_bits = o.server_max_window_bits.unwrap_or(15).min(c.server_max_window_bits);
        let client_bits = match o.client_max_window_bits {
            // §7.1.2.2: only if the client said it supports the parameter.
            Some(offered) => {
                let limit = offered.unwrap_or(15).min(c.client_max_window_bits);
                (limit < 15 || offered.is_some()).then_some(limit)
            }
            None => None,
        };
        Some(Params {
            server_no_context_takeover: o.server_no_context_takeover || c.server_no_context_takeover,
            client_no_context_takeover: c.client_no_context_takeover || o.client_no_context_takeover,
            server_max_window_bits: (server_bits < 15 || o.server_max_window_bits.is_some()).then_some(server_bits),
            client_max_window_bits: client_bits.map(Some),
        })
    }
}

impl ServerExtension for PerMessageDeflate {
    fn name(&self) -> &str {
        NAME
    }

    fn negotiate(&self, offers: &[&ExtensionOffer]) -> Option<(ExtensionOffer, Box<dyn Extension>)> {
        offers.iter().find_map(|offer| {
            let p = self.answer(offer)?;
            let ext = Deflate::new(DeflateRole::Server, &p, self.config.level, self.config.threshold);
            Some((p.to_offer(), Box::new(ext) as Box<dyn Extension>))
        })
    }
}

impl ClientExtension for PerMessageDeflate {
    fn name(&self) -> &str {
        NAME
    }

    fn offers(&self) -> Vec<ExtensionOffer> {
        let c = &self.config;
        vec![
            Params {
                server_no_context_takeover: c.server_no_context_takeover,
                client_no_context_takeover: c.client_no_context_takeover,
                server_max_window_bits: (c.server_max_window_bits < 15).then_some(c.server_max_window_bits),
                client_max_window_bits: Some((c.client_max_window_bits < 15).then_some(c.client_max_window_bits)),
            }
            .to_offer(),
        ]
    }

    fn accept(&self, response: &ExtensionOffer) -> Result<Box<dyn Extension>, String> {
        let r = Params::parse(response).map_err(|e| e.0)?;
        let c = &self.config;
        if c.server_no_context_takeover && !r.server_no_context_takeover {
            return Err("server_no_context_takeover was requested but not agreed".into());
        }
        if c.server_max_window_bits < 15 && r.server_max_window_bits.is_none_or(|b| b > c.server_max_window_bits) {
            return Err("server_max_window_bits larger than offered".into());
        }
        let client_bits = match r.client_max_window_bits {
            Some(None) => return Err("client_max_window_bits without a value in a response".into()),
            Some(Some(b)) if b > c.client_max_window_bits => {
                return Err("client_max_window_bits larger than offered".into());
            }
            Some(Some(b)) => Some(Some(b)),
            None if c.client_max_window_bits < 15 => Some(Some(c.client_max_window_bits)),
            None => None,
        };
        let agreed = Params {
            client_max_window_bits: client_bits,
            client_no_context_takeover: r.client_no_context_takeover || c.client_no_context_takeover,
            ..r
        };
        Ok(Box::new(Deflate::new(
            DeflateRole::Client,
            &agreed,
            c.level,
            c.threshold,
        )))
    }
}

/// Make room for `need` bytes, growing geometrically but never past `cap`
/// (`need` ≤ `cap`), so that inflating allocates no more than the limit.
fn grow_within(out: &mut BytesMut, need: usize, cap: usize) {
    if need <= out.capacity() {
        return;
    }
    let target = (out.capacity() * 2).max(need).min(cap).max(need);
    let mut bigger = BytesMut::with_capacity(target);
    bigger.extend_from_slice(out);
    *out = bigger;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeflateRole {
    Client,
    Server,
}

/// The running codec on one connection.
pub struct Deflate {
    /// Made on the first compressed message (a connection that sends only
    /// small messages, or shared frames, never pays for it); never when our
    /// window is 8 bits: we send uncompressed.
    compress: Option<Compress>,
    decompress: Decompress,
    reset_compress: bool,
    reset_decompress: bool,
    threshold: usize,
    /// The message being sent is compressed.
    sending_compressed: bool,
    description: String,
    role: DeflateRole,
    /// The window this side compresses with (9–15; 8 means no compressor).
    window_bits: u8,
    level: u32,
}

impl fmt::Debug for Deflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflate")
            .field("agreed", &self.description)
            .finish_non_exhaustive()
    }
}

impl Deflate {
    fn new(role: DeflateRole, p: &Params, level: u32, threshold: usize) -> Deflate {
        let server_bits = p.server_max_window_bits.unwrap_or(15);
        let client_bits = p.client_max_window_bits.flatten().unwrap_or(15);
        let (ours, theirs, reset_ours, reset_theirs) = match role {
            DeflateRole::Server => (
                server_bits,
                client_bits,
                p.server_no_context_takeover,
                p.client_no_context_takeover,
            ),
            DeflateRole::Client => (
                client_bits,
                server_bits,
                p.client_no_context_takeover,
                p.server_no_context_takeover,
            ),
        };
        Deflate {
            compress: None,
            decompress: Decompress::new_with_window_bits(false, theirs.max(9)),
            reset_compress: reset_ours,
            reset_decompress: reset_theirs,
            threshold,
            sending_compressed: false,
            description: p.to_offer().to_string(),
            role,
            window_bits: ours,
            level,
        }
    }

    fn inflate(&mut self, input: &[u8], out: &mut BytesMut, max_len: usize) -> Result<(), ExtensionError> {
        inflate_into(&mut self.decompress, input, out, max_len)
    }

    fn deflate(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), ExtensionError> {
        if self.window_bits < 9 {
            return Ok(());
        }
        let (level, bits) = (self.level, self.window_bits);
        let c = self
            .compress
            .get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(level), false, bits));
        deflate_into(c, input, out)
    }
}

/// Inflate `input` with `d` (sync flush), appending to `out`; at most
/// `max_len` bytes in all.
fn inflate_into(
    d: &mut Decompress,
    mut input: &[u8],
    out: &mut BytesMut,
    max_len: usize,
) -> Result<(), ExtensionError> {
    let too_big = ExtensionError {
        code: CloseCode::MESSAGE_TOO_BIG,
        reason: "message too big after inflating",
    };
    // Output room a step: a guess from the input's size (small messages then
    // cost no more than they need to be zeroed), doubling while the output
    // fills, never more than `CHUNK`.
    let mut step = input.len().saturating_mul(4).clamp(MIN_STEP, CHUNK);
    loop {
        let start = out.len();
        // One byte past the limit shows that the limit was passed.
        let room = (max_len.saturating_add(1)).saturating_sub(start).min(step);
        if room == 0 {
            return Err(too_big);
        }
        grow_within(out, start + room, max_len.saturating_add(1));
        out.resize(start + room, 0);
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d.decompress(input, &mut out[start..], FlushDecompress::Sync);
        let consumed = (d.total_in() - in0) as usize;
        let produced = (d.total_out() - out0) as usize;
        out.truncate(start + produced);
        input = &input[consumed..];
        if out.len() > max_len {
            // The byte past the limit only showed that it was passed:
            // `out` keeps at most `max_len` bytes, as `decode` promises
            // (whatever else the step found).
            out.truncate(max_len);
            return Err(too_big);
        }
        match status {
            Err(_) => {
                return Err(ExtensionError {
                    code: CloseCode::INVALID_PAYLOAD,
                    reason: "invalid compressed data",
                });
            }
            Ok(Status::StreamEnd) => {
                // A final block: nothing may follow within this message.
                if !input.is_empty() {
                    return Err(ExtensionError {
                        code: CloseCode::INVALID_PAYLOAD,
                        reason: "data after the end of the compressed stream",
                    });
                }
                return Ok(());
            }
            Ok(_) => {
                // Done when all input is used and the output did not fill.
                if input.is_empty() && produced < room {
                    return Ok(());
                }
                if consumed == 0 && produced == 0 {
                    return Err(ExtensionError {
                        code: CloseCode::INVALID_PAYLOAD,
                        reason: "compressed data makes no progress",
                    });
                }
                step = (step * 2).min(CHUNK);
            }
        }
    }
}

/// End a compressed message whose bytes start at `out[start..]`: §7.2.1,
/// remove the `00 00 ff ff` that ends the sync flush.
fn end_message(out: &mut BytesMut, start: usize) {
    if out[start..].ends_with(&TRAILER) {
        out.truncate(out.len() - 4);
    }
    if out.len() == start {
        // An empty message: one empty stored block would be
        // `00 00 00 ff ff` less the trailer; send a single 0x00.
        out.extend_from_slice(&[0x00]);
    }
}

/// Compress `input` with `c` and a sync flush, appending to `out`.
fn deflate_into(c: &mut Compress, mut input: &[u8], out: &mut BytesMut) -> Result<(), ExtensionError> {
    // Output room a step: a message that does not compress at all fits in
    // about its own size plus 64 bytes (zlib's stored blocks and the flush
    // cost 5 bytes each), so a small message zeroes no more than that; the
    // room doubles while the output fills, up to `CHUNK`, and a large message
    // gets half its size at once.
    let mut floor = input.len().min(CHUNK) + 64;
    loop {
        let start = out.len();
        let room = floor.max(input.len() / 2 + 64);
        out.resize(start + room, 0);
        let (in0, out0) = (c.total_in(), c.total_out());
        let r = c.compress(input, &mut out[start..], FlushCompress::Sync);
        let consumed = (c.total_in() - in0) as usize;
        let produced = (c.total_out() - out0) as usize;
        out.truncate(start + produced);
        input = &input[consumed..];
        if r.is_err() {
            return Err(ExtensionError {
                code: CloseCode::INTERNAL_ERROR,
                reason: "compression failed",
            });
        }
        // The sync flush is complete once the output did not fill up.
        if input.is_empty() && produced < room {
            return Ok(());
        }
        floor = (floor * 2).min(CHUNK).max(floor);
    }
}

impl Extension for Deflate {
    fn name(&self) -> &str {
        NAME
    }

    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn decode(
        &mut self,
        _first_rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ExtensionError> {
        self.inflate(payload, out, max_len)?;
        if fin {
            // §7.2.2: append 00 00 ff ff to the payload of the message.
            self.inflate(&TRAILER, out, max_len)?;
            if self.reset_decompress {
                self.decompress.reset(false);
            }
        }
        Ok(())
    }

    fn encode(
        &mut self,
        _kind: DataKind,
        payload: &[u8],
        first: bool,
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<Encoded, ExtensionError> {
        if first {
            // A message sent whole is compressed from the threshold up; one
            // sent in pieces always is (its size is unknown).
            self.sending_compressed = self.window_bits >= 9 && (!fin || payload.len() >= self.threshold);
        }
        if !self.sending_compressed {
            return Ok(Encoded::Unchanged);
        }
        self.deflate(payload, out)?;
        if fin {
            end_message(out, 0);
            // A whole message that did not shrink (already compressed or
            // random data) goes out as it is. The compressor has seen it, so
            // it starts afresh: the peer's window will not hold this message.
            let grew = first && out.len() >= payload.len();
            if (self.reset_compress || grew)
                && let Some(c) = self.compress.as_mut()
            {
                c.reset();
            }
            if grew {
                out.clear();
                return Ok(Encoded::Unchanged);
            }
        }
        Ok(Encoded::Transformed { rsv: RSV1 })
    }
}

/// How a server connection compresses the messages it sends when no message
/// depends on another: permessage-deflate negotiated with
/// `server_no_context_takeover`. A message compressed once with these
/// parameters, from a fresh context, is valid on every connection with the
/// same ones (or a larger window), so a server can compress a message once
/// and queue the same frame on many connections
/// ([`Connection::send_raw_frame`](crate::Connection::send_raw_frame)).
///
/// Connections that keep their context (the default) are not covered: their
/// peer's LZ77 window follows the connection's own compressor, and a message
/// compressed elsewhere would put it out of step. Such a connection takes
/// the uncompressed frame instead, which RFC 7692 §6 allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharedCompression {
    window_bits: u8,
    level: u32,
    threshold: usize,
}

impl SharedCompression {
    /// Compression with a `2^window_bits` window (9–15; `None` otherwise:
    /// zlib cannot compress with an 8-bit window) at `level` (0–9, clamped),
    /// for messages of at least `threshold` bytes.
    pub fn new(window_bits: u8, level: u32, threshold: usize) -> Option<SharedCompression> {
        (9..=15).contains(&window_bits).then_some(SharedCompression {
            window_bits,
            level: level.min(9),
            threshold,
        })
    }

    /// The parameters of a negotiated extension, if it is permessage-deflate
    /// on the server side with `server_no_context_takeover` and a window it
    /// compresses with (not 8 bits).
    pub fn of(ext: &dyn Extension) -> Option<SharedCompression> {
        let d = ext.as_any()?.downcast_ref::<Deflate>()?;
        if d.role != DeflateRole::Server || !d.reset_compress || d.window_bits < 9 {
            return None;
        }
        SharedCompression::new(d.window_bits, d.level, d.threshold)
    }

    /// [`of`](Self::of) the connection's negotiated extension.
    pub fn of_connection(conn: &crate::Connection) -> Option<SharedCompression> {
        SharedCompression::of(conn.extension()?)
    }

    /// The window size, in bits, the server compresses with.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// The zlib level.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Messages shorter than this are sent uncompressed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Whether a message of `len` bytes is worth compressing.
    pub fn applies_to(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Whether a message compressed by `other` may be sent on a connection
    /// with these parameters: the same level and threshold do not matter
    /// for decoding; the window must not be larger than this one.
    pub fn accepts(&self, other: &SharedCompression) -> bool {
        other.window_bits <= self.window_bits
    }
}

/// Compresses whole messages into complete server frames (RSV1 set), each
/// from a fresh context: the frames suit any connection whose
/// [`SharedCompression`] accepts this compressor's. Reusable: the context
/// is reset after each message (a fresh compressor allocates about
/// `2^(w+2) + 128 KiB`).
pub struct MessageCompressor {
    params: SharedCompression,
    compress: Compress,
}

impl fmt::Debug for MessageCompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageCompressor")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl MessageCompressor {
    /// A compressor with `params`.
    pub fn new(params: SharedCompression) -> MessageCompressor {
        MessageCompressor {
            params,
            compress: Compress::new_with_window_bits(Compression::new(params.level), false, params.window_bits),
        }
    }

    /// The parameters it compresses with.
    pub fn params(&self) -> SharedCompression {
        self.params
    }

    /// One whole message as one compressed, unmasked frame (FIN and RSV1
    /// set), or `None` when the message is under the threshold or would not
    /// get smaller — send it uncompressed then. A text payload must be UTF-8;
    /// it is not checked here.
    pub fn compress_frame(&mut self, kind: DataKind, payload: &[u8]) -> Result<Option<Bytes>, ExtensionError> {
        if !self.params.applies_to(payload.len()) {
            return Ok(None);
        }
        // Room for the longest header in front, so that the payload is
        // compressed in place and the header written before it.
        let mut out = BytesMut::with_capacity(MAX_SERVER_HEADER + payload.len() / 2 + 64);
        out.resize(MAX_SERVER_HEADER, 0);
        let r = deflate_into(&mut self.compress, payload, &mut out);
        self.compress.reset();
        r?;
        end_message(&mut out, MAX_SERVER_HEADER);
        let len = out.len() - MAX_SERVER_HEADER;
        if len >= payload.len() {
            return Ok(None);
        }
        let h = FrameHeader {
            fin: true,
            rsv: RSV1,
            opcode: match kind {
                DataKind::Text => Opcode::Text,
                DataKind::Binary => Opcode::Binary,
            },
            mask: None,
            payload_len: len as u64,
        };
        let start = MAX_SERVER_HEADER - h.encoded_len();
        let mut head = &mut out[start..MAX_SERVER_HEADER];
        h.encode(&mut head);
        out.advance(start);
        Ok(Some(out.freeze()))
    }
}

/// The longest unmasked frame header.
const MAX_SERVER_HEADER: usize = 10;

/// Inflate the payload of one whole compressed message that does not depend
/// on earlier ones (sent without context takeover, e.g. by a
/// [`MessageCompressor`]), into at most `max_len` bytes (else 1009).
pub fn inflate_message(payload: &[u8], max_len: usize) -> Result<Bytes, ExtensionError> {
    let mut d = Decompress::new_with_window_bits(false, 15);
    let mut out = BytesMut::new();
    inflate_into(&mut d, payload, &mut out, max_len)?;
    inflate_into(&mut d, &TRAILER, &mut out, max_len)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::parse_extensions;

    fn offer(s: &str) -> ExtensionOffer {
        parse_extensions([s.as_bytes()]).unwrap().remove(0)
    }

    #[test]
    fn rfc7692_7_1_malformed_offers_are_declined() {
        let pmd = PerMessageDeflate::default();
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; foo",
        ] {
            assert_eq!(pmd.answer(&offer(bad)), None, "{bad}");
        }
    }

    #[test]
    fn rfc7692_7_1_answers() {
        let pmd = PerMessageDeflate::default();
        let a = |s: &str| pmd.answer(&offer(s)).unwrap().to_offer().to_string();
        assert_eq!(a("permessage-deflate"), "permessage-deflate");
        assert_eq!(a("permessage-deflate; client_max_window_bits"), "permessage-deflate");
        assert_eq!(
            a("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"
        );
        assert_eq!(
            a("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let strict = PerMessageDeflate::new(
            DeflateConfig::default()
                .no_context_takeover(true)
                .client_max_window_bits(10),
        );
        let b = |s: &str| strict.answer(&offer(s)).unwrap().to_offer().to_string();
        // client_max_window_bits only when the client offered it.
        assert_eq!(
            b("permessage-deflate"),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(
            b("permessage-deflate; client_max_window_bits"),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
        );
    }

    fn pair(server: DeflateConfig, client: DeflateConfig) -> (Box<dyn Extension>, Box<dyn Extension>) {
        let c = PerMessageDeflate::new(client);
        let s = PerMessageDeflate::new(server);
        let offers = c.offers();
        let refs: Vec<&ExtensionOffer> = offers.iter().collect();
        let (resp, sext) = ServerExtension::negotiate(&s, &refs).unwrap();
        let cext = ClientExtension::accept(&c, &resp).unwrap();
        (sext, cext)
    }

    fn roundtrip(from: &mut dyn Extension, to: &mut dyn Extension, msg: &[u8]) -> Vec<u8> {
        let mut enc = BytesMut::new();
        let wire = match from.encode(DataKind::Binary, msg, true, true, &mut enc).unwrap() {
            Encoded::Transformed { .. } => enc.to_vec(),
            Encoded::Unchanged => return msg.to_vec(),
        };
        let mut out = BytesMut::new();
        to.decode(RSV1, &wire, true, &mut out, 1 << 30).unwrap();
        out.to_vec()
    }

    #[test]
    fn rfc7692_7_2_round_trip_every_window_and_takeover() {
        let text: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{{\"n\":{i},\"text\":\"hello\"}}").into_bytes())
            .collect();
        for bits in 8..=15 {
            for nct in [false, true] {
                let cfg = DeflateConfig::default()
                    .server_max_window_bits(bits)
                    .client_max_window_bits(bits)
                    .no_context_takeover(nct)
                    .threshold(0);
                let (mut s, mut c) = pair(cfg.clone(), cfg);
                for _ in 0..3 {
                    assert_eq!(roundtrip(s.as_mut(), c.as_mut(), &text), text, "bits {bits} nct {nct}");
                    assert_eq!(roundtrip(c.as_mut(), s.as_mut(), &text[..100]), &text[..100]);
                    assert_eq!(roundtrip(c.as_mut(), s.as_mut(), b""), b"");
                }
            }
        }
    }

    #[test]
    fn rfc7692_7_2_round_trip_sizes_around_the_output_steps() {
        // Output room is asked for in steps sized from the input: messages
        // of every size near the steps, incompressible or not, come back whole.
        let mut x: u32 = 0x2545_f491;
        let noise: Vec<u8> = (0..70_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let same = vec![b'a'; 70_000];
        let sizes = (0..700).chain([1000, 4000, CHUNK - 70, CHUNK, CHUNK + 70, 65_536, 70_000]);
        for nct in [false, true] {
            let cfg = DeflateConfig::default().no_context_takeover(nct).threshold(0);
            let (mut s, mut c) = pair(cfg.clone(), cfg);
            for len in sizes.clone() {
                for data in [&noise[..len], &same[..len]] {
                    assert_eq!(roundtrip(s.as_mut(), c.as_mut(), data), data, "len {len} nct {nct}");
                    assert_eq!(roundtrip(c.as_mut(), s.as_mut(), data), data, "len {len} nct {nct}");
                }
            }
        }
    }

    #[test]
    fn a_message_that_does_not_shrink_is_sent_as_it_is() {
        // Random bytes grow when deflated: the message goes out unchanged
        // (RSV1 clear), and the messages after it still decode, with context
        // takeover (the compressor restarted) and without.
        let mut x: u32 = 0x9e37_79b9;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let text = b"a compressible message, a compressible message, a compressible message".repeat(20);
        for nct in [false, true] {
            let cfg = DeflateConfig::default().no_context_takeover(nct);
            let (mut s, mut c) = pair(cfg.clone(), cfg);
            assert_eq!(roundtrip(s.as_mut(), c.as_mut(), &text), text);
            let mut out = BytesMut::new();
            let encoded = s.encode(DataKind::Binary, &noise, true, true, &mut out).unwrap();
            assert!(matches!(encoded, Encoded::Unchanged), "nct {nct}: {encoded:?}");
            assert!(out.is_empty());
            for _ in 0..3 {
                let mut out = BytesMut::new();
                let encoded = s.encode(DataKind::Text, &text, true, true, &mut out).unwrap();
                assert!(matches!(encoded, Encoded::Transformed { .. }), "nct {nct}");
                assert!(out.len() < text.len() / 4, "nct {nct}: {} bytes", out.len());
                let mut back = BytesMut::new();
                c.decode(RSV1, &out, true, &mut back, usize::MAX).unwrap();
                assert_eq!(&back[..], &text[..], "nct {nct}");
            }
        }
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_vector() {
        // §7.2.3.1: "Hello" compressed with no context takeover.
        let (_, mut c) = pair(DeflateConfig::default(), DeflateConfig::default());
        let mut out = BytesMut::new();
        c.decode(RSV1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(&out[..], b"Hello");
        // §7.2.3.2: sharing the window, the second "Hello" is a back-reference.
        out.clear();
        c.decode(RSV1, &[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn bomb_stops_at_the_limit() {
        let (mut s, mut c) = pair(DeflateConfig::default().threshold(0), DeflateConfig::default());
        let zeros = vec![0u8; 8 << 20];
        let mut enc = BytesMut::new();
        s.encode(DataKind::Binary, &zeros, true, true, &mut enc).unwrap();
        assert!(enc.len() < 20_000, "8 MiB of zeros compresses to {}", enc.len());
        let mut out = BytesMut::new();
        let err = c.decode(RSV1, &enc, true, &mut out, 1 << 20).unwrap_err();
        assert_eq!(err.code, CloseCode::MESSAGE_TOO_BIG);
        assert!(out.capacity() <= (1 << 20) + CHUNK + 1, "allocated {}", out.capacity());
        assert_eq!(out.len(), 1 << 20, "out never holds more than the limit");
    }

    #[test]
    fn garbage_is_invalid_payload() {
        let (mut s, _) = pair(DeflateConfig::default(), DeflateConfig::default());
        let mut out = BytesMut::new();
        let err = s
            .decode(RSV1, &[0xff, 0xff, 0xff, 0xff], true, &mut out, 1000)
            .unwrap_err();
        assert_eq!(err.code, CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn client_refuses_answers_it_did_not_offer() {
        let c = PerMessageDeflate::new(DeflateConfig::default().server_max_window_bits(10));
        assert!(c.accept(&offer("permessage-deflate")).is_err());
        assert!(
            c.accept(&offer("permessage-deflate; server_max_window_bits=12"))
                .is_err()
        );
        assert!(c.accept(&offer("permessage-deflate; server_max_window_bits=9")).is_ok());
        let d = PerMessageDeflate::new(DeflateConfig::default().client_max_window_bits(10));
        assert!(
            d.accept(&offer("permessage-deflate; client_max_window_bits=12"))
                .is_err()
        );
        assert!(d.accept(&offer("permessage-deflate; client_max_window_bits")).is_err());
        assert!(d.accept(&offer("permessage-deflate; x=1")).is_err());
    }

    #[test]
    fn shared_compression_only_for_a_server_without_context_takeover() {
        let snct = DeflateConfig::default().server_no_context_takeover(true);
        let (s, c) = pair(snct.clone(), DeflateConfig::default());
        assert_eq!(SharedCompression::of(s.as_ref()), SharedCompression::new(15, 6, 128));
        assert_eq!(SharedCompression::of(c.as_ref()), None, "client side");
        let (s, _) = pair(DeflateConfig::default(), DeflateConfig::default());
        assert_eq!(SharedCompression::of(s.as_ref()), None, "context takeover");
        let (s, _) = pair(snct.clone().server_max_window_bits(10), DeflateConfig::default());
        assert_eq!(SharedCompression::of(s.as_ref()).map(|p| p.window_bits()), Some(10));
        let (s, _) = pair(snct.server_max_window_bits(8), DeflateConfig::default());
        assert_eq!(SharedCompression::of(s.as_ref()), None, "8 bits: sent uncompressed");
        assert_eq!(SharedCompression::new(8, 6, 0), None);
        let w12 = SharedCompression::new(12, 6, 0).unwrap();
        assert!(w12.accepts(&SharedCompression::new(9, 1, 500).unwrap()));
        assert!(!w12.accepts(&SharedCompression::new(13, 6, 0).unwrap()));
    }

    #[test]
    fn one_compressed_frame_decodes_on_every_matching_connection() {
        let text: Vec<u8> = (0..400)
            .flat_map(|i| format!("{{\"n\":{i},\"text\":\"hello\"}}").into_bytes())
            .collect();
        for bits in 9..=15 {
            let cfg = DeflateConfig::default()
                .server_no_context_takeover(true)
                .server_max_window_bits(bits);
            let params = SharedCompression::new(bits, 6, 128).unwrap();
            let mut mc = MessageCompressor::new(params);
            let mut pairs: Vec<_> = (0..3).map(|_| pair(cfg.clone(), DeflateConfig::default())).collect();
            for round in 0..3 {
                // The connection's own compressed messages, between shared
                // frames, leave the shared frames valid and vice versa.
                for (s, c) in &mut pairs {
                    assert_eq!(roundtrip(s.as_mut(), c.as_mut(), &text[..3000]), &text[..3000]);
                }
                let frame = mc.compress_frame(DataKind::Text, &text).unwrap().unwrap();
                let (h, n) = FrameHeader::parse(&frame).unwrap().unwrap();
                assert!(h.fin && h.rsv == RSV1 && h.opcode == Opcode::Text && h.mask.is_none());
                assert_eq!(h.payload_len as usize, frame.len() - n);
                assert!(frame.len() - n < text.len() / 4, "compressed to {}", frame.len() - n);
                for (_, c) in &mut pairs {
                    let mut out = BytesMut::new();
                    c.decode(RSV1, &frame[n..], true, &mut out, 1 << 20).unwrap();
                    assert_eq!(&out[..], &text[..], "bits {bits} round {round}");
                }
                assert_eq!(&inflate_message(&frame[n..], 1 << 20).unwrap()[..], &text[..]);
                assert_eq!(
                    inflate_message(&frame[n..], 100).unwrap_err().code,
                    CloseCode::MESSAGE_TOO_BIG
                );
            }
        }
    }

    #[test]
    fn small_or_incompressible_messages_are_not_compressed() {
        let mut mc = MessageCompressor::new(SharedCompression::new(15, 6, 128).unwrap());
        assert_eq!(mc.compress_frame(DataKind::Text, &[b'a'; 127]).unwrap(), None);
        assert!(mc.compress_frame(DataKind::Text, &[b'a'; 128]).unwrap().is_some());
        // xorshift noise does not compress: sent as it is.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(mc.compress_frame(DataKind::Binary, &noise).unwrap(), None);
        // Large messages use the 64-bit length form.
        let big = vec![b'z'; 200_000];
        let mut mc = MessageCompressor::new(SharedCompression::new(15, 1, 0).unwrap());
        let f = mc.compress_frame(DataKind::Binary, &big).unwrap().unwrap();
        let (h, n) = FrameHeader::parse(&f).unwrap().unwrap();
        assert_eq!((h.opcode, h.payload_len as usize), (Opcode::Binary, f.len() - n));
        assert_eq!(&inflate_message(&f[n..], 1 << 20).unwrap()[..], &big[..]);
        let mut mc = MessageCompressor::new(SharedCompression::new(15, 6, 0).unwrap());
        let empty = mc.compress_frame(DataKind::Text, b"").unwrap();
        assert_eq!(empty, None, "an empty message does not get smaller");
    }
}
