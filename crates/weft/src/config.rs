//! Configuration shared by servers and clients.

use std::time::Duration;

use weft_proto::HandshakeLimits;

/// Keepalive: ping a peer that has been silent for `interval`, and drop it if
/// nothing at all arrives within `timeout` after the ping.
///
/// The sockets polled on one thread share one timer: each keeps its
/// deadlines in a slot of a per-thread table (about 56 bytes a socket,
/// where a timer of its own takes 136), and a task on the runtime wakes
/// them. Deadlines are rounded up to 1/32 of the wait (at least 1 ms, at
/// most 1 s), so a ping or a drop is never early and late by at most that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before a ping is sent.
    pub interval: Duration,
    /// How long to wait for any data (usually the pong) after the ping.
    pub timeout: Duration,
}

/// Transport and protocol settings. Every buffer and wait is bounded.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `protocol.max_frame_size` | 16 MiB (compressed frames: 1/16 more) | larger frames close with 1009 |
/// | `protocol.max_message_size` | 64 MiB | larger messages close with 1009 |
/// | `protocol.max_fragments` | 131,072 | more frames per message close with 1009 |
/// | `handshake.max_head_size` | 16 KiB | a larger request head gets 431 |
/// | `handshake.max_headers` | 64 | more header lines get 431 |
/// | `handshake_timeout` | 10 s | slower handshakes are dropped |
/// | `read_buffer_size` | 4 KiB | bytes asked of the socket per read (grows for large frames) |
/// | `write_buffer_size` | 128 KiB | queued output above which sends wait (backpressure) |
/// | `write_timeout` | 30 s | a write that makes no progress this long fails the connection |
/// | `close_timeout` | 5 s | wait for the peer's close frame / TCP close |
/// | `keepalive` | off | see [`Keepalive`] |
///
/// A socket keeps `write_timeout`, `close_timeout` and the keepalive's
/// durations in whole milliseconds, rounded up (at least 1 ms), and
/// `read_buffer_size` up to 4 GiB: what an idle connection costs stays small.
///
/// Buffers are released whenever the socket has nothing to read, so an idle
/// connection holds none, with one exception: after a message of 256 KiB or
/// more, the receive buffer is kept for a second after the last such message,
/// and the next large message is read into the same memory once the
/// application has dropped the previous one.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Frame and message limits, streaming mode.
    pub protocol: weft_proto::Config,
    /// Bounds on the handshake head.
    pub handshake: HandshakeLimits,
    /// Bound on the whole opening handshake.
    pub handshake_timeout: Duration,
    /// Bytes asked of the transport per read while between frames.
    pub read_buffer_size: usize,
    /// Output queued beyond this makes `send`/`feed` wait for the socket.
    pub write_buffer_size: usize,
    /// A write stalled this long (the peer does not read) fails the connection.
    pub write_timeout: Option<Duration>,
    /// Bound on the closing handshake.
    pub close_timeout: Duration,
    /// Optional keepalive pings.
    pub keepalive: Option<Keepalive>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: weft_proto::Config::default(),
            handshake: HandshakeLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            read_buffer_size: 4096,
            write_buffer_size: 128 * 1024,
            write_timeout: Some(Duration::from_secs(30)),
            close_timeout: Duration::from_secs(5),
            keepalive: None,
        }
    }
}

impl Config {
    /// Set the protocol limits.
    pub fn protocol(mut self, p: weft_proto::Config) -> Self {
        self.protocol = p;
        self
    }
    /// Set the handshake limits.
    pub fn handshake(mut self, h: HandshakeLimits) -> Self {
        self.handshake = h;
        self
    }
    /// Set the handshake timeout.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
    /// Set the read size.
    pub fn read_buffer_size(mut self, n: usize) -> Self {
        self.read_buffer_size = n.max(64);
        self
    }
    /// Set the backpressure threshold.
    pub fn write_buffer_size(mut self, n: usize) -> Self {
        self.write_buffer_size = n;
        self
    }
    /// Set the stalled-write timeout.
    pub fn write_timeout(mut self, d: Option<Duration>) -> Self {
        self.write_timeout = d;
        self
    }
    /// Set the closing-handshake timeout.
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }
    /// Turn keepalive pings on (or off with `None`).
    pub fn keepalive(mut self, k: Option<Keepalive>) -> Self {
        self.keepalive = k;
        self
    }
}
