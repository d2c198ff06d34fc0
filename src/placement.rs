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
/// | none | | | the best passing candidate (Initial), else Stuck |
/// | unfit (gone, NotReady, cordoned, tainted, agent leaving) | any | any | move at once, else Stuck |
/// | fit | not passing | failing | after minHold: move (HolderUnhealthy), else Stuck |
/// | fit | failing | passing | Reensure; still failing after the grace: move (only once the holder has held it for `settle`) |
/// | fit | passing or unknown | any | Stay (or Failback when asked and due) |
///
/// A candidate must pass its own check when the FloatingIP has one; without one it must not be
/// known to fail. With no candidate, the holder keeps the address and Stuck says why.
pub fn decide(input: &Input<'_>) -> Decision {
    let eligible = |c: &&Candidate| {
        if input.health_checked {
            c.health == Health::Up
        } else {
            c.health != Health::Down
        }
    };
    let best = |exclude: Option<&str>| {
        input
            .candidates
            .iter()
            .filter(|c| Some(c.node.as_str()) != exclude)
            .filter(eligible)
            .min_by_key(|c| (rank(input.preferred, &c.node), c.load, c.node.as_str()))
    };
    let none_passing = |exclude: Option<&str>| {
        let others: Vec<&Candidate> = input
            .candidates
            .iter()
            .filter(|c| Some(c.node.as_str()) != exclude)
            .collect();
        if others.is_empty() {
            input.no_fit_node.to_string()
        } else if input.health_checked {
            format!(
                "none of the {} fit nodes passes its health check",
                others.len()
            )
        } else {
            format!("all {} fit nodes fail their health check", others.len())
        }
    };
    let Some(holder) = &input.holder else {
        return match best(None) {
            Some(c) => Decision::Move {
                to: c.node.clone(),
                reason: MoveReason::Initial,
            },
            None => Decision::Stuck {
                why: none_passing(None),
            },
        };
    };
    let held_for =
        Duration::from_millis(input.now.duration_since(holder.since).as_millis().max(0) as u64);
    let move_or_stuck = |reason: MoveReason, trouble: String| match best(Some(&holder.node)) {
        Some(c) => Decision::Move {
            to: c.node.clone(),
            reason,
        },
        None => Decision::Stuck {
            why: format!("{trouble}, but {}", none_passing(Some(&holder.node))),
        },
    };
    // A holder that must go leaves at once, whatever minHoldSeconds says.
    if let Err(unfit) = &holder.fit {
        return move_or_stuck(
            unfit.move_reason(),
            format!("{} should give the address up ({unfit})", holder.node),
        );
    }
    let failing = holder.health == Health::Down && holder.vip != Health::Up;
    let vip_only = holder.vip == Health::Down
        && holder.health != Health::Down
        && held_for >= input.settle
        && holder.vip_failing_for >= input.holder_check_wait;
    if failing || (vip_only && input.reensured.is_some_and(|d| d >= input.reensure_grace)) {
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
        return move_or_stuck(MoveReason::HolderUnhealthy, trouble);
    }
    if vip_only {
        return match input.reensured {
            None => Decision::Reensure,
            Some(_) => Decision::Stay,
        };
    }
    if input.failback == Failback::Always && held_for >= input.min_hold {
        let current = rank(input.preferred, &holder.node);
        if let Some(c) = best(Some(&holder.node)) {
            // Only to a node that is known to answer: failback is never worth an outage.
            if rank(input.preferred, &c.node) < current && c.health == Health::Up {
                return Decision::Move {
                    to: c.node.clone(),
                    reason: MoveReason::Failback,
                };
            }
        }
    }
    Decision::Stay
}

