//! Rate limits for log lines a guest can cause.
//!
//! A guest that faults in a loop, probes every system register or has SErrors
//! raining on it must not flood the console every VM shares, nor slow the CPU
//! that writes it. Every log line a guest can trigger goes through a
//! [`RateLimit`]: a burst of lines, then at most one per interval, each saying
//! how many were counted so far — so nothing is silently lost, only not
//! repeated.

/// A token bucket over a millisecond clock: `burst` lines at once, refilled at
/// one line per `interval_ms`. Pure: the caller passes the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    burst: u32,
    interval_ms: u64,
    tokens: u32,
    /// When the last token was added (or the first event, before any).
    refilled_ms: Option<u64>,
    /// Events counted, logged or not.
    seen: u64,
}

impl RateLimit {
    pub const fn new(burst: u32, interval_ms: u64) -> Self {
        RateLimit {
            burst,
            interval_ms,
            tokens: burst,
            refilled_ms: None,
            seen: 0,
        }
    }

    /// Counts one event at `now_ms`; `Some(n)` (the events counted so far,
    /// this one included) when it may be logged.
    pub fn note(&mut self, now_ms: u64) -> Option<u64> {
        self.seen += 1;
        let last = *self.refilled_ms.get_or_insert(now_ms);
        if self.interval_ms > 0 && self.tokens < self.burst {
            let earned = now_ms.saturating_sub(last) / self.interval_ms;
            if earned > 0 {
                self.tokens = (self.tokens as u64 + earned).min(self.burst as u64) as u32;
                self.refilled_ms = Some(last + earned * self.interval_ms);
            }
        }
        if self.tokens == 0 {
            return None;
        }
        if self.tokens == self.burst {
            // A full bucket starts its refill clock at its first use.
            self.refilled_ms = Some(now_ms);
        }
        self.tokens -= 1;
        Some(self.seen)
    }

    /// Events counted so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// One VM's budget for the log lines its faults and odd exits cause (aborts
/// nobody claims, UNDEFINED instructions, SErrors, unexpected exit kinds):
/// [`FaultLog::BURST`] lines, then one per [`FaultLog::INTERVAL_MS`], each with
/// the number of faults so far.
#[derive(Clone, Copy, Debug)]
pub struct FaultLog {
    clock: fn() -> u64,
    limit: RateLimit,
}

impl FaultLog {
    pub const BURST: u32 = 16;
    pub const INTERVAL_MS: u64 = 1000;

    /// A budget on the millisecond clock `clock`.
    pub fn new(clock: fn() -> u64) -> Self {
        FaultLog {
            clock,
            limit: RateLimit::new(Self::BURST, Self::INTERVAL_MS),
        }
    }

    /// Counts one fault; `Some(n)` (faults so far) when it may be logged.
    pub fn note(&mut self) -> Option<u64> {
        self.limit.note((self.clock)())
    }
}

/// A clock that never advances: after the burst nothing more is logged.
fn stopped_clock() -> u64 {
    0
}

impl Default for FaultLog {
    /// A budget with a stopped clock (host tests).
    fn default() -> Self {
        Self::new(stopped_clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn a_burst_then_one_per_interval() {
        let mut r = RateLimit::new(3, 1000);
        let logged: alloc::vec::Vec<_> = (0..10).filter_map(|_| r.note(5)).collect();
        assert_eq!(logged, [1, 2, 3], "the burst, all at t = 5 ms");
        assert_eq!(r.note(1004), None, "one interval not yet over");
        assert_eq!(r.note(1005), Some(12), "one token earned at 1005 ms");
        assert_eq!(r.note(1006), None);
        // Two intervals later two more, each with the count of everything seen.
        assert_eq!(r.note(3005), Some(14));
        assert_eq!(r.note(3005), Some(15));
        assert_eq!(r.note(3005), None);
        assert_eq!(r.seen(), 16);
    }

    #[test]
    fn a_quiet_period_refills_at_most_the_burst() {
        let mut r = RateLimit::new(2, 100);
        assert!(r.note(0).is_some() && r.note(0).is_some() && r.note(0).is_none());
        // An hour of silence gives back the burst, not thousands of lines.
        let later = 3_600_000;
        assert_eq!(
            (0..10).filter(|_| r.note(later).is_some()).count(),
            2,
            "burst after a long quiet period"
        );
    }

    #[test]
    fn a_flood_is_bounded_by_time_not_by_count() {
        // 10 million faults over 10 seconds: 16 + 10 lines, not thousands.
        let mut r = RateLimit::new(FaultLog::BURST, FaultLog::INTERVAL_MS);
        let mut lines = 0;
        for i in 0..10_000_000u64 {
            lines += r.note(i / 1000).is_some() as u32;
        }
        assert_eq!(lines, FaultLog::BURST + 9);
    }

    static NOW: AtomicU64 = AtomicU64::new(0);
    fn fake_clock() -> u64 {
        NOW.load(Ordering::Relaxed)
    }

    #[test]
    fn fault_log_reads_its_clock() {
        let mut f = FaultLog::new(fake_clock);
        let burst = (0..100).filter(|_| f.note().is_some()).count();
        assert_eq!(burst, FaultLog::BURST as usize);
        NOW.store(FaultLog::INTERVAL_MS, Ordering::Relaxed);
        assert_eq!(f.note(), Some(101));
        assert_eq!(f.note(), None);
        // The default budget's clock stands still.
        let mut d = FaultLog::default();
        assert_eq!((0..1000).filter(|_| d.note().is_some()).count(), 16);
    }
}
