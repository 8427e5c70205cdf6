//! The connection state machine: frames in, events out; messages in, bytes out.
//!
//! ```text
//!            receive_data / read_buffer_mut           send / send_fragment / send_ping / close
//!                       │                                         │
//!                       ▼                                         ▼
//!  ┌───────────────── Connection ─────────────────────────────────────────────┐
//!  │ header → unmask (in place, any offset) → UTF-8 (incremental, fail fast)  │
//!  │ → extension decode → reassemble → Event     pong obligation, close reply │
//!  └──────────────────────┬───────────────────────────────────┬───────────────┘
//!                         ▼                                   ▼
//!                    poll_event                 transmit_slices / advance_transmit
//! ```
//!
//! The closing handshake (§7):
//!
//! ```text
//!   Open ── close() ──────────────▶ Closing ── peer's Close ──▶ Closed
//!    │                                                           ▲
//!    └── peer's Close (reply queued automatically) ─────────────┘
//!   any state ── protocol error (close frame with its code queued) ──▶ Failed
//! ```

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
use crate::error::{Error, LimitExceeded, ProtocolError, SendError};
use crate::extension::{Encoded, Extension};
use crate::frame::{FrameHeader, Opcode};
use crate::mask::{apply_mask, extend_masked, unmask_is_ascii};
use crate::message::{DataKind, Event, Fragment, Message, Text};
use crate::utf8::{self, Utf8Validator};

/// Which end of the connection this is. It decides masking (§5.1) and who
/// closes the TCP connection first (§7.1.1: the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that sent the opening handshake; masks every frame.
    Client,
    /// The side that accepted it; requires masked frames.
    Server,
}

/// Limits and behaviour of a connection. Every limit is bounded by default.
///
/// | field | default | on excess |
/// |---|---|---|
/// | `max_frame_size` | 16 MiB (compressed frames: 1/16 more) | close 1009 before the payload is buffered |
/// | `max_message_size` | 64 MiB | close 1009 before the payload is buffered |
/// | `max_fragments` | 131,072 frames per message | close 1009 |
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The largest payload one frame may announce. A frame compressed by an
    /// extension may be 1/16 larger, as deflate slightly expands data that
    /// does not compress: a message of this size is received either way.
    pub max_frame_size: usize,
    /// The largest message (after decompression).
    pub max_message_size: usize,
    /// The most frames one message may be split into. A flood of tiny
    /// fragments is cut off here rather than costing a header parse per byte.
    pub max_fragments: usize,
    /// Hand up [`Event::Fragment`]s as payload arrives instead of whole
    /// [`Event::Message`]s (streaming mode for large messages).
    pub deliver_fragments: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 1 << 17,
            deliver_fragments: false,
        }
    }
}

impl Config {
    /// Set `max_frame_size`.
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }
    /// Set `max_message_size`.
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }
    /// Set `max_fragments`.
    pub fn max_fragments(mut self, n: usize) -> Self {
        self.max_fragments = n;
        self
    }
    /// Set `deliver_fragments`.
    pub fn deliver_fragments(mut self, on: bool) -> Self {
        self.deliver_fragments = on;
        self
    }
}

/// Where the closing handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Data flows both ways.
    Open,
    /// This side sent a close frame and waits for the peer's.
    Closing,
    /// Both close frames were exchanged (or the peer's arrived and the reply is
    /// queued). Nothing more is sent or delivered.
    Closed,
    /// The connection failed; see [`Connection::error`].
    Failed,
}

/// Payloads at least this long are queued by reference rather than copied next
/// to their header (server frames only: client frames are masked, a copy anyway).
const ZERO_COPY_MIN: usize = 1024;

/// The least room made in the output's tail when it has too little: many
/// small frames are often queued together (an echo of a read's worth of
/// messages), and a kilobyte costs the allocator no more than 48 bytes.
const TAIL_MIN: usize = 1024;

/// Received payloads shorter than this are copied out of the receive buffer
/// instead of split off it. Sharing the buffer costs two atomic reference-count
/// updates per frame and lets a small message the application keeps pin the
/// whole buffer (the next read must then allocate a new one); copying a few
/// bytes costs less and frees the buffer for reuse. Every control frame
/// (at most 125 bytes) is copied.
const COPY_BELOW: usize = 256;

/// The least [`Connection::receive_data`] reserves when the receive buffer is
/// full.
const READ_RESERVE: usize = 4096;

/// A payload at least this large that fills the receive buffer is split off
/// it rather than handed over with it, so that the buffer can be reclaimed for
/// the next message once the application lets go of the payload
/// ([`Connection::release_buffers_but_receive`], `BytesMut::try_reclaim` on
/// [`Connection::read_buffer_mut`]). Smaller ones are handed over whole:
/// sharing would cost an allocation per message. A driver that keeps the
/// receive buffer for the next large message does so from this size.
pub const SPLIT_FROM: usize = 256 * 1024;

/// A pong is queued only while less than this is waiting to be written, so a
/// peer that pings and never reads cannot grow the queue.
const PONG_BACKLOG: usize = 64 * 1024;

/// Bytes waiting to be written, in order: `chunks` then `tail`.
#[derive(Debug, Default)]
struct OutQueue {
    /// Payloads queued by reference (large or shared ones). Boxed, and made
    /// on first use: a connection that sends only small messages carries a
    /// pointer, not 32 bytes.
    #[allow(clippy::box_collection)]
    chunks: Option<Box<VecDeque<Bytes>>>,
    tail: BytesMut,
    len: usize,
}

impl OutQueue {
    fn header(&mut self, h: &FrameHeader) {
        let before = self.tail.len();
        h.encode(&mut self.tail);
        self.len += self.tail.len() - before;
    }

