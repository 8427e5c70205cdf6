//! The server's shutdown signal, at 16 to 24 bytes per waiting connection:
//! every WebSocket (echo, chat, topic), every HTTP connection and the
//! /metrics listener wait on it.
//!
//! Every open connection waits for the shutdown as long as it lives, so what
//! the wait costs is part of what an idle connection costs. A
//! `watch::Receiver` and its `changed()` future take 136 bytes of the
//! connection's task; a [`Stopped`] takes 24, and its waker lives in a slot of
//! a shared table (24 bytes), taken on the first poll and given back on drop.
//! An echo socket, which reaches the [`Shutdown`] through what all echo
//! sockets share, keeps only its [`Waiter`] (16 bytes).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

/// Slots per chunk of the table. Chunks are never moved or freed while a
/// connection holds one, so a slot is polled without taking the lock.
const CHUNK: usize = 64;

struct Chunk {
    /// Its place in the table's list.
    number: usize,
    wakers: [AtomicWaker; CHUNK],
}

#[derive(Default)]
struct Table {
    chunks: Vec<Arc<Chunk>>,
    /// Free slots, as chunk * CHUNK + index.
    free: Vec<usize>,
}

struct Shared {
    fired: AtomicBool,
    table: Mutex<Table>,
}

/// Fires once; every [`Stopped`] made from it resolves then.
#[derive(Clone)]
pub(crate) struct Shutdown {
    shared: Arc<Shared>,
}

impl Shutdown {
    pub(crate) fn new() -> Self {
        Shutdown {
            shared: Arc::new(Shared {
                fired: AtomicBool::new(false),
                table: Mutex::new(Table::default()),
            }),
        }
    }

    /// Resolve every [`Stopped`], those made later included.
    pub(crate) fn fire(&self) {
        self.shared.fired.store(true, SeqCst);
        let table = self.shared.table.lock().unwrap_or_else(PoisonError::into_inner);
        for chunk in &table.chunks {
            for w in &chunk.wakers {
                w.wake();
            }
        }
    }

    /// A future that resolves once [`fire`](Self::fire) was called.
    pub(crate) fn stopped(&self) -> Stopped {
        Stopped {
            shutdown: self.clone(),
            waiter: Waiter::default(),
        }
    }
}

/// A task's place in a [`Shutdown`]'s table of wakers, for a task that
/// reaches the `Shutdown` through something it shares with others: 16 bytes,
/// where a [`Stopped`] takes 24. Taken on the first
/// [`poll_wait`](Shutdown::poll_wait); give it back with
/// [`leave`](Shutdown::leave) (a `Waiter` dropped without it keeps its slot
/// taken).
#[derive(Default)]
pub(crate) struct Waiter {
    /// The chunk and the slot's index in it.
    slot: Option<(Arc<Chunk>, u8)>,
}

impl Shutdown {
    /// Ready once [`fire`](Self::fire) was called; otherwise the task is
    /// woken when it is. Cancel-safe.
    pub(crate) fn poll_wait(&self, w: &mut Waiter, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.fired.load(SeqCst) {
            return Poll::Ready(());
        }
        let (chunk, at) = w.slot.get_or_insert_with(|| self.take_slot());
        chunk.wakers[usize::from(*at)].register(cx.waker());
        // Fired between the first check and the registration: `fire` may
        // have passed this slot already.
        if self.shared.fired.load(SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Give `w`'s slot back.
    pub(crate) fn leave(&self, w: &mut Waiter) {
        if let Some((chunk, at)) = w.slot.take() {
            // Drop the waker now rather than when the slot is reused.
            drop(chunk.wakers[usize::from(at)].take());
            let mut table = self.shared.table.lock().unwrap_or_else(PoisonError::into_inner);
            table.free.push(chunk.number * CHUNK + usize::from(at));
        }
    }

    fn take_slot(&self) -> (Arc<Chunk>, u8) {
        let mut table = self.shared.table.lock().unwrap_or_else(PoisonError::into_inner);
        let at = match table.free.pop() {
            Some(at) => at,
            None => {
                let number = table.chunks.len();
                table.chunks.push(Arc::new(Chunk {
                    number,
                    wakers: std::array::from_fn(|_| AtomicWaker::new()),
                }));
                // The first slot is taken, the rest are free.
                let first = number * CHUNK;
                table.free.extend((first + 1..first + CHUNK).rev());
                first
            }
        };
        // `as u8`: the index in a chunk is under CHUNK (64).
        (table.chunks[at / CHUNK].clone(), (at % CHUNK) as u8)
    }
}

/// Resolves once the server shuts down. Cancel-safe; holds a slot of the
/// table from its first poll until it is dropped.
pub(crate) struct Stopped {
    shutdown: Shutdown,
    waiter: Waiter,
}

impl Future for Stopped {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.shutdown.poll_wait(&mut this.waiter, cx)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.shutdown.leave(&mut self.waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn every_waiting_future_is_woken_and_resolves_once_fired() {
        let stop = Shutdown::new();
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        // More than a chunk, so that the table grows; 50 more dropped
        // while waiting, so that their slots are reused.
        let mut waiting: Vec<Stopped> = (0..200).map(|_| stop.stopped()).collect();
        for s in &mut waiting {
            assert!(Pin::new(s).poll(&mut Context::from_waker(&waker)).is_pending());
        }
        for _ in 0..50 {
            assert!(futures_poll(&mut stop.stopped()).is_pending());
        }
        {
            let table = stop.shared.table.lock().unwrap();
            assert_eq!(table.chunks.len(), 4, "200 waiting slots take 4 chunks of 64");
            assert_eq!(table.free.len(), 4 * CHUNK - 200);
        }
        assert_eq!(count.0.load(SeqCst), 0);
        stop.fire();
        assert_eq!(count.0.load(SeqCst), 200, "every waiting future is woken once");
        for s in &mut waiting {
            assert!(futures_poll(s).is_ready());
        }
        // Made after the signal: resolves at once.
        assert!(futures_poll(&mut stop.stopped()).is_ready());
        drop(waiting);
        let table = stop.shared.table.lock().unwrap();
        assert_eq!(table.free.len(), table.chunks.len() * CHUNK, "every slot is free again");
    }

    #[test]
    fn a_dropped_future_gives_its_slot_back() {
        let stop = Shutdown::new();
        for _ in 0..1000 {
            let mut s = stop.stopped();
            assert!(futures_poll(&mut s).is_pending());
        }
        let table = stop.shared.table.lock().unwrap();
        assert_eq!(table.chunks.len(), 1);
        assert_eq!(table.free.len(), CHUNK);
    }

    fn futures_poll(f: &mut Stopped) -> Poll<()> {
        Pin::new(f).poll(&mut Context::from_waker(std::task::Waker::noop()))
    }
}
