//! Where one located FloatingIP's address goes this pass.

use std::collections::BTreeMap;
use std::time::Duration;

use super::locate::Located;
use super::view::View;
use super::{settle, Load, Picture, Placement, Plan, Seat, VipHealth, ATTACH_CLAIM_TIMEOUT};
use crate::api::MoveReason;
use crate::controller::doubt::Hold;
use crate::nodes::Unfit;
use crate::placement::{self, Candidate, Decision, Incumbent};
use crate::probe::Health;
use crate::status::HeldBack;

/// What this pass does with one located FloatingIP. Counts a move in `load`, so that the
/// FloatingIPs planned after it spread.
pub(super) fn act(
    picture: &Picture<'_>,
    l: Located<'_>,
    load: &mut Load,
    self_doubt: Option<&str>,
) -> Plan {
    let view = View::new(picture, l.fip, l.mode);
    let holder_private = l.holder.as_ref().and_then(|h| h.private_ip);
    let probed = (l.mode).probed_address(&l.fip.spec, l.address, holder_private);
    let vip = probed.and_then(|a| view.vip(a));
    let ec2 = picture.ec2();
    let public = crate::mode::public::public_address(&l.fip.spec, &ec2);
    let (fit, no_fit_node) = view.fit_nodes();
    let candidates = candidates(&view, &fit, load);
    if let Some(decision) = waiting(&view, &l) {
        let mut p = unplaced(l, decision, candidates.len(), vip);
        p.public = public;
        return Plan::Place(Box::new(p));
    }
    let decision = repair(&l, &fit)
        .unwrap_or_else(|| place(&view, &l, &candidates, &no_fit_node, vip.as_ref()));
    let (decision, doubt, verdict_pending) =
        second_opinion(&view, &l, decision, vip.as_ref(), self_doubt);
    let target = match &decision {
        Decision::Move { to, .. } => fit.get(to.as_str()).cloned(),
        _ => None,
    };
    if let Some(t) = &target {
        count_move(load, l.holder.as_ref(), t);
    }
    let holder = l.holder.as_ref();
    let associate = match (&decision, holder) {
        (Decision::Move { .. }, _) | (_, None) => None,
        (_, Some(h)) => l.mode.associate(&l.fip.spec, l.address, h, &ec2),
    };
    Plan::Place(Box::new(Placement {
        holder_fit: holder.map(|h| view.fit_of(&h.node)),
        holder_health: holder.map_or(Health::Unknown, |h| view.node_health(&h.node)),
        confirm_target: view.confirm_target(&decision),
        name: l.name,
        address: l.address,
        holder: l.holder,
        foreign: None,
        decision,
        target,
        candidates: candidates.len(),
        vip,
        doubt,
        verdict_pending,
        associate,
        public,
    }))
}

/// The decision once the second opinion is weighed ([`held_in_doubt`]), why it is held if it
/// is, and whether a verdict on the holder is moments away (its status then waits): the move
/// awaits an agent's word, or the address fails while the holder's own check has started
/// failing too and is a few probes from its verdict.
fn second_opinion(
    view: &View<'_, '_>,
    l: &Located<'_>,
    decision: Decision,
    vip: Option<&VipHealth>,
    self_doubt: Option<&str>,
) -> (Decision, Option<HeldBack>, bool) {
    match held_in_doubt(view, l, &decision, self_doubt) {
        Some(Hold::Denied(why)) => (Decision::Stay, Some(why), false),
        Some(Hold::Awaiting(remaining)) => (Decision::Hold { remaining }, None, true),
        None => {
            let holder_suspect = (l.holder.as_ref()).is_some_and(|h| view.node_suspect(&h.node));
            let vip_down = vip.is_some_and(|v| v.health == Health::Down);
            let pending = decision == Decision::Stay && holder_suspect && vip_down;
            (decision, None, pending)
        }
    }
}

/// The placement of an address without a holder that is left where it is this pass: held by
/// an ENI floatip does not manage, or claimed by `floatip attach` ([`waiting`]).
fn unplaced(
    l: Located<'_>,
    decision: Decision,
    candidates: usize,
    vip: Option<VipHealth>,
) -> Placement {
    Placement {
        name: l.name,
        address: l.address,
        holder: None,
        foreign: l.foreign,
        decision,
        target: None,
        confirm_target: None,
        holder_fit: None,
        holder_health: Health::Unknown,
        candidates,
        vip,
        doubt: None,
        verdict_pending: false,
        associate: None,
        public: None,
    }
}

/// The fit nodes as placement weighs them: how many addresses each holds, and whether it
/// answers now.
fn candidates(view: &View<'_, '_>, fit: &BTreeMap<&str, Seat>, load: &Load) -> Vec<Candidate> {
    fit.keys()
        .map(|n| Candidate {
            node: n.to_string(),
            load: load.get(*n).copied().unwrap_or(0),
            health: view.fresh_node_health(n),
        })
        .collect()
}

/// The address moves to `to`, off the holder's count.
fn count_move(load: &mut Load, holder: Option<&Seat>, to: &Seat) {
    *load.entry(to.node.clone()).or_default() += 1;
    if let Some(count) = holder.and_then(|h| load.get_mut(&h.node)) {
        *count = count.saturating_sub(1);
    }
}

/// A FloatingIP without a holder that is not placed this pass: its address is on an ENI floatip
/// does not manage, or a first-attach claim is still being finished.
fn waiting(view: &View<'_, '_>, l: &Located<'_>) -> Option<Decision> {
    if let Some(eni) = &l.foreign {
        let why = format!("{} is held by {eni}, which floatip does not manage; release it there or choose another address", l.address);
        return Some(Decision::Stuck { why });
    }
    attach_claim_hold(view, l).map(|remaining| Decision::Hold { remaining })
}

