//! # weft-hub
//!
//! Server push for weft: topics that WebSocket connections (or any code)
//! subscribe to, and messages published to them from anywhere — a socket's
//! task, a timer, an HTTP handler — fanned out to every subscriber.
//!
//! ```text
//!  publish(topic, msg) ──▶ frame once ──▶ backend.publish (Redis: other nodes)
//!                              │                    │
//!                              ▼                    ▼ envelopes from other nodes
//!                        local fan-out ◀── frame once per node ◀── Inbound::deliver
//!                              │  the same Bytes, a reference count per subscriber
//!              ┌───────────────┼────────────────┐
//!              ▼               ▼                ▼
//!         Subscriber      Subscriber       Subscriber     bounded queues; a slow
//!         recv ─▶ WebSocket::feed_raw (no copy, no re-encoding)   one is evicted
//!   (permessage-deflate without server context takeover: compressed once
//!    per window size, the same compressed Bytes to each such subscriber)
//! ```
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weft_hub::HubError> {
//! use weft_hub::Hub;
//!
//! let hub = Hub::new();
//! let mut alice = hub.subscriber();
//! alice.subscribe("news").await?;
//! assert_eq!(hub.publish("news", "hello").await?, 1);
//! let frame = alice.recv().await?;
//! assert_eq!(frame.message().as_text(), Some("hello"));
//! // frame.bytes() is the encoded server frame: ws.feed_raw(frame.into_bytes())
//! # Ok(()) }
//! ```
//!
//! ## Fan-out
//!
//! A server frame is not masked, so its bytes are the same for every
//! connection: [`Hub::publish`] encodes the message once
//! ([`weft_proto::frame::encode_server_message`]) and queues the same
//! [`Bytes`] to every subscriber; the socket queues it by reference
//! ([`weft::WebSocket::feed_raw`](https://docs.rs/weft)), so no subscriber
//! costs an encoding or a copy of the payload. A message from another node is
//! framed once on each node.
//!
//! ### permessage-deflate
//!
//! A subscriber made with [`Hub::subscriber_for`] (from the socket's
//! [`Connection`]) gets frames that suit its connection:
//!
//! - **`server_no_context_takeover` negotiated**: the server compresses every
//!   message from a fresh context, so one compressed frame (RSV1 set) is
//!   valid on every such connection. The hub compresses a message once per
//!   distinct window size (`server_max_window_bits`) and level among the
//!   topic's subscribers — not once per subscriber — and queues the same
//!   compressed [`Bytes`] to each subscriber of that window size
//!   ([`HubMetrics::compressions`] counts the compressions). Messages under
//!   the connection's threshold, and messages that would not get smaller,
//!   go out as the shared uncompressed frame. Compression runs before the
//!   fan-out, outside the registry lock; a compressor per window size is
//!   pooled for reuse.
//! - **context takeover (the default), an 8-bit server window, or no
//!   permessage-deflate**: the shared uncompressed frame (RSV1 clear). That
//!   is valid: RFC 7692 chooses compression per message, and an uncompressed
//!   message leaves both ends' LZ77 windows untouched, so the messages the
//!   socket sends itself are still compressed. A frame compressed elsewhere
//!   could not be sent: the peer's window would then hold bytes the
//!   connection's own compressor never saw.
//!
//! A server that wants topic messages compressed answers with
//! `server_no_context_takeover`
//! ([`DeflateConfig::server_no_context_takeover`](weft_proto::deflate::DeflateConfig::server_no_context_takeover));
//! browsers accept it. The cost is the ratio of the socket's own messages
//! (each compressed alone); the gain is that a message to N subscribers is
//! compressed once, not N times, and no compressor state is kept between
//! messages. [`Hub::subscriber_with`] takes the parameters directly.
//!
//! ## Slow subscribers
//!
//! Publishing never waits for a subscriber. Each subscriber's queue is bounded
//! ([`HubConfig`]):
//!
//! - a subscriber whose queue stays at or over the high-water mark
//!   (`high_water_messages` or `high_water_bytes`, default 1,024 frames or
//!   256 KiB) for `stall_timeout` (5 s) is **evicted**
//!   ([`Evicted::Stalled`]), and
//! - one whose queue would go over `max_queued_messages` or
//!   `max_queued_bytes` (8,192 frames or 4 MiB) is evicted at once
//!   ([`Evicted::Overflow`]).
//!
//! Eviction frees the queue at once, and the subscriber's next
//! [`Subscriber::recv`] returns the [`Evicted`] reason; a WebSocket server
//! then closes the connection with [`Evicted::close_code`] (1013, "try again
//! later"). Messages are never dropped from a live subscriber's queue: a
//! subscriber gets every message or is told it was evicted. The stall deadline
//! fires on time: when a queue reaches the high-water mark a timer task
//! (one per queue that is behind, inside the tokio runtime) evicts it at the
//! deadline if it has not caught up, whether or not anything more is
//! published; a push past the deadline evicts too. [`Subscriber::eviction`]
//! resolves then, so a server whose socket is backed up (and so does not
//! call `recv`) can close the connection on time. Evictions are counted in
//! [`HubMetrics`].
//!
//! ## Ordering and delivery
//!
//! Messages from one publisher (one task calling `publish` and awaiting each
//! call) reach every subscriber in the order they were published, on every
//! node. Messages from different publishers have no common order.
//!
//! In-process, a published message reaches every current subscriber exactly
//! once (or the subscriber is evicted and told). Across nodes, see the Redis
//! backend's delivery guarantee (feature `redis`): at most once across a
//! Redis outage, and a publish that Redis did not take returns an error —
//! nothing is dropped silently on the publishing side.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use weft_proto::deflate::{MessageCompressor, SharedCompression, inflate_message};
use weft_proto::frame::{FrameHeader, Opcode, RSV1, encode_server_message};
use weft_proto::{CloseCode, Connection, DataKind, Message, Text};

pub mod backend;
mod queue;
#[cfg(feature = "redis")]
pub mod redis;

pub use backend::{Backend, BackendStatus, InProcess, Inbound};

use queue::{Push, Stall, SubQueue};

/// Bounds of every subscriber's queue. See the crate docs for the policy.
///
/// | field | default |
/// |---|---|
/// | `high_water_messages` | 1,024 frames |
/// | `high_water_bytes` | 256 KiB |
/// | `stall_timeout` | 5 s over the high-water mark → evicted |
/// | `max_queued_messages` | 8,192 frames → evicted at once |
/// | `max_queued_bytes` | 4 MiB → evicted at once |
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// Frames queued at or over which a subscriber counts as behind.
    pub high_water_messages: usize,
    /// Bytes queued at or over which a subscriber counts as behind.
    pub high_water_bytes: usize,
    /// How long a subscriber may stay behind before it is evicted.
    pub stall_timeout: Duration,
    /// A subscriber whose queue would hold more frames is evicted.
    pub max_queued_messages: usize,
    /// A subscriber whose queue would hold more bytes is evicted (a single
    /// frame larger than this still fits into an empty queue).
    pub max_queued_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            high_water_messages: 1024,
            high_water_bytes: 256 << 10,
            stall_timeout: Duration::from_secs(5),
            max_queued_messages: 8192,
            max_queued_bytes: 4 << 20,
        }
    }
}