    fn copy(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    fn masked(&mut self, data: &[u8], key: [u8; 4]) {
        extend_masked(&mut self.tail, data, key);
        self.len += data.len();
    }

    fn bytes(&mut self, data: Bytes) {
        if data.len() < ZERO_COPY_MIN {
            return self.copy(&data);
        }
        let chunks = self.chunks.get_or_insert_with(Box::default);
        if !self.tail.is_empty() {
            chunks.push_back(self.tail.split().freeze());
        }
        self.len += data.len();
        chunks.push_back(data);
    }

    /// Queue `data` by reference whatever its size: the same allocation may
    /// be queued on many connections.
    fn shared(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let chunks = self.chunks.get_or_insert_with(Box::default);
        if !self.tail.is_empty() {
            chunks.push_back(self.tail.split().freeze());
        }
        self.len += data.len();
        chunks.push_back(data);
    }

    fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for c in self
            .chunks
            .iter()
            .flat_map(|c| c.iter())
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]))
        {
            if n == dst.len() {
                break;
            }
            if !c.is_empty() {
                dst[n] = IoSlice::new(c);
                n += 1;
            }
        }
        n
    }

    fn advance(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            match self.chunks.as_mut().and_then(|c| c.front_mut()) {
                Some(c) if c.len() <= n => {
                    n -= c.len();
                    if let Some(c) = self.chunks.as_mut() {
                        c.pop_front();
                    }
                }
                Some(c) => {
                    c.advance(n);
                    return;
                }
                None => {
                    if n == self.tail.len() {
                        // All written (the usual case): clearing is cheaper
                        // than advancing, and keeps the room already made.
                        self.tail.clear();
                    } else {
                        self.tail.advance(n);
                    }
                    return;
                }
            }
        }
    }
}

/// Fresh masking keys from the operating system's CSPRNG (§5.3, §10.3), read
/// in batches so that one system call serves many frames.
#[derive(Debug)]
struct MaskSource {
    pool: [u8; 128],
    pos: usize,
    fallback: u64,
}

impl MaskSource {
    fn new() -> Self {
        MaskSource {
            pool: [0; 128],
            pos: 128,
            fallback: 0,
        }
    }

    fn next(&mut self) -> [u8; 4] {
        if self.pos + 4 > self.pool.len() {
            if getrandom::fill(&mut self.pool).is_err() {
                // The OS source failed (practically never): derive keys from
                // the process's randomly keyed SipHash so masking still varies.
                use std::hash::{BuildHasher, Hasher};
                let state = std::collections::hash_map::RandomState::new();
                for chunk in self.pool.chunks_mut(8) {
                    let mut h = state.build_hasher();
                    self.fallback = self.fallback.wrapping_add(1);
                    h.write_u64(self.fallback);
                    let v = h.finish().to_ne_bytes();
                    chunk.copy_from_slice(&v[..chunk.len()]);
                }
            }
            self.pos = 0;
        }
        let mut k = [0; 4];
        k.copy_from_slice(&self.pool[self.pos..self.pos + 4]);
        self.pos += 4;
        k
    }
}

#[derive(Clone, Copy, Debug)]
enum ReadState {
    Header,
    Payload {
        h: FrameHeader,
        /// Payload bytes of this frame not yet taken out of `rbuf`.
        remaining: usize,
        /// Of those, how many are already unmasked and validated.
        done: usize,
        /// Payload offset of `rbuf[0]`, modulo 4: the masking key's phase
        /// (one byte rather than eight: the connection is what an idle one
        /// costs).
        phase: u8,
        /// Whether to validate the raw payload as UTF-8 as it arrives.
        validate: bool,
    },
}

/// The negotiated extension and the buffer it encodes into.
#[derive(Debug)]
struct Ext {
    ext: Box<dyn Extension>,
    buf: BytesMut,
}

/// The message being received.
#[derive(Debug, Default)]
struct Assembly {
    kind: Option<DataKind>,
    /// The extension's RSV bits of the first frame (non-zero: transformed).
    rsv: u8,
    /// The message so far, when it takes more than one frame or an extension
    /// decodes it. Boxed, and made on first use: a connection between
    /// messages (an idle one) carries a pointer, not 32 bytes.
    buf: Option<Box<BytesMut>>,
    /// Bytes received so far for the size limit (decoded bytes if transformed).
    len: usize,
    /// Frames so far (saturating: `max_fragments` stops a message long
    /// before 2^32 frames unless it is set past that).
    frames: u32,
    /// A piece was handed up already in streaming mode.
    handed_up: bool,
}

impl Assembly {
    /// Ready for the next message, keeping the (emptied) buffer's capacity
    /// for the next fragmented one.
    fn reset(&mut self) {
        self.kind = None;
        self.rsv = 0;
        if let Some(b) = self.buf.as_mut() {
            b.clear();
        }
        self.len = 0;
        self.frames = 0;
        self.handed_up = false;
    }
}

/// A WebSocket connection after the opening handshake, for either role.
///
/// Call order: feed bytes with [`receive_data`](Self::receive_data) (or read
/// straight into [`read_buffer_mut`](Self::read_buffer_mut)), then call
/// [`poll_event`](Self::poll_event) until it returns `Ok(None)`; after anything
/// that may queue output (a poll, a send, a close) write what
/// [`transmit_slices`](Self::transmit_slices) gives and report it with
/// [`advance_transmit`](Self::advance_transmit). When the transport reaches
/// end of file, call [`receive_eof`](Self::receive_eof) and poll once more.
/// Close the transport when [`should_close_transport`](Self::should_close_transport)
/// says so.
///
/// ```
/// use weft_proto::{Connection, Role, Config, Event, Message};
///
/// let mut client = Connection::new(Role::Client, Config::default());
/// let mut server = Connection::new(Role::Server, Config::default());
/// client.send_text("Hello").unwrap();
/// server.receive_data(&client.take_transmit());
/// match server.poll_event().unwrap() {
///     Some(Event::Message(Message::Text(t))) => assert_eq!(t.as_str(), "Hello"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    rbuf: BytesMut,
    rstate: ReadState,
    assembly: Assembly,
    utf8: Utf8Validator,
    out: OutQueue,
    /// The latest ping not answered yet because the output was over
    /// `PONG_BACKLOG`.
    /// Boxed: rare, and a connection is kept small for idle servers.
    pending_pong: Option<Box<Bytes>>,
    /// Client only; boxed so that a server connection does not carry it.
    masks: Option<Box<MaskSource>>,
    /// The extension and its output buffer, in one box: a connection
    /// without one carries a pointer, not 48 bytes.
    extension: Option<Box<Ext>>,
    /// A fragmented message being sent: its kind and whether the extension
    /// transformed it.
    sending: Option<(DataKind, bool)>,
    send_utf8: Utf8Validator,
    close_sent: bool,
    close_received: bool,
    eof: bool,
    /// Boxed: rare, and a connection is kept small for idle servers.
    error: Option<Box<Error>>,
    /// Payload lengths below this (at most `COPY_BELOW`) are within every
    /// limit of `config` for a whole message in one frame; see `small_frame`.
    small_below: u16,
}

