//! The status a FloatingIP should have: one pure function of what was done (or seen), the old
//! status and the time. Every status writer (the executor, `floatip attach` through
//! [`super::record_arrival`]) builds it here, so the same fact reads the same everywhere.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, Desired};
use super::{Arrival, Seat};
use crate::api::{condition as cond, FloatingIPStatus, Holder, Move, PendingMove};
use crate::api::{AttachmentPhase, InterfaceAttachment};
use crate::cloud::CloudError;

/// What was done to, or seen of, one FloatingIP.
pub enum Observed<'a> {
    /// The address stays where EC2 has it: mirror EC2 and say why nothing moved.
    Steady(Box<Steady>),
    /// EC2 confirmed a move (or a first attach) onto `to`.
    Arrived(Arrival<'a>),
    /// Never acted on (an invalid spec, a conflict, a mode not carried out, EC2 not read yet,
    /// a backoff): these conditions say why.
    NotActedOn(Vec<Desired>),
    /// An EC2 call failed; `extra` conditions go in the same write, since a second write from
    /// the same read would conflict (409).
    CloudFailed {
        error: &'a CloudError,
        extra: Vec<Desired>,
    },
    /// A move about to be carried out, claimed before EC2 is called.
    Claimed(PendingMove),
    /// Interface: EC2 shows the moved ENI attached to its holder, this long after the attach.
    Attached { attach_took: std::time::Duration },
}

/// An address that stays where it is, as the plan found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Steady {
    pub address: IpAddr,
    /// Who holds the address in EC2 now.
    pub holder: Option<Seat>,
    pub ready: Desired,
    /// Why no node can take the address, when none can.
    pub no_candidates: Option<String>,
    /// The address's own health check, when it has one.
    pub healthy: Option<Desired>,
    /// Why a move the checks call for is held back (the controller doubts its probes).
    pub held_in_doubt: Option<HeldBack>,
    /// A claimed move is kept only while the move waits (minHoldSeconds); otherwise its target
    /// can no longer take the address and the claim is dropped.
    pub keep_claim: bool,
    /// The Elastic IP as EC2 described it this pass.
    pub public: Option<crate::api::PublicAddress>,
}

/// Why a move the checks call for is held back, for the HeldInDoubt condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// `ControllerInDoubt` (its probes fail for half the nodes or more) or `AgentsDisagree`
    /// (an agent on another node still sees the holder answer).
    pub reason: &'static str,
    pub message: String,
}

/// The status after `observed`, or None when it is `old` unchanged (no write is due).
///
/// | observed    | holder               | pendingMove     | conditions set                        | conditions resolved (False) |
/// |-------------|----------------------|-----------------|---------------------------------------|--------------------|
/// | Steady      | EC2's, `since` kept while the node is the same | kept only with keep_claim | Assigned, Ready, NoCandidates?, Healthy (Unknown NotChecked without a check), HeldInDoubt? | CloudError, InvalidSpec, Conflict, BackingOff, and NoCandidates/HeldInDoubt when absent |
/// | Arrived     | the target, since now | dropped        | Assigned, Ready True; lastMove, moveCount+1 | CloudError, NoCandidates, InvalidSpec, Conflict, BackingOff, HeldInDoubt |
/// | NotActedOn  | kept                 | kept            | the given ones                        | none |
/// | CloudFailed | kept                 | kept            | extra, CloudError; Assigned Unknown after a failed read; Ready False without a holder | none |
/// | Claimed     | kept                 | the claim (None when the same target and reason are claimed already) | none | none |
///
/// Every write carries every condition type ([`conditions::complete`]): one that was never
/// set starts as [`conditions::initial`] says; none is ever removed. observedGeneration
/// becomes `generation` for every case but Claimed: a claim says what is about to happen, not
/// that the spec was looked at. lastTransitionTime moves only when a condition's status does
/// ([`conditions::set`]).
pub fn next(
    old: &FloatingIPStatus,
    generation: Option<i64>,
    observed: &Observed<'_>,
    now: &Time,
) -> Option<FloatingIPStatus> {
    let mut s = old.clone();
    let changed = match observed {
        Observed::Steady(steady) => steady_status(&mut s, steady, generation, now),
        Observed::Arrived(a) => arrived(&mut s, a, generation, now),
        Observed::NotActedOn(why) => set_all(&mut s, why, generation, now),
        Observed::CloudFailed { error, extra } => {
            cloud_failed(&mut s, error, extra, generation, now)
        }
        Observed::Claimed(pending) => return claimed(s, pending, generation, now),
        Observed::Attached { attach_took } => attached(&mut s, *attach_took, now),
    };
    let changed = conditions::complete(&mut s.conditions, generation, now) | changed;
    let seen = s.observed_generation != generation;
    s.observed_generation = generation;
    (changed || seen).then_some(s)
}

