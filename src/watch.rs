//! How floatip's watches retry after an error.
//!
//! kube-rs's default (client-go's: 0.8 s doubling to 30 s, reset after 2 minutes without
//! errors) is kind to a struggling API server, but after an API server restart it kept the
//! controller on a stale cache for seconds, so every status write was refused as a conflict
//! and a failover waited. floatip's watches are few (two controller replicas, one agent per
//! eligible node), so they retry quickly and never wait more than 2 s.

use std::time::Duration;

use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;

/// 200 ms doubling to 1 s, plus up to as much again of jitter (so at most 2 s); back to
/// 200 ms after 30 s without an error.
pub fn backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(1))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_waits_more_than_two_seconds_with_jitter() {
        let delays: Vec<Duration> = backoff().take(20).collect();
        assert_eq!(delays.len(), 20, "it never gives up");
        assert!(delays[0] >= Duration::from_millis(200));
        // Jitter adds up to the delay again on top of it.
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(2)),
            "{delays:?}"
        );
        assert!(
            delays[10..].iter().all(|d| *d >= Duration::from_secs(1)),
            "it grows to the cap: {delays:?}"
        );
    }
}