impl Connection {
    /// A connection for `role` with `config`, right after the handshake.
    pub fn new(role: Role, config: Config) -> Self {
        let small_below = small_below(&config);
        Connection {
            role,
            config,
            rbuf: BytesMut::new(),
            rstate: ReadState::Header,
            assembly: Assembly::default(),
            utf8: Utf8Validator::new(),
            out: OutQueue::default(),
            pending_pong: None,
            masks: (role == Role::Client).then(|| Box::new(MaskSource::new())),
            extension: None,
            sending: None,
            send_utf8: Utf8Validator::new(),
            close_sent: false,
            close_received: false,
            eof: false,
            error: None,
            small_below,
        }
    }

    /// Install the extension the handshake negotiated.
    pub fn with_extension(mut self, ext: Option<Box<dyn Extension>>) -> Self {
        self.extension = ext.map(|ext| {
            Box::new(Ext {
                ext,
                buf: BytesMut::new(),
            })
        });
        self
    }

    /// This side's role.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The negotiated extension, if any.
    pub fn extension(&self) -> Option<&dyn Extension> {
        self.extension.as_deref().map(|e| &*e.ext)
    }

    /// Where the closing handshake stands.
    #[inline]
    pub fn state(&self) -> State {
        if self.error.is_some() {
            State::Failed
        } else if self.close_sent && self.close_received {
            State::Closed
        } else if self.close_sent {
            State::Closing
        } else {
            State::Open
        }
    }

    /// The sticky error, once the connection has failed.
    #[inline]
    pub fn error(&self) -> Option<&Error> {
        self.error.as_deref()
    }

    // ----- receiving -----------------------------------------------------

    /// Feed bytes read from the transport. Bytes after the peer's close frame,
    /// or after a failure, are discarded (§5.5.1: nothing after Close).
    #[inline]
    pub fn receive_data(&mut self, data: &[u8]) {
        if self.wants_data() {
            if self.rbuf.capacity() == 0 {
                // Released while the socket was idle: made afresh, which
                // costs less than growing an empty buffer.
                self.rbuf = BytesMut::with_capacity(data.len().max(READ_RESERVE));
            } else if self.rbuf.capacity() - self.rbuf.len() < data.len() {
                // Grow, or move unread bytes back to the front, a few KiB at a
                // time rather than on every call that brings a small frame.
                self.rbuf.reserve(data.len().max(READ_RESERVE));
            }
            self.rbuf.extend_from_slice(data);
        }
    }

    /// The receive buffer, to read into without an intermediate copy. Bytes
    /// appended are processed by the next [`poll_event`](Self::poll_event).
    #[inline]
    pub fn read_buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// How many more bytes would complete the frame being received (at least
    /// 2 when between frames). A driver can size its next read with it.
    #[inline]
    pub fn read_hint(&self) -> usize {
        match self.rstate {
            ReadState::Header => 2usize.saturating_sub(self.rbuf.len()).max(2),
            ReadState::Payload { remaining, .. } => remaining.saturating_sub(self.rbuf.len()).max(1),
        }
    }

    /// Whether incoming bytes are still wanted (false once the peer's close
    /// frame arrived or the connection failed).
    #[inline]
    pub fn wants_data(&self) -> bool {
        !self.close_received && self.error.is_none()
    }

    /// The transport reached end of file.
    #[inline]
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// Whether [`receive_eof`](Self::receive_eof) was called.
    #[inline]
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// The next event, `Ok(None)` when more input is needed (or the peer's
    /// close was already delivered). An error fails the connection: a close
    /// frame with its code is queued (unless one was sent already) and the same
    /// error is returned on every later call.
    #[inline]
    pub fn poll_event(&mut self) -> Result<Option<Event>, Error> {
        // The common case first, without the general path's set-up; either
        // way the call is passed on whole, so neither pays for the other.
        match self.small_frame() {
            Some(f) => self.whole_small_message(f),
            // Nothing buffered between frames: more input is needed, as the
            // general path would find, without its set-up.
            None if self.rbuf.is_empty()
                && !self.eof
                && self.error.is_none()
                && matches!(self.rstate, ReadState::Header) =>
            {
                Ok(None)
            }
            None => self.poll_general(),
        }
    }

    #[inline(never)]
    fn poll_general(&mut self) -> Result<Option<Event>, Error> {
        if let Some(e) = &self.error {
            return Err(Error::clone(e));
        }
        self.read_event().map_err(|e| self.failed(e))
    }

    /// Fail the connection with `e`, which is returned.
    #[cold]
    fn failed(&mut self, e: Error) -> Error {
        self.fail(e.clone());
        e
    }

    fn need_more(&self) -> Result<Option<Event>, Error> {
        if self.eof && !self.close_received {
            Err(Error::AbnormalClosure)
        } else {
            Ok(None)
        }
    }

