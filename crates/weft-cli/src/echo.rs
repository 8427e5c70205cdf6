//! The `/echo` socket's task, written out as a future rather than an
//! `async` block, so that its size is the sum of its fields: the task is
//! what an idle connection costs, and tokio allocates it in steps of 128
//! bytes (the future plus 104 bytes of header and trailer).
//!
//! Text stays text, binary stays binary; the peer's close code is echoed by
//! the protocol core. Replies are queued and written together when the
//! socket has nothing more to read. On shutdown, what already arrived is
//! answered and the socket closes with 1001.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use weft::{CloseCode, WebSocket};

use crate::metrics::{ECHO, Tally};
use crate::ratelog::RateLimitedLog;
use crate::serve::Slot;
use crate::stop::{Shutdown, Waiter};

/// What every echo socket shares: one pointer in each task.
pub(crate) struct EchoShared {
    pub(crate) shutdown: Shutdown,
    pub(crate) log: Arc<RateLimitedLog>,
    /// The `--max-connections` places, for sockets that hold theirs as a
    /// [`Place`].
    slots: Arc<Semaphore>,
    /// Echo tasks alive, for the shutdown to wait on.
    live: AtomicUsize,
    ended: Notify,
}

impl EchoShared {
    pub(crate) fn new(shutdown: Shutdown, log: Arc<RateLimitedLog>, slots: Arc<Semaphore>) -> Self {
        EchoShared {
            shutdown,
            log,
            slots,
            live: AtomicUsize::new(0),
            ended: Notify::new(),
        }
    }

    /// Wait until every echo task has ended.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// How a socket keeps its place under `--max-connections` until it ends.
pub(crate) trait Hold: Send + Unpin + 'static {
    /// Whether the place is given back to [`EchoShared`]'s semaphore when the
    /// socket ends (it was taken with [`Place::take`]).
    const GIVE_BACK: bool;
}

/// A place taken from [`EchoShared`]'s semaphore and given back when the
/// socket ends: no bytes in the task, where a permit takes 16.
pub(crate) struct Place(());

impl Place {
    /// Keep `permit`'s place until the echo task ends.
    pub(crate) fn take(permit: OwnedSemaphorePermit) -> Place {
        permit.forget();
        Place(())
    }
}

impl Hold for Place {
    const GIVE_BACK: bool = true;
}

/// A place held by the HTTP connection the socket was upgraded from.
impl Hold for Option<Slot> {
    const GIVE_BACK: bool = false;
}

/// A peer's address in 18 bytes (IPv4 as IPv4-mapped IPv6), for the log
/// lines written when something goes wrong; a `SocketAddr` takes 32.
#[derive(Clone, Copy)]
struct Peer {
    ip: [u8; 16],
    port: u16,
}

impl From<SocketAddr> for Peer {
    fn from(a: SocketAddr) -> Self {
        let ip = match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        Peer {
            ip: ip.octets(),
            port: a.port(),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SocketAddr::new(Ipv6Addr::from(self.ip).to_canonical(), self.port).fmt(f)
    }
}

/// Echo on `ws` until it closes or the server shuts down. `hold` keeps the
/// socket's place under `--max-connections` until it ends.
pub(crate) fn echo<S, H: Hold>(ws: WebSocket<S>, peer: SocketAddr, shared: Arc<EchoShared>, hold: H) -> Echo<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tracing::debug!(%peer, extensions = ?ws.extensions(), "echo connection opened");
    shared.live.fetch_add(1, Ordering::SeqCst);
    Echo::Open(Open {
        ws,
        member: Member {
            shared,
            waiter: Waiter::default(),
            _hold: hold,
        },
        tally: Tally::open(),
        peer: peer.into(),
    })
}

/// The echo task. The open socket is kept inline, not boxed: it lives as
/// long as the task, and a box would be a second allocation per connection.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Echo<S, H: Hold> {
    /// Echoing.
    Open(Open<S, H>),
    /// Shutting down: answering what arrived, then the closing handshake.
    Closing(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Over.
    Done,
}

pub(crate) struct Open<S, H: Hold> {
    ws: WebSocket<S>,
    member: Member<H>,
    /// Counts in the task, added to the shared counters in batches.
    tally: Tally<ECHO>,
    peer: Peer,
}

/// The socket's part in what echo sockets share, given back when it ends.
struct Member<H: Hold> {
    shared: Arc<EchoShared>,
    /// The task's place in the shutdown's table of wakers.
    waiter: Waiter,
    /// Kept until the socket ends.
    _hold: H,
}

impl<H: Hold> Drop for Member<H> {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.shutdown.leave(&mut self.waiter);
        if H::GIVE_BACK {
            shared.slots.add_permits(1);
        }
        if shared.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared.ended.notify_waiters();
        }
    }
}

