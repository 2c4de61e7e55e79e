//! The system clocks, read in one place for the crates at the I/O edge
//! (the pure crates take times as values and never read a clock).
//!
//! Wall-clock readings ([`now_ms`], [`now_us`], [`now_ns`]) stamp records and
//! logs and bound time-range queries; a clock set before 1970 reads as 0.
//! [`monotonic_ms`] measures intervals that must not jump with the wall clock
//! (ejections, idle connections) and fits in an atomic.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    i64::try_from(since_epoch().as_micros()).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    i64::try_from(since_epoch().as_nanos()).unwrap_or(i64::MAX)
}

/// Milliseconds since this process first asked: a cheap monotonic clock.
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_readings_agree_and_are_after_2020() {
        // 2020-01-01T00:00:00Z in milliseconds.
        const Y2020_MS: i64 = 1_577_836_800_000;
        let (ms, us, ns) = (now_ms(), now_us(), now_ns());
        assert!(ms > Y2020_MS, "{ms}");
        // Read in this order, each is at least the one before it, in its unit.
        assert!(us / 1000 >= ms, "{us} {ms}");
        assert!(ns / 1000 >= us, "{ns} {us}");
    }

    #[test]
    fn the_monotonic_clock_never_goes_back() {
        let mut last = monotonic_ms();
        for _ in 0..1000 {
            let now = monotonic_ms();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
    }
}
