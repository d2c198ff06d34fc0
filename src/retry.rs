//! Every wait before trying again, as backon policies in one place: the backoff after a
//! transient failure (exponential, equal jitter from fastrand) and the polls that wait for
//! EC2 or the kernel to show a change. (The watches' backoff is in [`crate::watch`]; EC2 calls
//! are retried by the SDK.)

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ConstantBuilder, ExponentialBuilder, Retryable};

/// Exponential backoff with equal jitter: attempt `n` waits a uniformly random point in the
/// upper half of `base * 2^n` capped at `cap`, so that many waiters spread out but none
/// retries at once. backon's jitter adds up to the delay again, so the policy runs on half
/// of each bound. (backon computes in f32 seconds: a wait can be a few nanoseconds outside.)
pub fn equal_jitter(base: Duration, cap: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(base / 2)
        .with_max_delay(cap / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// The wait before attempt `attempt + 1` of [`equal_jitter`]`(base, cap)`, for loops that
/// count their own failures (the exponent stops growing after 20).
pub fn jittered(base: Duration, cap: Duration, attempt: u32) -> Duration {
    equal_jitter(base, cap)
        .build()
        .nth(attempt.min(20) as usize)
        .expect("an equal-jitter backoff never runs out")
}

/// The wait before retrying work that failed for a transient reason (a controller pass, an
/// agent reconcile, a peer-view write): 200 ms doubling to 30 s, equal jitter.
pub fn backoff(attempt: u32) -> Duration {
    jittered(Duration::from_millis(200), Duration::from_secs(30), attempt)
}

/// `floatip attach` reads the floating ENI every 250 ms until EC2 shows it attached (bounded
/// by --timeout).
pub const ATTACHMENT_POLL: ConstantBuilder = ConstantBuilder::new()
    .with_delay(Duration::from_millis(250))
    .without_max_times();

/// EC2's reads can lag its writes by a moment: an address just assigned is read back up to
/// ten times, 300 ms apart, before attach gives up on it.
pub const READ_BACK: ConstantBuilder = ConstantBuilder::new()
    .with_delay(Duration::from_millis(300))
    .with_max_times(9);

/// A hot-plugged ENI's interface is looked for every 100 ms (bounded by attach's --timeout).
pub const INTERFACE_POLL: ConstantBuilder = ConstantBuilder::new()
    .with_delay(Duration::from_millis(100))
    .without_max_times();

/// Gratuitous ARP for an added address: three announcements, 100 ms apart.
pub const GARP_REPEATS: ConstantBuilder = ConstantBuilder::new()
    .with_delay(Duration::from_millis(100))
    .with_max_times(2);

/// A write refused with 409 Conflict was made from a stale copy: read again and write again
/// at once, until it lands or the caller's own check says to stop.
pub const AFTER_CONFLICT: ConstantBuilder = ConstantBuilder::new()
    .with_delay(Duration::ZERO)
    .without_max_times();

/// Asks `look` until it answers `Some`, waiting between tries as `policy` says; gives up
/// with `Ok(None)` when the policy runs out, or after the first try at or after `deadline`.
/// An error ends the poll at once.
pub async fn poll<T, E, F, Fut>(
    policy: impl BackoffBuilder,
    deadline: Option<Instant>,
    mut look: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    enum Stop<E> {
        NotYet,
        Failed(E),
    }
    let attempt = || {
        let fut = look();
        async move {
            match fut.await {
                Ok(Some(t)) => Ok(t),
                Ok(None) => Err(Stop::NotYet),
                Err(e) => Err(Stop::Failed(e)),
            }
        }
    };
    let in_time = || deadline.is_none_or(|d| Instant::now() < d);
    let outcome = attempt
        .retry(policy)
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, Stop::NotYet) && in_time())
        .await;
    match outcome {
        Ok(t) => Ok(Some(t)),
        Err(Stop::NotYet) => Ok(None),
        Err(Stop::Failed(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// backon computes in f32 seconds: its delays may be off by a few nanoseconds.
    const ROUNDING: Duration = Duration::from_micros(1);

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for attempt in 0..30 {
            let d = jittered(Duration::from_millis(200), Duration::from_secs(30), attempt);
            let full = Duration::from_millis(200)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(30));
            assert!(
                d + ROUNDING >= full / 2 && d <= full + ROUNDING,
                "{attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_waiters_out() {
        let waits: std::collections::BTreeSet<Duration> = (0..20).map(|_| backoff(3)).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }

    #[test]
    fn backoff_starts_small_and_stays_under_half_a_minute() {
        assert!(backoff(0) <= Duration::from_millis(200));
        assert!((0..40).all(|a| backoff(a) <= Duration::from_secs(30) + ROUNDING));
        assert!(backoff(10) >= Duration::from_secs(15));
    }

    #[test]
    fn the_polls_keep_their_spacing_and_counts() {
        let delays = |b: ConstantBuilder| b.build().take(50).collect::<Vec<_>>();
        assert_eq!(
            delays(READ_BACK),
            [Duration::from_millis(300); 9],
            "ten reads"
        );
        assert_eq!(
            delays(GARP_REPEATS),
            [Duration::from_millis(100); 2],
            "three sends"
        );
        assert_eq!(delays(ATTACHMENT_POLL), [Duration::from_millis(250); 50]);
        assert_eq!(delays(INTERFACE_POLL), [Duration::from_millis(100); 50]);
    }

    #[tokio::test]
    async fn a_poll_ends_on_an_answer_an_error_or_when_the_policy_runs_out() {
        let quick = ConstantBuilder::new()
            .with_delay(Duration::from_millis(1))
            .with_max_times(9);
        let tries = std::cell::Cell::new(0);
        let found: Result<Option<u32>, ()> = poll(quick, None, || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move { Ok((n == 3).then_some(n)) }
        })
        .await;
        assert_eq!((found, tries.get()), (Ok(Some(3)), 3));

        tries.set(0);
        let never: Result<Option<u32>, ()> = poll(quick, None, || {
            tries.set(tries.get() + 1);
            async { Ok(None) }
        })
        .await;
        assert_eq!((never, tries.get()), (Ok(None), 10), "the policy ran out");

        tries.set(0);
        let failed: Result<Option<u32>, &str> = poll(quick.without_max_times(), None, || {
            tries.set(tries.get() + 1);
            async { Err("denied") }
        })
        .await;
        assert_eq!(
            (failed, tries.get()),
            (Err("denied"), 1),
            "errors are not retried"
        );
    }

    #[tokio::test]
    async fn a_poll_tries_once_more_at_the_deadline_then_gives_up() {
        let started = Instant::now();
        let tries = std::cell::Cell::new(0);
        let out: Result<Option<()>, ()> = poll(
            ConstantBuilder::new()
                .with_delay(Duration::from_millis(20))
                .without_max_times(),
            Some(started + Duration::from_millis(90)),
            || {
                tries.set(tries.get() + 1);
                async { Ok(None) }
            },
        )
        .await;
        assert_eq!(out, Ok(None));
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert!((4..=6).contains(&tries.get()), "{}", tries.get());
    }
}
