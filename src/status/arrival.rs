//! Writing a confirmed move into status.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, Desired};
use super::Seat;
use crate::api::{condition as cond, FloatingIPStatus, Holder, Move, MoveReason};

/// A move EC2 has confirmed, for [`record_arrival`].
pub struct Arrival<'a> {
    pub address: &'a str,
    pub from: Option<String>,
    pub to: &'a Seat,
    pub reason: MoveReason,
    /// From the decision (or claim) to EC2's confirmation.
    pub took: Duration,
}

/// Writes a confirmed move into status: the holder, lastMove, moveCount, Assigned and Ready;
/// drops the claim and the conditions the move resolves. Shared by the controller and
/// `floatip attach`, so a first attach reads exactly like a move.
pub fn record_arrival(
    s: &mut FloatingIPStatus,
    a: &Arrival<'_>,
    generation: Option<i64>,
    now: &Time,
) {
    s.pending_move = None;
    s.holder = Some(Holder {
        node: a.to.node.clone(),
        instance_id: a.to.instance_id.clone(),
        network_interface_id: Some(a.to.eni.clone()),
        mac_address: a.to.mac.clone(),
        since: now.clone(),
    });
    s.last_move = Some(Move {
        from: a.from.clone(),
        to: a.to.node.clone(),
        reason: a.reason,
        at: now.clone(),
        duration_ms: a.took.as_millis() as i64,
    });
    s.move_count += 1;
    s.observed_generation = generation;
    let assigned = format!("EC2 has {} on {} of {}", a.address, a.to.eni, a.to.node);
    conditions::set(
        &mut s.conditions,
        &Desired::new(cond::ASSIGNED, true, "Assigned", assigned),
        generation,
        now,
    );
    let ready = format!("held by {}", a.to.node);
    conditions::set(
        &mut s.conditions,
        &Desired::new(cond::READY, true, "Assigned", ready),
        generation,
        now,
    );
    for stale in [
        cond::CLOUD_ERROR,
        cond::NO_CANDIDATES,
        cond::INVALID_SPEC,
        cond::CONFLICT,
        cond::BACKING_OFF,
        cond::HELD_IN_DOUBT,
    ] {
        conditions::remove(&mut s.conditions, stale);
    }
}
