//! Log lines about misbehaving peers, rate-limited so that an attack cannot
//! flood the log: at most N lines a second, then one line saying how many were
//! left out.

use std::fmt::Arguments;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct RateLimitedLog {
    per_second: u32,
    window: Mutex<Window>,
}

struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

impl RateLimitedLog {
    pub(crate) fn new(per_second: u32) -> Self {
        RateLimitedLog {
            per_second,
            window: Mutex::new(Window {
                start: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be written now; reports what a past window left out.
    fn admit(&self) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return false;
        };
        let now = Instant::now();
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            if w.suppressed > 0 {
                tracing::warn!("{} similar log lines were left out in the last second", w.suppressed);
            }
            *w = Window {
                start: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < self.per_second {
            w.logged += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    pub(crate) fn warn(&self, args: Arguments<'_>) {
        if self.admit() {
            tracing::warn!("{args}");
        }
    }

    pub(crate) fn info(&self, args: Arguments<'_>) {
        if self.admit() {
            tracing::info!("{args}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_at_most_the_rate() {
        let log = RateLimitedLog::new(3);
        let admitted = (0..100).filter(|_| log.admit()).count();
        assert_eq!(admitted, 3);
    }
}