impl HubConfig {
    /// Set the high-water mark (frames and bytes).
    pub fn high_water(mut self, messages: usize, bytes: usize) -> Self {
        self.high_water_messages = messages.max(1);
        self.high_water_bytes = bytes.max(1);
        self
    }
    /// Set the stall timeout.
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = d;
        self
    }
    /// Set the hard caps (frames and bytes).
    pub fn max_queued(mut self, messages: usize, bytes: usize) -> Self {
        self.max_queued_messages = messages.max(1);
        self.max_queued_bytes = bytes.max(1);
        self
    }
}

/// Why a subscriber was dropped by the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Evicted {
    /// Its queue stayed over the high-water mark for the stall timeout.
    Stalled,
    /// Its queue would have gone over the hard cap.
    Overflow,
}

impl Evicted {
    /// The close code to send the subscriber's peer: 1013 (try again later).
    pub fn close_code(self) -> CloseCode {
        CloseCode::TRY_AGAIN_LATER
    }

    /// A short reason for the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Evicted::Stalled => "too slow: messages waited too long",
            Evicted::Overflow => "too slow: too many messages waiting",
        }
    }
}

impl std::fmt::Display for Evicted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "subscriber evicted: {}", self.reason())
    }
}

impl std::error::Error for Evicted {}