fn set_all(s: &mut FloatingIPStatus, all: &[Desired], g: Option<i64>, now: &Time) -> bool {
    let mut changed = false;
    for d in all {
        changed |= conditions::set(&mut s.conditions, d, g, now);
    }
    changed
}

/// Sets each type to its False state: the trouble it reported is over.
fn resolve_all(
    s: &mut FloatingIPStatus,
    types: &[&'static str],
    g: Option<i64>,
    now: &Time,
) -> bool {
    let all: Vec<Desired> = types.iter().map(|t| conditions::resolved(t)).collect();
    set_all(s, &all, g, now)
}

/// Sets `d` when there is one, `otherwise` when not.
fn set_or(
    s: &mut FloatingIPStatus,
    d: Option<&Desired>,
    otherwise: Desired,
    g: Option<i64>,
    now: &Time,
) -> bool {
    conditions::set(&mut s.conditions, d.unwrap_or(&otherwise), g, now)
}

fn assigned(address: impl std::fmt::Display, holder: Option<&Seat>) -> Desired {
    match holder {
        Some(h) => Desired::new(
            cond::ASSIGNED,
            true,
            "Assigned",
            format!("EC2 has {address} on {} of {}", h.eni, h.node),
        ),
        None => Desired::new(
            cond::ASSIGNED,
            false,
            "NotAssigned",
            format!("no node holds {address}"),
        ),
    }
}

/// Ready True: the address is assigned to a holder that works. The same words after a move as
/// for an address that stays.
pub fn held_by(node: &str) -> Desired {
    Desired::new(cond::READY, true, "Assigned", format!("held by {node}"))
}

fn holder(seat: &Seat, since: Time) -> Holder {
    Holder {
        node: seat.node.clone(),
        instance_id: seat.instance_id.clone(),
        network_interface_id: Some(seat.eni.clone()),
        mac_address: seat.mac.clone(),
        private_address: seat.private_ip.map(|i| i.to_string()),
        since,
    }
}

fn steady_status(s: &mut FloatingIPStatus, st: &Steady, g: Option<i64>, now: &Time) -> bool {
    let mut changed = false;
    let new_holder = st.holder.as_ref().map(|h| {
        let since = s.holder.as_ref().filter(|old| old.node == h.node);
        holder(
            h,
            since.map_or_else(|| now.clone(), |old| old.since.clone()),
        )
    });
    if s.holder != new_holder {
        s.holder = new_holder;
        changed = true;
    }
    if s.public_address != st.public {
        s.public_address = st.public.clone();
        changed = true;
    }
    if s.pending_move.is_some() && !st.keep_claim {
        s.pending_move = None;
        changed = true;
    }
    let assigned = assigned(st.address, st.holder.as_ref());
    changed |= set_all(s, &[assigned, st.ready.clone()], g, now);
    let stuck = st
        .no_candidates
        .as_ref()
        .map(|why| Desired::new(cond::NO_CANDIDATES, true, "NoCandidates", why.clone()));
    changed |= set_or(
        s,
        stuck.as_ref(),
        conditions::resolved(cond::NO_CANDIDATES),
        g,
        now,
    );
    let stale = [
        cond::CLOUD_ERROR,
        cond::INVALID_SPEC,
        cond::CONFLICT,
        cond::BACKING_OFF,
    ];
    changed |= resolve_all(s, &stale, g, now);
    changed |= set_or(s, st.healthy.as_ref(), conditions::not_checked(), g, now);
    let doubt = (st.held_in_doubt.as_ref())
        .map(|h| Desired::new(cond::HELD_IN_DOUBT, true, h.reason, &h.message));
    changed |= set_or(
        s,
        doubt.as_ref(),
        conditions::resolved(cond::HELD_IN_DOUBT),
        g,
        now,
    );
    changed
}

fn arrived(s: &mut FloatingIPStatus, a: &Arrival<'_>, g: Option<i64>, now: &Time) -> bool {
    s.pending_move = None;
    s.holder = Some(holder(a.to, now.clone()));
    s.last_move = Some(Move {
        from: a.from.clone(),
        to: a.to.node.clone(),
        reason: a.reason,
        at: now.clone(),
        duration_ms: a.took.as_millis() as i64,
        unassigned_ms: a.unassigned_for.map(|d| d.as_millis() as i64),
    });
    s.move_count += 1;
    if let Some(at) = &a.attaching {
        s.interface = Some(InterfaceAttachment {
            phase: AttachmentPhase::Attaching,
            since: now.clone(),
            detach_ms: at.detach_took.map(|d| d.as_millis() as i64),
            attach_ms: None,
        });
    }
    let ready = held_by(&a.to.node);
    set_all(s, &[assigned(a.address, Some(a.to)), ready], g, now);
    let resolved = [
        cond::CLOUD_ERROR,
        cond::NO_CANDIDATES,
        cond::INVALID_SPEC,
        cond::CONFLICT,
        cond::BACKING_OFF,
        cond::HELD_IN_DOUBT,
    ];
    resolve_all(s, &resolved, g, now);
    true
}

fn cloud_failed(
    s: &mut FloatingIPStatus,
    e: &CloudError,
    extra: &[Desired],
    g: Option<i64>,
    now: &Time,
) -> bool {
    let msg = format!("{e}; {}", what_to_do(e));
    let mut changed = set_all(s, extra, g, now);
    let error = Desired::new(cond::CLOUD_ERROR, true, &e.code_reason(), &msg);
    changed |= conditions::set(&mut s.conditions, &error, g, now);
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
        let why = format!("the address is not assigned: {msg}");
        let ready = Desired::new(cond::READY, false, "CloudError", why);
        changed |= conditions::set(&mut s.conditions, &ready, g, now);
    }
    changed
}

