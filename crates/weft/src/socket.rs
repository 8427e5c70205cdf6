//! [`WebSocket`]: one loop of I/O around a [`weft_proto::Connection`].
//!
//! All connection state lives in the protocol core and the buffers it owns,
//! never in a future, so every `poll_*` here and the `async fn`s built on them
//! can be dropped at an `.await` without losing bytes: `recv`, `recv_event`,
//! `flush` and `ready` are cancel-safe (`send` and `feed` are cancel-safe in
//! the sense that the message is either queued whole or not at all).

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use weft_proto::{CloseCode, CloseFrame, Connection, DataKind, Event, Message, Role, State};

use crate::config::Config;
use crate::error::Error;

/// The reason recorded when the closing handshake runs out of time.
const CLOSE_TIMED_OUT: &str = "close timed out";

/// The most read into the stack when the connection holds no read buffer.
const SCRATCH_SIZE: usize = 8192;

/// Payload of the pings the keepalive sends.
const KEEPALIVE_PAYLOAD: &[u8] = b"weft-keepalive";

/// A message at least this large keeps its receive buffer alive for
/// [`LINGER`] while the socket is idle, so that the next large message is
/// read into the same memory: the size from which the protocol core splits
/// such messages off the buffer instead of handing the buffer over.
const LINGER_FROM: usize = weft_proto::connection::SPLIT_FROM;

/// How long after the last large message its receive buffer is kept.
const LINGER: Duration = Duration::from_secs(1);

pin_project_lite::pin_project! {
    /// Keeps the receive buffer of large messages for a while (see
    /// [`LINGER`]): a stream of 16 MiB messages then costs one buffer, reused,
    /// instead of a fresh allocation per message that the allocator has to
    /// map and the kernel to fault in again.
    struct Linger {
        #[pin]
        sleep: Sleep,
        // When the last large message arrived.
        last: Instant,
    }
}

/// What the handshake agreed and the peer's close frame: kept out of line,
/// as most connections have neither until they end.
#[derive(Default)]
struct Extra {
    protocol: Option<String>,
    extensions: Option<String>,
    peer_close: Option<CloseFrame>,
}

/// A timeout in 4 bytes: whole milliseconds, rounded up, at least 1 (the
/// socket is what an idle connection costs).
#[derive(Clone, Copy, Debug)]
struct Millis(std::num::NonZeroU32);

impl Millis {
    fn new(d: Duration) -> Self {
        let ms = u32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX);
        Millis(std::num::NonZeroU32::new(ms).unwrap_or(std::num::NonZeroU32::MIN))
    }

    fn get(self) -> Duration {
        Duration::from_millis(u64::from(self.0.get()))
    }
}

/// Everything one connection needs; shared by the halves after a split.
pub(crate) struct Inner<S> {
    io: S,
    conn: Connection,
    /// `read_buffer_size` (u32 here, with `expect`, to keep the socket
    /// small: it is what an idle connection costs).
    read_size: u32,
    /// The size of the last message: the next is read straight into a
    /// buffer of about that size when it is larger than the stack scratch.
    expect: u32,
    write_buffer_size: usize,
    write_timeout: Option<Millis>,
    close_timeout: Millis,
    /// The keepalive's slot in its thread's table of deadlines.
    keepalive: Option<crate::keepalive::Timer>,
    /// Bytes arrived since the keepalive was last armed.
    saw_data: bool,
    /// A keepalive ping is out and unanswered.
    awaiting_pong: bool,
    /// Set while the receive buffer of a large message is kept.
    linger: Option<Pin<Box<Linger>>>,
    /// Armed while a write makes no progress, or once closing begins.
    deadline: Option<Pin<Box<Sleep>>>,
    deadline_is_close: bool,
    /// The transport was shut down; the terminal result was returned.
    done: bool,
    /// The terminal error was handed out.
    reported: bool,
    /// Close the transport now (close timeout after a complete handshake).
    shutdown_now: bool,
    /// Shut down for writing after a failure; discarding input until the
    /// peer closes (lingering close).
    draining: bool,
    extra: Option<Box<Extra>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    fn new(io: S, conn: Connection, cfg: &Config, protocol: Option<String>, extensions: Option<String>) -> Self {
        Inner {
            io,
            conn,
            read_size: u32::try_from(cfg.read_buffer_size).unwrap_or(u32::MAX),
            expect: 0,
            write_buffer_size: cfg.write_buffer_size,
            write_timeout: cfg.write_timeout.map(Millis::new),
            close_timeout: Millis::new(cfg.close_timeout),
            keepalive: cfg
                .keepalive
                .map(|k| crate::keepalive::Timer::new(k.interval, k.timeout)),
            saw_data: false,
            awaiting_pong: false,
            linger: None,
            deadline: None,
            deadline_is_close: false,
            done: false,
            reported: false,
            shutdown_now: false,
            draining: false,
            extra: (protocol.is_some() || extensions.is_some()).then(|| {
                Box::new(Extra {
                    protocol,
                    extensions,
                    peer_close: None,
                })
            }),
        }
    }

