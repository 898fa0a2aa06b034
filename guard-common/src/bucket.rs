//! The token bucket, in its GCRA form (the "virtual scheduling" algorithm
//! of ITU-T I.371).
//!
//! A bucket of `burst` tokens refilled at `rate` per second admits exactly
//! what GCRA admits with emission interval `T = 1e9 / rate` ns and
//! tolerance `tau = (burst - 1) * T`. GCRA keeps one number per bucket, the
//! theoretical arrival time (TAT), instead of a token count and a refill
//! time, so the XDP program can update a bucket shared by all CPUs with one
//! atomic instruction (a compare-and-swap; or, while the bucket is not
//! full, an add of `T`), and the arithmetic is integer-only: no division on
//! the packet path.
//!
//! An arrival at `now` is admitted iff `max(TAT, now) - now <= tau`; then
//! `TAT = max(TAT, now) + T`. A fresh bucket has `TAT = 0` (full).

/// Nanoseconds per second: rates are per second, times in ns.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The highest rate a bucket can express: one token per nanosecond.
pub const MAX_RATE: u64 = NANOS_PER_SEC;

/// The largest burst. With it, `tau` stays below 2^63 even at rate 1/s.
pub const MAX_BURST: u32 = u32::MAX;

/// One bucket's parameters. `interval_ns == 0` means unlimited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limit {
    /// Emission interval T: nanoseconds per token.
    pub interval_ns: u64,
    /// Tolerance tau: how far ahead of `now` the TAT may run, `(burst-1)*T`.
    pub tolerance_ns: u64,
}

impl Limit {
    /// Admits everything and leaves the state alone.
    pub const UNLIMITED: Self = Self {
        interval_ns: 0,
        tolerance_ns: 0,
    };

    /// A bucket of `burst` tokens refilled at `rate` per second.
    ///
    /// `rate == 0` gives [`Limit::UNLIMITED`]. Callers validate `burst >= 1`
    /// and `rate <= MAX_RATE`; out-of-range values are clamped so the result
    /// is always well defined.
    #[must_use]
    pub const fn new(rate: u64, burst: u32) -> Self {
        if rate == 0 {
            return Self::UNLIMITED;
        }
        let rate = if rate > MAX_RATE { MAX_RATE } else { rate };
        let interval_ns = NANOS_PER_SEC / rate;
        let burst = if burst == 0 { 1 } else { burst };
        Self {
            interval_ns,
            tolerance_ns: interval_ns * (burst as u64 - 1),
        }
    }

    #[must_use]
    pub const fn is_unlimited(&self) -> bool {
        self.interval_ns == 0
    }

    /// Decides an arrival at `now` against state `tat`: `Some(new_tat)` if
    /// admitted, `None` if not (the state is then unchanged).
    #[inline(always)]
    #[must_use]
    pub const fn admit(&self, tat: u64, now: u64) -> Option<u64> {
        if self.interval_ns == 0 {
            return Some(tat);
        }
        let start = if tat > now { tat } else { now };
        if start - now > self.tolerance_ns {
            None
        } else {
            Some(start.saturating_add(self.interval_ns))
        }
    }

    /// Whole tokens available at `now`: how many arrivals in a row would be
    /// admitted. `u64::MAX` when unlimited.
    #[must_use]
    pub const fn tokens(&self, tat: u64, now: u64) -> u64 {
        if self.interval_ns == 0 {
            return u64::MAX;
        }
        let ahead = tat.saturating_sub(now);
        if ahead > self.tolerance_ns {
            0
        } else {
            (self.tolerance_ns - ahead) / self.interval_ns + 1
        }
    }

    /// Whether at most a tenth of the burst is drawn at `now` (`tat` the
    /// state after the last take; always, when unlimited): `k` tokens
    /// taken at once from a full bucket leave `tat` `k` intervals ahead.
    #[inline(always)]
    #[must_use]
    pub const fn at_most_a_tenth_drawn(&self, tat: u64, now: u64) -> bool {
        tat.saturating_sub(now) <= (self.tolerance_ns + self.interval_ns) / 10
    }

    /// The burst this limit was built with.
    #[must_use]
    pub const fn burst(&self) -> u64 {
        match self.tolerance_ns.checked_div(self.interval_ns) {
            Some(tokens) => tokens + 1,
            None => u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = NANOS_PER_SEC;

    /// Runs arrivals at the given times; returns how many were admitted.
    fn admitted(limit: &Limit, times: impl IntoIterator<Item = u64>) -> u64 {
        let mut tat = 0;
        let mut n = 0;
        for t in times {
            if let Some(next) = limit.admit(tat, t) {
                tat = next;
                n += 1;
            }
        }
        n
    }

    #[test]
    fn a_full_bucket_admits_its_burst_at_once() {
        let limit = Limit::new(10, 5);
        assert_eq!(admitted(&limit, [SEC; 20]), 5);
    }

    #[test]
    fn refills_at_the_rate() {
        let limit = Limit::new(10, 5);
        // 5 at t=1s, then one every 100 ms.
        let times = (0..5)
            .map(|_| SEC)
            .chain((1..=10).map(|i| SEC + i * SEC / 10));
        assert_eq!(admitted(&limit, times), 15);
    }

    #[test]
    fn idle_time_never_grows_the_bucket_past_burst() {
        let limit = Limit::new(10, 5);
        let mut tat = 0;
        tat = limit.admit(tat, SEC).unwrap();
        assert_eq!(limit.tokens(tat, 1_000_000 * SEC), 5);
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let limit = Limit::new(0, 0);
        assert!(limit.is_unlimited());
        assert_eq!(admitted(&limit, [7; 1000]), 1000);
        assert_eq!(limit.admit(42, 7), Some(42));
    }

    #[test]
    fn burst_round_trips() {
        for (rate, burst) in [(1, 1), (3, 7), (1000, 1), (MAX_RATE, 100), (1, MAX_BURST)] {
            assert_eq!(
                Limit::new(rate, burst).burst(),
                u64::from(burst),
                "rate {rate}"
            );
        }
    }

    #[test]
    fn a_tenth_of_the_burst_drawn_is_told_from_more() {
        let limit = Limit::new(10, 20);
        let mut tat = 0;
        for _ in 0..2 {
            tat = limit.admit(tat, SEC).unwrap();
            assert!(limit.at_most_a_tenth_drawn(tat, SEC));
        }
        tat = limit.admit(tat, SEC).unwrap();
        assert!(!limit.at_most_a_tenth_drawn(tat, SEC));
        // A tenth of a second refills one token.
        assert!(limit.at_most_a_tenth_drawn(tat, SEC + SEC / 10));
        assert!(Limit::UNLIMITED.at_most_a_tenth_drawn(0, SEC));
    }

    #[test]
    fn a_rejection_leaves_the_state_alone() {
        let limit = Limit::new(1, 1);
        let tat = limit.admit(0, SEC).unwrap();
        assert_eq!(limit.admit(tat, SEC), None);
        assert_eq!(limit.admit(tat, 2 * SEC), Some(3 * SEC));
    }
}
