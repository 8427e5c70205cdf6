//! One subscriber's bounded queue of encoded frames.
//!
//! Publishers push (never wait); the subscriber pops. The queue holds
//! `Bytes` handles to frames shared by every subscriber of a topic, so a push
//! is a reference-count increment and a `VecDeque` slot, not a copy.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::{Evicted, HubConfig};

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// Since when the queue has been at or over the high-water mark.
    behind_since: Option<Instant>,
    /// A stall timer watches this queue (at most one does).
    timer_armed: bool,
    evicted: Option<Evicted>,
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    Queued,
    /// Queued, and the queue just fell behind with no stall timer watching
    /// it: the caller starts one ([`SubQueue::check_stall`] on time) or
    /// calls [`SubQueue::disarm`].
    QueuedArm,
    /// This push evicted the subscriber.
    Evicted(Evicted),
    /// The subscriber had been evicted before.
    Gone,
}

/// What a stall timer found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stall {
    /// The queue stayed behind past the timeout: this check evicted it.
    Evicted,
    /// Still behind; look again at this instant.
    Until(Instant),
    /// Caught up, or gone: the timer ends (disarmed).
    Clear,
}

#[derive(Debug, Default)]
pub(crate) struct SubQueue {
    state: Mutex<State>,
    notify: Notify,
    /// Wakes every `wait_evicted` once the subscriber is evicted.
    gone: Notify,
}

