//! The election task: one Lease round every retry period, a timer for the renew deadline, and
//! release on request.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout_at};
use tracing::{debug, info, warn};

use super::decide::{decide, LeaseStep, Observation, Record};
use super::{Command, LeaderConfig, LeaderError, Shared};

/// How often release() tries when another write races it.
const RELEASE_ATTEMPTS: usize = 3;

/// Why a round did not complete.
enum RoundError {
    /// Another write won (409), or the Lease vanished under a renew (404): follow.
    Lost(&'static str),
    Api {
        verb: &'static str,
        source: kube::Error,
    },
}

pub(super) struct Elector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    shared: Arc<Shared>,
    changes: watch::Sender<bool>,
    /// The Lease as last read or written (its resourceVersion guards our next write).
    lease: Option<Lease>,
    observed: Option<Observation>,
    /// While we lead: when the last successful renew (or takeover) was sent.
    renewed_at: Option<Instant>,
    /// Consecutive rounds that failed, to log a streak once rather than every retry.
    failures: u32,
}

impl Elector {
    pub(super) fn new(
        client: kube::Client,
        cfg: LeaderConfig,
        shared: Arc<Shared>,
        changes: watch::Sender<bool>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            shared,
            changes,
            lease: None,
            observed: None,
            renewed_at: None,
            failures: 0,
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
    ) -> Result<(), LeaderError> {
        // Dropping the campaign future at the first command cancels any request in flight, so no
        // renew can start after release begins.
        let first = tokio::select! {
            fatal = self.campaign() => return Err(fatal),
            command = commands.recv() => command,
        };
        let Some(Command::Release(reply)) = first else {
            // Every handle is gone: nobody is left to gate writes on us.
            self.step_down();
            info!("every Leadership handle was dropped; election stopped");
            return Ok(());
        };
        self.release().await;
        let _ = reply.send(());
        while let Some(Command::Release(reply)) = commands.recv().await {
            let _ = reply.send(());
        }
        Ok(())
    }

    /// Rounds forever; returns only an error no retry can fix.
    async fn campaign(&mut self) -> LeaderError {
        loop {
            let started = Instant::now();
            // A leader's round may not outlive its leadership; a follower's gets a renew deadline.
            let budget = self
                .leader_until()
                .unwrap_or(started + self.cfg.renew_deadline);
            match timeout_at(budget.into(), self.round()).await {
                Ok(Ok(())) => {
                    if self.failures > 0 {
                        info!(failures = self.failures, "Lease API answers again");
                    }
                    self.failures = 0;
                    self.shared.state().known = true;
                }
                Ok(Err(RoundError::Lost(why))) => {
                    {
                        // Someone else wrote; who, the next read will tell.
                        let mut st = self.shared.state();
                        st.known = true;
                        st.holder = None;
                    }
                    self.lease = None;
                    if self.renewed_at.is_some() {
                        self.lose(why);
                    } else {
                        debug!(why, "another replica wrote first");
                    }
                }
                Ok(Err(RoundError::Api { verb, source })) => {
                    if let Some(fatal) = self.fatal(verb, &source) {
                        self.lose("the election stopped on an unrecoverable error");
                        return fatal;
                    }
                    self.failed(&format!("{verb} failed: {source}"));
                }
                Err(_) => self.failed("the API server did not answer in time"),
            }
            self.check_deadline();
            self.pause_until(started + self.cfg.retry_period).await;
        }
    }

    /// Sleeps until `next`, waking at the renew deadline on the way to flip leadership off on
    /// time even though no API call is in flight.
    async fn pause_until(&mut self, next: Instant) {
        loop {
            let wake = self.leader_until().filter(|&u| u < next).unwrap_or(next);
            sleep_until(wake.into()).await;
            self.check_deadline();
            if wake == next {
                return;
            }
        }
    }

    async fn round(&mut self) -> Result<(), RoundError> {
        let leading = self.renewed_at.is_some();
        // The leader writes from the record it last wrote; a 409 tells it if that went stale.
        let lease = if leading {
            self.lease.clone()
        } else {
            self.read().await?
        };
        let now = Instant::now();
        self.observed = lease
            .as_ref()
            .map(|l| Observation::update(self.observed.take(), Record::from_lease(l), now));
        let decision = decide(
            self.observed.as_ref(),
            &self.cfg.identity,
            leading,
            self.cfg.lease_duration,
            now,
        );
        let takeover = match decision {
            LeaseStep::Follow { holder, expires_in } => {
                self.lease = None;
                if leading {
                    self.lose("the Lease names another holder");
                }
                debug!(%holder, ?expires_in, "following");
                self.shared.state().holder = Some(holder);
                return Ok(());
            }
            LeaseStep::Create => return self.create().await,
            LeaseStep::Renew => false,
            LeaseStep::TakeOver => true,
        };
        match lease {
            Some(lease) => self.renew(lease, takeover).await,
            // decide() answers Create when there is no record; creating is right either way.
            None => self.create().await,
        }
    }

    async fn read(&self) -> Result<Option<Lease>, RoundError> {
        self.api
            .get_opt(&self.cfg.lease_name)
            .await
            .map_err(|source| RoundError::Api {
                verb: "get",
                source,
            })
    }

