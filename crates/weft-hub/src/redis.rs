//! Many nodes over Redis pub/sub (feature `redis`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_hub::{Hub, HubConfig, redis::{RedisBackend, RedisConfig}};
//!
//! let backend = RedisBackend::new("redis://127.0.0.1:6379", RedisConfig::default())?;
//! let hub = Hub::with_backend(HubConfig::default(), backend);
//! hub.publish("news", "to every node").await?;
//! # Ok(()) }
//! ```
//!
//! Each topic is the Redis channel `prefix + topic` (prefix `weft:hub:` by
//! default). A node holds two connections: one subscribed to the channels of
//! the topics it has local subscribers for, one for `PUBLISH` and presence.
//!
//! **Own messages.** A node delivers what it publishes to its own subscribers
//! itself, after Redis took the message, and skips the copy Redis echoes back
//! (every envelope carries the publishing node's id). So each message reaches
//! each subscriber once, and a node's subscribers get its messages even while
//! its subscription connection is being re-established.
//!
//! **Reconnection.** When the subscription connection drops (or a ping every
//! 5 s goes unanswered for 3 s), the node reconnects with exponential backoff
//! (100 ms doubling to 5 s, with jitter), subscribes to every topic again and
//! reports its presence counts again (a restarted Redis has lost them).
//! The publishing connection is re-made on the next publish after a failure
//! (at most every 250 ms while Redis is down).
//!
//! **Delivery guarantee.** Redis pub/sub is fire-and-forget: a message is
//! delivered to the nodes subscribed at the moment Redis handles the
//! `PUBLISH`, at most once. Across an outage:
//! - a publish while Redis is unreachable returns [`HubError::Unavailable`]
//!   to the publisher, and no subscriber (local or remote) gets the message:
//!   nothing is dropped silently on the publishing side;
//! - messages published by other nodes while this node's subscription
//!   connection is down, or before it has resubscribed, are lost for this
//!   node's subscribers (Redis keeps no backlog) — that is the "at most once";
//! - a publish that Redis took just before it died may or may not have reached
//!   other nodes.
//!
//! Applications that need more (no gaps) must add sequence numbers and a
//! replay store, e.g. Redis streams; this backend does not.
//!
//! **Presence** ([`Hub::count`](crate::Hub::count)): each node writes its
//! local count of a topic to `prefix + "presence:" + topic + ":" + node`,
//! with a TTL of 30 s refreshed every 10 s while it is non-zero, and the
//! count is the sum over the nodes listed in the set
//! `prefix + "presence:" + topic` (one Lua script, one round trip). A node
//! reports its count whenever `count` is called on it, and every 10 s for the
//! topics it has subscribers for; so a count is exact when every node with
//! subscribers called `count` after its last change (as a chat does on every
//! join and leave), and otherwise at most 10 s stale. A node that dies stops
//! counting when its key expires.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::{mpsc, oneshot};

use crate::HubError;
use crate::backend::{Backend, BackendStatus, BoxFuture, Inbound};

/// Settings of the Redis backend.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Prefix of the channel and key names.
    pub prefix: String,
    /// Bound on making a connection.
    pub connect_timeout: Duration,
    /// Bound on one command (`PUBLISH`, `SUBSCRIBE`, the presence script).
    pub command_timeout: Duration,
    /// First reconnection delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnection delay.
    pub max_backoff: Duration,
    /// How often the subscription connection is pinged.
    pub ping_interval: Duration,
    /// How long a node's presence count lives without a refresh.
    pub presence_ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            prefix: "weft:hub:".to_owned(),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(3),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(30),
        }
    }
}

impl RedisConfig {
    /// Set the prefix of channel and key names.
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = p.into();
        self
    }
    /// Set the reconnection backoff bounds.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }
    /// Set the connect and command timeouts.
    pub fn timeouts(mut self, connect: Duration, command: Duration) -> Self {
        self.connect_timeout = connect;
        self.command_timeout = command;
        self
    }
}

/// An error from [`RedisBackend::new`].
#[derive(Debug)]
pub struct RedisSetupError(redis::RedisError);

impl std::fmt::Display for RedisSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid Redis URL: {}", self.0)
    }
}