/// Why the decision is held for want of a second opinion ([`crate::controller::doubt`]): an
/// unplanned move waits until an agent on another node confirms the holder is down. A fit
/// holder its checks give up on with nowhere to go is held the same way while the controller
/// doubts its own probes: what is in doubt is the controller's view, and that is what status
/// must say.
fn held_in_doubt(
    view: &View<'_, '_>,
    l: &Located<'_>,
    decision: &Decision,
    self_doubt: Option<&str>,
) -> Option<Hold> {
    let h = l.holder.as_ref()?;
    let unplanned = match decision {
        Decision::Move { reason, .. } => *reason == MoveReason::HolderUnhealthy,
        Decision::Stuck { .. } => view.fit_of(&h.node).is_ok(),
        _ => false,
    };
    if !unplanned {
        return None;
    }
    if matches!(decision, Decision::Stuck { .. }) && self_doubt.is_none() {
        return None;
    }
    let failing_for = view.node_failing_for(&h.node);
    let node_failing = view.holder_health(&h.node) == Health::Down;
    let peers = view.picture.peers;
    crate::controller::doubt::hold_reason(self_doubt, &h.node, node_failing, failing_for, peers)
}

/// `floatip attach` claims an unheld address for its node while that node's agent is not
/// ready yet (it is the agent's init container): a fresh claim is left to finish for this long.
fn attach_claim_hold(view: &View<'_, '_>, l: &Located<'_>) -> Option<Duration> {
    let status = l.fip.status.as_ref()?;
    let p = status
        .pending_move
        .as_ref()
        .filter(|p| p.reason == MoveReason::Initial && l.holder.is_none())?;
    let age = view.picture.now.duration_since(p.since.0);
    let waiting_for_agent = view
        .node(&p.to)
        .is_some_and(|n| matches!(view.fitness(n), Err(Unfit::NoAgent)));
    (waiting_for_agent && age.as_secs() < ATTACH_CLAIM_TIMEOUT.as_secs() as i64).then(|| {
        ATTACH_CLAIM_TIMEOUT.saturating_sub(Duration::from_secs(age.as_secs().max(0) as u64))
    })
}

/// EC2 disagrees with what floatip intended: an interrupted move, or a change made outside
/// floatip. The move that puts the address where floatip meant it to be, if that node can
/// still take it.
fn repair(l: &Located<'_>, fit: &BTreeMap<&str, Seat>) -> Option<Decision> {
    let status = l.fip.status.as_ref();
    let pending = status.and_then(|s| s.pending_move.as_ref());
    let intended = pending
        .map(|p| p.to.clone())
        .or_else(|| status?.holder.as_ref().map(|h| h.node.clone()))?;
    if l.holder.as_ref().is_some_and(|h| h.node == intended) || !fit.contains_key(intended.as_str())
    {
        return None;
    }
    Some(Decision::Move {
        to: intended,
        reason: pending.map(|p| p.reason).unwrap_or(MoveReason::Drift),
    })
}

/// Where placement puts the address (the pure rules of [`placement::decide`]).
fn place(
    view: &View<'_, '_>,
    l: &Located<'_>,
    candidates: &[Candidate],
    no_fit_node: &str,
    vip: Option<&VipHealth>,
) -> Decision {
    let spec = &l.fip.spec;
    let hc = spec.health_check.as_ref();
    let d = placement::decide(&placement::Input {
        holder: incumbent(view, l, vip),
        candidates,
        no_fit_node,
        preferred: &spec.preferred_nodes,
        failback: spec.failback,
        min_hold: Duration::from_secs(spec.failover.min_hold_seconds.max(0) as u64),
        now: view.picture.now,
        health_checked: hc.is_some(),
        reensured: view.picture.reensured.get(&l.name).copied(),
        // Assigning the address again makes the VPC route it again too.
        reensure_grace: hc.map(settle).unwrap_or_default(),
        settle: hc.map(settle).unwrap_or_default(),
        holder_check_wait: hc
            .map(|hc| Duration::from_millis(hc.interval_ms.max(0) as u64))
            .unwrap_or_default(),
    });
    // An address that was assigned and vanished comes back as drift.
    match d {
        Decision::Move {
            to,
            reason: MoveReason::Initial,
        } if l.fip.status.as_ref().is_some_and(|s| s.holder.is_some()) => Decision::Move {
            to,
            reason: MoveReason::Drift,
        },
        d => d,
    }
}

/// The holder as placement weighs it.
fn incumbent(view: &View<'_, '_>, l: &Located<'_>, vip: Option<&VipHealth>) -> Option<Incumbent> {
    let h = l.holder.as_ref()?;
    let health = view.holder_health(&h.node);
    // A holder failing its own check takes along every address whose check has started
    // failing too, in this pass: their probes run out of phase, and waiting for each to go
    // Down split one failover into several calls. An address answering again (recovering)
    // has no verdict, like its holder.
    let vip_health = match vip {
        Some(v) if v.suspect && health == Health::Down => Health::Unknown,
        Some(v) if v.recovering => Health::Unknown,
        Some(v) => v.health,
        None => Health::Unknown,
    };
    Some(Incumbent {
        node: h.node.clone(),
        since: l
            .fip
            .status
            .as_ref()
            .and_then(|s| s.holder.as_ref())
            .filter(|sh| sh.node == h.node)
            .map(|sh| sh.since.0)
            .unwrap_or(view.picture.now),
        fit: view.fit_of(&h.node),
        health,
        vip: vip_health,
        vip_failing_for: vip.map(|v| v.failing_for).unwrap_or_default(),
        suspect: view.node_suspect(&h.node),
    })
}