impl<S, H: Hold> Future for Echo<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Echo::Open(open) => match open.poll_open(cx) {
                    Step::Wait => return Poll::Pending,
                    Step::Ended => {
                        *this = Echo::Done;
                        return Poll::Ready(());
                    }
                    Step::ShutDown => {
                        let Echo::Open(open) = std::mem::replace(this, Echo::Done) else {
                            unreachable!("matched above");
                        };
                        *this = Echo::Closing(Box::pin(open.close()));
                    }
                },
                Echo::Closing(closing) => {
                    std::task::ready!(closing.as_mut().poll(cx));
                    *this = Echo::Done;
                    return Poll::Ready(());
                }
                Echo::Done => return Poll::Ready(()),
            }
        }
    }
}

/// What a poll of the open socket came to.
enum Step {
    /// Nothing to do until the socket or the shutdown wakes the task.
    Wait,
    /// The socket ended (closed, failed or dropped); counted and logged.
    Ended,
    /// The server is shutting down.
    ShutDown,
}

impl<S, H: Hold> Open<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Step {
        loop {
            // Backpressure: no more is read while the output is over the
            // threshold. After the peer's close nothing more is sent, and the
            // socket is read to the end of its closing handshake.
            if self.ws.state() == weft::proto::State::Open {
                match Pin::new(&mut self.ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return self.dropped(&e),
                    Poll::Pending => return self.wait(cx),
                }
            }
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    let len = msg.len();
                    self.tally.received(len);
                    if let Err(e) = Pin::new(&mut self.ws).start_send(msg) {
                        return self.dropped(&e);
                    }
                    self.tally.sent(len);
                }
                Poll::Ready(Some(Err(e))) => {
                    self.member
                        .shared
                        .log
                        .warn(format_args!("{}: connection closed abnormally: {e}", self.peer));
                    self.tally.end(&self.ws, Some(&e), None);
                    return Step::Ended;
                }
                Poll::Ready(None) => {
                    self.tally.end(&self.ws, None, None);
                    return Step::Ended;
                }
                Poll::Pending => {
                    self.tally.flush();
                    return self.wait(cx);
                }
            }
        }
    }

    /// The socket waits: so does the task, unless the server is shutting
    /// down (the shutdown's waker is registered either way).
    fn wait(&mut self, cx: &mut Context<'_>) -> Step {
        let m = &mut self.member;
        match m.shared.shutdown.poll_wait(&mut m.waiter, cx) {
            Poll::Ready(()) => Step::ShutDown,
            Poll::Pending => Step::Wait,
        }
    }

    /// The echo could not be queued: the peer stopped reading (write
    /// timeout) or the transport failed.
    fn dropped(&mut self, e: &weft::Error) -> Step {
        self.member
            .shared
            .log
            .warn(format_args!("{}: connection dropped: {e}", self.peer));
        self.tally.end(&self.ws, Some(e), None);
        Step::Ended
    }

    /// Answer what already arrived, then close with 1001.
    async fn close(self) {
        let Open {
            mut ws,
            mut tally,
            member,
            ..
        } = self;
        loop {
            let msg = match ready_now(ws.recv()) {
                Some(Some(Ok(msg))) => msg,
                _ => break,
            };
            let len = msg.len();
            tally.received(len);
            if ws.feed(msg).await.is_err() {
                break;
            }
            tally.sent(len);
        }
        let closed = ws.close(CloseCode::GOING_AWAY, "server shutting down").await;
        tally.end(&ws, closed.as_ref().err(), Some(CloseCode::GOING_AWAY));
        drop(member);
    }
}

/// The output of `f` if it is ready without waiting.
fn ready_now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The echo task is what an idle connection costs. tokio allocates a
    /// task as the future plus 104 bytes of header and trailer, in steps of
    /// 128 bytes: up to 408 bytes of future it takes 512 bytes, past that
    /// 640.
    #[tokio::test]
    async fn the_echo_task_fits_in_512_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let ws = WebSocket::from_raw(tcp, weft::proto::Role::Server, &weft::Config::default());
        let slots = Arc::new(Semaphore::new(1));
        let shared = Arc::new(EchoShared::new(
            Shutdown::new(),
            Arc::new(RateLimitedLog::new(1)),
            slots.clone(),
        ));
        let place = Place::take(slots.clone().try_acquire_owned().unwrap());
        let task = echo(ws, peer, shared, place);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 408, "the echo task is {size} bytes");
        // The place is given back when the task ends.
        assert_eq!(slots.available_permits(), 0);
        drop(task);
        assert_eq!(slots.available_permits(), 1);
    }

    #[test]
    fn a_peer_is_shown_as_it_was_given() {
        for a in ["192.0.2.7:443", "[2001:db8::1]:8080", "[::1]:1"] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(Peer::from(addr).to_string(), a);
        }
    }
}
