//! Carries out a pass's plans: finalizers, claims, one EC2 call per target ENI, verification,
//! status and Events. Every write is gated on still holding the leader Lease.
//!
//! - mod.rs: [`Ctx`], [`Outcome`] and the dispatch of each plan.
//! - writes.rs: the gated writes (status through [`crate::status::next`], finalizers).
//! - ec2.rs: the three EC2 steps (move a batch onto a seat, verify it, release an address).
//! - moves.rs: claim, one EC2 batch per target, verify, record.
//! - steady.rs: an address that stays (and a re-ensure); release.rs: a FloatingIP going away.

mod ec2;
#[cfg(test)]
mod mock_api;
mod moves;
mod release;
mod steady;
#[cfg(test)]
mod tests;
mod writes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::ResourceExt;

use super::backoff::{Backoffs, Entry};
use super::observe::{READ_ALLOCATIONS, READ_NODE_ENIS, READ_ROUTE_TABLES};
use super::plan::{Placement, Plan};
use crate::api::{condition as cond, FloatingIP, Mode};
use crate::cloud::{Cloud, CloudError};
use crate::leader::NotLeader;
use crate::metrics::{Metrics, ReconcileError};
use crate::placement::Decision;
use crate::status::conditions::Desired;
use crate::status::Observed;

pub(crate) use steady::ready_condition;

/// Plans acted on at once, besides the moves (which go first, each batch's claims and records
/// all at once).
const CONCURRENT_WRITES: usize = 16;

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
    /// FloatingIPs whose move was recorded, and when EC2 accepted it.
    pub arrived: Vec<(String, Instant)>,
}

impl Outcome {
    /// Adds what `other` (a part of the pass done on its own, e.g. concurrently) found.
    fn absorb(&mut self, other: Outcome) {
        self.retry |= other.retry;
        self.moved += other.moved;
        self.ec2_mutations += other.ec2_mutations;
        self.reensured.extend(other.reensured);
        self.recheck = [self.recheck, other.recheck].into_iter().flatten().min();
        self.recheck_soon |= other.recheck_soon;
        self.arrived.extend(other.arrived);
    }
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

/// Moves gathered over a pass, by target ENI: each target gets one EC2 call.
/// Moves by address mode and target ENI: each batch is carried out in as few calls as its
/// mode allows.
type Batches = BTreeMap<(Mode, String), Vec<moves::Claimed>>;

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
        self.export_first_sight(&by_name);
        let mut out = Outcome::default();
        let mut batches = Batches::new();
        // Moves first: clients wait on them, not on the status of addresses that stay.
        let (moving, rest): (Vec<Plan>, Vec<Plan>) = plans.into_iter().partition(
            |p| matches!(p, Plan::Place(a) if matches!(a.decision, Decision::Move { .. })),
        );
        for plan in moving {
            self.act(&by_name, plan, &mut batches, cloud_errors, &mut out)
                .await;
        }
        for ((mode, eni), claimed) in std::mem::take(&mut batches) {
            self.move_batch(mode, &eni, claimed, &mut out).await;
        }
        // The rest are independent of each other (a re-ensure, an association, a status
        // write): a few at a time, so that 50 addresses turning Ready=False at once do not wait
        // on 50 API round trips in a row.
        let acts = futures::stream::iter(rest).map(|plan| async {
            let (mut none, mut one) = (Batches::new(), Outcome::default());
            self.act(&by_name, plan, &mut none, cloud_errors, &mut one)
                .await;
            one
        });
        let mut acts = std::pin::pin!(acts.buffer_unordered(CONCURRENT_WRITES));
        while let Some(one) = acts.next().await {
            out.absorb(one);
        }
        out
    }

    /// The per-FloatingIP metrics: those of FloatingIPs gone are dropped, those of FloatingIPs
    /// not seen before start from their status as read (later, each write sets them).
    fn export_first_sight(&self, by_name: &BTreeMap<String, &Arc<FloatingIP>>) {
        if self.check().is_err() {
            return;
        }
        self.metrics
            .retain_floatingips(|name| by_name.contains_key(name));
        for (name, fip) in by_name {
            let status = fip.status.clone().unwrap_or_default();
            let state = writes::exported(fip, &status);
            self.metrics.floatingip_seen(name, &state);
        }
    }

    /// Acts on one plan (a move is gathered into `batches`).
    async fn act(
        &self,
        by_name: &BTreeMap<String, &Arc<FloatingIP>>,
        plan: Plan,
        batches: &mut Batches,
        cloud_errors: &BTreeMap<String, CloudError>,
        out: &mut Outcome,
    ) {
        let name = super::plan::plan_name(&plan).to_string();
        let Some(fip) = by_name.get(&name) else {
            return;
        };
        let result = match plan {
            Plan::Release { address, from, .. } => self.release(fip, address, &from, out).await,
            Plan::Place(act) => self.place(fip, *act, batches, out).await,
            other => match not_acted_on(&other, fip, cloud_errors) {
                Some(observed) => self.write(fip, &observed).await.map(drop),
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            self.note_error(&name, &e, out);
        }
    }

    /// A live FloatingIP: its finalizer first, then a move (gathered into `batches`), a
    /// re-ensure or a steady status.
    async fn place(
        &self,
        fip: &Arc<FloatingIP>,
        act: Placement,
        batches: &mut Batches,
        out: &mut Outcome,
    ) -> Result<(), StepError> {
        let fip = self.ensure_finalizer(fip).await?;
        match (&act.decision, &act.target, self.waiting(&fip)) {
            (Decision::Move { .. } | Decision::Reensure, _, Some(entry)) => {
                // Ready too: a holder that should give the address up is not Ready while its
                // move waits out a refusal.
                let why = vec![super::backoff::condition(&entry), ready_condition(&act)];
                self.write(&fip, &Observed::NotActedOn(why)).await.map(drop)
            }
            (Decision::Move { reason, .. }, Some(to), _) => {
                batches
                    .entry((fip.spec.mode, to.eni.clone()))
                    .or_default()
                    .push(moves::Claimed {
                        from: act.holder.clone(),
                        to: to.clone(),
                        reason: *reason,
                        decided: Instant::now(),
                        confirm: act.confirm_target,
                        ready: ready_condition(&act),
                        fip,
                    });
                Ok(())
            }
            (Decision::Reensure, _, _) => {
                self.reensure(&fip, &act, out).await;
                self.steady(&fip, &act).await
            }
            // Settled within moments, by the move or by the agents' word: written then.
            _ if act.verdict_pending => Ok(()),
            _ => {
                self.associate(&fip, &act, out).await;
                self.steady(&fip, &act).await
            }
        }
    }

    /// The backoff holding this FloatingIP back, if any.
    fn waiting(&self, fip: &FloatingIP) -> Option<Entry> {
        let backoffs = self.backoffs.lock().expect("backoffs lock");
        backoffs
            .waiting(&fip.name_any(), fip.metadata.generation)
            .cloned()
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
            StepError::NotLeader(_) => ReconcileError::NotLeader,
            _ if e.conflict() => ReconcileError::Conflict,
            _ => ReconcileError::Kube,
        };
        self.metrics.reconcile_error(label);
        if e.conflict() {
            tracing::debug!(
                floatingip = name,
                "written since it was read (409); the next pass decides again"
            );
        } else {
            tracing::warn!(floatingip = name, error = %e, "step failed");
        }
    }
}