/// What a person can do about a failed EC2 call, for the CloudError condition and its Event.
fn what_to_do(e: &CloudError) -> String {
    let code = e.code.as_str();
    if code.contains("Unauthorized") || code.contains("AccessDenied") {
        format!(
            "allow ec2:{} to the controller's IAM role (deploy/iam-policy-controller.json)",
            e.action
        )
    } else if code == crate::cloud::NO_CREDENTIALS {
        "the controller has no AWS credentials: give its service account an IAM role (chart value controller.iamRoleArn for IRSA) or an EKS Pod Identity association".into()
    } else if e.kind == crate::cloud::ErrorKind::Throttled {
        "EC2 throttles this account's requests (the VPC CNI and autoscalers share the limit); floatip retries with backoff".into()
    } else if e.retryable() {
        "EC2 did not answer or failed on its side; floatip retries with backoff".into()
    } else {
        "retrying does not help until what the AWS message names is fixed; floatip backs off meanwhile".into()
    }
}

fn claimed(
    mut s: FloatingIPStatus,
    pending: &PendingMove,
    g: Option<i64>,
    now: &Time,
) -> Option<FloatingIPStatus> {
    let same = |p: &PendingMove| p.to == pending.to && p.reason == pending.reason;
    if s.pending_move.as_ref().is_some_and(same) {
        return None;
    }
    s.pending_move = Some(pending.clone());
    // Interface: a move from a holder detaches the ENI right after this write. A move from no
    // instance attaches at once, and its arrival says so.
    if let (Some(i), Some(_)) = (s.interface.as_mut(), &pending.from) {
        *i = InterfaceAttachment {
            phase: AttachmentPhase::Detaching,
            since: now.clone(),
            detach_ms: None,
            attach_ms: None,
        };
    }
    // A claim may be a new FloatingIP's first status write.
    conditions::complete(&mut s.conditions, g, now);
    Some(s)
}

/// Interface: the read-back found the ENI attached; only an attach status recorded moves on.
fn attached(s: &mut FloatingIPStatus, took: std::time::Duration, now: &Time) -> bool {
    let Some(i) = s.interface.as_mut() else {
        return false;
    };
    if i.phase != AttachmentPhase::Attaching {
        return false;
    }
    i.phase = AttachmentPhase::Attached;
    i.since = now.clone();
    i.attach_ms = Some(took.as_millis() as i64);
    true
}

#[cfg(test)]
#[path = "next_tests.rs"]
mod tests;