    /// Write queued output until none is left or the socket would block.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while self.conn.has_transmit() {
            let io = Pin::new(&mut self.io);
            // Most of the time the output is one or two pieces: gather up to
            // four, and only a longer queue pays for a 64-slice array.
            let mut few = [IoSlice::new(&[]); 4];
            let n = self.conn.transmit_slices(&mut few);
            let res = if n == 1 {
                io.poll_write(cx, &few[0])
            } else if n < few.len() {
                io.poll_write_vectored(cx, &few[..n])
            } else {
                let mut slices = [IoSlice::new(&[]); 64];
                let n = self.conn.transmit_slices(&mut slices);
                io.poll_write_vectored(cx, &slices[..n])
            };
            match res {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into())),
                Poll::Ready(Ok(w)) => {
                    self.conn.advance_transmit(w);
                    if !self.deadline_is_close {
                        self.deadline = None;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    // The peer is not reading: bound how long we wait.
                    if self.deadline.is_none()
                        && let Some(t) = self.write_timeout
                    {
                        self.deadline = Some(Box::pin(tokio::time::sleep(t.get())));
                    }
                    if let Some(d) = self.deadline.as_mut()
                        && d.as_mut().poll(cx).is_ready()
                    {
                        self.conn.abort("write timed out");
                        // The connection is over: shut the transport down now
                        // (best effort: the peer is not reading, so a TLS
                        // close_notify may never go out) instead of waiting
                        // for the output to drain, which it never will; recv
                        // then reports the failure once and ends.
                        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                        self.done = true;
                        return Poll::Ready(Err(Error::Timeout(if self.deadline_is_close {
                            "close"
                        } else {
                            "write"
                        })));
                    }
                    return Poll::Pending;
                }
            }
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    /// Arm the close deadline once the closing handshake has begun.
    #[inline]
    fn arm_close_deadline(&mut self) {
        if !self.deadline_is_close && self.conn.state() != State::Open {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.close_timeout.get())));
            self.deadline_is_close = true;
        }
    }

    /// The next event, `Ok(None)` once the connection is over and the
    /// transport is shut down.
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Event>, Error>> {
        loop {
            if self.done {
                // Report a failure once; after that the stream is over.
                if !self.reported {
                    self.reported = true;
                    match self.conn.error() {
                        Some(weft_proto::Error::Aborted(CLOSE_TIMED_OUT)) => {
                            return Poll::Ready(Err(Error::Timeout("close")));
                        }
                        Some(e) => return Poll::Ready(Err(e.clone().into())),
                        None => {}
                    }
                }
                return Poll::Ready(Ok(None));
            }
            // An error is kept by the connection (sticky) and reported once the
            // close frame it queued is written and the transport is shut down.
            if let Ok(Some(ev)) = self.conn.poll_event() {
                match &ev {
                    Event::Message(m) => {
                        self.expect = u32::try_from(m.len()).unwrap_or(u32::MAX);
                        if m.len() >= LINGER_FROM {
                            self.note_large_message();
                        }
                    }
                    Event::Close(Some(f)) => {
                        self.extra.get_or_insert_with(Box::default).peer_close = Some(f.clone());
                    }
                    _ => {}
                }
                return Poll::Ready(Ok(Some(ev)));
            }
            self.arm_close_deadline();
            if self.conn.has_transmit()
                && let Poll::Ready(Err(e)) = self.poll_write_out(cx)
            {
                self.conn.abort("write failed");
                self.done = true;
                self.reported = true;
                return Poll::Ready(Err(e));
            }
            if self.draining {
                ready!(self.poll_drain(cx));
                self.draining = false;
                self.done = true;
                continue;
            }
            if self.conn.should_close_transport() || self.shutdown_now {
                // §7.1.1: the server closes TCP first; a client does once the
                // server has, or when the close timeout runs out.
                let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                // After failing a connection the peer may still be sending.
                // Closing with unread data makes the kernel answer with a
                // reset, which can destroy the close frame before the peer
                // reads it; so read and discard until the peer closes too or
                // the close timeout passes.
                self.draining = self.conn.state() == State::Failed
                    && !self.conn.is_eof()
                    && !matches!(self.conn.error(), Some(weft_proto::Error::Aborted(_)));
                self.done = !self.draining;
                continue;
            }
            if self.deadline_is_close
                && let Some(d) = self.deadline.as_mut()
                && d.as_mut().poll(cx).is_ready()
            {
                if self.conn.state() == State::Closed {
                    // The handshake is complete; the peer just did not close TCP.
                    self.shutdown_now = true;
                } else {
                    self.conn.abort(CLOSE_TIMED_OUT);
                }
                continue;
            }
            if self.conn.has_transmit() && !self.conn.wants_data() {
                // Closing: wait for the close frame to be written.
                return Poll::Pending;
            }
            // Read.
            let n = if self.conn.wants_data() {
                let hint = self.conn.read_hint();
                let read_size = self.read_size as usize;
                let buf = self.conn.read_buffer_mut();
                // Between messages, expect one the size of the last.
                let expect = if buf.is_empty() {
                    hint.max(self.expect as usize)
                } else {
                    hint
                };
                // Room for what is expected and a little more: a read that
                // does not fill the buffer tells the runtime that the socket
                // is drained, which saves a read that would only say "would
                // block".
                let want = expect.clamp(read_size, 1 << 20) + read_size;
                let scratch = buf.is_empty()
                    && if expect <= SCRATCH_SIZE {
                        buf.capacity() < read_size
                    } else {
                        // A large message is expected. While the buffer of
                        // the last one is kept, read into its memory if the
                        // application has let go of it, and if not, allocate
                        // only once bytes arrive.
                        self.linger.is_some() && buf.capacity() < want && !buf.try_reclaim(want)
                    };
                let res = if scratch {
                    // No buffer (it is released whenever the socket has
                    // nothing to read): read into the stack and keep only
                    // what arrived, so that a small message costs a small
                    // allocation of its own size rather than a whole buffer.
                    let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH_SIZE];
                    let mut rb = ReadBuf::uninit(&mut scratch[..read_size.min(SCRATCH_SIZE)]);
                    match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) => {
                            self.conn.receive_data(rb.filled());
                            Poll::Ready(Ok(rb.filled().len()))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                } else {
                    // Grow only when the room left holds neither that nor
                    // the rest of the frame (with the next header): a buffer
                    // reused for a message of the size it was made for is
                    // not reallocated at the frame's end.
                    let spare = buf.capacity() - buf.len();
                    if spare < want && spare < (hint + 14).max(read_size) {
                        buf.reserve(want);
                    }
                    tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf)
                };
                match res {
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => {
                        self.conn.abort("read failed");
                        self.done = true;
                        self.reported = true;
                        return Poll::Ready(Err(e.into()));
                    }
                    Poll::Pending => return self.poll_idle(cx),
                }
            } else {
                // After the peer's close: only end of file is of interest.
                let mut scratch = [0u8; 256];
                let mut rb = ReadBuf::new(&mut scratch);
                match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => rb.filled().len(),
                    Poll::Ready(Err(_)) => 0,
                    Poll::Pending => return Poll::Pending,
                }
            };
            if n == 0 {
                self.conn.receive_eof();
            } else {
                self.saw_data = true;
            }
        }
    }

    /// Read and discard until end of file, an error, or the close deadline.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 2048];
        loop {
            if let Some(d) = self.deadline.as_mut()
                && d.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// A large message arrived: keep its receive buffer for [`LINGER`].
    fn note_large_message(&mut self) {
        let now = Instant::now();
        match self.linger.as_mut() {
            Some(l) => *l.as_mut().project().last = now,
            None => {
                self.linger = Some(Box::pin(Linger {
                    sleep: tokio::time::sleep_until(now + LINGER),
                    last: now,
                }));
            }
        }
    }

    /// Whether the receive buffer is still kept for another large message
    /// (the timer's waker is registered while it is).
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(l) = self.linger.as_mut() else {
            return false;
        };
        let mut l = l.as_mut().project();
        // The timer is armed once per period, not moved per message: when it
        // fires early, it is set again for what is left.
        while l.sleep.as_mut().poll(cx).is_ready() {
            let until = *l.last + LINGER;
            if until <= Instant::now() {
                self.linger = None;
                return false;
            }
            l.sleep.as_mut().reset(until);
        }
        true
    }

    /// Nothing to read: free idle buffers and run the keepalive.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Event>, Error>> {
        if !self.conn.has_transmit() {
            if self.poll_linger(cx) {
                self.conn.release_buffers_but_receive();
            } else {
                self.conn.release_buffers();
            }
        }
        let Some(k) = self.keepalive.as_ref() else {
            return Poll::Pending;
        };
        if k.poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.saw_data {
            self.saw_data = false;
            self.awaiting_pong = false;
            k.arm(false);
        } else if self.awaiting_pong {
            self.conn.abort("keepalive timed out");
            // `done` means the transport is shut down: do it now rather than
            // when the socket is dropped. Best effort: a dead peer may never
            // take a TLS close_notify, and that must not hold up the error.
            let _ = Pin::new(&mut self.io).poll_shutdown(cx);
            self.done = true;
            self.reported = true;
            return Poll::Ready(Err(Error::Timeout("keepalive")));
        } else {
            self.awaiting_pong = true;
            k.arm(true);
            if self.conn.send_ping(Bytes::from_static(KEEPALIVE_PAYLOAD)).is_ok() {
                let _ = self.poll_write_out(cx);
            }
        }
        // Register the waker for the new deadline.
        if let Some(k) = self.keepalive.as_ref() {
            let _ = k.poll(cx);
        }
        Poll::Pending
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            match ready!(self.poll_event(cx)) {
                Ok(Some(Event::Message(m))) => return Poll::Ready(Some(Ok(m))),
                Ok(Some(Event::Fragment(_))) => return Poll::Ready(Some(Err(Error::StreamingMode))),
                Ok(Some(_)) => continue,
                Ok(None) => return Poll::Ready(None),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }

    /// Backpressure: wait while the queued output is over the threshold.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.conn.state() != State::Open {
            return Poll::Ready(Err(Error::Send(weft_proto::SendError::Closed)));
        }
        while self.conn.buffered_amount() >= self.write_buffer_size {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close_send(
        &mut self,
        cx: &mut Context<'_>,
        frame: &mut Option<Option<CloseFrame>>,
    ) -> Poll<Result<(), Error>> {
        if let Some(f) = frame.take()
            && self.conn.state() == State::Open
        {
            self.conn.close(f)?;
        }
        self.arm_close_deadline();
        self.poll_write_out(cx)
    }
}