    fn read_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            if self.close_received {
                return Ok(None);
            }
            match self.rstate {
                ReadState::Header => {
                    let Some((h, n)) = FrameHeader::parse(&self.rbuf).map_err(Error::Protocol)? else {
                        return self.need_more();
                    };
                    let validate = self.check_header(&h)?;
                    // Fits: checked against max_frame_size (a usize) above.
                    let len = usize::try_from(h.payload_len).unwrap_or(usize::MAX);
                    if len < COPY_BELOW && self.rbuf.len() - n >= len {
                        // The whole of a small frame is here (the common case):
                        // unmask, check and copy it out in one step.
                        let payload = &mut self.rbuf[n..n + len];
                        if let Some(key) = h.mask {
                            apply_mask(payload, key, 0);
                        }
                        if validate {
                            self.utf8.feed(payload).map_err(|_| Error::InvalidUtf8)?;
                        }
                        // Through a boxed slice: `Bytes::from(Vec)` would
                        // first check whether the vector has spare capacity.
                        let payload = Bytes::from(Box::<[u8]>::from(&*payload));
                        self.consume_frame(n + len);
                        if let Some(ev) = self.on_frame(h, payload)? {
                            return Ok(Some(ev));
                        }
                        continue;
                    }
                    self.rbuf.advance(n);
                    self.rstate = ReadState::Payload {
                        h,
                        remaining: len,
                        done: 0,
                        phase: 0,
                        validate,
                    };
                }
                ReadState::Payload {
                    h,
                    remaining,
                    mut done,
                    phase,
                    validate,
                } => {
                    let avail = self.rbuf.len().min(remaining);
                    if avail > done {
                        let fresh = &mut self.rbuf[done..avail];
                        if let Some(key) = h.mask {
                            apply_mask(fresh, key, usize::from(phase) + done);
                        }
                        if validate {
                            self.utf8.feed(fresh).map_err(|_| Error::InvalidUtf8)?;
                        }
                        done = avail;
                    }
                    if avail < remaining {
                        if self.config.deliver_fragments && validate_or_binary(&h, &self.assembly) && done > 0 {
                            // Streaming: hand up what has arrived of this frame.
                            let data = self.rbuf.split_to(done).freeze();
                            self.rstate = ReadState::Payload {
                                h,
                                remaining: remaining - done,
                                done: 0,
                                // `as u8`: the phase is the offset modulo 4.
                                phase: ((usize::from(phase) + done) % 4) as u8,
                                validate,
                            };
                            return Ok(Some(self.piece(data, false)));
                        }
                        self.rstate = ReadState::Payload {
                            h,
                            remaining,
                            done,
                            phase,
                            validate,
                        };
                        return self.need_more();
                    }
                    let payload = if remaining < COPY_BELOW {
                        // Small: a copy of its own, and the read buffer is
                        // kept for the next frame.
                        let p = Bytes::copy_from_slice(&self.rbuf[..remaining]);
                        self.rbuf.advance(remaining);
                        p
                    } else if remaining == self.rbuf.len() && remaining < SPLIT_FROM {
                        // The whole buffer: handed over without sharing it
                        // (no reference-counted header to allocate).
                        std::mem::take(&mut self.rbuf).freeze()
                    } else {
                        // Split off: the receive buffer keeps its handle on
                        // the allocation, so that once the application drops
                        // a large message the next one can be read into the
                        // same memory (already faulted in) instead of a fresh
                        // allocation grown by reallocation.
                        self.rbuf.split_to(remaining).freeze()
                    };
                    self.rstate = ReadState::Header;
                    if let Some(ev) = self.on_frame(h, payload)? {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }

    /// Drop a whole frame of `n` bytes, taken out already, from the front of
    /// the receive buffer.
    #[inline(always)]
    fn consume_frame(&mut self, n: usize) {
        if n == self.rbuf.len() {
            // The read ended with this frame (the usual case): emptying the
            // buffer is cheaper than advancing it, and the next read starts at
            // its front.
            self.rbuf.clear();
        } else {
            self.rbuf.advance(n);
        }
    }

    /// The common case, recognised from the header alone: a whole message in
    /// one small frame (FIN set, no RSV bit, a payload under [`COPY_BELOW`]
    /// bytes within every limit of the config) entirely in the receive
    /// buffer, with no fragmented message in progress. Anything else, every
    /// error but invalid UTF-8 included, is left to the general path, which
    /// decides it the same way.
    #[inline(always)]
    fn small_frame(&self) -> Option<SmallFrame> {
        // The length first, so that a large frame is passed on at once.
        let [b0, b1, ref rest @ ..] = self.rbuf[..] else {
            return None;
        };
        let (len, n) = match b1 & 0x7f {
            // 256 bytes or more.
            126 if rest.first().is_some_and(|&hi| hi != 0) => return None,
            126 => (u16::from_be_bytes(*rest.first_chunk::<2>()?), 4),
            127 => return None,
            short => (u16::from(short), 2),
        };
        // `close_received` is set too when the connection failed or was
        // aborted; after it nothing more is read. In the payload state `rbuf`
        // does not start with a header, and a fragmented message in progress
        // needs the general path.
        if len >= self.small_below
            || self.close_received
            || !matches!(self.rstate, ReadState::Header)
            || self.assembly.kind.is_some()
        {
            return None;
        }
        let kind = match b0 {
            0x81 => DataKind::Text,
            0x82 => DataKind::Binary,
            _ => return None,
        };
        // §5.1: masked exactly when it comes from a client.
        let masked = b1 & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return None;
        }
        let header_len = n + if masked { 4 } else { 0 };
        if usize::from(header_len) + usize::from(len) > self.rbuf.len() {
            return None;
        }
        let key = match masked {
            true => *rest[usize::from(n) - 2..].first_chunk::<4>()?,
            false => [0; 4],
        };
        Some(SmallFrame {
            kind,
            key,
            header_len,
            len,
        })
    }

    /// Decide the frame [`small_frame`](Self::small_frame) found, in one step:
    /// the payload is copied into a buffer of its own and unmasked there while
    /// it is checked for ASCII; only other text goes to the UTF-8 validator.
    /// The reassembly state and the incremental validator, as they are between
    /// messages, are not touched.
    #[inline(never)]
    fn whole_small_message(&mut self, f: SmallFrame) -> Result<Option<Event>, Error> {
        let SmallFrame {
            kind,
            key,
            header_len,
            len,
        } = f;
        // Through a boxed slice: `Bytes::from(Vec)` would first check whether
        // the vector has spare capacity.
        let (header_len, len) = (usize::from(header_len), usize::from(len));
        let mut data = Box::<[u8]>::from(&self.rbuf[header_len..header_len + len]);
        // A small frame is masked exactly when this is the server.
        let ascii = self.role == Role::Server && unmask_is_ascii(&mut data, key);
        if kind == DataKind::Text && !ascii && !utf8::is_valid(&data) {
            return Err(self.failed(Error::InvalidUtf8));
        }
        self.consume_frame(header_len + len);
        if self.config.deliver_fragments {
            return Ok(Some(Event::Fragment(Fragment {
                kind,
                data: Bytes::from(data),
                first: true,
                fin: true,
            })));
        }
        let data = Bytes::from(data);
        Ok(Some(Event::Message(match kind {
            DataKind::Text => Message::Text(Text::from_validated(data)),
            DataKind::Binary => Message::Binary(data),
        })))
    }

    /// Apply the rules that a header alone decides; returns whether the payload
    /// is validated as UTF-8 while it arrives.
    fn check_header(&mut self, h: &FrameHeader) -> Result<bool, Error> {
        // §5.1: "a server MUST close the connection upon receiving a frame that
        // is not masked"; "a client MUST close a connection if it detects a
        // masked frame".
        match (self.role, h.mask) {
            (Role::Server, None) => return Err(Error::Protocol(ProtocolError::UnmaskedFrame)),
            (Role::Client, Some(_)) => return Err(Error::Protocol(ProtocolError::MaskedFrame)),
            _ => {}
        }
        // §5.2: "If a nonzero value is received and none of the negotiated
        // extensions defines the meaning of such a nonzero value, the receiving
        // endpoint MUST _Fail the WebSocket Connection_."
        if h.rsv != 0 && h.rsv & !self.extension.as_ref().map_or(0, |e| e.ext.rsv_bits()) != 0 {
            return Err(Error::Protocol(ProtocolError::ReservedBits(h.rsv)));
        }
        if h.opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125 bytes
            // or less and MUST NOT be fragmented."
            if !h.fin {
                return Err(Error::Protocol(ProtocolError::FragmentedControl));
            }
            if h.payload_len > 125 {
                return Err(Error::Protocol(ProtocolError::ControlTooLong));
            }
            if h.rsv != 0 {
                return Err(Error::Protocol(ProtocolError::ReservedBits(h.rsv)));
            }
            return Ok(false);
        }
        // §5.4: fragments of one message come in order, not interleaved.
        let kind = match (h.opcode, self.assembly.kind) {
            (Opcode::Continuation, None) => return Err(Error::Protocol(ProtocolError::UnexpectedContinuation)),
            (Opcode::Text | Opcode::Binary, Some(_)) => {
                return Err(Error::Protocol(ProtocolError::ExpectedContinuation));
            }
            (Opcode::Continuation, Some(kind)) => {
                // Per-message extensions set their bits on the first frame only.
                if h.rsv != 0 {
                    return Err(Error::Protocol(ProtocolError::ReservedBits(h.rsv)));
                }
                kind
            }
            (Opcode::Text, None) => DataKind::Text,
            (_, _) => DataKind::Binary,
        };
        let first = self.assembly.kind.is_none();
        let compressed = if first { h.rsv != 0 } else { self.assembly.rsv != 0 };
        let max_frame = if compressed {
            compressed_frame_limit(self.config.max_frame_size)
        } else {
            self.config.max_frame_size
        };
        if h.payload_len > max_frame as u64 {
            return Err(Error::MessageTooBig(LimitExceeded::FrameSize {
                len: h.payload_len,
                max: max_frame,
            }));
        }
        if self.assembly.frames as usize >= self.config.max_fragments {
            return Err(Error::MessageTooBig(LimitExceeded::Fragments {
                max: self.config.max_fragments,
            }));
        }
        if first {
            self.assembly.kind = Some(kind);
            self.assembly.rsv = h.rsv;
            self.utf8.reset();
        }
        let transformed = self.assembly.rsv != 0;
        if !transformed && self.assembly.len + h.payload_len as usize > self.config.max_message_size {
            return Err(Error::MessageTooBig(LimitExceeded::MessageSize {
                max: self.config.max_message_size,
            }));
        }
        Ok(kind == DataKind::Text && !transformed)
    }

