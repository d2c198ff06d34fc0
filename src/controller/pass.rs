//! Carries out a pass's plans: finalizers, claims, one EC2 call per target ENI, verification,
//! status and Events. Every write is gated on still holding the leader Lease.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::backoff::{Backoffs, Entry};
use super::plan::{has_finalizer, Placement, Plan, Seat, FINALIZER};
use crate::api::{
    condition as cond, FloatingIP, FloatingIPStatus, Holder, MoveReason, PendingMove,
};
use crate::cloud::{AddressMove, Cloud, CloudError};
use crate::leader::NotLeader;
use crate::metrics::Metrics;
use crate::placement::Decision;
use crate::status::conditions::{self, Desired};
use crate::status::{record_arrival, Arrival};

/// What a pass needs to act.
pub struct Ctx<C: Cloud> {
    pub client: kube::Client,
    pub cloud: C,
    pub metrics: Metrics,
    pub events: super::events::Events,
    /// True while this replica may write: checked right before every mutation.
    pub gate: Arc<dyn Fn() -> Result<(), NotLeader> + Send + Sync>,
    /// FloatingIPs whose moves EC2 refused, held back for a while.
    pub backoffs: std::sync::Mutex<Backoffs>,
}

/// How the pass went, for scheduling the next one.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Something transient failed: run again soon (with backoff).
    pub retry: bool,
    /// Addresses moved.
    pub moved: usize,
    /// Mutating EC2 calls made.
    pub ec2_mutations: usize,
    /// FloatingIPs whose assignment was re-ensured on their holder.
    pub reensured: Vec<String>,
    /// A decision waits on time alone (minHoldSeconds, the settle and re-ensure graces): plan
    /// again after this long even if nothing else happens.
    pub recheck: Option<Duration>,
    /// A move was held back because its target did not answer right before it.
    pub recheck_soon: bool,
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl StepError {
    fn conflict(&self) -> bool {
        matches!(self, StepError::Kube(kube::Error::Api(e)) if e.code == 409)
    }
}

/// One address moving in a batch.
struct Claimed {
    fip: FloatingIP,
    from: Option<Seat>,
    to: Seat,
    reason: MoveReason,
    decided: Instant,
    /// Probed once more before the move (an unplanned one): the target must answer now.
    confirm: Option<crate::probe::Target>,
}

impl<C: Cloud> Ctx<C> {
    fn api(&self) -> Api<FloatingIP> {
        Api::all(self.client.clone())
    }

    fn check(&self) -> Result<(), StepError> {
        Ok((self.gate)()?)
    }

