//! Per-FloatingIP backoff after EC2 refused its address in a way no retry fixes (a bad
//! parameter, a missing permission, a limit). Without it a failing address was retried at
//! every 250 ms recheck, draining the account's mutating-call bucket that the VPC CNI and
//! autoscalers share. A changed spec starts afresh; so does a success.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::api::condition as cond;
use crate::cloud::CloudError;
use crate::retry::jittered;
use crate::status::conditions::Desired;

/// First wait after a refusal; it doubles per refusal up to [`CAP`].
pub const BASE: Duration = Duration::from_secs(2);
/// A refused address is tried again at least this often, so a fix outside floatip (an IAM
/// policy, a freed address) is noticed within minutes.
pub const CAP: Duration = Duration::from_secs(300);

/// One FloatingIP's backoff.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Refusals in a row.
    pub attempts: u32,
    /// When it may be tried again.
    pub until: Instant,
    /// The same, as a wall-clock time for status and metrics.
    pub until_wall: Timestamp,
    /// The spec generation that was refused.
    pub generation: Option<i64>,
    pub error: CloudError,
}

/// Backoffs by FloatingIP name.
#[derive(Debug, Default)]
pub struct Backoffs {
    by_name: HashMap<String, Entry>,
}

impl Backoffs {
    /// Records a refusal; returns the entry now in force.
    pub fn refused(&mut self, name: &str, generation: Option<i64>, error: &CloudError) -> &Entry {
        let attempts = match self.by_name.get(name) {
            Some(e) if e.generation == generation => e.attempts + 1,
            _ => 1,
        };
        let wait = jittered(BASE, CAP, attempts - 1);
        let until_wall = Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
            .unwrap_or_else(|_| Timestamp::now());
        self.by_name.insert(
            name.to_string(),
            Entry {
                attempts,
                until: Instant::now() + wait,
                until_wall,
                generation,
                error: error.clone(),
            },
        );
        &self.by_name[name]
    }

    /// The address moved (or the FloatingIP is gone): forget its refusals.
    pub fn clear(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    /// The backoff that still holds this FloatingIP back: none once it ran out or the spec
    /// changed since the refusal.
    pub fn waiting(&self, name: &str, generation: Option<i64>) -> Option<&Entry> {
        self.by_name
            .get(name)
            .filter(|e| e.generation == generation && e.until > Instant::now())
    }

    /// How long until the next backoff ends, for scheduling a pass.
    pub fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        self.by_name
            .values()
            .filter(|e| e.until > now)
            .map(|e| e.until - now)
            .min()
    }

    /// Drops the entries of FloatingIPs that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.by_name.retain(|name, _| exists(name));
    }
}

/// The BackingOff condition: how often EC2 refused, and when the next attempt comes.
pub fn condition(entry: &Entry) -> Desired {
    let times = if entry.attempts == 1 {
        "once".to_string()
    } else {
        format!("{} times in a row", entry.attempts)
    };
    let msg = format!(
        "EC2 refused the address {times} ({}: {}); next attempt after {} (at once if the spec changes)",
        entry.error.code,
        entry.error.message,
        entry.until_wall.round(jiff::Unit::Second).unwrap_or(entry.until_wall)
    );
    Desired::new(cond::BACKING_OFF, true, &entry.error.code_reason(), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal() -> CloudError {
        CloudError {
            action: "AssignPrivateIpAddresses",
            code: "InvalidParameterValue".into(),
            message: "bad".into(),
            kind: crate::cloud::ErrorKind::Permanent,
        }
    }

    #[test]
    fn waits_grow_with_each_refusal_up_to_the_cap_and_reset_on_a_new_spec() {
        let mut b = Backoffs::default();
        let mut previous_cap = Duration::ZERO;
        for attempt in 1..=12u32 {
            let e = b.refused("web", Some(1), &refusal()).clone();
            assert_eq!(e.attempts, attempt);
            let wait = e.until - Instant::now();
            let cap = BASE.saturating_mul(1 << (attempt - 1)).min(CAP);
            assert!(
                wait <= cap && wait + Duration::from_millis(50) >= cap / 2,
                "{attempt}: {wait:?}"
            );
            assert!(cap >= previous_cap);
            previous_cap = cap;
        }
        assert_eq!(previous_cap, CAP);
        assert!(b.waiting("web", Some(1)).is_some());
        assert!(
            b.waiting("web", Some(2)).is_none(),
            "a changed spec is tried at once"
        );
        assert_eq!(b.refused("web", Some(2), &refusal()).attempts, 1);
        assert!(b.waiting("other", Some(1)).is_none());
        assert!(b.next_due().is_some());
        assert!(b.clear("web"));
        assert!(b.waiting("web", Some(2)).is_none() && b.next_due().is_none());
    }
}
