//! The pure part of leader election: what a replica should do, given the Lease record it holds in
//! hand, when it first saw that record, and its own monotonic clock. No I/O, no wall clock.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;

/// The fields of a Lease that leader election reads. Two reads of the same record compare equal;
/// any write (renew, takeover, release) changes at least the resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `None` when nobody holds the lease: never held, or released (empty holderIdentity).
    pub holder: Option<String>,
    /// spec.leaseDurationSeconds as its holder wrote it; `None` when absent or not positive.
    pub lease_duration: Option<Duration>,
    /// spec.renewTime as written by the holder: only compared, never trusted as a clock.
    pub renew_time: Option<jiff::Timestamp>,
    pub resource_version: Option<String>,
}

impl Record {
    pub fn from_lease(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            lease_duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// A record and the local instant at which this replica first saw it in that state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub record: Record,
    pub at: Instant,
}

impl Observation {
    /// Keeps the instant of an earlier observation of the same record, so a holder that stopped
    /// renewing ages out; a changed record (the holder renewed, or someone else took over) starts
    /// the clock again.
    pub fn update(previous: Option<Observation>, record: Record, now: Instant) -> Observation {
        match previous {
            Some(prev) if prev.record == record => prev,
            _ => Observation { record, at: now },
        }
    }

    /// When the holder's term ends as judged by this replica: the holder's own lease duration
    /// counted from when we first saw the record, never from the holder's wall-clock renewTime.
    /// `fallback` stands in for a record without a usable leaseDurationSeconds.
    pub fn expires_at(&self, fallback: Duration) -> Instant {
        self.at + self.record.lease_duration.unwrap_or(fallback)
    }
}

/// The lease's next step: what one election round does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// No Lease exists: create it naming ourselves (a 409 means another replica was faster).
    Create,
    /// We lead and the record is ours: write a new renewTime, resourceVersion-checked.
    Renew,
    /// The record is free (released) or its holder's term has run out by our clock.
    TakeOver,
    /// Someone else (or an earlier term of ours that we no longer trust) holds the lease.
    Follow {
        holder: String,
        /// How long until we may take it over, if nothing changes.
        expires_in: Duration,
    },
}

