//! How a hub reaches other nodes: the [`Backend`] trait and the in-process
//! backend.
//!
//! A backend moves opaque envelopes between nodes; it does not frame, fan out
//! or filter. The hub wraps each published message in an envelope tagged with
//! its node id, hands it to [`Backend::publish`], and on success delivers it
//! to its own subscribers directly. Envelopes arriving from the backend go to
//! [`Inbound::deliver`], which skips the node's own (so a message reaches the
//! publishing node's subscribers exactly once) and fans the rest out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;

use bytes::Bytes;

use crate::{HubError, Shared};

/// A boxed future, as the [`Backend`] methods return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a backend reports about its connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStatus {
    /// Whether messages from other nodes can arrive now (always true
    /// in-process).
    pub connected: bool,
    /// How many times the connection was re-established after a loss.
    pub reconnects: u64,
}

/// The link between the nodes of a hub. [`InProcess`] has none; the Redis
/// backend (feature `redis`) uses Redis pub/sub.
///
/// Methods are called with the hub's registry lock held where order matters
/// (`subscribe` and `unsubscribe`), so they must not block: send a command,
/// return a future.
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and metrics (`"in-process"`, `"redis"`).
    fn name(&self) -> &'static str;

    /// Whether envelopes go anywhere: `false` lets the hub skip building them.
    fn distributes(&self) -> bool;

    /// Called once when the hub is built, inside a tokio runtime: start
    /// whatever tasks the backend needs and keep `inbound` to deliver what
    /// arrives.
    fn start(&self, inbound: Inbound);

    /// Send `envelope` to the other nodes subscribed to `topic`. Resolves to
    /// `Ok` once the backend has taken it, and to an error when it could not
    /// (the hub then reports the error to the publisher and delivers nothing).
    fn publish(&self, topic: &str, envelope: Bytes) -> BoxFuture<Result<(), HubError>>;

    /// This node has a subscriber for `topic` (called for every local
    /// subscribe, in order with `unsubscribe`): receive the topic. Resolves
    /// once the backend confirms that messages published from now on will
    /// arrive. On an error the subscription is kept and restored when the
    /// backend reconnects.
    fn subscribe(&self, topic: &str) -> BoxFuture<Result<(), HubError>>;

    /// This node has no subscriber left for `topic`.
    fn unsubscribe(&self, topic: &str);

    /// Report this node's `local` subscriber count for `topic` and return the
    /// count over all nodes.
    fn count(&self, topic: &str, local: u64) -> BoxFuture<Result<u64, HubError>>;

    /// The connection's state.
    fn status(&self) -> BackendStatus;
}

/// The default backend: one process, no other nodes.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl Backend for InProcess {
    fn name(&self) -> &'static str {
        "in-process"
    }
    fn distributes(&self) -> bool {
        false
    }
    fn start(&self, _inbound: Inbound) {}
    fn publish(&self, _topic: &str, _envelope: Bytes) -> BoxFuture<Result<(), HubError>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn subscribe(&self, _topic: &str) -> BoxFuture<Result<(), HubError>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn unsubscribe(&self, _topic: &str) {}
    fn count(&self, _topic: &str, local: u64) -> BoxFuture<Result<u64, HubError>> {
        Box::pin(std::future::ready(Ok(local)))
    }
    fn status(&self) -> BackendStatus {
        BackendStatus {
            connected: true,
            reconnects: 0,
        }
    }
}

/// The way back into the hub for a backend's tasks. Holds the hub weakly: once
/// every handle to the hub is dropped, [`is_alive`](Self::is_alive) is false
/// and the backend's tasks should end.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub(crate) shared: Weak<Shared>,
    pub(crate) node_id: u64,
}

impl Inbound {
    /// Deliver an envelope that arrived for `topic`: decoded, framed once and
    /// queued to this node's subscribers. The node's own envelopes (echoes) and
    /// malformed ones are skipped. Returns how many subscribers it reached.
    pub fn deliver(&self, topic: &str, envelope: &[u8]) -> usize {
        match self.shared.upgrade() {
            Some(s) => s.deliver_remote(topic, envelope),
            None => 0,
        }
    }

    /// This node's subscriber count for `topic`.
    pub fn local_subscribers(&self, topic: &str) -> usize {
        self.shared.upgrade().map_or(0, |s| s.local_subscribers(topic))
    }

    /// This node's id, as it appears in its envelopes.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Whether the hub still exists.
    pub fn is_alive(&self) -> bool {
        self.shared.strong_count() > 0
    }
}