impl std::error::Error for RedisSetupError {}

enum Cmd {
    Subscribe(String, oneshot::Sender<Result<(), HubError>>),
    Unsubscribe(String),
}

struct Inner {
    client: Client,
    config: RedisConfig,
    cmds: mpsc::UnboundedSender<Cmd>,
    cmd_rx: Mutex<Option<mpsc::UnboundedReceiver<Cmd>>>,
    node_id: OnceLock<u64>,
    publisher: Mutex<Option<MultiplexedConnection>>,
    /// When the last failed attempt to make the publishing connection was.
    connect_gate: tokio::sync::Mutex<Option<Instant>>,
    connected: AtomicBool,
    reconnects: AtomicU64,
    /// Topics whose presence this node reported.
    presence: Mutex<HashSet<String>>,
    /// Wakes the presence refresh at once (after a reconnection: a restarted
    /// Redis has forgotten every count).
    refresh_now: tokio::sync::Notify,
}

/// The Redis backend. See the module docs for the guarantees.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.inner.config.prefix)
            .field("connected", &self.inner.connected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Sets this node's count and sums the live nodes' counts.
/// KEYS[1]: the set of node ids; ARGV: key prefix, node id, count, TTL (s).
const PRESENCE_LUA: &str = r#"
local mine = ARGV[1] .. ARGV[2]
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', mine, ARGV[3], 'EX', ARGV[4])
  redis.call('SADD', KEYS[1], ARGV[2])
else
  redis.call('DEL', mine)
  redis.call('SREM', KEYS[1], ARGV[2])
end
local total = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. node)
  if v then total = total + tonumber(v) else redis.call('SREM', KEYS[1], node) end
end
return total
"#;

fn unavailable(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(format!("redis: {e}"))
}

