//! Keepalive deadlines for every socket polled on a thread, kept in one
//! table and driven by one tokio timer: a socket holds a slot number, not a
//! timer of its own.
//!
//! A tokio `Sleep` takes 112 bytes and, boxed with the keepalive's state, an
//! allocation of 128; a slot here takes 40 bytes of a shared table (the
//! waker, the deadline, the interval and the timeout) and 16 in the socket.
//! Since an idle connection is mostly its socket, its task and the
//! runtime's registration, that is a tenth of what it costs.
//!
//! Deadlines are kept in whole milliseconds since the table was made,
//! rounded up to a step of 1/32 of the wait (at least 1 ms, at most 1 s), so
//! that sockets armed in the same step share one entry: a ping is never
//! early, and late by at most that step. The driver is a task on the runtime
//! that polls the socket; it ends when nothing is armed, and is started again
//! by the next socket that arms or polls. If its runtime shuts down while
//! other sockets still wait on the table (another runtime using the same
//! thread later, say), it wakes them on its way out so that they start one on
//! theirs.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The table of one thread's keepalive deadlines.
pub(crate) struct Wheel {
    epoch: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Deadline (milliseconds since `epoch`) → the slots armed for it. A slot
    /// re-armed or freed since is skipped when its old deadline comes.
    due: BTreeMap<u64, Vec<u32>>,
    /// A driver task is running (or being started).
    driving: bool,
    /// Counts the drivers started: a driver that ended leaves the state
    /// alone when it is dropped after a newer one started.
    generation: u64,
    /// The deadline the driver's timer is set for.
    target: Option<u64>,
    /// The driver, to be woken for a deadline earlier than `target`.
    driver: Option<Waker>,
}

/// One socket's keepalive.
struct Slot {
    waker: Option<Waker>,
    /// The armed deadline; 0: not armed.
    deadline: u64,
    /// The armed deadline passed (cleared by the next `arm`).
    fired: bool,
    interval_ms: u32,
    timeout_ms: u32,
}