/// Decides one round. `leading` is whether this replica currently holds leadership within its
/// renew deadline. A record naming our identity while we do not lead (an earlier term that hit
/// its renew deadline, or a previous process with the same pod name) is treated like anyone
/// else's: it must age out first, which lets a replica whose API calls kept working take over.
pub fn decide(
    observed: Option<&Observation>,
    identity: &str,
    leading: bool,
    fallback_duration: Duration,
    now: Instant,
) -> LeaseStep {
    let Some(obs) = observed else {
        return LeaseStep::Create;
    };
    let Some(holder) = obs.record.holder.as_deref() else {
        return LeaseStep::TakeOver;
    };
    if leading && holder == identity {
        return LeaseStep::Renew;
    }
    let expires_at = obs.expires_at(fallback_duration);
    if now >= expires_at {
        LeaseStep::TakeOver
    } else {
        LeaseStep::Follow {
            holder: holder.to_string(),
            expires_in: expires_at - now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FALLBACK: Duration = Duration::from_secs(4);

    fn record(holder: &str, rv: &str) -> Record {
        Record {
            holder: (!holder.is_empty()).then(|| holder.to_string()),
            lease_duration: Some(Duration::from_secs(4)),
            renew_time: None,
            resource_version: Some(rv.to_string()),
        }
    }

    fn seen(record: Record, at: Instant) -> Observation {
        Observation { record, at }
    }

    #[test]
    fn absent_lease_is_created() {
        let now = Instant::now();
        assert_eq!(decide(None, "a", false, FALLBACK, now), LeaseStep::Create);
    }

    #[test]
    fn own_lease_is_renewed_while_leading() {
        let now = Instant::now();
        let obs = seen(record("a", "1"), now);
        assert_eq!(
            decide(Some(&obs), "a", true, FALLBACK, now),
            LeaseStep::Renew
        );
        // Even long after it was first seen: the leader's own term is bounded elsewhere, by its
        // renew deadline.
        let later = now + Duration::from_secs(60);
        assert_eq!(
            decide(Some(&obs), "a", true, FALLBACK, later),
            LeaseStep::Renew
        );
    }

    #[test]
    fn own_name_without_leadership_must_age_out_like_any_other() {
        let now = Instant::now();
        let obs = seen(record("a", "1"), now);
        assert_eq!(
            decide(
                Some(&obs),
                "a",
                false,
                FALLBACK,
                now + Duration::from_secs(1)
            ),
            LeaseStep::Follow {
                holder: "a".into(),
                expires_in: Duration::from_secs(3)
            }
        );
        assert_eq!(
            decide(
                Some(&obs),
                "a",
                false,
                FALLBACK,
                now + Duration::from_secs(4)
            ),
            LeaseStep::TakeOver
        );
    }

    #[test]
    fn foreign_fresh_lease_is_followed() {
        let now = Instant::now();
        let obs = seen(record("b", "1"), now);
        let at = now + Duration::from_millis(3_900);
        assert_eq!(
            decide(Some(&obs), "a", false, FALLBACK, at),
            LeaseStep::Follow {
                holder: "b".into(),
                expires_in: Duration::from_millis(100)
            }
        );
        // Leading does not entitle us to someone else's record.
        assert!(matches!(
            decide(Some(&obs), "a", true, FALLBACK, at),
            LeaseStep::Follow { .. }
        ));
    }

    #[test]
    fn foreign_lease_expires_by_local_observation() {
        let first = Instant::now();
        let obs = seen(record("b", "1"), first);
        assert_eq!(
            decide(
                Some(&obs),
                "a",
                false,
                FALLBACK,
                first + Duration::from_secs(4)
            ),
            LeaseStep::TakeOver
        );
    }

    #[test]
    fn a_changed_record_restarts_the_observation() {
        let t0 = Instant::now();
        let obs = Observation::update(None, record("b", "1"), t0);
        // The same record read again keeps its first-seen instant.
        let t1 = t0 + Duration::from_secs(3);
        let obs = Observation::update(Some(obs), record("b", "1"), t1);
        assert_eq!(obs.at, t0);
        // The holder renewed: new resourceVersion, the clock starts again.
        let t2 = t0 + Duration::from_millis(3_500);
        let obs = Observation::update(Some(obs), record("b", "2"), t2);
        assert_eq!(obs.at, t2);
        assert_eq!(
            decide(
                Some(&obs),
                "a",
                false,
                FALLBACK,
                t0 + Duration::from_secs(5)
            ),
            LeaseStep::Follow {
                holder: "b".into(),
                expires_in: Duration::from_millis(2_500)
            }
        );
        // A new holder with the same resourceVersion (cannot happen, but the holder is compared
        // too) also restarts it.
        let t3 = t0 + Duration::from_secs(6);
        let obs = Observation::update(Some(obs), record("c", "2"), t3);
        assert_eq!(obs.at, t3);
    }

    #[test]
    fn released_lease_is_taken_at_once() {
        let now = Instant::now();
        let mut released = record("", "7");
        released.lease_duration = Some(Duration::from_secs(1));
        let obs = seen(released, now);
        assert_eq!(
            decide(Some(&obs), "a", false, FALLBACK, now),
            LeaseStep::TakeOver
        );
    }

    #[test]
    fn missing_duration_falls_back_to_ours() {
        let now = Instant::now();
        let mut rec = record("b", "1");
        rec.lease_duration = None;
        let obs = seen(rec, now);
        assert!(matches!(
            decide(
                Some(&obs),
                "a",
                false,
                FALLBACK,
                now + Duration::from_secs(3)
            ),
            LeaseStep::Follow { .. }
        ));
        assert_eq!(
            decide(Some(&obs), "a", false, FALLBACK, now + FALLBACK),
            LeaseStep::TakeOver
        );
    }

    #[test]
    fn record_reads_the_lease_fields() {
        use k8s_openapi::api::coordination::v1::LeaseSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let ts: jiff::Timestamp = "2025-01-02T03:04:05.123456Z".parse().unwrap();
        let mut lease = Lease::default();
        lease.metadata.resource_version = Some("42".into());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(0),
            renew_time: Some(MicroTime(ts)),
            ..LeaseSpec::default()
        });
        assert_eq!(
            Record::from_lease(&lease),
            Record {
                holder: None,
                lease_duration: None,
                renew_time: Some(ts),
                resource_version: Some("42".into()),
            }
        );
        assert_eq!(Record::from_lease(&Lease::default()).holder, None);
    }
}
