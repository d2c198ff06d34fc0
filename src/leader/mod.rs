//! Leader election on a coordination.k8s.io/v1 Lease, so that exactly one `floatip controller`
//! replica mutates EC2 and FloatingIP status at a time.
//!
//! The semantics follow client-go's `leaderelection` with fast defaults (lease 4 s, renew deadline
//! 3 s, retry 500 ms):
//! - A follower takes over only when the holder's term ran out by the follower's *own monotonic
//!   clock*: it remembers when it last saw the Lease record change and waits the holder's
//!   leaseDurationSeconds from then. Remote wall clocks (renewTime) are never trusted.
//! - Every write (create, renew, takeover, release) is resourceVersion-checked; a 409 means
//!   another replica won, and we follow.
//! - The leader counts itself leader only until `renew deadline` after the moment it *sent* its
//!   last successful renew. A leader whose API calls fail or stall therefore stops writing at
//!   least `lease duration - renew deadline` before any follower may take over. A timer flips
//!   [`Leadership::changes`] at that deadline even while a request hangs.
//! - Transient API errors are retried every retry period (not backed off: the leader has only a
//!   few tries within its renew deadline). Errors no retry can fix (RBAC, a missing namespace,
//!   an invalid name) end the task, and the controller exits.
//!
//! Why not a crate: `kube-leader-election` 0.44 builds on kube 4, not kube 5.
//! `kube-lease-manager` 0.13 supports kube 5 but judges expiry from the holder's renewTime on the
//! local wall clock, counts durations in whole seconds, and has no renew deadline measured from
//! when the renew was sent, so it cannot give the one-writer guarantee described above.

mod decide;
mod elector;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use decide::{decide, LeaseStep, Observation, Record};

/// Where the Lease lives, who we are, and the timing of the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's name in holderIdentity; the pod name, unique among replicas.
    pub identity: String,
    /// How long followers wait after the last change they saw before taking over.
    pub lease_duration: Duration,
    /// How long after sending its last successful renew the leader keeps acting as leader.
    pub renew_deadline: Duration,
    /// How often the Lease is renewed (leader) or read (followers), and API errors retried.
    pub retry_period: Duration,
}

impl LeaderConfig {
    pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(4);
    pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(3);
    pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_millis(500);

    /// A config with the default timings.
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Self::DEFAULT_LEASE_DURATION,
            renew_deadline: Self::DEFAULT_RENEW_DEADLINE,
            retry_period: Self::DEFAULT_RETRY_PERIOD,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("namespace", &self.namespace),
            ("lease name", &self.lease_name),
            ("identity", &self.identity),
        ] {
            if value.is_empty() {
                return Err(ConfigError::Empty { field });
            }
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(ConfigError::RenewDeadlineNotShorter {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.retry_period.is_zero() {
            return Err(ConfigError::ZeroRetryPeriod);
        }
        if self.retry_period >= self.renew_deadline {
            return Err(ConfigError::RetryPeriodNotShorter {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        Ok(())
    }

    /// leaseDurationSeconds as written: rounded up, so followers never wait less than we promise.
    fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

/// A leader-election config that cannot keep the one-writer rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("leader election: the {field} must not be empty")]
    Empty { field: &'static str },
    #[error(
        "leader election: the renew deadline ({renew_deadline:?}) must be shorter than the lease \
         duration ({lease_duration:?}), so a leader stops writing before other replicas may take \
         over; lower the renew deadline or raise the lease duration"
    )]
    RenewDeadlineNotShorter {
        renew_deadline: Duration,
        lease_duration: Duration,
    },
    #[error(
        "leader election: the retry period ({retry_period:?}) must be shorter than the renew \
         deadline ({renew_deadline:?}), so the leader gets more than one try to renew"
    )]
    RetryPeriodNotShorter {
        retry_period: Duration,
        renew_deadline: Duration,
    },
    #[error("leader election: the retry period must be longer than zero")]
    ZeroRetryPeriod,
}

/// Why the election task stopped for good. The controller exits on it; a restart will not help
/// until the cause is fixed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "not allowed to {verb} Lease {namespace}/{name}: {message}; grant the controller's \
         ServiceAccount get, create and update on leases (coordination.k8s.io) in namespace \
         {namespace}"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error(
        "cannot create Lease {name}: namespace {namespace} does not exist; create it or choose \
         an existing namespace for the lease"
    )]
    NamespaceMissing { namespace: String, name: String },
    #[error(
        "the API server rejected the {verb} of Lease {namespace}/{name} ({code}): {message}; \
         check the lease name and the identity (pod name)"
    )]
    Rejected {
        verb: &'static str,
        namespace: String,
        name: String,
        code: u16,
        message: String,
    },
}

/// Returned by [`Leadership::guard`] when this replica must not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not the leader of Lease {lease}: {}",
    match .holder { Some(h) => format!("it is held by {h}"), None => "its holder is not known".to_string() }
)]
pub struct NotLeader {
    /// namespace/name of the Lease.
    pub lease: String,
    pub holder: Option<String>,
}

