//! The clocks: CLOCK_MONOTONIC, which the XDP program stamps its maps
//! with, and wall time for people.

use std::time::{SystemTime, UNIX_EPOCH};

use guard_common::bucket::NANOS_PER_SEC;

/// Nanoseconds of CLOCK_MONOTONIC (the XDP program's coarse clock reads the
/// same clock, a jiffy behind at most).
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * NANOS_PER_SEC + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Seconds since the Unix epoch, now.
#[must_use]
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whole seconds since the epoch: when kept list entries expire.
#[must_use]
pub fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the epoch: the fleet's decisions carry them, so a
/// peer's ban can be timed from when it was made to when it is applied.
#[must_use]
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