    /// A streaming piece of the current message.
    fn piece(&mut self, data: Bytes, fin: bool) -> Event {
        let kind = self.assembly.kind.unwrap_or(DataKind::Binary);
        let first = !self.assembly.handed_up;
        self.assembly.handed_up = true;
        self.assembly.len += data.len();
        if fin {
            self.assembly.reset();
        }
        Event::Fragment(Fragment { kind, data, first, fin })
    }

    #[inline(always)]
    fn on_frame(&mut self, h: FrameHeader, payload: Bytes) -> Result<Option<Event>, Error> {
        match h.opcode {
            Opcode::Ping => {
                // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send
                // a Pong frame in response, unless it already received a Close
                // frame" -- also after this side sent its own close, which only
                // forbids data frames (§5.5.1). Frames are read only until the
                // peer's close, so every ping seen here is answered.
                //
                // The pong is queued now, so it goes out in the order the
                // ping came in: ahead of any reply to a message that completes
                // after the ping (a ping between the fragments of a message).
                // Each ping gets its own pong while the output is under
                // PONG_BACKLOG; past that only the latest unanswered ping is
                // kept, to be answered once the output drains (§5.5.3 allows
                // answering only the most recent).
                if self.out.len < PONG_BACKLOG {
                    self.pending_pong = None;
                    self.push_frame(Opcode::Pong, 0, true, Payload::Shared(payload.clone()));
                } else {
                    self.pending_pong = Some(Box::new(payload.clone()));
                }
                Ok(Some(Event::Ping(payload)))
            }
            Opcode::Pong => Ok(Some(Event::Pong(payload))),
            Opcode::Close => {
                let frame = CloseFrame::parse(&payload)?;
                self.close_received = true;
                self.rbuf = BytesMut::new();
                self.assembly = Assembly::default();
                if self.close_sent {
                    // The closing handshake is complete: nothing more is sent.
                    self.pending_pong = None;
                } else {
                    // §5.5.1: reply with a close frame, echoing the code. A
                    // ping read before this close still gets its pong (§5.5.2),
                    // ahead of the reply.
                    let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.queue_close(reply.as_ref());
                }
                Ok(Some(Event::Close(frame)))
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => self.on_data(h.fin, payload),
        }
    }

    #[inline(always)]
    fn on_data(&mut self, fin: bool, payload: Bytes) -> Result<Option<Event>, Error> {
        let kind = self.assembly.kind.unwrap_or(DataKind::Binary);
        self.assembly.frames = self.assembly.frames.saturating_add(1);
        if self.assembly.rsv != 0 {
            let Some(Ext { ext, .. }) = self.extension.as_deref_mut() else {
                return Err(Error::Protocol(ProtocolError::ReservedBits(self.assembly.rsv)));
            };
            let buf = self.assembly.buf.get_or_insert_with(Box::default);
            let start = buf.len();
            // Decoded bytes of this message no longer in `buf` (handed up as
            // pieces in streaming mode) count against the limit too, so the
            // room left for `buf` is the limit less those.
            let handed_up = self.assembly.len.saturating_sub(start);
            let max_len = self.config.max_message_size.saturating_sub(handed_up);
            ext.decode(self.assembly.rsv, &payload, fin, buf, max_len)
                .map_err(Error::Extension)?;
            if buf.len() > max_len {
                return Err(Error::MessageTooBig(LimitExceeded::MessageSize {
                    max: self.config.max_message_size,
                }));
            }
            if kind == DataKind::Text {
                self.utf8.feed(&buf[start..]).map_err(|_| Error::InvalidUtf8)?;
            }
            if self.config.deliver_fragments {
                let decoded = buf.split().freeze();
                return self.finish_piece(kind, decoded, fin).map(Some);
            }
        } else if self.config.deliver_fragments {
            return self.finish_piece(kind, payload, fin).map(Some);
        } else if fin && self.assembly.frames == 1 {
            // A whole message in one frame: handed up as it is, not
            // copied into the reassembly buffer.
            return self.finish_message(kind, payload).map(Some);
        } else {
            self.assembly
                .buf
                .get_or_insert_with(Box::default)
                .extend_from_slice(&payload);
        }
        let buf = self.assembly.buf.get_or_insert_with(Box::default);
        self.assembly.len = self.assembly.len.max(buf.len());
        if !fin {
            return Ok(None);
        }
        let whole = buf.split().freeze();
        self.finish_message(kind, whole).map(Some)
    }

    fn finish_piece(&mut self, kind: DataKind, data: Bytes, fin: bool) -> Result<Event, Error> {
        if fin && kind == DataKind::Text {
            self.utf8.finish().map_err(|_| Error::InvalidUtf8)?;
        }
        Ok(self.piece(data, fin))
    }

    #[inline(always)]
    fn finish_message(&mut self, kind: DataKind, data: Bytes) -> Result<Event, Error> {
        self.assembly.reset();
        Ok(Event::Message(match kind {
            DataKind::Text => {
                // §8.1: a message ending inside a code point is invalid.
                self.utf8.finish().map_err(|_| Error::InvalidUtf8)?;
                Message::Text(Text::from_validated(data))
            }
            DataKind::Binary => Message::Binary(data),
        }))
    }

    fn fail(&mut self, e: Error) {
        // §7.1.7: fail the connection, sending a close frame first when one
        // may still be sent and the error has a code for the wire.
        // Failing ends all processing: a pong still owed is not sent.
        self.pending_pong = None;
        if !self.close_sent && e.close_code() != CloseCode::ABNORMAL {
            let frame = CloseFrame::new(e.close_code(), e.close_reason());
            self.queue_close(Some(&frame));
        }
        self.close_received = true;
        self.rbuf = BytesMut::new();
        self.assembly = Assembly::default();
        self.pending_pong = None;
        self.error = Some(Box::new(e));
    }

    /// Abort the connection locally (for example a keepalive or close-handshake
    /// timeout): no close frame, the transport should be closed now.
    pub fn abort(&mut self, why: &'static str) {
        if self.error.is_none() {
            self.close_received = true;
            self.close_sent = true;
            self.pending_pong = None;
            self.error = Some(Box::new(Error::Aborted(why)));
        }
    }

    // ----- sending -------------------------------------------------------

    fn check_open(&self) -> Result<(), SendError> {
        if self.close_sent || self.error.is_some() {
            Err(SendError::Closed)
        } else {
            Ok(())
        }
    }

    fn push_frame(&mut self, opcode: Opcode, rsv: u8, fin: bool, payload: Payload<'_>) {
        let len = payload.len();
        let mask = self.masks.as_mut().map(|m| m.next());
        let h = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: len as u64,
        };
        if mask.is_some() || matches!(&payload, Payload::Slice(_)) || len < ZERO_COPY_MIN {
            // Header and payload are copied into the tail: one reservation,
            // and a first one of at least TAIL_MIN, so that the frames queued
            // together after the tail was released (whenever the socket is
            // idle) do not grow it one doubling at a time.
            let need = 14 + len;
            if self.out.tail.capacity() == 0 {
                self.out.tail = BytesMut::with_capacity(need.max(TAIL_MIN));
            } else if self.out.tail.capacity() - self.out.tail.len() < need {
                self.out.tail.reserve(need.max(TAIL_MIN));
            }
        }
        self.out.header(&h);
        match (mask, payload) {
            (Some(key), p) => self.out.masked(p.as_slice(), key),
            (None, Payload::Shared(b)) => self.out.bytes(b),
            (None, Payload::Slice(s)) => self.out.copy(s),
        }
    }

