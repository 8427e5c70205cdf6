//! Code shared by the fuzz targets: an independent reader of frames and HTTP
//! tokens, and the session driver that feeds a [`Connection`] and checks its
//! documented contract at every step.
//!
//! A session input is 8 control bytes followed by the bytes "from the
//! network" (see [`Settings`]).

use std::io::IoSlice;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use weft_proto::deflate::PerMessageDeflate;
use weft_proto::{
    ClientExtension, CloseCode, CloseFrame, Config, Connection, DataKind, Error, Event, Extension, ExtensionOffer,
    LimitExceeded, Message, Role, SendError, ServerExtension, State,
};

/// The largest frame header: 2 + 8 + 4.
pub const MAX_HEADER_LEN: usize = 14;

/// What `receive_data` reserves at least when the buffer is full; used only
/// to bound the receive buffer's capacity.
const READ_RESERVE: usize = 4096;

// ----- independent helpers ------------------------------------------------------

/// The `Sec-WebSocket-Accept` for a key, computed here (RFC 6455 §4.2.2).
pub fn expected_accept(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(h.finalize())
}

/// Whether a base64 value decodes to exactly 16 bytes.
pub fn is_valid_key(key: &[u8]) -> bool {
    BASE64.decode(key).is_ok_and(|k| k.len() == 16)
}

/// The end (exclusive) of the first `\r\n\r\n` in `buf`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Whether comma-separated header values hold `token`, case-insensitively.
pub fn has_token<'a>(values: impl IntoIterator<Item = &'a [u8]>, token: &str) -> bool {
    values
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Every value of header `name` in an httparse header list.
pub fn header_values<'a>(headers: &'a [httparse::Header<'a>], name: &'a str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
        .collect()
}

/// One frame as written by a connection, read independently of weft-proto.
#[derive(Clone, Debug)]
pub struct WireFrame {
    /// FIN.
    pub fin: bool,
    /// RSV1..3 as 0b100..0b001.
    pub rsv: u8,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// Whether the MASK bit was set.
    pub masked: bool,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
    /// Whether the length was written in the shortest form (§5.2).
    pub shortest: bool,
}

/// Read one frame from the start of `buf`: `None` if it is incomplete.
pub fn read_frame(buf: &[u8]) -> Option<(WireFrame, usize)> {
    let [b0, b1, ..] = *buf else { return None };
    let masked = b1 & 0x80 != 0;
    let (len, mut n, shortest) = match b1 & 0x7f {
        126 => {
            let l = u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
            (l, 4, l >= 126)
        }
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            let l = u64::from_be_bytes(b);
            (l, 10, l > 0xffff)
        }
        l => (u64::from(l), 2, true),
    };
    let key = if masked {
        let k: [u8; 4] = buf.get(n..n + 4)?.try_into().ok()?;
        n += 4;
        Some(k)
    } else {
        None
    };
    let len = usize::try_from(len).ok()?;
    let mut payload = buf.get(n..n.checked_add(len)?)?.to_vec();
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    Some((
        WireFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0b111,
            opcode: b0 & 0x0f,
            masked,
            payload,
            shortest,
        },
        n + len,
    ))
}

// ----- the session driver --------------------------------------------------------

/// Settings taken from the 8 control bytes at the start of a session input.
///
/// | byte | meaning |
/// |---|---|
/// | 0 | flags, bit 0: streaming (`deliver_fragments`); 1: small limits; 2: end of file after the input; 3: local sends between chunks; 4: `release_buffers` between chunks; 5: feed through `read_buffer_mut`; 6: write the output in small pieces; 7: permessage-deflate installed |
/// | 1 | 1..=16: a local `close(1000)` after chunk `n - 1`; otherwise none |
/// | 2..8 | chunk sizes, used in turn; 0 means the rest of the input |
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// Hand up fragments as they arrive.
    pub streaming: bool,
    /// Limits small enough to be reached by a short input.
    pub small_limits: bool,
    /// Call `receive_eof` after the last chunk.
    pub eof: bool,
    /// Send messages and pings between chunks.
    pub local_sends: bool,
    /// Call `release_buffers` between chunks.
    pub release_buffers: bool,
    /// Append to `read_buffer_mut` instead of calling `receive_data`.
    pub read_buffer: bool,
    /// Write the output a few bytes at a time through `transmit_slices`.
    pub partial_writes: bool,
    /// Install permessage-deflate.
    pub deflate: bool,
    /// A local close after this chunk.
    pub close_after: Option<usize>,
    /// Chunk sizes, in turn; 0 is the rest.
    pub chunks: [u8; 6],
}