/// The status of a FloatingIP that is not acted on this pass, and why; None for the plans
/// that act (Place, Release).
fn not_acted_on<'a>(
    plan: &Plan,
    fip: &FloatingIP,
    cloud_errors: &'a BTreeMap<String, CloudError>,
) -> Option<Observed<'a>> {
    let not_ready = |reason: &str, msg: &str| Desired::new(cond::READY, false, reason, msg);
    let why = match plan {
        Plan::Invalid { errors, .. } => {
            let msg = errors.to_string();
            let why = Desired::new(cond::INVALID_SPEC, true, "InvalidSpec", msg);
            let see = "the spec is invalid; see the InvalidSpec condition";
            vec![why, not_ready("InvalidSpec", see)]
        }
        Plan::Conflict { winner, .. } => {
            let address = &fip.spec.address;
            let msg = format!("FloatingIP {winner} is older and claims the same address {address}; this one is not acted on until {winner} is deleted or this one's spec.address changes");
            let why = Desired::new(cond::CONFLICT, true, "DuplicateAddress", msg);
            vec![
                why,
                not_ready("Conflict", "another FloatingIP owns the address"),
            ]
        }
        Plan::Unusable { problem, .. } => {
            let msg = problem.to_string();
            let why = Desired::new(problem.condition(), true, problem.reason(), &msg);
            vec![why, not_ready(problem.reason(), &msg)]
        }
        Plan::Unsupported { why, .. } => vec![not_ready("ModeNotSupported", why)],
        Plan::Unknown { .. } => {
            let subnet = fip.spec.subnet_id.clone().unwrap_or_default();
            let reads = [
                subnet.as_str(),
                READ_ALLOCATIONS,
                READ_NODE_ENIS,
                READ_ROUTE_TABLES,
            ];
            if let Some(error) = reads.iter().find_map(|k| cloud_errors.get(*k)) {
                return Some(Observed::CloudFailed {
                    error,
                    extra: vec![],
                });
            }
            // Neither read nor failed: say so rather than leave the object without a status.
            let msg = match subnet.as_str() {
                "" => "EC2 has not been read for this FloatingIP yet".to_string(),
                s => format!("EC2 has not been read for subnet {s} yet"),
            };
            vec![Desired::unknown(cond::READY, "Pending", msg)]
        }
        Plan::Release { .. } | Plan::Place(_) => return None,
    };
    Some(Observed::NotActedOn(why))
}