    /// Encode a data frame through the extension, if there is one.
    fn push_data(&mut self, kind: DataKind, data: Bytes, first: bool, fin: bool) -> Result<(), SendError> {
        let opcode = if !first {
            Opcode::Continuation
        } else if kind == DataKind::Text {
            Opcode::Text
        } else {
            Opcode::Binary
        };
        // The extension's output and the RSV bits it claims, if it
        // transformed the payload.
        let transformed = match self.extension.as_deref_mut() {
            Some(Ext { ext, buf }) => {
                buf.clear();
                match ext.encode(kind, &data, first, fin, buf).map_err(SendError::Extension)? {
                    Encoded::Transformed { rsv } => Some((rsv, buf.split().freeze())),
                    Encoded::Unchanged => None,
                }
            }
            None => None,
        };
        let transformed = match transformed {
            Some((rsv, encoded)) => {
                let rsv = if first { rsv } else { 0 };
                self.push_frame(opcode, rsv, fin, Payload::Shared(encoded));
                true
            }
            None => {
                self.push_frame(opcode, 0, fin, Payload::Shared(data));
                false
            }
        };
        if !fin {
            self.sending = Some((kind, transformed));
        }
        Ok(())
    }

    /// Queue a whole message.
    #[inline]
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.check_open()?;
        if self.sending.is_some() {
            return Err(SendError::FragmentSequence);
        }
        let kind = msg.kind();
        self.push_data(kind, msg.into_bytes(), true, true)
    }

    /// Queue a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send(Message::Text(Text::from(text)))
    }

    /// Queue a binary message.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.send(Message::Binary(data.into()))
    }

    /// Queue one piece of a message sent in pieces (streaming). The first call
    /// starts a message of `kind`; `fin` ends it. Control frames and closes may
    /// be sent between pieces. Text pieces are checked as one UTF-8 stream.
    pub fn send_fragment(&mut self, kind: DataKind, data: impl Into<Bytes>, fin: bool) -> Result<(), SendError> {
        self.check_open()?;
        let data = data.into();
        let first = match self.sending {
            None => true,
            Some((k, _)) if k == kind => false,
            Some(_) => return Err(SendError::FragmentSequence),
        };
        if kind == DataKind::Text {
            let mut v = if first {
                Utf8Validator::new()
            } else {
                self.send_utf8.clone()
            };
            v.feed(&data).map_err(|_| SendError::InvalidUtf8)?;
            if fin {
                v.finish().map_err(|_| SendError::InvalidUtf8)?;
            }
            self.send_utf8 = v;
        }
        self.push_data(kind, data, first, fin)?;
        if fin {
            self.sending = None;
        }
        Ok(())
    }

    /// Queue a frame that is already encoded, by reference: the bytes are not
    /// copied, so one frame made with
    /// [`encode_server_frame`](crate::frame::encode_server_frame) can be
    /// queued on any number of connections (fan-out).
    ///
    /// Server role only (client frames are masked per frame). The frame must
    /// be one whole text or binary frame: FIN set, not masked, no RSV bit the
    /// negotiated extension does not claim, length matching its header; only
    /// the header is checked here, not the payload (a text payload's UTF-8 is
    /// the encoder's promise). Like [`send`](Self::send), it fails with
    /// [`SendError::Closed`] once a close frame was sent and with
    /// [`SendError::FragmentSequence`] while a fragmented message is being
    /// sent. With permessage-deflate negotiated, an uncompressed frame (RSV1
    /// clear) is valid: compression is per message (RFC 7692 §6).
    pub fn send_raw_frame(&mut self, frame: Bytes) -> Result<(), SendError> {
        if self.role != Role::Server {
            return Err(SendError::RawFrameRole);
        }
        self.check_open()?;
        if self.sending.is_some() {
            return Err(SendError::FragmentSequence);
        }
        let Ok(Some((h, n))) = FrameHeader::parse(&frame) else {
            return Err(SendError::InvalidRawFrame);
        };
        let claimed = self.extension.as_ref().map_or(0, |e| e.ext.rsv_bits());
        let whole = u64::try_from(frame.len() - n).is_ok_and(|len| len == h.payload_len);
        if !h.fin
            || h.mask.is_some()
            || !matches!(h.opcode, Opcode::Text | Opcode::Binary)
            || h.rsv & !claimed != 0
            || !whole
        {
            return Err(SendError::InvalidRawFrame);
        }
        self.out.shared(frame);
        Ok(())
    }

    /// Queue a ping (payload at most 125 bytes).
    pub fn send_ping(&mut self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.send_control(Opcode::Ping, data.into())
    }

    /// Queue an unsolicited pong (payload at most 125 bytes), e.g. as a
    /// unidirectional heartbeat (§5.5.3).
    pub fn send_pong(&mut self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.send_control(Opcode::Pong, data.into())
    }

    fn send_control(&mut self, op: Opcode, data: Bytes) -> Result<(), SendError> {
        self.check_open()?;
        if data.len() > 125 {
            return Err(SendError::ControlTooLong);
        }
        self.push_frame(op, 0, true, Payload::Shared(data));
        Ok(())
    }

    /// Start the closing handshake (§7.1.2). `None` sends a close frame with no
    /// code. After this no data may be sent; received data is still delivered
    /// until the peer's close arrives.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        self.check_open()?;
        if let Some(f) = &frame {
            if !f.code.is_sendable() {
                return Err(SendError::InvalidCloseCode(f.code.0));
            }
            if f.reason.len() > MAX_CLOSE_REASON {
                return Err(SendError::ControlTooLong);
            }
        }
        self.queue_close(frame.as_ref());
        Ok(())
    }

    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        // A ping received before this close is still owed its pong (§5.5.2):
        // queue it ahead of the close.
        if let Some(p) = self.pending_pong.take() {
            self.push_frame(Opcode::Pong, 0, true, Payload::Shared(*p));
        }
        let payload = frame.map(CloseFrame::encode).unwrap_or_default();
        self.push_frame(Opcode::Close, 0, true, Payload::Shared(payload));
        self.close_sent = true;
    }

    // ----- transmitting --------------------------------------------------

    /// Queue the pong owed for the latest ping, if there is one and the
    /// output has room for it. Checked on every call that looks at the
    /// output, so the common case (none owed) is inline.
    #[inline]
    fn materialize_pong(&mut self) {
        if self.pending_pong.is_some() {
            self.queue_pending_pong();
        }
    }

    fn queue_pending_pong(&mut self) {
        if self.out.len < PONG_BACKLOG
            && let Some(p) = self.pending_pong.take()
        {
            self.push_frame(Opcode::Pong, 0, true, Payload::Shared(*p));
        }
    }

    /// Whether there are bytes to write (including a pong that is due).
    #[inline]
    pub fn has_transmit(&mut self) -> bool {
        self.materialize_pong();
        self.out.len > 0
    }

    /// Bytes waiting to be written (the browser's `bufferedAmount`).
    #[inline]
    pub fn buffered_amount(&self) -> usize {
        self.out.len
    }

    /// Fill `dst` with the queued output, in order, for a vectored write.
    /// Returns how many slices were filled.
    #[inline]
    pub fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.materialize_pong();
        self.out.slices(dst)
    }

    /// `n` bytes of the output were written.
    #[inline]
    pub fn advance_transmit(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// Take all queued output as one buffer (copies; for tests and simple
    /// drivers).
    pub fn take_transmit(&mut self) -> Bytes {
        self.materialize_pong();
        let mut all = BytesMut::with_capacity(self.out.len);
        for c in self.out.chunks.iter_mut().flat_map(|c| c.drain(..)) {
            all.extend_from_slice(&c);
        }
        all.extend_from_slice(&self.out.tail);
        self.out.tail.clear();
        self.out.len = 0;
        all.freeze()
    }

    /// Whether the transport should now be closed: the output is flushed and
    /// either the connection failed, or the closing handshake is complete and
    /// this is the server (§7.1.1: "the underlying TCP connection, in most
    /// normal cases, SHOULD be closed first by the server") or the client has
    /// seen the server close it.
    #[inline]
    pub fn should_close_transport(&self) -> bool {
        if self.out.len > 0 {
            return false;
        }
        match self.state() {
            State::Failed => true,
            State::Closed => self.role == Role::Server || self.eof,
            State::Open | State::Closing => self.eof,
        }
    }

    /// Release the receive and send buffers while they are empty, so an idle
    /// connection holds no buffer memory.
    #[inline]
    pub fn release_buffers(&mut self) {
        if self.rbuf.is_empty() && matches!(self.rstate, ReadState::Header) {
            self.rbuf = BytesMut::new();
        }
        self.release_buffers_but_receive();
    }

    /// [`release_buffers`](Self::release_buffers), except the receive buffer:
    /// for a driver that expects another large message soon and wants it read
    /// into the memory the last one used (see
    /// [`read_buffer_mut`](Self::read_buffer_mut) and `BytesMut::try_reclaim`).
    #[inline]
    pub fn release_buffers_but_receive(&mut self) {
        if self.out.len == 0 {
            self.out.tail = BytesMut::new();
        }
        if self.assembly.kind.is_none() {
            self.assembly.buf = None;
        }
        if let Some(e) = self.extension.as_mut() {
            e.buf = BytesMut::new();
        }
    }
}