    async fn create(&mut self) -> Result<(), RoundError> {
        let now = MicroTime(jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.lease_name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.cfg.identity.clone()),
                lease_duration_seconds: Some(self.cfg.lease_duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        let sent = Instant::now();
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => {
                self.on_written(sent, written);
                Ok(())
            }
            Err(e) if status(&e) == Some(409) => Err(RoundError::Lost("created concurrently")),
            Err(source) => Err(RoundError::Api {
                verb: "create",
                source,
            }),
        }
    }

    /// Renews our record, or takes over a free or expired one; resourceVersion-checked.
    async fn renew(&mut self, mut lease: Lease, takeover: bool) -> Result<(), RoundError> {
        let now = MicroTime(jiff::Timestamp::now());
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if takeover {
            let previous = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
            if previous != Some(self.cfg.identity.as_str()) {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.acquire_time = Some(now.clone());
            spec.holder_identity = Some(self.cfg.identity.clone());
        }
        spec.lease_duration_seconds = Some(self.cfg.lease_duration_seconds());
        spec.renew_time = Some(now);
        let verb = if takeover { "take over" } else { "renew" };
        let sent = Instant::now();
        match self
            .api
            .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.on_written(sent, written);
                Ok(())
            }
            Err(e) if status(&e) == Some(409) => {
                Err(RoundError::Lost("the Lease was written by someone else"))
            }
            Err(e) if status(&e) == Some(404) => Err(RoundError::Lost("the Lease was deleted")),
            Err(source) => Err(RoundError::Api { verb, source }),
        }
    }

    /// A write naming us succeeded: we lead until `sent` + renew deadline.
    fn on_written(&mut self, sent: Instant, written: Lease) {
        let until = sent + self.cfg.renew_deadline;
        self.observed = Some(Observation::update(
            None,
            Record::from_lease(&written),
            Instant::now(),
        ));
        self.lease = Some(written);
        if Instant::now() >= until {
            // Answered only after the deadline it would have granted: nothing to act on.
            self.lose("the renew was answered after the renew deadline");
            return;
        }
        let was_leading = self.renewed_at.replace(sent).is_some();
        {
            let mut st = self.shared.state();
            st.leader_until = Some(until);
            st.holder = Some(self.cfg.identity.clone());
        }
        if !was_leading {
            info!("became the leader");
            self.changes.send_replace(true);
        }
    }

    fn leader_until(&self) -> Option<Instant> {
        self.renewed_at.map(|at| at + self.cfg.renew_deadline)
    }

    fn check_deadline(&mut self) {
        if self.leader_until().is_some_and(|u| Instant::now() >= u) {
            self.lose("no renew succeeded within the renew deadline; writes stop now");
        }
    }

    /// Stops leading, if we were, with a warning that says why.
    fn lose(&mut self, why: &str) {
        if self.step_down() {
            warn!(why, "lost leadership");
        }
    }

    /// Stops leading and starts observing the Lease afresh; returns whether we were leading.
    fn step_down(&mut self) -> bool {
        if self.renewed_at.take().is_none() {
            return false;
        }
        {
            let mut st = self.shared.state();
            st.leader_until = None;
            st.holder = None;
        }
        self.observed = None;
        self.changes.send_replace(false);
        true
    }

    fn failed(&mut self, what: &str) {
        self.failures += 1;
        if self.failures == 1 {
            warn!("{what}; retrying every {:?}", self.cfg.retry_period);
        } else {
            debug!(failures = self.failures, "{what}");
        }
    }

    /// Errors that retrying cannot fix; everything else is transient.
    fn fatal(&self, verb: &'static str, err: &kube::Error) -> Option<LeaderError> {
        let kube::Error::Api(s) = err else {
            return None;
        };
        let (namespace, name) = (self.cfg.namespace.clone(), self.cfg.lease_name.clone());
        match s.code {
            401 | 403 => Some(LeaderError::Forbidden {
                verb,
                namespace,
                name,
                message: s.message.clone(),
            }),
            404 if verb == "create" => Some(LeaderError::NamespaceMissing { namespace, name }),
            400 | 422 => Some(LeaderError::Rejected {
                verb,
                namespace,
                name,
                code: s.code,
                message: s.message.clone(),
            }),
            _ => None,
        }
    }

    /// Hands the Lease back if it names us, so a follower takes over without waiting.
    async fn release(&mut self) {
        if self.step_down() {
            info!("stepping down");
        }
        self.shared.state().holder = None;
        let deadline = Instant::now() + self.cfg.renew_deadline;
        match timeout_at(deadline.into(), self.clear_holder()).await {
            Ok(Ok(true)) => info!("released the Lease"),
            Ok(Ok(false)) => {
                debug!("not the holder; nothing to release")
            }
            Ok(Err(e)) => {
                warn!("releasing the Lease failed: {e}; it expires on its own")
            }
            Err(_) => {
                warn!("releasing the Lease timed out; it expires on its own")
            }
        }
    }

    /// Returns whether a record naming us was cleared.
    async fn clear_holder(&mut self) -> Result<bool, kube::Error> {
        for _ in 0..RELEASE_ATTEMPTS {
            let lease = match self.lease.take() {
                Some(lease) => lease,
                None => match self.api.get_opt(&self.cfg.lease_name).await? {
                    Some(lease) => lease,
                    None => return Ok(false),
                },
            };
            if Record::from_lease(&lease).holder.as_deref() != Some(self.cfg.identity.as_str()) {
                return Ok(false);
            }
            let mut lease = lease;
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
            match self
                .api
                .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return Ok(true),
                // Our cached record was stale (a renew landed late); read it again.
                Err(e) if status(&e) == Some(409) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

fn status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