/// What the election task and the handles share.
#[derive(Debug, Default)]
struct State {
    /// Leader while `Instant::now()` is before this: last successful renew sent + renew deadline.
    leader_until: Option<Instant>,
    /// The holder in the last record read or written; `None` when free or not known.
    holder: Option<String>,
    /// At least one round got an answer from the API server.
    known: bool,
    /// release() was called: never lead again in this process.
    released: bool,
}

#[derive(Debug)]
struct Shared {
    lease: String,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every write is a single field.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Requests from handles to the election task.
enum Command {
    Release(oneshot::Sender<()>),
}

/// A handle on this replica's leadership. Cheap to clone; check it right before every write.
#[derive(Clone, Debug)]
pub struct Leadership {
    shared: Arc<Shared>,
    changes: watch::Receiver<bool>,
    commands: mpsc::Sender<Command>,
}

impl Leadership {
    /// Whether this replica may write now: it holds the Lease and its last successful renew was
    /// sent less than the renew deadline ago. Judged on every call from the clock, so it turns
    /// false at the deadline even if the election task is stuck.
    pub fn is_leader(&self) -> bool {
        let st = self.shared.state();
        !st.released && st.leader_until.is_some_and(|until| Instant::now() < until)
    }

    /// [`is_leader`](Self::is_leader) as an error, for `?` right before a mutating call.
    pub fn guard(&self) -> Result<(), NotLeader> {
        if self.is_leader() {
            return Ok(());
        }
        Err(NotLeader {
            lease: self.shared.lease.clone(),
            holder: self.holder(),
        })
    }

    /// Flips to `true` when leadership is gained and to `false` when it is lost (including when
    /// the renew deadline passes with no answer from the API server, and on release).
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }

    /// At least one election round got an answer from the API server (for /readyz).
    pub fn state_known(&self) -> bool {
        self.shared.state().known
    }

    /// The holder named in the last Lease record seen; `None` when free or not known.
    pub fn holder(&self) -> Option<String> {
        self.shared.state().holder.clone()
    }

    /// Stops campaigning for good and, if this replica holds the Lease, hands it back (empty
    /// holderIdentity, leaseDurationSeconds 1) so another replica takes over at once. Writes stop
    /// before the Lease is touched. Returns when done, or at once if the task already ended.
    pub async fn release(&self) {
        self.shared.state().released = true;
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Release(reply)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// Starts campaigning for the Lease in a background task. The task returns only on an error no
/// retry can fix (the controller should exit), or with `Ok` once every [`Leadership`] handle is
/// dropped. After [`Leadership::release`] it stays idle and never leads again.
pub fn spawn(
    client: kube::Client,
    cfg: LeaderConfig,
) -> Result<(Leadership, JoinHandle<Result<(), LeaderError>>), ConfigError> {
    cfg.validate()?;
    let shared = Arc::new(Shared {
        lease: format!("{}/{}", cfg.namespace, cfg.lease_name),
        state: Mutex::default(),
    });
    let (changes_tx, changes) = watch::channel(false);
    let (commands, commands_rx) = mpsc::channel(4);
    let span = tracing::info_span!("leader", lease = %shared.lease, identity = %cfg.identity);
    let elector = elector::Elector::new(client, cfg, shared.clone(), changes_tx);
    let task = tokio::spawn(elector.run(commands_rx).instrument(span));
    Ok((
        Leadership {
            shared,
            changes,
            commands,
        },
        task,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let cfg = LeaderConfig::new("floatip-system", "floatip-controller", "pod-a");
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.lease_duration_seconds(), 4);
    }

    #[test]
    fn renew_deadline_must_be_shorter_than_the_lease() {
        let mut cfg = LeaderConfig::new("ns", "lease", "pod-a");
        cfg.renew_deadline = cfg.lease_duration;
        let err = cfg.validate().unwrap_err();
        assert!(matches!(err, ConfigError::RenewDeadlineNotShorter { .. }));
        assert!(err
            .to_string()
            .contains("must be shorter than the lease duration"));
    }

    #[test]
    fn retry_period_must_be_shorter_than_the_deadline_and_positive() {
        let mut cfg = LeaderConfig::new("ns", "lease", "pod-a");
        cfg.retry_period = cfg.renew_deadline;
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::RetryPeriodNotShorter { .. })
        ));
        cfg.retry_period = Duration::ZERO;
        assert_eq!(cfg.validate(), Err(ConfigError::ZeroRetryPeriod));
    }

    #[test]
    fn names_must_not_be_empty() {
        let cfg = LeaderConfig::new("ns", "lease", "");
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::Empty { field: "identity" })
        );
    }

    #[test]
    fn fractional_lease_duration_rounds_up() {
        let mut cfg = LeaderConfig::new("ns", "lease", "pod-a");
        cfg.lease_duration = Duration::from_millis(3_500);
        assert_eq!(cfg.lease_duration_seconds(), 4);
    }

    #[test]
    fn not_leader_names_the_holder() {
        let err = NotLeader {
            lease: "ns/lease".into(),
            holder: Some("pod-b".into()),
        };
        assert_eq!(
            err.to_string(),
            "not the leader of Lease ns/lease: it is held by pod-b"
        );
        let err = NotLeader {
            lease: "ns/lease".into(),
            holder: None,
        };
        assert!(err.to_string().ends_with("its holder is not known"));
    }
}