/// The frame limit for a frame whose payload an extension transformed (RSV
/// bits set on its message): deflate makes incompressible data slightly larger
/// (stored-block headers: about 0.03 % with zlib's defaults, 0.25 % with the
/// small memLevel Python's websockets uses), so a compressed frame may be 1/16
/// over `max_frame_size`. A message of
/// `max_frame_size` bytes is then received whether or not the peer compressed
/// it; its decoded size is still bounded by `max_message_size`.
fn compressed_frame_limit(max_frame_size: usize) -> usize {
    max_frame_size.saturating_add(max_frame_size / 16)
}

/// The bound for [`Connection::small_frame`]: a one-frame message of fewer
/// bytes is under [`COPY_BELOW`] and passes the frame size, message size and
/// fragment limits (no frame passes when `max_fragments` is 0).
fn small_below(config: &Config) -> u16 {
    if config.max_fragments == 0 {
        return 0;
    }
    let max = config.max_frame_size.min(config.max_message_size).min(COPY_BELOW - 1);
    u16::try_from(max + 1).unwrap_or(0)
}

/// Whether a partially received frame may be handed up in pieces: only data
/// frames whose payload is not transformed by an extension.
fn validate_or_binary(h: &FrameHeader, a: &Assembly) -> bool {
    !h.opcode.is_control() && a.rsv == 0
}

/// A frame [`Connection::small_frame`] found.
#[derive(Clone, Copy)]
struct SmallFrame {
    /// The masking key (zeros on an unmasked frame, which a client receives).
    key: [u8; 4],
    len: u16,
    header_len: u8,
    kind: DataKind,
}

enum Payload<'a> {
    Shared(Bytes),
    #[allow(dead_code)]
    Slice(&'a [u8]),
}

impl Payload<'_> {
    fn len(&self) -> usize {
        match self {
            Payload::Shared(b) => b.len(),
            Payload::Slice(s) => s.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Shared(b) => b,
            Payload::Slice(s) => s,
        }
    }
}
