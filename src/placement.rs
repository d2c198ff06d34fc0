//! Which node should hold an address: a pure function of the holder's state, the candidates and
//! the FloatingIP's preferences. No I/O, so every rule is a unit test.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{Failback, MoveReason};
use crate::nodes::Unfit;
use crate::probe::Health;

/// A node that may take the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: String,
    /// Addresses the node holds already (after the moves decided earlier in the same pass).
    pub load: usize,
    /// The node's own health check.
    pub health: Health,
}

/// The node holding the address now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incumbent {
    pub node: String,
    pub since: Timestamp,
    /// Err when the node must give the address up (gone, NotReady, cordoned, tainted...).
    pub fit: Result<(), Unfit>,
    /// The node's own health check.
    pub health: Health,
    /// The address's health check: the path clients use.
    pub vip: Health,
    /// How long the address's check has been failing (zero when it is not).
    pub vip_failing_for: Duration,
    /// The node's own check has started failing but has no verdict yet: its confirming probes
    /// are under way, a few timeouts at most.
    pub suspect: bool,
}

pub struct Input<'a> {
    pub holder: Option<Incumbent>,
    /// Fit nodes, in any order; the holder may be among them and is skipped.
    pub candidates: &'a [Candidate],
    /// What to say when no node but the holder is fit: why the others are not.
    pub no_fit_node: &'a str,
    pub preferred: &'a [String],
    pub failback: Failback,
    pub min_hold: Duration,
    pub now: Timestamp,
    /// The FloatingIP has a health check: candidates must be known to pass it.
    pub health_checked: bool,
    /// How long ago the assignment was re-ensured because the address failed while its holder
    /// passed; None if it was not.
    pub reensured: Option<Duration>,
    /// How long a re-ensured address may keep failing before it moves.
    pub reensure_grace: Duration,
    /// How long after a move the address's own check is not held against its new holder: the
    /// VPC is still routing the address over (about 1.2 s in AWS) and the check then needs its
    /// successes. A holder failing its own check is not covered: that is the node.
    pub settle: Duration,
    /// How long the address must have been failing before a holder that passes is trusted: one
    /// probe interval, so the holder's own check (probed out of phase) has had its turn. A
    /// service that died fails both checks, and without this wait the address, seen first,
    /// was re-assigned in vain before the move.
    pub holder_check_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep the address where it is.
    Stay,
    /// Move (or first assign) the address.
    Move { to: String, reason: MoveReason },
    /// The holder should give the address up but has held it for less than minHoldSeconds.
    Hold { remaining: Duration },
    /// The address fails but its holder passes: assign it to the holder again (EC2 and the
    /// agent) before deciding to move it.
    Reensure,
    /// The address should move but no candidate can take it; it stays where it is (or
    /// unassigned) and the message says why.
    Stuck { why: String },
}

/// Decides where the address should be.
///
/// | holder | address check | holder's own check | decision |
/// |---|---|---|---|
/// | none | | | the best passing candidate (Initial), held while a more preferred one has no verdict yet; else Stuck |
/// | unfit (gone, NotReady, cordoned, tainted, agent leaving) | any | any | move at once, else Stuck |
/// | fit | not passing | failing | after minHold: move (HolderUnhealthy), else Stuck |
/// | fit | failing | passing | Reensure; still failing after the grace: move (only once the holder has held it for `settle`) |
/// | fit | passing or unknown | any | Stay (or Failback when asked and due) |
///
/// A candidate must pass its own check when the FloatingIP has one; without one it must not be
/// known to fail ([`eligible`]). With no candidate, the holder keeps the address and Stuck says
/// why ([`move_or_stuck`]).
///
/// The rows, in order: [`first_assignment`]; an unfit holder; [`holder_failing`] and
/// [`address_failing_alone`] (its re-ensure and grace: [`reensure_expired`]), both handled by
/// [`unhealthy_holder`]; [`failback`].
pub fn decide(input: &Input<'_>) -> Decision {
    let Some(holder) = &input.holder else {
        return first_assignment(input);
    };
    // A holder that must go leaves at once, whatever minHoldSeconds says.
    if let Err(unfit) = &holder.fit {
        return move_or_stuck(
            input,
            holder,
            unfit.move_reason(),
            format!("{} should give the address up ({unfit})", holder.node),
        );
    }
    let held_for =
        Duration::from_millis(input.now.duration_since(holder.since).as_millis().max(0) as u64);
    let failing = holder_failing(holder);
    let vip_only = address_failing_alone(input, holder, held_for);
    if failing || (vip_only && reensure_expired(input)) {
        return unhealthy_holder(input, holder, held_for, failing);
    }
    if vip_only {
        return match input.reensured {
            None => Decision::Reensure,
            Some(_) => Decision::Stay,
        };
    }
    failback(input, holder, held_for).unwrap_or(Decision::Stay)
}