/// The number of control bytes at the start of a session input.
pub const CTL_LEN: usize = 8;

impl Settings {
    /// Split a session input into settings and wire bytes.
    pub fn split(data: &[u8]) -> (Settings, &[u8]) {
        let mut ctl = [0u8; CTL_LEN];
        let n = data.len().min(CTL_LEN);
        ctl[..n].copy_from_slice(&data[..n]);
        let f = ctl[0];
        let s = Settings {
            streaming: f & 1 != 0,
            small_limits: f & 2 != 0,
            eof: f & 4 != 0,
            local_sends: f & 8 != 0,
            release_buffers: f & 16 != 0,
            read_buffer: f & 32 != 0,
            partial_writes: f & 64 != 0,
            deflate: f & 128 != 0,
            close_after: matches!(ctl[1], 1..=16).then(|| usize::from(ctl[1]) - 1),
            chunks: [ctl[2], ctl[3], ctl[4], ctl[5], ctl[6], ctl[7]],
        };
        (s, &data[n..])
    }

    /// The connection's configuration.
    pub fn config(&self) -> Config {
        if self.small_limits {
            Config::default()
                .max_frame_size(256)
                .max_message_size(1024)
                .max_fragments(8)
        } else if self.deflate {
            // Keep inflated messages small so that the fuzzer stays fast.
            Config::default()
                .max_frame_size(16 << 10)
                .max_message_size(64 << 10)
                .max_fragments(64)
        } else {
            Config::default()
        }
        .deliver_fragments(self.streaming)
    }
}

fn deflate_for(role: Role) -> Box<dyn Extension> {
    let offer = ExtensionOffer::new("permessage-deflate");
    let neg = PerMessageDeflate::default();
    match role {
        Role::Server => {
            ServerExtension::negotiate(&neg, &[&offer])
                .expect("the server accepts a plain offer")
                .1
        }
        Role::Client => ClientExtension::accept(&neg, &offer).expect("the client accepts a plain answer"),
    }
}

/// What the checker knows about the connection so far.
struct Checker {
    role: Role,
    config: Config,
    deflate: bool,
    /// Everything the connection wrote.
    out: Vec<u8>,
    /// How much of `out` was read as frames.
    read: usize,
    /// How many bytes of output the inputs so far can justify.
    allowance: usize,
    /// Close frames written: (code, reason).
    closes: Vec<(Option<u16>, Vec<u8>)>,
    local_close: bool,
    peer_close: bool,
    eof: bool,
    error: Option<Error>,
    /// `out.len()` once the error's output was taken.
    out_at_error: Option<usize>,
    /// The code of the peer's close frame, once it arrived.
    peer_close_code: Option<Option<u16>>,
    /// The data message being received in streaming mode: kind, bytes so far
    /// (text only), length.
    streaming_msg: Option<(DataKind, Vec<u8>, usize)>,
    /// A data message being written in pieces (RSV1 allowed on its first frame only).
    writing_fragmented: bool,
    /// The receive buffer's largest length just after bytes were added.
    peak_rbuf: usize,
    /// Bytes fed so far.
    fed: usize,
}

impl Checker {
    fn can_send(&self) -> bool {
        !(self.local_close || self.peer_close || self.error.is_some())
    }