impl RedisBackend {
    /// A backend for the Redis server at `url` (`redis://host:port/db`).
    /// Nothing is connected until the hub starts it; the hub then keeps
    /// (re)connecting in the background, so this succeeds while Redis is down.
    pub fn new(url: &str, config: RedisConfig) -> Result<RedisBackend, RedisSetupError> {
        let client = Client::open(url).map_err(RedisSetupError)?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                client,
                config,
                cmds: tx,
                cmd_rx: Mutex::new(Some(rx)),
                node_id: OnceLock::new(),
                publisher: Mutex::new(None),
                connect_gate: tokio::sync::Mutex::new(None),
                connected: AtomicBool::new(false),
                reconnects: AtomicU64::new(0),
                presence: Mutex::new(HashSet::new()),
                refresh_now: tokio::sync::Notify::new(),
            }),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.config.prefix)
    }

    /// The publishing connection, made if there is none (at most one attempt
    /// per 250 ms while Redis is unreachable).
    async fn publisher(&self) -> Result<MultiplexedConnection, HubError> {
        if let Some(c) = lock(&self.publisher).clone() {
            return Ok(c);
        }
        let mut gate = self.connect_gate.lock().await;
        if let Some(c) = lock(&self.publisher).clone() {
            return Ok(c);
        }
        if let Some(t) = *gate
            && t.elapsed() < Duration::from_millis(250)
        {
            return Err(HubError::Unavailable("redis: unreachable (reconnecting)".into()));
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.command_timeout));
        match tokio::time::timeout(
            self.config.connect_timeout,
            self.client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        {
            Ok(Ok(c)) => {
                *gate = None;
                *lock(&self.publisher) = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => {
                *gate = Some(Instant::now());
                Err(unavailable(e))
            }
            Err(_) => {
                *gate = Some(Instant::now());
                Err(unavailable("connect timed out"))
            }
        }
    }

    /// Run one command on the publishing connection; drop the connection
    /// on failure so that the next call makes a new one.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, HubError> {
        let mut conn = self.publisher().await?;
        match tokio::time::timeout(self.config.command_timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout() {
                    *lock(&self.publisher) = None;
                }
                Err(unavailable(e))
            }
            Err(_) => {
                *lock(&self.publisher) = None;
                Err(unavailable("command timed out"))
            }
        }
    }

    async fn presence(&self, topic: &str, local: u64) -> Result<u64, HubError> {
        let node = format!("{:016x}", self.node_id.get().copied().unwrap_or_default());
        let base = format!("{}presence:{topic}", self.config.prefix);
        let ttl = self.config.presence_ttl.as_secs().max(1);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PRESENCE_LUA)
            .arg(1)
            .arg(&base)
            .arg(format!("{base}:"))
            .arg(node)
            .arg(local)
            .arg(ttl);
        let total: i64 = self.query(&cmd).await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn distributes(&self) -> bool {
        true
    }

    fn start(&self, inbound: Inbound) {
        let _ = self.inner.node_id.set(inbound.node_id());
        let Some(rx) = lock(&self.inner.cmd_rx).take() else {
            return; // started already
        };
        tokio::spawn(subscriber_task(self.inner.clone(), inbound.clone(), rx));
        tokio::spawn(presence_task(self.inner.clone(), inbound));
    }

    fn publish(&self, topic: &str, envelope: Bytes) -> BoxFuture<Result<(), HubError>> {
        let inner = self.inner.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(inner.channel(topic)).arg(&envelope[..]);
        Box::pin(async move { inner.query::<i64>(&cmd).await.map(|_| ()) })
    }

    fn subscribe(&self, topic: &str) -> BoxFuture<Result<(), HubError>> {
        // Reported by the presence refresh from now on.
        lock(&self.inner.presence).insert(topic.to_owned());
        let (tx, rx) = oneshot::channel();
        let sent = self.inner.cmds.send(Cmd::Subscribe(topic.to_owned(), tx));
        let wait = self.inner.config.command_timeout * 2;
        Box::pin(async move {
            if sent.is_err() {
                return Err(HubError::Unavailable("redis: backend stopped".into()));
            }
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(HubError::Unavailable("redis: backend stopped".into())),
                Err(_) => Err(HubError::Unavailable("redis: subscribe timed out".into())),
            }
        })
    }

    fn unsubscribe(&self, topic: &str) {
        let _ = self.inner.cmds.send(Cmd::Unsubscribe(topic.to_owned()));
    }

    fn count(&self, topic: &str, local: u64) -> BoxFuture<Result<u64, HubError>> {
        let inner = self.inner.clone();
        let topic = topic.to_owned();
        Box::pin(async move {
            {
                let mut p = lock(&inner.presence);
                if local > 0 {
                    p.insert(topic.clone());
                } else {
                    p.remove(&topic);
                }
            }
            inner.presence(&topic, local).await
        })
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            connected: self.inner.connected.load(Ordering::Relaxed),
            reconnects: self.inner.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// A little jitter (0–25 %) so that many nodes do not reconnect in step.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let r = h.finish() % 1000;
    d + d.mul_f64(r as f64 / 4000.0)
}

