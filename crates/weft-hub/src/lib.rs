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
//! With **permessage-deflate** negotiated on a subscriber's connection, the
//! shared frame goes out uncompressed (RSV1 clear). That is valid: RFC 7692
//! compresses per message, and a message sent uncompressed leaves both ends'
//! LZ77 windows untouched, so messages the socket sends itself are still
//! compressed. Compressing once per topic would be possible only for
//! connections that negotiated `server_no_context_takeover` with the same
//! window size; it is not done.
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
//! is checked when a message arrives for the subscriber (a full queue with
//! nothing more published holds its bounded bytes until the socket's own
//! write timeout). Evictions are counted in [`HubMetrics`].
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
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use weft_proto::frame::{FrameHeader, Opcode, encode_server_message};
use weft_proto::{CloseCode, Message, Text};

pub mod backend;
mod queue;
#[cfg(feature = "redis")]
pub mod redis;

pub use backend::{Backend, BackendStatus, InProcess, Inbound};

use queue::{Push, SubQueue};

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
    evicted_stalled: AtomicU64,
    evicted_overflow: AtomicU64,
    subscribers: AtomicU64,
}

struct Entry {
    id: u64,
    queue: Arc<SubQueue>,
}

type Registry = HashMap<Arc<str>, Vec<Entry>>;

/// The state every handle shares.
pub(crate) struct Shared {
    config: HubConfig,
    node_id: u64,
    registry: RwLock<Registry>,
    backend: Box<dyn Backend>,
    counters: Counters,
    next_id: AtomicU64,
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

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `frame` to every local subscriber of `topic`.
    fn fan_out(&self, topic: &str, frame: &Bytes) -> usize {
        let now = Instant::now();
        let reg = self.read();
        let Some(entries) = reg.get(topic) else {
            return 0;
        };
        let mut n = 0u64;
        for e in entries {
            match e.queue.push(frame, now, &self.config) {
                Push::Queued => n += 1,
                Push::Evicted(Evicted::Stalled) => {
                    self.counters.evicted_stalled.fetch_add(1, Ordering::Relaxed);
                }
                Push::Evicted(Evicted::Overflow) => {
                    self.counters.evicted_overflow.fetch_add(1, Ordering::Relaxed);
                }
                Push::Gone => {}
            }
        }
        drop(reg);
        self.counters.delivered.fetch_add(n, Ordering::Relaxed);
        n as usize
    }

    fn deliver_remote(&self, topic: &str, envelope: &[u8]) -> usize {
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
        self.read().get(topic).map_or(0, Vec::len)
    }

    fn remove(&self, topic: &str, id: u64) {
        let mut reg = self.write();
        if let Some(entries) = reg.get_mut(topic) {
            entries.retain(|e| e.id != id);
            if entries.is_empty() {
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
        });
        // Started once the hub exists, so that its tasks see it alive.
        shared.backend.start(Inbound {
            shared: Arc::downgrade(&shared),
            node_id,
        });
        Hub { shared }
    }

    /// A new subscriber with no topics yet. It may subscribe to many.
    pub fn subscriber(&self) -> Subscriber {
        self.shared.counters.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscriber {
            shared: self.shared.clone(),
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            queue: Arc::new(SubQueue::default()),
            topics: HashSet::new(),
        }
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
    /// applications that pre-encode.
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
/// every other subscriber of the message received.
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

    /// The message it carries (the payload is a slice of the frame, not a
    /// copy), for subscribers that are not sockets.
    pub fn message(&self) -> Message {
        match FrameHeader::parse(&self.0) {
            Ok(Some((h, n))) => {
                let payload = self.0.slice(n..);
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
                reg.entry(key.clone()).or_default().push(Entry {
                    id: self.id,
                    queue: self.queue.clone(),
                });
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