/// Position in the preferred list; unlisted nodes come after all listed ones.
fn rank(preferred: &[String], node: &str) -> usize {
    preferred
        .iter()
        .position(|p| p == node)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(T0 + secs).unwrap()
    }

    fn cand(node: &str, load: usize, health: Health) -> Candidate {
        Candidate {
            node: node.into(),
            load,
            health,
        }
    }

    fn holder(node: &str, since: i64, fit: Result<(), Unfit>, health: Health) -> Option<Incumbent> {
        Some(Incumbent {
            node: node.into(),
            since: at(since),
            fit,
            health,
            vip: Unknown,
            vip_failing_for: Duration::ZERO,
        })
    }

    fn run(
        holder: Option<Incumbent>,
        candidates: &[Candidate],
        preferred: &[&str],
        failback: Failback,
        now: i64,
    ) -> Decision {
        run_checked(holder, candidates, preferred, failback, now, false, None)
    }

    fn run_checked(
        holder: Option<Incumbent>,
        candidates: &[Candidate],
        preferred: &[&str],
        failback: Failback,
        now: i64,
        health_checked: bool,
        reensured: Option<u64>,
    ) -> Decision {
        let preferred: Vec<String> = preferred.iter().map(|s| s.to_string()).collect();
        decide(&Input {
            holder,
            candidates,
            no_fit_node: "no node is fit to hold the address",
            preferred: &preferred,
            failback,
            min_hold: Duration::from_secs(30),
            now: at(now),
            health_checked,
            reensured: reensured.map(Duration::from_secs),
            reensure_grace: Duration::from_secs(2),
            settle: Duration::from_secs(5),
            holder_check_wait: Duration::from_millis(500),
        })
    }

    /// A fit holder with the given own and address health.
    fn checked(node: &str, since: i64, own: Health, vip: Health) -> Option<Incumbent> {
        Some(Incumbent {
            node: node.into(),
            since: at(since),
            fit: Ok(()),
            health: own,
            vip,
            vip_failing_for: if vip == Down {
                Duration::from_secs(60)
            } else {
                Duration::ZERO
            },
        })
    }

    fn mv(to: &str, reason: MoveReason) -> Decision {
        Decision::Move {
            to: to.into(),
            reason,
        }
    }

    use Health::*;

    #[test]
    fn first_assignment_prefers_listed_nodes_then_spreads_then_names() {
        let cs = [
            cand("c", 0, Unknown),
            cand("b", 2, Unknown),
            cand("a", 1, Unknown),
        ];
        assert_eq!(
            run(None, &cs, &["b"], Failback::Never, 0),
            mv("b", MoveReason::Initial)
        );
        assert_eq!(
            run(None, &cs, &[], Failback::Never, 0),
            mv("c", MoveReason::Initial)
        );
        let tied = [cand("n2", 1, Unknown), cand("n1", 1, Unknown)];
        assert_eq!(
            run(None, &tied, &[], Failback::Never, 0),
            mv("n1", MoveReason::Initial)
        );
        assert_eq!(
            run(None, &[], &[], Failback::Never, 0),
            Decision::Stuck {
                why: "no node is fit to hold the address".into()
            }
        );
    }

    #[test]
    fn never_to_a_failing_candidate() {
        let cs = [cand("a", 0, Down), cand("b", 5, Up)];
        assert_eq!(
            run(None, &cs, &["a"], Failback::Never, 0),
            mv("b", MoveReason::Initial)
        );
        let all_failing = [cand("a", 0, Down)];
        assert_eq!(
            run(None, &all_failing, &[], Failback::Never, 0),
            Decision::Stuck {
                why: "all 1 fit nodes fail their health check".into()
            }
        );
    }

    #[test]
    fn a_healthy_fit_holder_stays() {
        let cs = [cand("a", 1, Up), cand("b", 0, Up)];
        assert_eq!(
            run(
                holder("a", 0, Ok(()), Up),
                &cs,
                &["b"],
                Failback::Never,
                3600
            ),
            Decision::Stay
        );
    }

    #[test]
    fn an_unfit_holder_moves_at_once_with_the_matching_reason() {
        let cs = [cand("a", 1, Up), cand("b", 0, Up)];
        let cases = [
            (Unfit::Gone, MoveReason::NodeDeleted),
            (Unfit::Deleting, MoveReason::NodeDeleted),
            (Unfit::Cordoned, MoveReason::NodeCordoned),
            (Unfit::NotReady("Unknown".into()), MoveReason::NodeNotReady),
            (
                Unfit::Tainted("x:NoExecute".into()),
                MoveReason::NodeTainted,
            ),
            // The Node is Ready; only its agent is not: say so, not NodeNotReady.
            (Unfit::NoAgent, MoveReason::AgentNotReady),
            (Unfit::NotSelected, MoveReason::NodeIneligible),
            (
                Unfit::NoInterface("no floating ENI".into()),
                MoveReason::NodeIneligible,
            ),
        ];
        for (unfit, reason) in cases {
            // Held for one second only: minHoldSeconds does not keep an address on a node that must go.
            assert_eq!(
                run(
                    holder("a", 0, Err(unfit), Unknown),
                    &cs,
                    &[],
                    Failback::Never,
                    1
                ),
                mv("b", reason)
            );
        }
    }

    #[test]
    fn an_unfit_holder_with_nowhere_to_go_stays_and_says_why() {
        let cs = [cand("a", 1, Up)];
        assert_eq!(
            run(holder("a", 0, Err(Unfit::Cordoned), Up), &cs, &[], Failback::Never, 100),
            Decision::Stuck {
                why: "a should give the address up (the node is cordoned), but no node is fit to hold the address".into()
            }
        );
    }

    #[test]
    fn an_unhealthy_holder_waits_out_min_hold_then_moves() {
        let cs = [cand("a", 1, Down), cand("b", 0, Up)];
        let h = || holder("a", 0, Ok(()), Down);
        assert_eq!(
            run(h(), &cs, &[], Failback::Never, 10),
            Decision::Hold {
                remaining: Duration::from_secs(20)
            }
        );
        assert_eq!(
            run(h(), &cs, &[], Failback::Never, 30),
            mv("b", MoveReason::HolderUnhealthy)
        );
        let nobody = [cand("a", 1, Down), cand("b", 0, Down)];
        assert!(matches!(
            run(h(), &nobody, &[], Failback::Never, 60),
            Decision::Stuck { .. }
        ));
    }

    #[test]
    fn failback_returns_to_a_preferred_passing_node_after_min_hold() {
        let cs = [cand("a", 0, Up), cand("b", 1, Up)];
        let h = || holder("b", 0, Ok(()), Up);
        assert_eq!(run(h(), &cs, &["a"], Failback::Never, 100), Decision::Stay);
        assert_eq!(
            run(h(), &cs, &["a"], Failback::Always, 10),
            Decision::Stay,
            "min hold first"
        );
        assert_eq!(
            run(h(), &cs, &["a"], Failback::Always, 30),
            mv("a", MoveReason::Failback)
        );
        let unknown = [cand("a", 0, Unknown), cand("b", 1, Up)];
        assert_eq!(
            run(h(), &unknown, &["a"], Failback::Always, 100),
            Decision::Stay,
            "only to a node known to answer"
        );
        assert_eq!(
            run(h(), &cs, &["b", "a"], Failback::Always, 100),
            Decision::Stay,
            "already on the most preferred"
        );
    }

    /// A node flapping between healthy and unhealthy every few seconds moves the address at
    /// most once per minHoldSeconds.
    #[test]
    fn flapping_moves_at_most_once_per_min_hold() {
        let mut on = "a".to_string();
        let mut since = 0;
        let mut moves = 0;
        for t in 0..300 {
            // Whichever node holds the address fails every other 5 s window.
            let failing = (t / 5) % 2 == 1;
            let other = if on == "a" { "b" } else { "a" };
            let cs = [
                cand(&on, 1, if failing { Down } else { Up }),
                cand(other, 0, Up),
            ];
            let h = holder(&on, since, Ok(()), if failing { Down } else { Up });
            if let Decision::Move { to, .. } = run(h, &cs, &[], Failback::Never, t) {
                on = to;
                since = t;
                moves += 1;
            }
        }
        assert!(
            moves <= 300 / 30,
            "{moves} moves in 300 s with minHoldSeconds 30"
        );
        assert!(moves >= 1);
    }

    #[test]
    fn health_checked_candidates_must_be_known_to_pass() {
        let cs = [cand("a", 0, Unknown), cand("b", 9, Up)];
        assert_eq!(
            run_checked(None, &cs, &["a"], Failback::Never, 0, true, None),
            mv("b", MoveReason::Initial)
        );
        let unknown = [cand("a", 0, Unknown)];
        assert_eq!(
            run_checked(None, &unknown, &[], Failback::Never, 0, true, None),
            Decision::Stuck {
                why: "none of the 1 fit nodes passes its health check".into()
            }
        );
    }

    /// The decision table of issue 5, row by row.
    #[test]
    fn decision_table() {
        let cs = [cand("a", 1, Up), cand("b", 0, Up)];
        let d = |h, now, re| run_checked(h, &cs, &[], Failback::Never, now, true, re);
        // Address and holder both failing: move after minHold, hold before.
        assert_eq!(
            d(checked("a", 0, Down, Down), 60, None),
            mv("b", MoveReason::HolderUnhealthy)
        );
        assert_eq!(
            d(checked("a", 0, Down, Down), 10, None),
            Decision::Hold {
                remaining: Duration::from_secs(20)
            }
        );
        // Holder failing its own check while clients still get through: stay.
        assert_eq!(d(checked("a", 0, Down, Up), 60, None), Decision::Stay);
        // Address failing, holder passing: re-ensure first, wait out the grace, then move.
        assert_eq!(d(checked("a", 0, Up, Down), 60, None), Decision::Reensure);
        assert_eq!(d(checked("a", 0, Up, Down), 60, Some(1)), Decision::Stay);
        assert_eq!(
            d(checked("a", 0, Up, Down), 60, Some(2)),
            mv("b", MoveReason::HolderUnhealthy)
        );
        assert_eq!(
            d(checked("a", 0, Up, Down), 10, Some(5)),
            Decision::Hold {
                remaining: Duration::from_secs(20)
            }
        );
        // Just moved: the VPC is still routing the address over, so its failing check is
        // not held against the new holder until `settle` (5 s here) has passed.
        assert_eq!(d(checked("a", 0, Up, Down), 4, None), Decision::Stay);
        assert_eq!(d(checked("a", 0, Up, Down), 5, None), Decision::Reensure);
        // The address only just failed: the holder's own check gets its turn first.
        let mut fresh = checked("a", 0, Up, Down);
        if let Some(h) = fresh.as_mut() {
            h.vip_failing_for = Duration::from_millis(200);
        }
        assert_eq!(d(fresh, 60, None), Decision::Stay);
        // The holder's own failing check is the node's trouble and is not covered.
        assert_eq!(
            d(checked("a", 0, Down, Down), 4, None),
            Decision::Hold {
                remaining: Duration::from_secs(26)
            }
        );
        // Healthy: stay.
        assert_eq!(d(checked("a", 0, Up, Up), 60, None), Decision::Stay);
        assert_eq!(
            d(checked("a", 0, Unknown, Unknown), 60, None),
            Decision::Stay
        );
        // No candidate passes (the controller lost its network, say): keep the holder, say why.
        let blind = [cand("a", 1, Down), cand("b", 0, Down)];
        assert_eq!(
            run_checked(
                checked("a", 0, Down, Down),
                &blind,
                &[],
                Failback::Never,
                60,
                true,
                None
            ),
            Decision::Stuck {
                why:
                    "a fails its health check, but none of the 1 fit nodes passes its health check"
                        .into()
            }
        );
        // Gone holder: moves at once even within minHold, and only to a passing node.
        let gone = Some(Incumbent {
            node: "a".into(),
            since: at(0),
            fit: Err(Unfit::Gone),
            health: Unknown,
            vip: Down,
            vip_failing_for: Duration::from_secs(1),
        });
        assert_eq!(d(gone, 1, None), mv("b", MoveReason::NodeDeleted));
    }

    /// An address whose probe result flips every few seconds, on a holder that keeps passing:
    /// at most one re-ensure per failing spell and no move while the re-ensure grace is running.
    #[test]
    fn flapping_address_on_a_passing_holder_does_not_ping_pong() {
        let cs = [cand("a", 1, Up), cand("b", 0, Up)];
        let mut on = "a".to_string();
        let mut since = 0;
        let mut moves = 0;
        let mut reensured_at: Option<i64> = None;
        for t in 0..300 {
            let vip = if (t / 3) % 2 == 1 { Down } else { Up };
            if vip == Up {
                reensured_at = None;
            }
            let re = reensured_at.map(|r| (t - r) as u64);
            match run_checked(
                checked(&on, since, Up, vip),
                &cs,
                &[],
                Failback::Never,
                t,
                true,
                re,
            ) {
                Decision::Move { to, .. } => {
                    on = to;
                    since = t;
                    moves += 1;
                    reensured_at = None;
                }
                Decision::Reensure => reensured_at = Some(t),
                _ => {}
            }
        }
        assert!(
            moves <= 300 / 30,
            "{moves} moves in 300 s with minHoldSeconds 30"
        );
    }
}
