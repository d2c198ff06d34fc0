//! Writing a confirmed move into status.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::next::{next, Observed};
use super::Seat;
use crate::api::{FloatingIPStatus, MoveReason};

/// A move EC2 has confirmed, for [`record_arrival`].
#[derive(Clone)]
pub struct Arrival<'a> {
    pub address: &'a str,
    pub from: Option<String>,
    pub to: &'a Seat,
    pub reason: MoveReason,
    /// From the decision (or claim) to EC2's confirmation.
    pub took: Duration,
    /// IPv6: how long the address was on no ENI between the move's two calls.
    pub unassigned_for: Option<Duration>,
    /// Interface: the ENI was attached (EC2 shows it attaching), after a detach that took
    /// this long when there was one.
    pub attaching: Option<Attaching>,
}

/// An Interface-mode move at its attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attaching {
    pub detach_took: Option<Duration>,
}

/// Writes a confirmed move into status: the holder, lastMove, moveCount, Assigned and Ready;
/// drops the claim and the conditions the move resolves ([`next`] with
/// [`Observed::Arrived`]). Shared by the controller and `floatip attach`, so a first attach
/// reads exactly like a move.
pub fn record_arrival(
    s: &mut FloatingIPStatus,
    a: &Arrival<'_>,
    generation: Option<i64>,
    now: &Time,
) {
    if let Some(after) = next(s, generation, &Observed::Arrived(a.clone()), now) {
        *s = after;
    }
}