thread_local! {
    static WHEEL: Arc<Wheel> = Arc::new(Wheel::new());
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is plain data that no panic leaves half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole milliseconds, rounded up, at least 1, at most `u32::MAX`.
fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl Wheel {
    fn new() -> Self {
        Wheel {
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn now(&self) -> u64 {
        millis(Instant::now().saturating_duration_since(self.epoch))
    }

    /// Start a driver on the current runtime unless one runs (or no runtime
    /// is current: the next poll from inside one starts it).
    fn start_driver(self: &Arc<Self>, mut st: MutexGuard<'_, State>) {
        if st.driving || st.due.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.driving = true;
        st.target = None;
        st.generation += 1;
        let generation = st.generation;
        drop(st);
        rt.spawn(Driver {
            generation,
            wheel: self.clone(),
            sleep: Box::pin(tokio::time::sleep_until(self.epoch)),
        });
    }
}

/// A socket's keepalive: a slot in its thread's [`Wheel`].
pub(crate) struct Timer {
    wheel: Arc<Wheel>,
    slot: u32,
}

impl Timer {
    /// A slot armed for `interval` from now.
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        let wheel = WHEEL.try_with(Arc::clone).unwrap_or_else(|_| Arc::new(Wheel::new()));
        let slot = {
            let mut st = lock(&wheel.state);
            let fresh = Slot {
                waker: None,
                deadline: 0,
                fired: false,
                interval_ms: millis_u32(interval),
                timeout_ms: millis_u32(timeout),
            };
            match st.free.pop() {
                Some(i) => {
                    st.slots[i as usize] = fresh;
                    i
                }
                None => {
                    // More than 4 billion sockets on one thread cannot happen
                    // before memory runs out.
                    let i = u32::try_from(st.slots.len()).unwrap_or(u32::MAX);
                    st.slots.push(fresh);
                    i
                }
            }
        };
        let t = Timer { wheel, slot };
        t.arm(false);
        t
    }

    /// Arm the slot for the interval (`false`) or the timeout (`true`) from
    /// now, replacing any earlier deadline.
    pub(crate) fn arm(&self, timeout: bool) {
        let now = self.wheel.now();
        let mut st = lock(&self.wheel.state);
        let Some(s) = st.slots.get_mut(self.slot as usize) else {
            return;
        };
        let wait = u64::from(if timeout { s.timeout_ms } else { s.interval_ms });
        let step = (wait / 32).clamp(1, 1000);
        let at = (now + wait).div_ceil(step) * step;
        s.deadline = at;
        s.fired = false;
        st.due.entry(at).or_default().push(self.slot);
        if st.driving {
            if st.target.is_some_and(|t| at < t)
                && let Some(d) = st.driver.as_ref()
            {
                d.wake_by_ref();
            }
        } else {
            self.wheel.start_driver(st);
        }
    }

    /// Ready once the armed deadline has passed (until the next `arm`);
    /// otherwise the task is woken when it does.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.wheel.state);
        let Some(s) = st.slots.get_mut(self.slot as usize) else {
            return Poll::Pending;
        };
        if s.fired {
            return Poll::Ready(());
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        if !st.driving {
            self.wheel.start_driver(st);
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let mut st = lock(&self.wheel.state);
        if let Some(s) = st.slots.get_mut(self.slot as usize) {
            s.waker = None;
            s.deadline = 0;
            s.fired = false;
            st.free.push(self.slot);
        }
    }
}

/// The task that wakes sockets at their deadlines.
struct Driver {
    generation: u64,
    wheel: Arc<Wheel>,
    sleep: Pin<Box<Sleep>>,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let now = self.wheel.now();
            let mut wake = Vec::new();
            let next = {
                let mut st = lock(&self.wheel.state);
                while let Some(entry) = st.due.first_entry() {
                    if *entry.key() > now {
                        break;
                    }
                    let (at, ids) = entry.remove_entry();
                    for id in ids {
                        if let Some(s) = st.slots.get_mut(id as usize)
                            && s.deadline == at
                        {
                            s.deadline = 0;
                            s.fired = true;
                            wake.extend(s.waker.clone());
                        }
                    }
                }
                let next = st.due.first_key_value().map(|(&at, _)| at);
                st.target = next;
                if next.is_none() {
                    // Nothing armed: end; the next `arm` starts a driver.
                    st.driving = false;
                    st.driver = None;
                } else if !st.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    st.driver = Some(cx.waker().clone());
                }
                next
            };
            for w in wake {
                w.wake();
            }
            let Some(at) = next else {
                return Poll::Ready(());
            };
            let when = self.wheel.epoch + Duration::from_millis(at);
            self.sleep.as_mut().reset(when);
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let mut st = lock(&self.wheel.state);
        if !st.driving || st.generation != self.generation {
            return;
        }
        // Dropped unfinished (its runtime is shutting down): let the sockets
        // still armed start a driver on the runtime that polls them.
        st.driving = false;
        st.target = None;
        st.driver = None;
        let wake: Vec<Waker> = st
            .slots
            .iter()
            .filter(|s| s.deadline != 0)
            .filter_map(|s| s.waker.clone())
            .collect();
        drop(st);
        for w in wake {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_fires_at_its_deadline_never_before() {
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let t = Timer::new(Duration::from_secs(60), Duration::from_secs(10));
        assert!(t.poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(59_900)).await;
        assert!(t.poll(&mut cx).is_pending(), "fired before the interval");
        assert_eq!(count.0.load(SeqCst), 0);
        // The step for 60 s is 1 s: due by 61 s at the latest.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(count.0.load(SeqCst), 1, "the socket's task is woken once");
        assert!(t.poll(&mut cx).is_ready());
        // Re-armed for the timeout.
        t.arm(true);
        assert!(t.poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(9_500)).await;
        assert!(t.poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(t.poll(&mut cx).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn many_sockets_share_one_table_and_freed_slots_are_reused() {
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let timers: Vec<Timer> = (0..1000)
            .map(|i| Timer::new(Duration::from_millis(1000 + i), Duration::from_secs(1)))
            .collect();
        for t in &timers {
            assert!(t.poll(&mut cx).is_pending());
        }
        let wheel = timers[0].wheel.clone();
        {
            let st = lock(&wheel.state);
            // 1000 deadlines between 1.0 and 2.0 s, in steps of 31 to 62 ms:
            // far fewer distinct ones.
            assert!(st.due.len() < 100, "{} distinct deadlines", st.due.len());
        }
        // Half of them are dropped before their deadline: never woken.
        let (keep, gone): (Vec<_>, Vec<_>) = timers.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        drop(gone);
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(count.0.load(SeqCst), 500);
        for (_, t) in &keep {
            assert!(t.poll(&mut cx).is_ready());
        }
        // The driver ended with nothing armed; new slots reuse the freed ones.
        let again: Vec<Timer> = (0..500)
            .map(|_| Timer::new(Duration::from_secs(1), Duration::from_secs(1)))
            .collect();
        let st = lock(&wheel.state);
        assert_eq!(st.slots.len(), 1000, "freed slots were reused");
        assert!(st.driving, "arming started a driver again");
        drop(st);
        drop(again);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_wakes_a_driver_set_for_a_later_one() {
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let late = Timer::new(Duration::from_secs(600), Duration::from_secs(1));
        assert!(late.poll(&mut cx).is_pending());
        // Let the driver run and set its timer for 600 s.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let early = Timer::new(Duration::from_secs(2), Duration::from_secs(1));
        assert!(early.poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert!(early.poll(&mut cx).is_ready());
        assert!(late.poll(&mut cx).is_pending());
        assert_eq!(count.0.load(SeqCst), 1);
    }

    /// Wait (at most `within`) on a fresh runtime for `t` to fire.
    fn fires_within(t: &Timer, within: Duration) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async { tokio::time::timeout(within, std::future::poll_fn(|cx| t.poll(cx))).await })
            .is_ok()
    }

    #[test]
    fn a_slot_made_outside_a_runtime_is_driven_once_polled_inside_one() {
        let t = Timer::new(Duration::from_millis(20), Duration::from_millis(20));
        assert!(fires_within(&t, Duration::from_secs(5)), "never fired");
    }

    #[test]
    fn a_driver_lost_with_its_runtime_is_replaced_by_the_next() {
        let t = Timer::new(Duration::from_millis(300), Duration::from_millis(20));
        // The first runtime starts the driver, then shuts down with it.
        assert!(!fires_within(&t, Duration::from_millis(20)), "fired early");
        assert!(
            !lock(&t.wheel.state).driving,
            "the lost driver is not counted as running"
        );
        assert!(
            fires_within(&t, Duration::from_secs(5)),
            "never fired after the first runtime went"
        );
    }
}