/// A WebSocket connection over any `AsyncRead + AsyncWrite` transport.
///
/// Messages go out with [`send`](Self::send) (queue and write) or
/// [`feed`](Self::feed) (queue; written by the next `flush`, `send` or
/// `recv`, which lets many small messages share one write). Messages come in
/// with [`recv`](Self::recv); pings are answered without the application's
/// help. [`close`](Self::close) runs the closing handshake. The socket is also
/// a `Stream` of messages and a `Sink` of messages, and can be
/// [`split`](Self::split) into halves owned by different tasks.
///
/// ```no_run
/// # async fn run() -> Result<(), weft::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     tokio::spawn(async move {
///         let mut ws = weft::accept(tcp).await?;
///         while let Some(msg) = ws.recv().await {
///             ws.send(msg?).await?;
///         }
///         Ok::<_, weft::Error>(())
///     });
/// }
/// # }
/// ```
pub struct WebSocket<S> {
    inner: Inner<S>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.inner.conn.role())
            .field("state", &self.inner.conn.state())
            .field("protocol", &self.protocol())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wrap a transport on which the opening handshake is already done.
    /// `leftover` is what was read past the handshake head.
    pub fn from_parts(
        io: S,
        conn: Connection,
        config: &Config,
        leftover: &[u8],
        protocol: Option<String>,
        extensions: Option<String>,
    ) -> Self {
        let mut conn = conn;
        conn.receive_data(leftover);
        WebSocket {
            inner: Inner::new(io, conn, config, protocol, extensions),
        }
    }

    /// Wrap a transport as `role` without a handshake (e.g. after an upgrade
    /// done by another HTTP stack).
    pub fn from_raw(io: S, role: Role, config: &Config) -> Self {
        Self::from_parts(
            io,
            Connection::new(role, config.protocol.clone()),
            config,
            &[],
            None,
            None,
        )
    }

    /// The next whole message; `None` once the connection closed cleanly
    /// (see [`close_frame`](Self::close_frame) for the peer's code). Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.inner.poll_message(cx)).await
    }

    /// The next event: messages, fragments (streaming mode), pings, pongs and
    /// the peer's close; `None` once the transport is closed. Cancel-safe.
    pub async fn recv_event(&mut self) -> Option<Result<Event, Error>> {
        poll_fn(|cx| self.inner.poll_event(cx)).await.transpose()
    }

    /// Queue a message and write everything queued.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queue a message, waiting first if the output is over
    /// `write_buffer_size`. Written by the next `flush`, `send` or `recv`.
    ///
    /// The future holds the socket and the message, nothing more: a loop that
    /// awaits it stays small.
    pub fn feed(&mut self, msg: impl Into<Message>) -> impl Future<Output = Result<(), Error>> + '_ {
        let mut msg = Some(msg.into());
        poll_fn(move |cx| {
            ready!(self.inner.poll_ready(cx))?;
            match msg.take() {
                Some(m) => Poll::Ready(self.inner.conn.send(m).map_err(Error::from)),
                None => Poll::Ready(Ok(())),
            }
        })
    }

    /// Write everything queued. Cancel-safe.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_write_out(cx)).await
    }

    /// Queue a frame that is already encoded (server only), waiting first if
    /// the output is over `write_buffer_size`, like [`feed`](Self::feed). The
    /// bytes are queued by reference, so one frame from
    /// [`weft_proto::frame::encode_server_frame`] can be fed to many sockets
    /// without a copy. See [`Connection::send_raw_frame`] for what is checked.
    ///
    /// ```no_run
    /// # async fn run(sockets: &mut [weft::WebSocket<tokio::net::TcpStream>]) -> Result<(), weft::Error> {
    /// let frame = weft::proto::frame::encode_server_frame(weft::DataKind::Text, b"news")?;
    /// for ws in sockets.iter_mut() {
    ///     ws.feed_raw(frame.clone()).await?; // a reference count, not a copy
    ///     ws.flush().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn feed_raw(&mut self, frame: Bytes) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.conn.send_raw_frame(frame)?;
        Ok(())
    }

    /// Send one piece of a message (streaming out): the first piece fixes the
    /// kind, `fin` ends the message.
    pub async fn send_fragment(&mut self, kind: DataKind, data: impl Into<Bytes>, fin: bool) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.conn.send_fragment(kind, data, fin)?;
        self.flush().await
    }

    /// Send a ping (at most 125 bytes); its pong arrives as [`Event::Pong`].
    pub async fn ping(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.inner.conn.send_ping(data)?;
        self.flush().await
    }

    /// Run the closing handshake: send a close frame with `code` and `reason`,
    /// then read (discarding messages) until the peer's close arrives and the
    /// transport is closed, or `close_timeout` passes.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let mut frame = Some(Some(CloseFrame::new(code, reason)));
        poll_fn(|cx| self.inner.poll_close_send(cx, &mut frame)).await?;
        loop {
            match self.recv_event().await {
                None => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Send a close frame (`None`: one with no code) and write it, without
    /// waiting for the peer's answer; keep calling `recv` to see it.
    pub async fn start_close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        let mut frame = Some(frame);
        poll_fn(|cx| self.inner.poll_close_send(cx, &mut frame)).await
    }

    /// Split into a receiving and a sending half, each usable from its own task.
    pub fn split(self) -> (ReadHalf<S>, WriteHalf<S>) {
        let wakers = Arc::new(HalfWakers::default());
        let shared = Arc::new(Shared {
            inner: Mutex::new(self.inner),
            waker: Waker::from(wakers.clone()),
            wakers,
        });
        (ReadHalf { inner: shared.clone() }, WriteHalf { inner: shared })
    }
}