/// Keeps the subscription connection up and subscribed to `desired`, and
/// hands what arrives to the hub.
async fn subscriber_task(inner: Arc<Inner>, inbound: Inbound, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let cfg = inner.config.clone();
    let mut desired: HashSet<String> = HashSet::new();
    let mut backoff = cfg.min_backoff;
    let mut ever_connected = false;
    loop {
        if !inbound.is_alive() {
            return;
        }
        let why = match tokio::time::timeout(cfg.connect_timeout, inner.client.get_async_pubsub()).await {
            Err(_) => "connect timed out".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(pubsub)) => {
                let (mut sink, mut stream) = pubsub.split();
                let channels: Vec<String> = desired.iter().map(|t| inner.channel(t)).collect();
                let resubscribed = if channels.is_empty() {
                    Ok(())
                } else {
                    match tokio::time::timeout(cfg.command_timeout, sink.subscribe(&channels)).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("resubscribe timed out".to_owned()),
                    }
                };
                match resubscribed {
                    Err(e) => e,
                    Ok(()) => {
                        inner.connected.store(true, Ordering::Relaxed);
                        if ever_connected {
                            inner.reconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(topics = desired.len(), "hub: reconnected to Redis and resubscribed");
                        } else {
                            tracing::info!("hub: connected to Redis");
                        }
                        ever_connected = true;
                        backoff = cfg.min_backoff;
                        inner.refresh_now.notify_one();
                        let mut ping = tokio::time::interval(cfg.ping_interval);
                        ping.tick().await;
                        let why = loop {
                            tokio::select! {
                                cmd = cmds.recv() => match cmd {
                                    None => return, // the hub is gone
                                    Some(Cmd::Subscribe(topic, reply)) => {
                                        if desired.contains(&topic) {
                                            let _ = reply.send(Ok(()));
                                            continue;
                                        }
                                        let ch = inner.channel(&topic);
                                        desired.insert(topic);
                                        match tokio::time::timeout(cfg.command_timeout, sink.subscribe(&ch)).await {
                                            Ok(Ok(())) => { let _ = reply.send(Ok(())); }
                                            Ok(Err(e)) => {
                                                let _ = reply.send(Err(unavailable(&e)));
                                                break e.to_string();
                                            }
                                            Err(_) => {
                                                let _ = reply.send(Err(unavailable("subscribe timed out")));
                                                break "subscribe timed out".to_owned();
                                            }
                                        }
                                    }
                                    Some(Cmd::Unsubscribe(topic)) => {
                                        if desired.remove(&topic) {
                                            let ch = inner.channel(&topic);
                                            match tokio::time::timeout(cfg.command_timeout, sink.unsubscribe(&ch)).await {
                                                Ok(Ok(())) => {}
                                                Ok(Err(e)) => break e.to_string(),
                                                Err(_) => break "unsubscribe timed out".to_owned(),
                                            }
                                        }
                                    }
                                },
                                msg = stream.next() => match msg {
                                    None => break "connection lost".to_owned(),
                                    Some(m) => {
                                        if let Some(topic) = m.get_channel_name().strip_prefix(&cfg.prefix) {
                                            inbound.deliver(topic, m.get_payload_bytes());
                                        }
                                    }
                                },
                                _ = ping.tick() => {
                                    if !inbound.is_alive() {
                                        return;
                                    }
                                    match tokio::time::timeout(cfg.command_timeout, sink.ping::<redis::Value>()).await {
                                        Ok(Ok(_)) => {}
                                        Ok(Err(e)) => break e.to_string(),
                                        Err(_) => break "ping timed out".to_owned(),
                                    }
                                }
                            }
                        };
                        inner.connected.store(false, Ordering::Relaxed);
                        why
                    }
                }
            }
        };
        tracing::warn!("hub: Redis subscription connection down ({why}); retrying in {backoff:?}");
        // Down: wait out the backoff, keeping track of what to subscribe to.
        let until = tokio::time::Instant::now() + jitter(backoff);
        backoff = (backoff * 2).min(cfg.max_backoff);
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(Cmd::Subscribe(topic, reply)) => {
                        desired.insert(topic);
                        let _ = reply.send(Err(HubError::Unavailable(
                            "redis: unreachable; the subscription is restored on reconnection".into(),
                        )));
                    }
                    Some(Cmd::Unsubscribe(topic)) => {
                        desired.remove(&topic);
                    }
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
    }
}

/// How soon a failed presence refresh is tried again.
const RETRY_PRESENCE: Duration = Duration::from_millis(300);

/// Refreshes this node's presence counts before they expire.
async fn presence_task(inner: Arc<Inner>, inbound: Inbound) {
    let every = (inner.config.presence_ttl / 3).max(Duration::from_secs(1));
    let mut wait = every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.refresh_now.notified() => {}
        }
        if !inbound.is_alive() {
            return;
        }
        let topics: Vec<String> = lock(&inner.presence).iter().cloned().collect();
        let mut failed = false;
        for topic in topics {
            let local = inbound.local_subscribers(&topic) as u64;
            if local == 0 {
                lock(&inner.presence).remove(&topic);
            }
            if let Err(e) = inner.presence(&topic, local).await {
                tracing::debug!("hub: presence refresh failed: {e}");
                failed = true;
                break;
            }
        }
        // A refresh that failed (Redis unreachable, or just back while the
        // publishing connection waits out its 250 ms between attempts) is
        // tried again soon rather than a whole period later: a restarted
        // Redis has no count for this node until it is.
        wait = if failed { RETRY_PRESENCE.min(every) } else { every };
    }
}