/// Errors of hub operations.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// The backend could not take or confirm the operation (e.g. Redis is
    /// unreachable). A failed publish reached no subscriber on this node.
    Unavailable(String),
    /// The topic name is empty or longer than [`MAX_TOPIC_LEN`].
    InvalidTopic,
    /// The subscriber was evicted (from [`Subscriber::recv`]).
    Evicted(Evicted),
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubError::Unavailable(why) => write!(f, "hub backend unavailable: {why}"),
            HubError::InvalidTopic => write!(f, "topic names are 1 to {MAX_TOPIC_LEN} bytes"),
            HubError::Evicted(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HubError {}

impl From<Evicted> for HubError {
    fn from(e: Evicted) -> Self {
        HubError::Evicted(e)
    }
}

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Counters the application can read with [`Hub::metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubMetrics {
    /// `publish` calls that succeeded.
    pub published: u64,
    /// `publish` calls that failed (the backend did not take the message).
    pub publish_failed: u64,
    /// Messages that arrived from other nodes.
    pub received_remote: u64,
    /// Frames queued to subscribers (one per subscriber per message).
    pub delivered: u64,
    /// Messages compressed for fan-out: at most one per message per distinct
    /// window size among the topic's subscribers that can share compressed
    /// frames (see the crate docs), however many subscribers there are.
    pub compressions: u64,
    /// Of `delivered`, the frames queued compressed.
    pub delivered_compressed: u64,
    /// Subscribers evicted for staying behind past the stall timeout.
    pub evicted_stalled: u64,
    /// Subscribers evicted for going over the hard cap.
    pub evicted_overflow: u64,
    /// Subscribers alive now.
    pub subscribers: u64,
    /// Topics with at least one local subscriber now.
    pub topics: u64,
    /// Whether the backend is connected.
    pub backend_connected: bool,
    /// Backend reconnections after a loss.
    pub backend_reconnects: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    publish_failed: AtomicU64,
    received_remote: AtomicU64,
    delivered: AtomicU64,
    compressions: AtomicU64,
    delivered_compressed: AtomicU64,
    evicted_stalled: AtomicU64,
    evicted_overflow: AtomicU64,
    subscribers: AtomicU64,
}

struct Entry {
    id: u64,
    queue: Arc<SubQueue>,
    compression: Option<SharedCompression>,
}

/// One topic's local subscribers.
#[derive(Default)]
struct Topic {
    entries: Vec<Entry>,
    /// The distinct compression parameters among `entries`, with counts:
    /// what a message must be compressed with before the fan-out.
    groups: Vec<(SharedCompression, usize)>,
}

type Registry = HashMap<Arc<str>, Topic>;

/// Compressors kept for reuse (each costs up to about 384 KiB).
const COMPRESSOR_POOL: usize = 4;

/// The state every handle shares.
pub(crate) struct Shared {
    config: HubConfig,
    node_id: u64,
    registry: RwLock<Registry>,
    backend: Box<dyn Backend>,
    counters: Counters,
    next_id: AtomicU64,
    compressors: Mutex<Vec<MessageCompressor>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node_id", &format_args!("{:016x}", self.node_id))
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

/// Envelope: version, kind, node id, payload.
const ENVELOPE_VERSION: u8 = 1;
const ENVELOPE_HEADER: usize = 10;

fn envelope(node_id: u64, msg: &Message) -> Bytes {
    let mut b = BytesMut::with_capacity(ENVELOPE_HEADER + msg.len());
    b.put_u8(ENVELOPE_VERSION);
    b.put_u8(match msg {
        Message::Text(_) => 1,
        Message::Binary(_) => 2,
    });
    b.put_u64(node_id);
    b.put_slice(msg.as_bytes());
    b.freeze()
}

fn parse_envelope(env: &[u8]) -> Option<(u64, Message)> {
    let (head, payload) = env.split_at_checked(ENVELOPE_HEADER)?;
    let [ENVELOPE_VERSION, kind, id @ ..] = head else {
        return None;
    };
    let node = u64::from_be_bytes(id.try_into().ok()?);
    let payload = Bytes::copy_from_slice(payload);
    let msg = match kind {
        1 => Message::Text(Text::from_bytes(payload).ok()?),
        2 => Message::Binary(payload),
        _ => return None,
    };
    Some((node, msg))
}

fn random_node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is keyed from the OS's randomness once per process; mix in
    // the time and pid so that two hubs in one process differ too.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

fn check_topic(topic: &str) -> Result<(), HubError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        Err(HubError::InvalidTopic)
    } else {
        Ok(())
    }
}

/// The kind and payload of a whole, uncompressed, unmasked data frame: one
/// the hub may compress.
fn data_frame(frame: &Bytes) -> Option<(DataKind, &[u8])> {
    let Ok(Some((h, n))) = FrameHeader::parse(frame) else {
        return None;
    };
    let kind = match h.opcode {
        Opcode::Text => DataKind::Text,
        Opcode::Binary => DataKind::Binary,
        _ => return None,
    };
    let whole = u64::try_from(frame.len() - n).is_ok_and(|len| len == h.payload_len);
    (h.fin && h.rsv == 0 && h.mask.is_none() && whole).then(|| (kind, &frame[n..]))
}

/// What a compressed frame's bytes depend on: window size and level.
fn compression_key(c: &SharedCompression) -> SharedCompression {
    SharedCompression::new(c.window_bits(), c.level(), 0).unwrap_or(*c)
}

/// Evict `queue` once it has stayed behind for `timeout`, checking at the
/// deadline rather than at the next push. Ends when the queue catches up,
/// is evicted or dropped, or the hub goes away.
async fn stall_timer(queue: Weak<SubQueue>, hub: Weak<Shared>, timeout: Duration) {
    let mut deadline = Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(deadline.into()).await;
        let (Some(q), Some(hub)) = (queue.upgrade(), hub.upgrade()) else {
            return;
        };
        match q.check_stall(Instant::now(), timeout) {
            Stall::Evicted => {
                hub.count_eviction(Evicted::Stalled);
                return;
            }
            Stall::Until(t) => deadline = t,
            Stall::Clear => return,
        }
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `frame` to every local subscriber of `topic`: the same
    /// [`Bytes`] to each, or for subscribers that share compressed frames,
    /// the frame compressed once per window size.
    fn fan_out(self: &Arc<Self>, topic: &str, frame: &Bytes) -> usize {
        let now = Instant::now();
        let mut reg = self.read();
        let Some(t) = reg.get(topic) else {
            return 0;
        };
        // Compressed frames, by window size and level (the threshold does not
        // change the bytes).
        let mut compressed: Vec<(SharedCompression, Option<Bytes>)> = Vec::new();
        let data = if t.groups.is_empty() { None } else { data_frame(frame) };
        if let Some((kind, payload)) = data {
            let mut wanted: Vec<SharedCompression> = Vec::new();
            for (c, _) in &t.groups {
                let key = compression_key(c);
                if c.applies_to(payload.len()) && !wanted.contains(&key) {
                    wanted.push(key);
                }
            }
            if !wanted.is_empty() {
                // Compress without holding the registry.
                drop(reg);
                for key in wanted {
                    compressed.push((key, self.compress(key, kind, payload)));
                }
                reg = self.read();
            }
        }
        let Some(t) = reg.get(topic) else {
            return 0;
        };
        let (mut n, mut n_compressed) = (0u64, 0u64);
        for e in &t.entries {
            let mut f = frame;
            if let (Some(c), Some((kind, payload))) = (e.compression, data)
                && c.applies_to(payload.len())
            {
                let key = compression_key(&c);
                let i = match compressed.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        // Subscribed while the others were compressed.
                        compressed.push((key, self.compress(key, kind, payload)));
                        compressed.len() - 1
                    }
                };
                if let Some(z) = &compressed[i].1 {
                    f = z;
                }
            }
            match e.queue.push(f, now, &self.config) {
                r @ (Push::Queued | Push::QueuedArm) => {
                    n += 1;
                    if !std::ptr::eq(f, frame) {
                        n_compressed += 1;
                    }
                    if r == Push::QueuedArm {
                        self.arm_stall_timer(&e.queue);
                    }
                }
                Push::Evicted(why) => self.count_eviction(why),
                Push::Gone => {}
            }
        }
        drop(reg);
        self.counters.delivered.fetch_add(n, Ordering::Relaxed);
        self.counters
            .delivered_compressed
            .fetch_add(n_compressed, Ordering::Relaxed);
        n as usize
    }

    fn count_eviction(&self, why: Evicted) {
        let c = match why {
            Evicted::Stalled => &self.counters.evicted_stalled,
            Evicted::Overflow => &self.counters.evicted_overflow,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Compress one message with `key`'s window and level, reusing a pooled
    /// compressor. `None`: send it uncompressed (it would not get smaller).
    fn compress(&self, key: SharedCompression, kind: DataKind, payload: &[u8]) -> Option<Bytes> {
        let pooled = {
            let mut pool = self.compressors.lock().unwrap_or_else(|p| p.into_inner());
            pool.iter().position(|c| c.params() == key).map(|i| pool.swap_remove(i))
        };
        let mut c = pooled.unwrap_or_else(|| MessageCompressor::new(key));
        self.counters.compressions.fetch_add(1, Ordering::Relaxed);
        let out = c.compress_frame(kind, payload).unwrap_or_else(|e| {
            tracing::debug!("hub compression failed, sending uncompressed: {}", e.reason);
            None
        });
        let mut pool = self.compressors.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() >= COMPRESSOR_POOL {
            pool.remove(0);
        }
        pool.push(c);
        out
    }

    /// Start the task that evicts `queue` once it stays behind past the
    /// stall timeout, whether or not anything more is published to it.
    fn arm_stall_timer(self: &Arc<Self>, queue: &Arc<SubQueue>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime: the deadline is checked on the next push.
            queue.disarm();
            return;
        };
        let (q, hub) = (Arc::downgrade(queue), Arc::downgrade(self));
        let timeout = self.config.stall_timeout;
        rt.spawn(stall_timer(q, hub, timeout));
    }

    fn deliver_remote(self: &Arc<Self>, topic: &str, envelope: &[u8]) -> usize {
        let Some((node, msg)) = parse_envelope(envelope) else {
            tracing::debug!(topic, "skipping a malformed hub envelope");
            return 0;
        };
        if node == self.node_id {
            // Our own message, already delivered locally when published.
            return 0;
        }
        self.counters.received_remote.fetch_add(1, Ordering::Relaxed);
        self.fan_out(topic, &encode_server_message(&msg))
    }

    fn local_subscribers(&self, topic: &str) -> usize {
        self.read().get(topic).map_or(0, |t| t.entries.len())
    }

    fn remove(&self, topic: &str, id: u64) {
        let mut reg = self.write();
        if let Some(t) = reg.get_mut(topic) {
            if let Some(i) = t.entries.iter().position(|e| e.id == id) {
                let e = t.entries.remove(i);
                if let Some(c) = e.compression
                    && let Some(g) = t.groups.iter().position(|(k, _)| *k == c)
                {
                    t.groups[g].1 -= 1;
                    if t.groups[g].1 == 0 {
                        t.groups.swap_remove(g);
                    }
                }
            }
            if t.entries.is_empty() {
                reg.remove(topic);
                // Under the lock, so that it is ordered with a subscribe.
                self.backend.unsubscribe(topic);
            }
        }
    }
}

/// A set of topics and their subscribers. Cheap to clone: clones share the
/// topics.
#[derive(Clone, Debug)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// An in-process hub with the default queue bounds.
    pub fn new() -> Hub {
        Hub::with_backend(HubConfig::default(), InProcess)
    }

    /// A hub whose messages also travel through `backend` to other nodes.
    /// Call inside a tokio runtime (the backend may start tasks).
    pub fn with_backend(config: HubConfig, backend: impl Backend) -> Hub {
        let node_id = random_node_id();
        let shared = Arc::new(Shared {
            config,
            node_id,
            registry: RwLock::new(HashMap::new()),
            backend: Box::new(backend),
            counters: Counters::default(),
            next_id: AtomicU64::new(1),
            compressors: Mutex::new(Vec::new()),
        });
        // Started once the hub exists, so that its tasks see it alive.
        shared.backend.start(Inbound {
            shared: Arc::downgrade(&shared),
            node_id,
        });
        Hub { shared }
    }

    /// A new subscriber with no topics yet. It may subscribe to many. It
    /// receives uncompressed frames, valid on any server connection.
    pub fn subscriber(&self) -> Subscriber {
        self.subscriber_with(None)
    }

    /// A subscriber that receives frames compressed with `compression` (from
    /// the threshold up), compressed once per message for all subscribers
    /// with the same window size; `None` is [`subscriber`](Self::subscriber).
    /// The frames are valid only on a server connection whose
    /// [`SharedCompression`] accepts `compression`: use
    /// [`subscriber_for`](Self::subscriber_for) for a connection.
    pub fn subscriber_with(&self, compression: Option<SharedCompression>) -> Subscriber {
        self.shared.counters.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscriber {
            shared: self.shared.clone(),
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            queue: Arc::new(SubQueue::default()),
            topics: HashSet::new(),
            compression,
        }
    }

    /// A subscriber whose frames suit `conn`, a server connection (e.g.
    /// `WebSocket::connection()`): compressed frames when it negotiated
    /// permessage-deflate with `server_no_context_takeover`, uncompressed
    /// ones otherwise (see the crate docs).
    pub fn subscriber_for(&self, conn: &Connection) -> Subscriber {
        self.subscriber_with(SharedCompression::of_connection(conn))
    }

    /// Publish a text or binary message to `topic`: encoded once, queued to
    /// every subscriber on this node and, through the backend, on every other
    /// node. Returns how many subscribers on this node it was queued to.
    ///
    /// With a distributing backend the message goes to the backend first; if
    /// the backend does not take it (Redis unreachable) this returns
    /// [`HubError::Unavailable`] and no subscriber gets it. Not cancel-safe
    /// with such a backend: dropping the future after the backend took the
    /// message but before it returns leaves this node's subscribers without it.
    pub async fn publish(&self, topic: &str, msg: impl Into<Message>) -> Result<usize, HubError> {
        check_topic(topic)?;
        let msg = msg.into();
        let s = &self.shared;
        if s.backend.distributes()
            && let Err(e) = s.backend.publish(topic, envelope(s.node_id, &msg)).await
        {
            s.counters.publish_failed.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        s.counters.published.fetch_add(1, Ordering::Relaxed);
        Ok(s.fan_out(topic, &encode_server_message(&msg)))
    }

    /// Publish an already encoded server frame (one whole text or binary
    /// frame, e.g. from [`weft_proto::frame::encode_server_frame`]) to this
    /// node's subscribers only, without the backend. Returns how many it was
    /// queued to. This is the fan-out core, exposed for benchmarks and for
    /// applications that pre-encode. An uncompressed frame is compressed for
    /// the subscribers that share compressed frames, as a published message
    /// is; a frame with RSV1 set goes to every subscriber as it is.
    pub fn publish_frame_local(&self, topic: &str, frame: &Bytes) -> usize {
        self.shared.counters.published.fetch_add(1, Ordering::Relaxed);
        self.shared.fan_out(topic, frame)
    }

    /// Subscribers of `topic` on this node.
    pub fn local_subscribers(&self, topic: &str) -> usize {
        self.shared.local_subscribers(topic)
    }

    /// Subscribers of `topic` over all nodes. With Redis, this node's count
    /// is reported (and kept fresh while non-zero) and every live node's is
    /// added up; a node that vanished stops counting within the presence TTL.
    pub async fn count(&self, topic: &str) -> Result<u64, HubError> {
        check_topic(topic)?;
        let local = self.local_subscribers(topic) as u64;
        self.shared.backend.count(topic, local).await
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> HubMetrics {
        let c = &self.shared.counters;
        let status = self.shared.backend.status();
        HubMetrics {
            published: c.published.load(Ordering::Relaxed),
            publish_failed: c.publish_failed.load(Ordering::Relaxed),
            received_remote: c.received_remote.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            compressions: c.compressions.load(Ordering::Relaxed),
            delivered_compressed: c.delivered_compressed.load(Ordering::Relaxed),
            evicted_stalled: c.evicted_stalled.load(Ordering::Relaxed),
            evicted_overflow: c.evicted_overflow.load(Ordering::Relaxed),
            subscribers: c.subscribers.load(Ordering::Relaxed),
            topics: self.shared.read().len() as u64,
            backend_connected: status.connected,
            backend_reconnects: status.reconnects,
        }
    }

    /// The backend's name (`"in-process"`, `"redis"`).
    pub fn backend_name(&self) -> &'static str {
        self.shared.backend.name()
    }

    /// This node's id, as tagged on its messages.
    pub fn node_id(&self) -> u64 {
        self.shared.node_id
    }

    /// The queue bounds.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }
}

/// An encoded server frame as a subscriber receives it: the very [`Bytes`]
/// every other subscriber of the message received (every other one with the
/// same compression, for a compressed frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// The encoded frame (header and payload).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The encoded frame, to hand to `WebSocket::feed_raw`.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Whether the frame is compressed (RSV1 set: permessage-deflate).
    pub fn is_compressed(&self) -> bool {
        matches!(FrameHeader::parse(&self.0), Ok(Some((h, _))) if h.rsv & RSV1 != 0)
    }

    /// The message it carries, for subscribers that are not sockets: the
    /// payload is a slice of the frame, not a copy, unless the frame is
    /// compressed (then it is inflated). An undecodable frame gives an empty
    /// binary message.
    pub fn message(&self) -> Message {
        match FrameHeader::parse(&self.0) {
            Ok(Some((h, n))) => {
                let mut payload = self.0.slice(n..);
                if h.rsv & RSV1 != 0 {
                    payload = inflate_message(&payload, isize::MAX as usize).unwrap_or_default();
                }
                match h.opcode {
                    Opcode::Text => {
                        Text::from_bytes(payload).map_or_else(|_| Message::Binary(Bytes::new()), Message::Text)
                    }
                    _ => Message::Binary(payload),
                }
            }
            _ => Message::Binary(Bytes::new()),
        }
    }
}

/// One receiver of topics, e.g. one WebSocket connection. Holds any number of
/// subscriptions and one bounded queue; dropping it unsubscribes from all.
#[derive(Debug)]
pub struct Subscriber {
    shared: Arc<Shared>,
    id: u64,
    queue: Arc<SubQueue>,
    topics: HashSet<Arc<str>>,
    compression: Option<SharedCompression>,
}

impl Subscriber {
    /// Subscribe to `topic`. Messages published from now on are queued to
    /// this subscriber; with a distributing backend, the future resolves once
    /// the backend confirms that other nodes' messages will arrive too. On
    /// [`HubError::Unavailable`] the subscription stays (this node's messages
    /// arrive) and the backend restores it when it reconnects.
    pub async fn subscribe(&mut self, topic: &str) -> Result<(), HubError> {
        check_topic(topic)?;
        let confirm = {
            let mut reg = self.shared.write();
            let key: Arc<str> = match reg.get_key_value(topic) {
                Some((k, _)) => k.clone(),
                None => Arc::from(topic),
            };
            if !self.topics.contains(topic) {
                let t = reg.entry(key.clone()).or_default();
                t.entries.push(Entry {
                    id: self.id,
                    queue: self.queue.clone(),
                    compression: self.compression,
                });
                if let Some(c) = self.compression {
                    match t.groups.iter_mut().find(|(k, _)| *k == c) {
                        Some((_, n)) => *n += 1,
                        None => t.groups.push((c, 1)),
                    }
                }
                self.topics.insert(key);
            }
            self.shared.backend.subscribe(topic)
        };
        confirm.await
    }

    /// Stop receiving `topic`. Frames already queued stay queued. Returns
    /// whether it was subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        if self.topics.remove(topic) {
            self.shared.remove(topic, self.id);
            true
        } else {
            false
        }
    }

    /// The topics subscribed to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| &**t)
    }

    /// The next frame, waiting for one. Cancel-safe. Returns the eviction
    /// reason once the subscriber was evicted.
    pub async fn recv(&mut self) -> Result<Frame, Evicted> {
        let mut one = Vec::with_capacity(1);
        self.recv_many(&mut one, 1).await?;
        Ok(Frame(one.pop().unwrap_or_default()))
    }

    /// Wait for at least one frame and append up to `limit` queued frames to
    /// `out` (encoded, ready for `feed_raw`). Returns how many. Cancel-safe.
    pub async fn recv_many(&mut self, out: &mut Vec<Bytes>, limit: usize) -> Result<usize, Evicted> {
        loop {
            match self.queue.pop_many(out, limit, &self.shared.config)? {
                0 => self.queue.wait().await,
                n => return Ok(n),
            }
        }
    }

    /// Take up to `limit` queued frames without waiting.
    pub fn try_recv_many(&mut self, out: &mut Vec<Bytes>, limit: usize) -> Result<usize, Evicted> {
        self.queue.pop_many(out, limit, &self.shared.config)
    }

    /// Frames and bytes waiting in this subscriber's queue.
    pub fn queued(&self) -> (usize, usize) {
        self.queue.queued()
    }

    /// Whether (and why) the hub evicted this subscriber.
    pub fn evicted(&self) -> Option<Evicted> {
        self.queue.evicted()
    }

    /// A future that resolves once the hub evicts this subscriber. It does
    /// not borrow the subscriber, so a server can wait for it while it does
    /// not call [`recv`](Self::recv) (e.g. while its socket's output is
    /// backed up) and close the connection on time.
    pub fn eviction(&self) -> impl Future<Output = Evicted> + Send + 'static {
        let q = self.queue.clone();
        async move { q.wait_evicted().await }
    }

    /// The compression its frames come with, if any.
    pub fn compression(&self) -> Option<SharedCompression> {
        self.compression
    }

    /// The hub this subscriber belongs to.
    pub fn hub(&self) -> Hub {
        Hub {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        for t in std::mem::take(&mut self.topics) {
            self.shared.remove(&t, self.id);
        }
        self.shared.counters.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_reject_garbage() {
        let m = Message::Text("héllo".into());
        let e = envelope(42, &m);
        assert_eq!(parse_envelope(&e), Some((42, m)));
        let b = Message::Binary(Bytes::from_static(&[0, 255]));
        assert_eq!(parse_envelope(&envelope(7, &b)), Some((7, b)));
        assert_eq!(parse_envelope(b""), None);
        assert_eq!(parse_envelope(&e[..5]), None);
        let mut bad = e.to_vec();
        bad[0] = 9;
        assert_eq!(parse_envelope(&bad), None);
        let mut bad_utf8 = envelope(1, &Message::Binary(Bytes::from_static(&[0xff]))).to_vec();
        bad_utf8[1] = 1;
        assert_eq!(parse_envelope(&bad_utf8), None);
    }
}