impl<S> WebSocket<S> {
    /// The subprotocol negotiated in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.inner.extra.as_ref().and_then(|n| n.protocol.as_deref())
    }

    /// The `Sec-WebSocket-Extensions` value agreed in the handshake.
    pub fn extensions(&self) -> Option<&str> {
        self.inner.extra.as_ref().and_then(|n| n.extensions.as_deref())
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> State {
        self.inner.conn.state()
    }

    /// The close frame the peer sent, once it arrived (`None` also when it
    /// carried no code).
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.inner.extra.as_ref().and_then(|e| e.peer_close.as_ref())
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.inner.conn.buffered_amount()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.inner.io
    }

    /// The protocol state machine (read-only).
    pub fn connection(&self) -> &Connection {
        &self.inner.conn
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_message(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Ok(self.get_mut().inner.conn.send(item)?)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_write_out(cx)
    }
    /// Sends a normal close (1000) and writes it; the peer's answer is read
    /// by the receiving side.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut f = Some(Some(CloseFrame::new(CloseCode::NORMAL, "")));
        self.get_mut().inner.poll_close_send(cx, &mut f)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tasks polling each half of a split socket.
///
/// Both halves drive one transport, and a transport remembers one waker per
/// direction: the read half writes too (pongs, close replies, output the
/// write half queued), so whichever half polled a direction last would be
/// the only one woken, and the other could wait forever (the write half
/// blocked on a full socket while the read half took over the write
/// registration, say). The halves therefore poll the transport and the timers
/// with one waker that wakes both; a half woken for nothing polls again and
/// goes back to waiting.
#[derive(Default)]
struct HalfWakers {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl HalfWakers {
    fn register(&self, side: Side, waker: &Waker) {
        let mut slot = lock(match side {
            Side::Read => &self.read,
            Side::Write => &self.write,
        });
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl Wake for HalfWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.read, &self.write] {
            // Release the slot's lock before waking.
            let waker = lock(slot).take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Read,
    Write,
}

/// What the halves of a split socket share.
struct Shared<S> {
    inner: Mutex<Inner<S>>,
    wakers: Arc<HalfWakers>,
    /// Wakes both halves (made once from `wakers`).
    waker: Waker,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        lock(&self.inner)
    }

    /// Poll the connection for the half `side`, with the waker of both halves.
    fn poll<R>(
        &self,
        side: Side,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Inner<S>, &mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        self.wakers.register(side, cx.waker());
        let mut both = Context::from_waker(&self.waker);
        f(&mut self.lock(), &mut both)
    }
}

/// The receiving half of a split [`WebSocket`]. Pings are still answered
/// automatically.
pub struct ReadHalf<S> {
    inner: Arc<Shared<S>>,
}

/// The sending half of a split [`WebSocket`].
pub struct WriteHalf<S> {
    inner: Arc<Shared<S>>,
}

impl<S> std::fmt::Debug for ReadHalf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadHalf")
    }
}