impl SubQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data; a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offer a frame. Never waits: a subscriber that cannot keep up is
    /// evicted (its queue emptied and closed) instead.
    pub(crate) fn push(&self, frame: &Bytes, now: Instant, cfg: &HubConfig) -> Push {
        let mut st = self.lock();
        if st.evicted.is_some() {
            return Push::Gone;
        }
        let len = frame.len();
        // A frame always fits into an empty queue, so a message larger than
        // the byte cap still reaches a subscriber that keeps up.
        if !st.frames.is_empty()
            && (st.frames.len() >= cfg.max_queued_messages || st.bytes + len > cfg.max_queued_bytes)
        {
            return self.evict(st, Evicted::Overflow);
        }
        let mut arm = false;
        if st.frames.len() >= cfg.high_water_messages || st.bytes >= cfg.high_water_bytes {
            match st.behind_since {
                None => {
                    st.behind_since = Some(now);
                    arm = !std::mem::replace(&mut st.timer_armed, true);
                }
                Some(t) if now.saturating_duration_since(t) >= cfg.stall_timeout => {
                    return self.evict(st, Evicted::Stalled);
                }
                Some(_) => {}
            }
        }
        let was_empty = st.frames.is_empty();
        st.frames.push_back(frame.clone());
        st.bytes += len;
        drop(st);
        if was_empty {
            // The subscriber waits only on an empty queue; a stored permit
            // covers the race with a subscriber about to wait.
            self.notify.notify_one();
        }
        if arm { Push::QueuedArm } else { Push::Queued }
    }

    fn evict(&self, mut st: MutexGuard<'_, State>, why: Evicted) -> Push {
        st.evicted = Some(why);
        // Free the memory now, not when the subscriber gets round to it.
        st.frames = VecDeque::new();
        st.bytes = 0;
        drop(st);
        self.notify.notify_one();
        self.gone.notify_waiters();
        Push::Evicted(why)
    }

    /// No stall timer could be started (no runtime): the deadline is then
    /// checked on the next push only.
    pub(crate) fn disarm(&self) {
        self.lock().timer_armed = false;
    }

    /// The stall timer's check: evict a queue behind since `timeout` or
    /// longer, at `now`.
    pub(crate) fn check_stall(&self, now: Instant, timeout: std::time::Duration) -> Stall {
        let mut st = self.lock();
        match (st.evicted, st.behind_since) {
            (None, Some(t)) if now.saturating_duration_since(t) >= timeout => {
                st.timer_armed = false;
                self.evict(st, Evicted::Stalled);
                Stall::Evicted
            }
            (None, Some(t)) => Stall::Until(t + timeout),
            _ => {
                st.timer_armed = false;
                Stall::Clear
            }
        }
    }

    /// Wait until the subscriber is evicted.
    pub(crate) async fn wait_evicted(&self) -> Evicted {
        loop {
            let n = self.gone.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if let Some(e) = self.lock().evicted {
                return e;
            }
            n.await;
        }
    }

    /// Take up to `limit` frames (at least one if any is queued) without
    /// waiting. Frames queued before an eviction are dropped with the queue.
    pub(crate) fn pop_many(&self, out: &mut Vec<Bytes>, limit: usize, cfg: &HubConfig) -> Result<usize, Evicted> {
        let mut st = self.lock();
        if let Some(e) = st.evicted {
            return Err(e);
        }
        let n = st.frames.len().min(limit.max(1));
        let mut taken = 0;
        for f in st.frames.drain(..n) {
            taken += f.len();
            out.push(f);
        }
        st.bytes -= taken;
        if st.frames.len() < cfg.high_water_messages && st.bytes < cfg.high_water_bytes {
            st.behind_since = None;
        }
        if st.frames.is_empty() && st.frames.capacity() > 64 {
            // Give back what a burst grew.
            st.frames = VecDeque::new();
        }
        Ok(n)
    }

    /// Wait until a frame is queued or the subscriber is evicted.
    pub(crate) async fn wait(&self) {
        loop {
            {
                let st = self.lock();
                if !st.frames.is_empty() || st.evicted.is_some() {
                    return;
                }
            }
            self.notify.notified().await;
        }
    }

    pub(crate) fn queued(&self) -> (usize, usize) {
        let st = self.lock();
        (st.frames.len(), st.bytes)
    }

    pub(crate) fn evicted(&self) -> Option<Evicted> {
        self.lock().evicted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> HubConfig {
        HubConfig {
            high_water_messages: 2,
            high_water_bytes: 1000,
            stall_timeout: Duration::from_secs(5),
            max_queued_messages: 4,
            max_queued_bytes: 100,
        }
    }

    fn queued(p: Push) -> bool {
        matches!(p, Push::Queued | Push::QueuedArm)
    }

    #[test]
    fn overflow_by_count_and_by_bytes_evicts_and_frees() {
        let c = cfg();
        let q = SubQueue::default();
        let now = Instant::now();
        let f = Bytes::from_static(b"0123456789");
        for _ in 0..4 {
            assert!(queued(q.push(&f, now, &c)));
        }
        assert_eq!(q.push(&f, now, &c), Push::Evicted(Evicted::Overflow));
        assert_eq!(q.queued(), (0, 0), "memory released at once");
        assert_eq!(q.push(&f, now, &c), Push::Gone);
        assert_eq!(q.pop_many(&mut Vec::new(), 10, &c), Err(Evicted::Overflow));

        let q = SubQueue::default();
        let big = Bytes::from(vec![0u8; 60]);
        assert!(queued(q.push(&big, now, &c)));
        assert_eq!(q.push(&big, now, &c), Push::Evicted(Evicted::Overflow));
    }

    #[test]
    fn a_frame_larger_than_the_cap_fits_an_empty_queue() {
        let c = cfg();
        let q = SubQueue::default();
        let huge = Bytes::from(vec![0u8; 500]);
        assert!(queued(q.push(&huge, Instant::now(), &c)));
        let mut out = Vec::new();
        assert_eq!(q.pop_many(&mut out, 8, &c), Ok(1));
        assert_eq!(out[0].as_ptr(), huge.as_ptr());
    }

    #[test]
    fn behind_for_the_stall_timeout_evicts_catching_up_resets() {
        let c = cfg();
        let q = SubQueue::default();
        let t0 = Instant::now();
        let f = Bytes::from_static(b"x");
        q.push(&f, t0, &c);
        q.push(&f, t0, &c);
        // At the high-water mark: the clock starts.
        assert!(queued(q.push(&f, t0, &c)));
        assert!(queued(q.push(&f, t0 + Duration::from_secs(4), &c)));
        // Catch up below the mark: the clock is reset.
        let mut out = Vec::new();
        q.pop_many(&mut out, 3, &c).unwrap();
        assert!(queued(q.push(&f, t0 + Duration::from_secs(6), &c)));
        assert!(queued(q.push(&f, t0 + Duration::from_secs(6), &c)));
        // Behind again from 6 s on; evicted 5 s later.
        assert_eq!(q.queued().0, 3);
        q.pop_many(&mut out, 1, &c).unwrap();
        assert!(queued(q.push(&f, t0 + Duration::from_secs(7), &c)));
        assert_eq!(
            q.push(&f, t0 + Duration::from_secs(12), &c),
            Push::Evicted(Evicted::Stalled)
        );
    }

    #[test]
    fn the_stall_timer_is_armed_once_and_evicts_without_a_push() {
        let c = cfg();
        let q = SubQueue::default();
        let t0 = Instant::now();
        let f = Bytes::from_static(b"x");
        let timeout = c.stall_timeout;
        assert_eq!(q.check_stall(t0, timeout), Stall::Clear, "not behind");
        assert_eq!(q.push(&f, t0, &c), Push::Queued);
        assert_eq!(q.push(&f, t0, &c), Push::Queued);
        assert_eq!(q.push(&f, t0, &c), Push::QueuedArm, "fell behind: arm");
        assert_eq!(q.push(&f, t0, &c), Push::Queued, "armed once");
        assert_eq!(
            q.check_stall(t0 + Duration::from_secs(1), timeout),
            Stall::Until(t0 + timeout)
        );
        // Caught up: the timer ends; falling behind again arms a new one.
        q.pop_many(&mut Vec::new(), 4, &c).unwrap();
        assert_eq!(q.check_stall(t0 + timeout, timeout), Stall::Clear);
        let t1 = t0 + Duration::from_secs(6);
        q.push(&f, t1, &c);
        q.push(&f, t1, &c);
        assert_eq!(q.push(&f, t1, &c), Push::QueuedArm);
        // Caught up and behind again before the timer looked: it waits for
        // the new deadline.
        q.pop_many(&mut Vec::new(), 4, &c).unwrap();
        let t2 = t1 + Duration::from_secs(2);
        q.push(&f, t2, &c);
        q.push(&f, t2, &c);
        assert_eq!(q.push(&f, t2, &c), Push::Queued, "the timer still runs");
        assert_eq!(q.check_stall(t1 + timeout, timeout), Stall::Until(t2 + timeout));
        assert_eq!(q.check_stall(t2 + timeout, timeout), Stall::Evicted);
        assert_eq!(q.evicted(), Some(Evicted::Stalled));
        assert_eq!(q.queued(), (0, 0));
        assert_eq!(q.check_stall(t2 + timeout, timeout), Stall::Clear);
    }
}
