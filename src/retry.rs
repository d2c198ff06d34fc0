//! The one retry policy: exponential backoff with equal jitter (fastrand), used by every
//! loop that waits before trying again.

use std::time::Duration;

/// Exponential backoff with equal jitter: `base * 2^attempt`, capped, then a uniformly random
/// point in its upper half, so that many waiters spread out but none retries at once.
pub fn jittered(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let full = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    let half = full / 2;
    half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos() as u64))
}

/// The wait before retrying work that failed for a transient reason (a controller pass, an
/// agent reconcile, a peer-view write): 200 ms doubling to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    jittered(Duration::from_millis(200), Duration::from_secs(30), attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for attempt in 0..30 {
            let d = jittered(Duration::from_millis(200), Duration::from_secs(30), attempt);
            let full = Duration::from_millis(200)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(30));
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn backoff_starts_small_and_stays_under_half_a_minute() {
        assert!(backoff(0) <= Duration::from_millis(200));
        assert!((0..40).all(|a| backoff(a) <= Duration::from_secs(30)));
        assert!(backoff(10) >= Duration::from_secs(15));
    }
}
