//! An address that stays where it is: its status mirrors EC2 and says why nothing moved; an
//! address failing while its holder passes is assigned to the holder again.

use kube::ResourceExt;

use super::{ec2, Ctx, Outcome, StepError};
use crate::api::{condition as cond, FloatingIP};
use crate::cloud::{AddressMove, Cloud};
use crate::controller::plan::{Placement, VipHealth};
use crate::placement::Decision;
use crate::probe::Health;
use crate::status::conditions::{self, Desired};
use crate::status::{Observed, Steady};

impl<C: Cloud> Ctx<C> {
    /// Status for an address that stays where it is; a first hold in doubt is also an Event.
    pub(super) async fn steady(&self, fip: &FloatingIP, act: &Placement) -> Result<(), StepError> {
        let was_held = fip
            .status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, cond::HELD_IN_DOUBT));
        let observed = Observed::Steady(Box::new(steady(act)));
        self.write(fip, &observed).await?;
        let (Some(why), false) = (&act.doubt, was_held) else {
            return Ok(());
        };
        tracing::warn!(floatingip = %fip.name_any(), reason = why.reason, why = %why.message,
            "holding the address: the controller's probes and the agents' disagree");
        // Best effort, as every Event: the hold happened whether or not it is recorded.
        let note = why.message.clone();
        if let Err(e) = self.events.warning(fip, "HeldInDoubt", "Hold", note).await {
            tracing::warn!(error = %e, "could not publish the HeldInDoubt event");
        }
        Ok(())
    }

    /// The address fails while its holder passes: assign it to the holder's ENI again (a no-op
    /// when EC2 has it there). The agent re-applies what status says on its own.
    pub(super) async fn reensure(&self, fip: &FloatingIP, act: &Placement, out: &mut Outcome) {
        let Some(holder) = &act.holder else { return };
        if (self.gate)().is_err() {
            return;
        }
        out.ec2_mutations += 1;
        let moves = [AddressMove {
            address: act.address,
            from_eni: None,
            allocation_id: (fip.spec.elastic_ip.as_ref()).map(|e| e.allocation_id.clone()),
            route_tables: fip.spec.route_table_ids.clone(),
        }];
        let gate = self.gate.clone();
        let leading = move || gate().is_ok();
        match ec2::move_to(&self.cloud, fip.spec.mode, holder, &moves, &leading).await {
            Ok(_) => {
                tracing::info!(floatingip = %fip.name_any(), node = %holder.node, "address fails its check while its holder passes: assigned it again");
                out.reensured.push(fip.name_any());
            }
            Err(e) if e.retryable() => out.retry = true,
            Err(e) => {
                if let Err(err) = self.refused(fip, &e, vec![]).await {
                    self.note_error(&fip.name_any(), &err, out);
                }
            }
        }
    }
}

impl<C: Cloud> Ctx<C> {
    /// The address stays, but its Elastic IP is not associated with it: associate it (never
    /// taken from elsewhere unless the spec allows; the plan has checked).
    pub(super) async fn associate(&self, fip: &FloatingIP, act: &Placement, out: &mut Outcome) {
        let Some(a) = &act.associate else { return };
        if (self.gate)().is_err() {
            return;
        }
        out.ec2_mutations += 1;
        match ec2::associate(&self.cloud, a).await {
            Ok(()) => {
                tracing::info!(floatingip = %fip.name_any(), allocation = %a.allocation_id, eni = %a.eni, private_ip = %a.private_ip, "associated the Elastic IP with the address");
                out.recheck_soon = true;
            }
            Err(e) if e.retryable() => out.retry = true,
            Err(e) => {
                if let Err(err) = self.refused(fip, &e, vec![]).await {
                    self.note_error(&fip.name_any(), &err, out);
                }
            }
        }
    }
}

/// What the plan found of an address that stays, for [`crate::status::next`].
fn steady(act: &Placement) -> Steady {
    Steady {
        address: act.address,
        holder: act.holder.clone(),
        ready: ready_condition(act),
        no_candidates: match &act.decision {
            Decision::Stuck { why } => Some(why.clone()),
            _ => None,
        },
        healthy: act.vip.as_ref().map(healthy),
        held_in_doubt: act.doubt.clone(),
        public: act.public.clone(),
        keep_claim: matches!(act.decision, Decision::Hold { .. }),
    }
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
        (Some(h), Some(Ok(())), _) if act.holder_health == Health::Down => Desired::new(
            cond::READY,
            false,
            "HolderUnhealthy",
            format!("{} holds the address but fails its health check", h.node),
        ),
        (Some(h), Some(Ok(())), _) => crate::status::held_by(&h.node),
        (Some(h), Some(Err(unfit)), _) => Desired::new(
            cond::READY,
            false,
            "HolderUnfit",
            format!("{} holds the address but {unfit}", h.node),
        ),
        (_, _, Decision::Stuck { why }) => {
            let reason = match act.foreign {
                Some(_) => "HeldElsewhere",
                None => "NoCandidates",
            };
            Desired::new(cond::READY, false, reason, why.clone())
        }
        _ => Desired::new(
            cond::READY,
            false,
            "NotAssigned",
            "no node holds the address yet",
        ),
    }
}

/// The Healthy condition from the address's probe results.
fn healthy(v: &VipHealth) -> Desired {
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
