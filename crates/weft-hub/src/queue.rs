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
    evicted: Option<Evicted>,
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    Queued,
    /// This push evicted the subscriber.
    Evicted(Evicted),
    /// The subscriber had been evicted before.
    Gone,
}

#[derive(Debug, Default)]
pub(crate) struct SubQueue {
    state: Mutex<State>,
    notify: Notify,
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
        if st.frames.len() >= cfg.high_water_messages || st.bytes >= cfg.high_water_bytes {
            match st.behind_since {
                None => st.behind_since = Some(now),
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
        Push::Queued
    }

    fn evict(&self, mut st: MutexGuard<'_, State>, why: Evicted) -> Push {
        st.evicted = Some(why);
        // Free the memory now, not when the subscriber gets round to it.
        st.frames = VecDeque::new();
        st.bytes = 0;
        drop(st);
        self.notify.notify_one();
        Push::Evicted(why)
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

    #[test]
    fn overflow_by_count_and_by_bytes_evicts_and_frees() {
        let c = cfg();
        let q = SubQueue::default();
        let now = Instant::now();
        let f = Bytes::from_static(b"0123456789");
        for _ in 0..4 {
            assert_eq!(q.push(&f, now, &c), Push::Queued);
        }
        assert_eq!(q.push(&f, now, &c), Push::Evicted(Evicted::Overflow));
        assert_eq!(q.queued(), (0, 0), "memory released at once");
        assert_eq!(q.push(&f, now, &c), Push::Gone);
        assert_eq!(q.pop_many(&mut Vec::new(), 10, &c), Err(Evicted::Overflow));

        let q = SubQueue::default();
        let big = Bytes::from(vec![0u8; 60]);
        assert_eq!(q.push(&big, now, &c), Push::Queued);
        assert_eq!(q.push(&big, now, &c), Push::Evicted(Evicted::Overflow));
    }

    #[test]
    fn a_frame_larger_than_the_cap_fits_an_empty_queue() {
        let c = cfg();
        let q = SubQueue::default();
        let huge = Bytes::from(vec![0u8; 500]);
        assert_eq!(q.push(&huge, Instant::now(), &c), Push::Queued);
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
        assert_eq!(q.push(&f, t0, &c), Push::Queued);
        assert_eq!(q.push(&f, t0 + Duration::from_secs(4), &c), Push::Queued);
        // Catch up below the mark: the clock is reset.
        let mut out = Vec::new();
        q.pop_many(&mut out, 3, &c).unwrap();
        assert_eq!(q.push(&f, t0 + Duration::from_secs(6), &c), Push::Queued);
        assert_eq!(q.push(&f, t0 + Duration::from_secs(6), &c), Push::Queued);
        // Behind again from 6 s on; evicted 5 s later.
        assert_eq!(q.queued().0, 3);
        q.pop_many(&mut out, 1, &c).unwrap();
        assert_eq!(q.push(&f, t0 + Duration::from_secs(7), &c), Push::Queued);
        assert_eq!(
            q.push(&f, t0 + Duration::from_secs(12), &c),
            Push::Evicted(Evicted::Stalled)
        );
    }
}