    fn event(&mut self, ev: Event, conn: &Connection) {
        assert!(
            self.error.is_none() && !self.peer_close,
            "an event after the end: {ev:?}"
        );
        let max_msg = self.config.max_message_size;
        match ev {
            Event::Message(m) => {
                assert!(!self.config.deliver_fragments, "a whole message in streaming mode");
                assert!(m.len() <= max_msg, "message of {} over the limit {max_msg}", m.len());
                if let Message::Text(t) = &m {
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok(), "text message is not UTF-8");
                    assert_eq!(t.as_str().len(), t.len());
                }
            }
            Event::Fragment(f) => {
                assert!(self.config.deliver_fragments, "a fragment when not streaming");
                if !self.deflate {
                    assert!(f.data.len() <= self.config.max_frame_size, "piece larger than a frame");
                }
                let (kind, mut text, mut len) = match self.streaming_msg.take() {
                    None => {
                        assert!(f.first, "first piece of a message not marked first");
                        (f.kind, Vec::new(), 0)
                    }
                    Some(m) => {
                        assert!(!f.first, "a piece marked first in the middle of a message");
                        m
                    }
                };
                assert_eq!(kind, f.kind, "the kind changed within a message");
                len += f.data.len();
                assert!(
                    len <= max_msg,
                    "streamed message of {len} bytes over the limit {max_msg}"
                );
                if kind == DataKind::Text {
                    text.extend_from_slice(&f.data);
                    match std::str::from_utf8(&text) {
                        Ok(_) => {}
                        Err(e) => {
                            assert!(!f.fin, "streamed text message ends inside a code point");
                            assert!(e.error_len().is_none(), "streamed text is not a UTF-8 prefix");
                        }
                    }
                }
                if !f.fin {
                    self.streaming_msg = Some((kind, text, len));
                }
            }
            Event::Ping(p) => {
                assert!(p.len() <= 125);
                // At most one pong per ping.
                self.allowance += MAX_HEADER_LEN + p.len();
            }
            Event::Pong(p) => assert!(p.len() <= 125),
            Event::Close(frame) => {
                if let Some(f) = &frame {
                    assert!(f.code.is_valid_received(), "close code {} delivered", f.code);
                    assert!(f.reason.len() <= 123);
                }
                self.peer_close = true;
                self.peer_close_code = Some(frame.as_ref().map(|f| f.code.0));
                if !self.local_close {
                    self.allowance += MAX_HEADER_LEN + 2;
                }
                assert!(matches!(conn.state(), State::Closed), "state after the peer's close");
                assert!(!conn.wants_data());
            }
        }
    }

    fn error(&mut self, e: Error, conn: &mut Connection) {
        match &e {
            Error::Protocol(_) | Error::InvalidUtf8 => {}
            Error::MessageTooBig(LimitExceeded::FrameSize { len, max }) => {
                // A frame of a compressed message may be 1/16 over the limit
                // (the decoded message is bounded by max_message_size).
                let limit = self.config.max_frame_size;
                let compressed_limit = limit.saturating_add(limit / 16);
                assert!(
                    *max == limit || (self.deflate && *max == compressed_limit),
                    "frame limit {max} reported, configured {limit}"
                );
                assert!(*len > *max as u64);
            }
            Error::MessageTooBig(LimitExceeded::MessageSize { max }) => {
                assert_eq!(*max, self.config.max_message_size);
            }
            Error::MessageTooBig(LimitExceeded::Fragments { max }) => {
                assert_eq!(*max, self.config.max_fragments);
            }
            Error::Extension(x) => {
                assert!(self.deflate, "extension error without an extension: {x:?}");
                assert!(x.code.is_sendable(), "extension error with code {}", x.code);
            }
            Error::AbnormalClosure => assert!(self.eof, "abnormal closure before end of file"),
            other => panic!("undocumented error from poll_event: {other:?}"),
        }
        let reason = e.close_reason();
        assert!(reason.len() <= 123 && reason.is_ascii(), "close reason {reason:?}");
        assert!(!e.to_string().is_empty());
        assert_eq!(conn.state(), State::Failed);
        assert_eq!(conn.error(), Some(&e));
        assert!(!conn.wants_data());
        // Sticky.
        for _ in 0..2 {
            assert_eq!(conn.poll_event(), Err(e.clone()), "the error is not sticky");
        }
        let code = e.close_code();
        let sendable = code.is_sendable();
        assert_eq!(sendable, !matches!(e, Error::AbnormalClosure), "code {code} for {e:?}");
        if sendable && !self.local_close {
            self.allowance += MAX_HEADER_LEN + 2 + reason.len();
        }
        self.error = Some(e.clone());
        // Everything it has to say is queued now.
        self.flush(conn, false, 0);
        if sendable && !self.local_close {
            assert_eq!(self.closes.len(), 1, "one close frame after {e:?}");
            let (c, r) = &self.closes[0];
            assert_eq!(*c, Some(code.0), "close code sent for {e:?}");
            assert_eq!(r.as_slice(), reason.as_bytes());
        } else {
            assert_eq!(
                self.closes.len(),
                usize::from(self.local_close),
                "close frames after {e:?}"
            );
        }
        assert!(conn.should_close_transport());
        self.out_at_error = Some(self.out.len());
    }

    /// Take the connection's output (all of it, or in small pieces) and read
    /// it as frames.
    fn flush(&mut self, conn: &mut Connection, pieces: bool, seed: usize) {
        if pieces {
            let mut step = seed;
            loop {
                let buffered = conn.buffered_amount();
                let mut slices = [IoSlice::new(&[]); 3];
                let n = conn.transmit_slices(&mut slices);
                if n == 0 {
                    assert_eq!(conn.buffered_amount(), 0);
                    break;
                }
                let total: usize = slices[..n].iter().map(|s| s.len()).sum();
                assert!(slices[..n].iter().all(|s| !s.is_empty()));
                // transmit_slices may first queue a pong that is due.
                assert!(
                    total <= buffered + MAX_HEADER_LEN + 125,
                    "{total} bytes in slices, {buffered} buffered"
                );
                step = step.wrapping_mul(31).wrapping_add(7);
                let want = 1 + step % 23;
                let mut written = 0;
                for s in &slices[..n] {
                    let take = (want - written).min(s.len());
                    self.out.extend_from_slice(&s[..take]);
                    written += take;
                    if written == want {
                        break;
                    }
                }
                conn.advance_transmit(written);
            }
        } else {
            let bytes = conn.take_transmit();
            self.out.extend_from_slice(&bytes);
        }
        assert!(!conn.has_transmit());
        assert_eq!(conn.buffered_amount(), 0);
        self.read_output();
        assert!(
            self.out.len() <= self.allowance,
            "{} bytes written, the inputs justify {}",
            self.out.len(),
            self.allowance
        );
        if let Some(n) = self.out_at_error {
            assert_eq!(self.out.len(), n, "output after the error was reported");
        }
    }

    fn read_output(&mut self) {
        while let Some((f, n)) = read_frame(&self.out[self.read..]) {
            self.read += n;
            assert!(f.shortest, "length not in the shortest form: {f:?}");
            assert_eq!(
                f.masked,
                self.role == Role::Client,
                "masking of a {:?} frame",
                self.role
            );
            // §5.5.1: no data frames after a close frame, and no second close;
            // a ping read before the peer's close is still answered (§5.5.2).
            assert!(
                self.closes.is_empty() || f.opcode == 0xA,
                "a frame after the close frame: {f:?}"
            );
            match f.opcode {
                0x8..=0xA => {
                    assert!(f.fin && f.payload.len() <= 125 && f.rsv == 0, "control frame {f:?}");
                    if f.opcode == 0x8 {
                        let code = (f.payload.len() >= 2).then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                        assert_ne!(f.payload.len(), 1);
                        if let Some(c) = code {
                            assert!(CloseCode(c).is_sendable(), "sent close code {c}");
                            assert!(std::str::from_utf8(&f.payload[2..]).is_ok());
                        }
                        self.closes
                            .push((code, f.payload.get(2..).unwrap_or_default().to_vec()));
                    }
                }
                0x0..=0x2 => {
                    let first = f.opcode != 0;
                    assert_eq!(first, !self.writing_fragmented, "data frame out of sequence {f:?}");
                    let allowed = if first && self.deflate { 0b100 } else { 0 };
                    assert_eq!(f.rsv & !allowed, 0, "RSV bits {:03b}", f.rsv);
                    self.writing_fragmented = !f.fin;
                }
                op => panic!("reserved opcode {op:#x} written"),
            }
        }
    }

    fn check_buffers(&mut self, conn: &mut Connection) {
        // A frame of a compressed message may be 1/16 over max_frame_size.
        let frame_limit = if self.deflate {
            self.config.max_frame_size.saturating_add(self.config.max_frame_size / 16)
        } else {
            self.config.max_frame_size
        };
        let limit = frame_limit.max(MAX_HEADER_LEN);
        let hint = conn.read_hint();
        assert!(hint >= 1 && hint <= limit + MAX_HEADER_LEN, "read_hint {hint}");
        let rbuf = conn.read_buffer_mut();
        assert!(rbuf.len() <= limit, "{} bytes left in the receive buffer", rbuf.len());
        assert!(rbuf.len() <= self.fed);
        let cap_bound = 4 * (self.peak_rbuf + READ_RESERVE);
        assert!(
            rbuf.capacity() <= cap_bound,
            "receive buffer capacity {} over {cap_bound}",
            rbuf.capacity()
        );
    }

    /// Poll until the connection needs more input.
    fn drain(&mut self, conn: &mut Connection) {
        if let Some(e) = &self.error {
            assert_eq!(conn.poll_event().as_ref(), Err(e), "the error is not sticky");
            return;
        }
        // Every event consumes input, so this many polls always reach the end.
        for _ in 0..self.fed + 4 {
            match conn.poll_event() {
                Ok(Some(ev)) => self.event(ev, conn),
                Ok(None) => {
                    self.check_buffers(conn);
                    if self.peer_close {
                        assert_eq!(conn.poll_event(), Ok(None), "nothing after the peer's close");
                    }
                    return;
                }
                Err(e) => return self.error(e, conn),
            }
        }
        panic!("poll_event never asked for more input");
    }

    fn feed(&mut self, conn: &mut Connection, chunk: &[u8], read_buffer: bool) {
        self.fed += chunk.len();
        if read_buffer {
            // What a driver does: read only while data is wanted.
            if conn.wants_data() {
                conn.read_buffer_mut().extend_from_slice(chunk);
            }
        } else {
            conn.receive_data(chunk);
        }
        let len = conn.read_buffer_mut().len();
        self.peak_rbuf = self.peak_rbuf.max(len);
        if !conn.wants_data() {
            assert_eq!(len, 0, "bytes kept after the end of reading");
        }
    }

    fn send_result(&mut self, r: Result<(), SendError>, payload: usize) {
        if self.can_send() {
            assert_eq!(r, Ok(()));
            // A header and, compressed, a few bytes more than the payload.
            self.allowance += MAX_HEADER_LEN + payload + if self.deflate { 16 } else { 0 };
        } else {
            assert_eq!(r, Err(SendError::Closed));
        }
    }

    fn local_sends(&mut self, conn: &mut Connection, i: usize) {
        match i % 4 {
            0 => {
                let r = conn.send_text("héllo wörld");
                self.send_result(r, 13);
            }
            1 => {
                let payload = vec![i as u8; i % 300];
                let n = payload.len();
                let r = conn.send_binary(payload);
                self.send_result(r, n);
            }
            2 => {
                let r = conn.send_ping(&b"ping"[..]);
                self.send_result(r, 4);
            }
            _ => {
                let r = conn.send_pong(&b""[..]);
                self.send_result(r, 0);
                // A payload too long for a control frame is refused, whatever the state.
                assert!(conn.send_ping(vec![0u8; 126]).is_err());
            }
        }
    }

    fn local_close(&mut self, conn: &mut Connection) {
        let r = conn.close(Some(CloseFrame::new(1000, "bye")));
        if self.can_send() {
            assert_eq!(r, Ok(()));
            self.local_close = true;
            self.allowance += MAX_HEADER_LEN + 5;
        } else {
            assert_eq!(r, Err(SendError::Closed));
        }
    }
}