/// Row "none": the best candidate (Initial), else Stuck saying why none can.
fn first_assignment(input: &Input<'_>) -> Decision {
    match best(input, None) {
        // A more preferred node not probed yet (a controller just started, a FloatingIP just
        // created) is waited for, briefly: its verdict comes within a few probe intervals, and
        // without the wait addresses meant to stay together (a dual-stack pair) scattered over
        // whichever nodes answered first.
        Some(c) if preferred_unknown(input, c) => Decision::Hold {
            remaining: input.holder_check_wait,
        },
        Some(c) => Decision::Move {
            to: c.node.clone(),
            reason: MoveReason::Initial,
        },
        None => Decision::Stuck {
            why: none_passing(input, None),
        },
    }
}

/// Whether a node preferred over `c` has no verdict of its health check yet.
fn preferred_unknown(input: &Input<'_>, c: &Candidate) -> bool {
    let rank_c = rank(input.preferred, &c.node);
    input.health_checked
        && (input.candidates.iter())
            .any(|o| o.health == Health::Unknown && rank(input.preferred, &o.node) < rank_c)
}

/// Row "fit, not passing, failing": the holder fails its own check and the address does not
/// pass either.
fn holder_failing(holder: &Incumbent) -> bool {
    holder.health == Health::Down && holder.vip != Health::Up
}

/// Row "fit, failing, passing": the address fails while its holder does not, counted only once
/// the holder has had the address for `settle`, the address has failed for one probe interval
/// and the holder's own check has had its turn (it is not in the middle of confirming a
/// failure of its own: a node that stops answering takes three probe timeouts to be Down,
/// and its address, probed out of phase, can be Down before it).
fn address_failing_alone(input: &Input<'_>, holder: &Incumbent, held_for: Duration) -> bool {
    holder.vip == Health::Down
        && holder.health != Health::Down
        && !holder.suspect
        && held_for >= input.settle
        && holder.vip_failing_for >= input.holder_check_wait
}

/// The address was assigned again and still fails after the grace.
fn reensure_expired(input: &Input<'_>) -> bool {
    input.reensured.is_some_and(|d| d >= input.reensure_grace)
}

/// The holder (or the address on it) gives up: after minHoldSeconds, to the best other
/// candidate (HolderUnhealthy), else Stuck.
fn unhealthy_holder(
    input: &Input<'_>,
    holder: &Incumbent,
    held_for: Duration,
    failing: bool,
) -> Decision {
    if held_for < input.min_hold {
        return Decision::Hold {
            remaining: input.min_hold - held_for,
        };
    }
    let trouble = if failing {
        format!("{} fails its health check", holder.node)
    } else {
        format!(
            "the address fails its health check on {} even after being assigned again",
            holder.node
        )
    };
    move_or_stuck(input, holder, MoveReason::HolderUnhealthy, trouble)
}

/// Row "fit, passing or unknown" with failback asked and due: to a more preferred node that is
/// known to answer (failback is never worth an outage).
fn failback(input: &Input<'_>, holder: &Incumbent, held_for: Duration) -> Option<Decision> {
    if input.failback != Failback::Always || held_for < input.min_hold {
        return None;
    }
    let c = best(input, Some(&holder.node))?;
    (rank(input.preferred, &c.node) < rank(input.preferred, &holder.node) && c.health == Health::Up)
        .then(|| Decision::Move {
            to: c.node.clone(),
            reason: MoveReason::Failback,
        })
}

/// The address leaves the holder: to the best other candidate, else Stuck saying what is wrong
/// (`trouble`) and why no other node can take it.
fn move_or_stuck(
    input: &Input<'_>,
    holder: &Incumbent,
    reason: MoveReason,
    trouble: String,
) -> Decision {
    match best(input, Some(&holder.node)) {
        Some(c) => Decision::Move {
            to: c.node.clone(),
            reason,
        },
        None => Decision::Stuck {
            why: format!("{trouble}, but {}", none_passing(input, Some(&holder.node))),
        },
    }
}

/// Whether a candidate may take the address: it passes the FloatingIP's check, or without a
/// check, it is not known to fail.
fn eligible(input: &Input<'_>, c: &Candidate) -> bool {
    if input.health_checked {
        c.health == Health::Up
    } else {
        c.health != Health::Down
    }
}

/// The eligible candidate other than `exclude` to take the address: the most preferred, then
/// the least loaded, then the first by name.
fn best<'c>(input: &Input<'c>, exclude: Option<&str>) -> Option<&'c Candidate> {
    input
        .candidates
        .iter()
        .filter(|c| Some(c.node.as_str()) != exclude)
        .filter(|c| eligible(input, c))
        .min_by_key(|c| (rank(input.preferred, &c.node), c.load, c.node.as_str()))
}

/// Why no candidate other than `exclude` can take the address.
fn none_passing(input: &Input<'_>, exclude: Option<&str>) -> String {
    let others = input
        .candidates
        .iter()
        .filter(|c| Some(c.node.as_str()) != exclude)
        .count();
    if others == 0 {
        input.no_fit_node.to_string()
    } else if input.health_checked {
        format!("none of the {others} fit nodes passes its health check")
    } else {
        format!("all {others} fit nodes fail their health check")
    }
}

/// Position in the preferred list; unlisted nodes come after all listed ones.
fn rank(preferred: &[String], node: &str) -> usize {
    preferred
        .iter()
        .position(|p| p == node)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