impl<S> std::fmt::Debug for WriteHalf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHalf")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// The next whole message; `None` after a clean close. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.inner.poll(Side::Read, cx, Inner::poll_message)).await
    }

    /// The next event. Cancel-safe.
    pub async fn recv_event(&mut self) -> Option<Result<Event, Error>> {
        poll_fn(|cx| self.inner.poll(Side::Read, cx, Inner::poll_event))
            .await
            .transpose()
    }

    /// The peer's close frame, once received.
    pub fn close_frame(&self) -> Option<CloseFrame> {
        self.inner.lock().extra.as_ref().and_then(|e| e.peer_close.clone())
    }

    /// Put the halves back together.
    pub fn reunite(self, other: WriteHalf<S>) -> Result<WebSocket<S>, (ReadHalf<S>, WriteHalf<S>)> {
        if !Arc::ptr_eq(&self.inner, &other.inner) {
            return Err((self, other));
        }
        drop(other);
        match Arc::try_unwrap(self.inner) {
            Ok(shared) => Ok(WebSocket {
                inner: shared.inner.into_inner().unwrap_or_else(|p| p.into_inner()),
            }),
            Err(_) => unreachable!("both halves were given"),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteHalf<S> {
    /// Queue a message and write everything queued.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queue a message (waiting while the output is over the threshold).
    pub async fn feed(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        let msg = msg.into();
        poll_fn(|cx| self.inner.poll(Side::Write, cx, Inner::poll_ready)).await?;
        self.inner.lock().conn.send(msg)?;
        Ok(())
    }

    /// Write everything queued. Cancel-safe.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll(Side::Write, cx, Inner::poll_write_out)).await
    }

    /// Queue an already encoded server frame by reference (see
    /// [`WebSocket::feed_raw`]), waiting while the output is over the
    /// threshold.
    pub async fn feed_raw(&mut self, frame: Bytes) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll(Side::Write, cx, Inner::poll_ready)).await?;
        self.inner.lock().conn.send_raw_frame(frame)?;
        Ok(())
    }

    /// Send one piece of a message (streaming out).
    pub async fn send_fragment(&mut self, kind: DataKind, data: impl Into<Bytes>, fin: bool) -> Result<(), Error> {
        let data = data.into();
        poll_fn(|cx| self.inner.poll(Side::Write, cx, Inner::poll_ready)).await?;
        self.inner.lock().conn.send_fragment(kind, data, fin)?;
        self.flush().await
    }

    /// Send a ping.
    pub async fn ping(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.inner.lock().conn.send_ping(data)?;
        self.flush().await
    }

    /// Send a close frame and write it. The read half sees the peer's answer
    /// and the end of the connection.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let mut frame = Some(Some(CloseFrame::new(code, reason)));
        poll_fn(|cx| {
            self.inner
                .poll(Side::Write, cx, |i, cx| i.poll_close_send(cx, &mut frame))
        })
        .await
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.inner.lock().conn.buffered_amount()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ReadHalf<S> {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll(Side::Read, cx, Inner::poll_message)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WriteHalf<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll(Side::Write, cx, Inner::poll_ready)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Ok(self.inner.lock().conn.send(item)?)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll(Side::Write, cx, Inner::poll_write_out)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut f = Some(Some(CloseFrame::new(CloseCode::NORMAL, "")));
        self.inner.poll(Side::Write, cx, |i, cx| i.poll_close_send(cx, &mut f))
    }
}

#[cfg(test)]
mod size {
    /// Every open connection holds a socket as long as it lives: these are
    /// what an idle connection costs (with the task around it, the
    /// runtime's registration and the kernel's buffers). The keepalive's
    /// box is an allocation of its own, in jemalloc's and glibc's 128-byte
    /// class.
    #[test]
    fn an_idle_socket_stays_small() {
        let socket = std::mem::size_of::<super::WebSocket<tokio::net::TcpStream>>();
        assert!(socket <= 344, "WebSocket<TcpStream> is {socket} bytes");
        let keepalive = std::mem::size_of::<Option<crate::keepalive::Timer>>();
        assert!(keepalive <= 16, "the keepalive's slot is {keepalive} bytes");
    }
}