/// Feed `data` (settings, then wire bytes) to a connection of `role` and check
/// the contract throughout.
pub fn session(role: Role, data: &[u8]) {
    let (s, wire) = Settings::split(data);
    let config = s.config();
    let mut conn = Connection::new(role, config.clone()).with_extension(s.deflate.then(|| deflate_for(role)));
    let mut c = Checker {
        role,
        config,
        deflate: s.deflate,
        out: Vec::new(),
        read: 0,
        allowance: 0,
        closes: Vec::new(),
        local_close: false,
        peer_close: false,
        eof: false,
        error: None,
        out_at_error: None,
        peer_close_code: None,
        streaming_msg: None,
        writing_fragmented: false,
        peak_rbuf: 0,
        fed: 0,
    };
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let size = usize::from(s.chunks[i % s.chunks.len()]);
        let n = if size == 0 { rest.len() } else { size.min(rest.len()) };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        c.feed(&mut conn, chunk, s.read_buffer);
        c.drain(&mut conn);
        if s.local_sends {
            c.local_sends(&mut conn, i);
        }
        if s.close_after == Some(i) {
            c.local_close(&mut conn);
        }
        c.flush(&mut conn, s.partial_writes, i);
        if s.release_buffers {
            conn.release_buffers();
        }
        i += 1;
    }
    if s.eof {
        conn.receive_eof();
        c.eof = true;
        c.drain(&mut conn);
        // With end of file, a connection still open fails with 1006.
        if !c.peer_close {
            assert!(
                c.error.is_some(),
                "end of file before the close handshake is not an error"
            );
        }
    }
    c.flush(&mut conn, false, 0);
    let closes = c.closes.len();
    assert!(closes <= 1, "{closes} close frames written");
    if c.peer_close {
        // The reply (or this side's own close) went out.
        assert_eq!(closes, 1, "no close frame after the peer's close");
        if !c.local_close {
            // §5.5.1: the reply echoes the code.
            assert_eq!(Some(c.closes[0].0), c.peer_close_code, "close reply code");
        }
        if role == Role::Server {
            assert!(
                conn.should_close_transport(),
                "server does not close TCP after the handshake"
            );
        }
    }
    if c.error.is_some() {
        assert!(conn.should_close_transport());
    }
}