    /// Acts on every plan. `fips` are the objects the plans were made from.
    pub async fn execute(
        &self,
        fips: &[Arc<FloatingIP>],
        plans: Vec<Plan>,
        cloud_errors: &BTreeMap<String, CloudError>,
    ) -> Outcome {
        let by_name: BTreeMap<String, &Arc<FloatingIP>> =
            fips.iter().map(|f| (f.name_any(), f)).collect();
        let mut out = Outcome::default();
        let mut batches: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
        let now = Time(jiff::Timestamp::now());
        for plan in plans {
            let name = super::plan::plan_name(&plan).to_string();
            let Some(fip) = by_name.get(&name) else {
                continue;
            };
            let result = match plan {
                Plan::Invalid { errors, .. } => {
                    let why =
                        Desired::new(cond::INVALID_SPEC, true, "InvalidSpec", errors.to_string());
                    let ready = Desired::new(
                        cond::READY,
                        false,
                        "InvalidSpec",
                        "the spec is invalid; see the InvalidSpec condition",
                    );
                    self.not_acted_on(fip, &[why, ready], &now).await
                }
                Plan::Conflict { winner, .. } => {
                    let msg = format!("FloatingIP {winner} is older and has the same address; this one is not acted on until that one is gone or the address changes");
                    let why = Desired::new(cond::CONFLICT, true, "DuplicateAddress", msg);
                    let ready = Desired::new(
                        cond::READY,
                        false,
                        "Conflict",
                        "another FloatingIP owns the address",
                    );
                    self.not_acted_on(fip, &[why, ready], &now).await
                }
                Plan::Unusable { problem, .. } => {
                    let msg = problem.to_string();
                    let why = Desired::new(cond::INVALID_SPEC, true, problem.reason(), &msg);
                    let ready = Desired::new(cond::READY, false, problem.reason(), msg);
                    self.not_acted_on(fip, &[why, ready], &now).await
                }
                Plan::Unsupported { why, .. } => {
                    let ready = Desired::new(cond::READY, false, "ModeNotSupported", why);
                    self.not_acted_on(fip, &[ready], &now).await
                }
                Plan::Unknown { .. } => {
                    let subnet = fip.spec.subnet_id.clone().unwrap_or_default();
                    match cloud_errors.get(&subnet) {
                        Some(e) => self.cloud_error(fip, e, &now).await,
                        // Neither read nor failed: say so rather than leave the object
                        // without a status.
                        None => {
                            let ready = Desired::unknown(
                                cond::READY,
                                "Pending",
                                format!("EC2 has not been read for subnet {subnet} yet"),
                            );
                            self.not_acted_on(fip, &[ready], &now).await
                        }
                    }
                }
                Plan::Release { address, from, .. } => {
                    self.release(fip, address, &from, &mut out).await
                }
                Plan::Place(act) => match self.ensure_finalizer(fip).await {
                    Ok(fip) => match (&act.decision, &act.target, self.waiting(&fip)) {
                        (Decision::Move { .. } | Decision::Reensure, _, Some(entry)) => {
                            self.backing_off(&fip, &entry, &now).await
                        }
                        (Decision::Move { reason, .. }, Some(to), _) => {
                            batches.entry(to.eni.clone()).or_default().push(Claimed {
                                fip,
                                from: act.holder.clone(),
                                to: to.clone(),
                                reason: *reason,
                                decided: Instant::now(),
                                confirm: act.confirm_target,
                            });
                            Ok(())
                        }
                        (Decision::Reensure, _, _) => {
                            self.reensure(&fip, &act, &mut out).await;
                            self.steady(&fip, &act, &now).await
                        }
                        _ => self.steady(&fip, &act, &now).await,
                    },
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                self.note_error(&name, &e, &mut out);
            }
        }
        for (eni, claimed) in batches {
            self.move_batch(&eni, claimed, &mut out).await;
        }
        out
    }

    /// The backoff holding this FloatingIP back, if any.
    fn waiting(&self, fip: &FloatingIP) -> Option<Entry> {
        let backoffs = self.backoffs.lock().expect("backoffs lock");
        backoffs
            .waiting(&fip.name_any(), fip.metadata.generation)
            .cloned()
    }

    /// EC2 refused this FloatingIP's address: hold it back (jittered exponential), and say so
    /// on its status beside the error.
    async fn refused(&self, fip: &FloatingIP, e: &CloudError, now: &Time) -> Result<(), StepError> {
        let entry = {
            let mut backoffs = self.backoffs.lock().expect("backoffs lock");
            backoffs
                .refused(&fip.name_any(), fip.metadata.generation, e)
                .clone()
        };
        self.metrics
            .backoff(&fip.name_any(), Some(entry.until_wall.as_second()));
        tracing::warn!(floatingip = %fip.name_any(), error = %e, attempts = entry.attempts,
            until = %entry.until_wall, "EC2 refused the address; backing off");
        // One write for both: a second write from the same object would conflict (409).
        self.cloud_error_with(fip, e, &[backing_off(&entry)], now)
            .await
    }

    async fn backing_off(
        &self,
        fip: &FloatingIP,
        entry: &Entry,
        now: &Time,
    ) -> Result<(), StepError> {
        self.not_acted_on(fip, &[backing_off(entry)], now).await
    }

    /// The address moved: forget its refusals.
    fn accepted(&self, name: &str) {
        if self.backoffs.lock().expect("backoffs lock").clear(name) {
            self.metrics.backoff(name, None);
        }
    }

    fn note_error(&self, name: &str, e: &StepError, out: &mut Outcome) {
        out.retry = true;
        let label = match e {
            StepError::NotLeader(_) => "not_leader",
            _ if e.conflict() => "conflict",
            _ => "kube",
        };
        self.metrics.reconcile_error(label);
        if !e.conflict() {
            tracing::warn!(floatingip = name, error = %e, "step failed");
        }
    }

    /// Writes status only when `change` changed it; resourceVersion-checked.
    async fn write_status(
        &self,
        fip: &FloatingIP,
        change: impl FnOnce(&mut FloatingIPStatus) -> bool,
    ) -> Result<(), StepError> {
        let mut obj = fip.clone();
        let status = obj.status.get_or_insert_with(Default::default);
        let mut changed = change(status);
        if status.observed_generation != fip.metadata.generation {
            status.observed_generation = fip.metadata.generation;
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        self.check()?;
        self.api()
            .replace_status(&fip.name_any(), &PostParams::default(), &obj)
            .await?;
        Ok(())
    }

    /// Status for a FloatingIP that is never acted on: the conditions that say why.
    async fn not_acted_on(
        &self,
        fip: &FloatingIP,
        desired: &[Desired],
        now: &Time,
    ) -> Result<(), StepError> {
        self.write_status(fip, |s| {
            let mut changed = false;
            for d in desired {
                changed |= conditions::set(&mut s.conditions, d, fip.metadata.generation, now);
            }
            changed
        })
        .await
    }

    async fn cloud_error(
        &self,
        fip: &FloatingIP,
        e: &CloudError,
        now: &Time,
    ) -> Result<(), StepError> {
        self.cloud_error_with(fip, e, &[], now).await
    }

    /// [`Ctx::cloud_error`] and `extra` conditions, in one status write.
    async fn cloud_error_with(
        &self,
        fip: &FloatingIP,
        e: &CloudError,
        extra: &[Desired],
        now: &Time,
    ) -> Result<(), StepError> {
        let reason = e.code_reason();
        let msg = e.to_string();
        let g = fip.metadata.generation;
        self.write_status(fip, |s| {
            let mut changed = false;
            for d in extra {
                changed |= conditions::set(&mut s.conditions, d, g, now);
            }
            changed |= conditions::set(
                &mut s.conditions,
                &Desired::new(cond::CLOUD_ERROR, true, &reason, &msg),
                g,
                now,
            );
            // EC2 could not be read: what status said about EC2 is no longer known to be true.
            if e.action.starts_with("Describe") {
                let last = s
                    .holder
                    .as_ref()
                    .and_then(|h| h.network_interface_id.as_deref())
                    .map(|eni| format!("; last seen on {eni}"))
                    .unwrap_or_default();
                let unknown = Desired::unknown(
                    cond::ASSIGNED,
                    "EC2Unreadable",
                    format!("EC2 could not be read ({msg}){last}"),
                );
                changed |= conditions::set(&mut s.conditions, &unknown, g, now);
            }
            // With nobody holding the address, the error is why it is not ready.
            if s.holder.is_none() {
                let ready = Desired::new(
                    cond::READY,
                    false,
                    "CloudError",
                    format!("the address is not assigned: {msg}"),
                );
                changed |= conditions::set(&mut s.conditions, &ready, g, now);
            }
            changed
        })
        .await
    }

    async fn ensure_finalizer(&self, fip: &Arc<FloatingIP>) -> Result<FloatingIP, StepError> {
        if has_finalizer(fip) {
            return Ok((**fip).clone());
        }
        self.check()?;
        let mut finalizers = fip.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": fip.resource_version()}});
        Ok(self
            .api()
            .patch(
                &fip.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?)
    }

    async fn release(
        &self,
        fip: &FloatingIP,
        address: IpAddr,
        from: &[String],
        out: &mut Outcome,
    ) -> Result<(), StepError> {
        if !has_finalizer(fip) {
            return Ok(());
        }
        for eni in from {
            self.check()?;
            out.ec2_mutations += 1;
            if let Err(e) = self.cloud.unassign(eni, &[address]).await {
                out.retry |= e.retryable();
                let now = Time(jiff::Timestamp::now());
                return self.cloud_error(fip, &e, &now).await;
            }
            tracing::info!(floatingip = %fip.name_any(), %address, eni, "released the address");
        }
        self.check()?;
        let rest: Vec<String> = fip
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        let patch =
            json!({"metadata": {"finalizers": rest, "resourceVersion": fip.resource_version()}});
        self.api()
            .patch(
                &fip.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        Ok(())
    }

    /// The address fails while its holder passes: assign it to the holder's ENI again (a no-op
    /// when EC2 has it there). The agent re-applies what status says on its own.
    async fn reensure(&self, fip: &FloatingIP, act: &Placement, out: &mut Outcome) {
        let Some(holder) = &act.holder else { return };
        if (self.gate)().is_err() {
            return;
        }
        out.ec2_mutations += 1;
        let moves = [AddressMove {
            address: act.address,
            from_eni: None,
        }];
        match self.cloud.assign(&holder.eni, &moves).await {
            Ok(()) => {
                tracing::info!(floatingip = %fip.name_any(), node = %holder.node, "address fails its check while its holder passes: assigned it again");
                out.reensured.push(fip.name_any());
            }
            Err(e) if e.retryable() => out.retry = true,
            Err(e) => {
                let now = Time(jiff::Timestamp::now());
                if let Err(err) = self.refused(fip, &e, &now).await {
                    self.note_error(&fip.name_any(), &err, out);
                }
            }
        }
    }

    /// Status for an address that stays where it is: mirror EC2 and say why nothing moved.
    async fn steady(&self, fip: &FloatingIP, act: &Placement, now: &Time) -> Result<(), StepError> {
        let was_held = fip.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == cond::HELD_IN_DOUBT && c.status == "True")
        });
        self.write_steady(fip, act, now).await?;
        if let (Some(why), false) = (&act.doubt, was_held) {
            tracing::warn!(floatingip = %fip.name_any(), why, "holding the address: the controller doubts its own probes");
            // Best effort, as every Event: the hold happened whether or not it is recorded.
            if let Err(e) = self
                .events
                .warning(fip, "HeldInDoubt", "Hold", why.clone())
                .await
            {
                tracing::warn!(error = %e, "could not publish the HeldInDoubt event");
            }
        }
        Ok(())
    }

    async fn write_steady(
        &self,
        fip: &FloatingIP,
        act: &Placement,
        now: &Time,
    ) -> Result<(), StepError> {
        let g = fip.metadata.generation;
        self.write_status(fip, |s| {
            let mut changed = false;
            let holder = act.holder.as_ref().map(|h| Holder {
                node: h.node.clone(),
                instance_id: h.instance_id.clone(),
                network_interface_id: Some(h.eni.clone()),
                mac_address: h.mac.clone(),
                since: s
                    .holder
                    .as_ref()
                    .filter(|old| old.node == h.node)
                    .map(|old| old.since.clone())
                    .unwrap_or_else(|| now.clone()),
            });
            if s.holder != holder {
                s.holder = holder;
                changed = true;
            }
            // A claimed move whose target can no longer take the address is dropped.
            if s.pending_move.is_some() && !matches!(act.decision, Decision::Hold { .. }) {
                s.pending_move = None;
                changed = true;
            }
            let assigned = match &act.holder {
                Some(h) => Desired::new(
                    cond::ASSIGNED,
                    true,
                    "Assigned",
                    format!("EC2 has {} on {} of {}", act.address, h.eni, h.node),
                ),
                None => Desired::new(
                    cond::ASSIGNED,
                    false,
                    "NotAssigned",
                    format!("no node holds {}", act.address),
                ),
            };
            changed |= conditions::set(&mut s.conditions, &assigned, g, now);
            let ready = ready_condition(act);
            changed |= conditions::set(&mut s.conditions, &ready, g, now);
            match &act.decision {
                Decision::Stuck { why } => {
                    changed |= conditions::set(
                        &mut s.conditions,
                        &Desired::new(cond::NO_CANDIDATES, true, "NoCandidates", why.clone()),
                        g,
                        now,
                    );
                }
                _ => changed |= conditions::remove(&mut s.conditions, cond::NO_CANDIDATES),
            }
            for stale in [
                cond::CLOUD_ERROR,
                cond::INVALID_SPEC,
                cond::CONFLICT,
                cond::BACKING_OFF,
            ] {
                changed |= conditions::remove(&mut s.conditions, stale);
            }
            changed |= match &act.vip {
                Some(v) => conditions::set(&mut s.conditions, &healthy(v), g, now),
                None => conditions::remove(&mut s.conditions, cond::HEALTHY),
            };
            changed |= match &act.doubt {
                Some(why) => {
                    let held = Desired::new(cond::HELD_IN_DOUBT, true, "ControllerInDoubt", why);
                    conditions::set(&mut s.conditions, &held, g, now)
                }
                None => conditions::remove(&mut s.conditions, cond::HELD_IN_DOUBT),
            };
            changed
        })
        .await
    }

    /// Claims every move in the batch, moves all their addresses onto `eni` in one call,
    /// verifies, then records each move.
    async fn move_batch(&self, eni: &str, batch: Vec<Claimed>, out: &mut Outcome) {
        let now = Time(jiff::Timestamp::now());
        let batch = self.answering_now(batch, out).await;
        let mut claimed = Vec::new();
        for mut c in batch {
            let name = c.fip.name_any();
            let pending = PendingMove {
                from: c.from.as_ref().map(|f| f.node.clone()),
                to: c.to.node.clone(),
                reason: c.reason,
                since: now.clone(),
            };
            let status = c.fip.status.get_or_insert_with(Default::default);
            if status.pending_move.as_ref().map(|p| (&p.to, p.reason))
                != Some((&pending.to, pending.reason))
            {
                status.pending_move = Some(pending);
                let claim = async {
                    self.check()?;
                    Ok::<_, StepError>(
                        self.api()
                            .replace_status(&name, &PostParams::default(), &c.fip)
                            .await?,
                    )
                };
                match claim.await {
                    Ok(updated) => c.fip = updated,
                    Err(e) => {
                        // 409: someone wrote since we read; the next pass sees it and decides again.
                        self.note_error(&name, &e, out);
                        continue;
                    }
                }
            }
            claimed.push(c);
        }
        if claimed.is_empty() {
            return;
        }
        let moves: Vec<AddressMove> = claimed
            .iter()
            .map(|c| AddressMove {
                address: crate::api::parse_address(&c.fip.spec.address).expect("validated"),
                from_eni: c.from.as_ref().map(|f| f.eni.clone()),
            })
            .collect();
        if (self.gate)().is_err() {
            out.retry = true;
            return;
        }
        let result = self.assign_verified(eni, &moves, out).await;
        // EC2 refuses a whole call for one address it will not take: split the batch and try
        // each address once on its own, so the good ones still move and only the bad one
        // carries the error.
        let results: Vec<(Claimed, Result<(), CloudError>)> = match result {
            Err(e) if !e.retryable() && claimed.len() > 1 => {
                tracing::warn!(eni, error = %e, addresses = claimed.len(), "EC2 refused a batched move; trying each address on its own");
                let mut each = Vec::new();
                for (c, m) in claimed.into_iter().zip(moves) {
                    let r = self
                        .assign_verified(eni, std::slice::from_ref(&m), out)
                        .await;
                    each.push((c, r));
                }
                each
            }
            r => claimed.into_iter().map(|c| (c, r.clone())).collect(),
        };
        for (c, r) in results {
            let name = c.fip.name_any();
            let step = match r {
                Ok(()) => {
                    self.accepted(&name);
                    self.record_move(&c).await.map(|()| out.moved += 1)
                }
                Err(e) if e.retryable() => {
                    out.retry = true;
                    self.cloud_error(&c.fip, &e, &now).await
                }
                Err(e) => self.refused(&c.fip, &e, &now).await,
            };
            if let Err(e) = step {
                self.note_error(&name, &e, out);
            }
        }
    }

    /// Keeps the moves whose target answers its check now: each target of an unplanned move is
    /// probed once more (in parallel, at most the check's timeout and never over 500 ms), so an
    /// address never goes to a node on evidence that went stale since the decision. A move
    /// left out is planned again shortly.
    async fn answering_now(&self, batch: Vec<Claimed>, out: &mut Outcome) -> Vec<Claimed> {
        let probes = batch.iter().map(|c| async {
            let (Some(target), Some(hc)) = (c.confirm, c.fip.spec.health_check.as_ref()) else {
                return Ok(None);
            };
            let spec = crate::probe::ProbeSpec::from_health_check(hc)?;
            let timeout = spec.timeout.min(Duration::from_millis(500));
            crate::probe::check::probe(
                target.protocol,
                target.addr,
                timeout,
                &spec.udp_payload,
                spec.reply_required,
            )
            .await
            .map(|_| None)
            .or_else(|failure| Ok(Some(format!("{target}: {failure}"))))
        });
        let verdicts: Vec<Result<Option<String>, String>> = futures::future::join_all(probes).await;
        let mut kept = Vec::new();
        for (c, verdict) in batch.into_iter().zip(verdicts) {
            match verdict {
                Ok(None) | Err(_) => kept.push(c),
                Ok(Some(why)) => {
                    tracing::info!(floatingip = %c.fip.name_any(), to = %c.to.node, why,
                        "the target did not answer right before the move; planning again");
                    out.recheck_soon = true;
                }
            }
        }
        kept
    }

    /// One assignment onto `eni`, read back. Gated by the caller.
    async fn assign_verified(
        &self,
        eni: &str,
        moves: &[AddressMove],
        out: &mut Outcome,
    ) -> Result<(), CloudError> {
        out.ec2_mutations += 1;
        self.cloud.assign(eni, moves).await?;
        self.verify(eni, moves).await
    }

    /// Reads the target and source ENIs back: every address on the target and on no source.
    async fn verify(&self, eni: &str, moves: &[AddressMove]) -> Result<(), CloudError> {
        let mut ids = vec![eni.to_string()];
        ids.extend(
            moves
                .iter()
                .filter_map(|m| m.from_eni.clone())
                .filter(|f| f != eni),
        );
        ids.dedup();
        let enis = self.cloud.enis(&ids).await?;
        for m in moves {
            let on_target = enis.iter().any(|e| e.id == eni && e.holds(m.address));
            let elsewhere: Vec<&str> = enis
                .iter()
                .filter(|e| e.id != eni && e.holds(m.address))
                .map(|e| e.id.as_str())
                .collect();
            if !on_target || !elsewhere.is_empty() {
                return Err(CloudError {
                    action: "DescribeNetworkInterfaces",
                    code: "MoveNotVisible".into(),
                    message: format!("after assigning {} to {eni}, EC2 shows it on {eni}: {on_target}, elsewhere: {elsewhere:?}", m.address),
                    kind: crate::cloud::ErrorKind::Transient,
                });
            }
        }
        Ok(())
    }

    async fn record_move(&self, c: &Claimed) -> Result<(), StepError> {
        let now = Time(jiff::Timestamp::now());
        let took = c.decided.elapsed();
        let g = c.fip.metadata.generation;
        let from = c.from.as_ref().map(|f| f.node.clone());
        let reason = c.reason;
        let to = c.to.clone();
        let arrival = Arrival {
            address: &c.fip.spec.address,
            from: from.clone(),
            to: &to,
            reason,
            took,
        };
        self.write_status(&c.fip, |s| {
            record_arrival(s, &arrival, g, &now);
            true
        })
        .await?;
        self.metrics.moved(reason.as_str(), took.as_secs_f64());
        let note = format!(
            "moved {} from {} to {} ({}) in {} ms",
            c.fip.spec.address,
            from.as_deref().unwrap_or("nowhere"),
            to.node,
            reason.as_str(),
            took.as_millis()
        );
        tracing::info!(floatingip = %c.fip.name_any(), %note);
        // An Event is best effort: the move happened whether or not it is recorded.
        if let Err(e) = self.events.normal(&c.fip, "Moved", "Move", note).await {
            tracing::warn!(error = %e, "could not publish the Moved event");
        }
        Ok(())
    }
}

/// The BackingOff condition: how often EC2 refused, and when the next attempt comes.
fn backing_off(entry: &Entry) -> Desired {
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

/// The Ready condition of an address that stays where it is.
pub(crate) fn ready_condition(act: &Placement) -> Desired {
    match (&act.holder, &act.holder_fit, &act.decision) {
        // The controller cannot tell whether the holder works: say so, not False.
        (Some(h), _, _) if act.doubt.is_some() => Desired::unknown(
            cond::READY,
            "HeldInDoubt",
            format!(
                "held by {}, which the controller cannot check now; see HeldInDoubt",
                h.node
            ),
        ),
        // Dead or failing: not Ready the moment the checks say so, even while the
        // address waits (minHoldSeconds) or has nowhere to go.
        (Some(h), Some(Ok(())), _) if act.holder_health == crate::probe::Health::Down => {
            Desired::new(
                cond::READY,
                false,
                "HolderUnhealthy",
                format!("{} holds the address but fails its health check", h.node),
            )
        }
        (Some(h), Some(Ok(())), _) => {
            Desired::new(cond::READY, true, "Assigned", format!("held by {}", h.node))
        }
        (Some(h), Some(Err(unfit)), _) => Desired::new(
            cond::READY,
            false,
            "HolderUnfit",
            format!("{} holds the address but {unfit}", h.node),
        ),
        (_, _, Decision::Stuck { why }) => Desired::new(
            cond::READY,
            false,
            if act.foreign.is_some() {
                "HeldElsewhere"
            } else {
                "NoCandidates"
            },
            why.clone(),
        ),
        _ => Desired::new(
            cond::READY,
            false,
            "NotAssigned",
            "no node holds the address yet",
        ),
    }
}

/// The Healthy condition from the address's probe results.
fn healthy(v: &super::plan::VipHealth) -> Desired {
    use crate::probe::Health;
    let last = v.last_failure.as_deref().unwrap_or("none");
    match v.health {
        Health::Up => Desired::new(
            cond::HEALTHY,
            true,
            "Answering",
            format!("{} answers (last failure: {last})", v.target),
        ),
        Health::Down => Desired::new(
            cond::HEALTHY,
            false,
            "ProbeFailing",
            format!("{} fails its health check: {last}", v.target),
        ),
        Health::Unknown => Desired::unknown(
            cond::HEALTHY,
            "NotProbedYet",
            format!("{} has no verdict yet", v.target),
        ),
    }
}
