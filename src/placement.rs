//! Which node should hold an address: a pure function of the holder's state, the candidates and
//! the FloatingIP's preferences. No I/O, so every rule is a unit test.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{Failback, MoveReason};
use crate::nodes::Unfit;

/// What the health checks say about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Passing,
    Failing,
    /// Not checked, or not enough results yet.
    Unknown,
}

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
pub struct Holder {
    pub node: String,
    pub since: Timestamp,
    /// Err when the node must give the address up (gone, NotReady, cordoned, tainted...).
    pub fit: Result<(), Unfit>,
    /// The node's own health check.
    pub health: Health,
}

pub struct Input<'a> {
    pub holder: Option<Holder>,
    /// Fit nodes, in any order; the holder may be among them and is skipped.
    pub candidates: &'a [Candidate],
    pub preferred: &'a [String],
    pub failback: Failback,
    pub min_hold: Duration,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep the address where it is.
    Stay,
    /// Move (or first assign) the address.
    Move { to: String, reason: MoveReason },
    /// The holder should give the address up but has held it for less than minHoldSeconds.
    Hold { remaining: Duration },
    /// The address should move but no candidate can take it; it stays where it is (or
    /// unassigned) and the message says why.
    Stuck { why: String },
}

/// Decides where the address should be.
pub fn decide(input: &Input<'_>) -> Decision {
    let best = |exclude: Option<&str>| {
        input
            .candidates
            .iter()
            .filter(|c| Some(c.node.as_str()) != exclude && c.health != Health::Failing)
            .min_by_key(|c| (rank(input.preferred, &c.node), c.load, c.node.as_str()))
    };
    let Some(holder) = &input.holder else {
        return match best(None) {
            Some(c) => Decision::Move {
                to: c.node.clone(),
                reason: MoveReason::Initial,
            },
            None => Decision::Stuck {
                why: no_candidates(input.candidates),
            },
        };
    };
    let held_for =
        Duration::from_secs(input.now.duration_since(holder.since).as_secs().max(0) as u64);
    // A holder that must go leaves at once, whatever minHoldSeconds says.
    if let Err(unfit) = &holder.fit {
        return match best(Some(&holder.node)) {
            Some(c) => Decision::Move {
                to: c.node.clone(),
                reason: unfit.move_reason(),
            },
            None => Decision::Stuck {
                why: format!(
                    "{} should give the address up ({unfit}), but {}",
                    holder.node,
                    no_candidates_after(input.candidates, &holder.node)
                ),
            },
        };
    }
    if holder.health == Health::Failing {
        if held_for < input.min_hold {
            return Decision::Hold {
                remaining: input.min_hold - held_for,
            };
        }
        return match best(Some(&holder.node)) {
            Some(c) => Decision::Move {
                to: c.node.clone(),
                reason: MoveReason::HolderUnhealthy,
            },
            None => Decision::Stuck {
                why: format!(
                    "{} fails its health check, but {}",
                    holder.node,
                    no_candidates_after(input.candidates, &holder.node)
                ),
            },
        };
    }
    if input.failback == Failback::Always && held_for >= input.min_hold {
        let current = rank(input.preferred, &holder.node);
        if let Some(c) = best(Some(&holder.node)) {
            // Only to a node that is known to answer: failback is never worth an outage.
            if rank(input.preferred, &c.node) < current && c.health == Health::Passing {
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

fn no_candidates(candidates: &[Candidate]) -> String {
    if candidates.is_empty() {
        "no node is fit to hold the address".to_string()
    } else {
        format!("all {} fit nodes fail their health check", candidates.len())
    }
}

fn no_candidates_after(candidates: &[Candidate], holder: &str) -> String {
    no_candidates(
        &candidates
            .iter()
            .filter(|c| c.node != holder)
            .cloned()
            .collect::<Vec<_>>(),
    )
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

    fn holder(node: &str, since: i64, fit: Result<(), Unfit>, health: Health) -> Option<Holder> {
        Some(Holder {
            node: node.into(),
            since: at(since),
            fit,
            health,
        })
    }

    fn run(
        holder: Option<Holder>,
        candidates: &[Candidate],
        preferred: &[&str],
        failback: Failback,
        now: i64,
    ) -> Decision {
        let preferred: Vec<String> = preferred.iter().map(|s| s.to_string()).collect();
        decide(&Input {
            holder,
            candidates,
            preferred: &preferred,
            failback,
            min_hold: Duration::from_secs(30),
            now: at(now),
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
        let cs = [cand("a", 0, Failing), cand("b", 5, Passing)];
        assert_eq!(
            run(None, &cs, &["a"], Failback::Never, 0),
            mv("b", MoveReason::Initial)
        );
        let all_failing = [cand("a", 0, Failing)];
        assert_eq!(
            run(None, &all_failing, &[], Failback::Never, 0),
            Decision::Stuck {
                why: "all 1 fit nodes fail their health check".into()
            }
        );
    }

    #[test]
    fn a_healthy_fit_holder_stays() {
        let cs = [cand("a", 1, Passing), cand("b", 0, Passing)];
        assert_eq!(
            run(
                holder("a", 0, Ok(()), Passing),
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
        let cs = [cand("a", 1, Passing), cand("b", 0, Passing)];
        let cases = [
            (Unfit::Gone, MoveReason::NodeDeleted),
            (Unfit::Deleting, MoveReason::NodeDeleted),
            (Unfit::Cordoned, MoveReason::NodeCordoned),
            (Unfit::NotReady("Unknown".into()), MoveReason::NodeNotReady),
            (
                Unfit::Tainted("x:NoExecute".into()),
                MoveReason::NodeTainted,
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
        let cs = [cand("a", 1, Passing)];
        assert_eq!(
            run(holder("a", 0, Err(Unfit::Cordoned), Passing), &cs, &[], Failback::Never, 100),
            Decision::Stuck {
                why: "a should give the address up (the node is cordoned), but no node is fit to hold the address".into()
            }
        );
    }

    #[test]
    fn an_unhealthy_holder_waits_out_min_hold_then_moves() {
        let cs = [cand("a", 1, Failing), cand("b", 0, Passing)];
        let h = || holder("a", 0, Ok(()), Failing);
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
        let nobody = [cand("a", 1, Failing), cand("b", 0, Failing)];
        assert!(matches!(
            run(h(), &nobody, &[], Failback::Never, 60),
            Decision::Stuck { .. }
        ));
    }

    #[test]
    fn failback_returns_to_a_preferred_passing_node_after_min_hold() {
        let cs = [cand("a", 0, Passing), cand("b", 1, Passing)];
        let h = || holder("b", 0, Ok(()), Passing);
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
        let unknown = [cand("a", 0, Unknown), cand("b", 1, Passing)];
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
                cand(&on, 1, if failing { Failing } else { Passing }),
                cand(other, 0, Passing),
            ];
            let h = holder(&on, since, Ok(()), if failing { Failing } else { Passing });
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
}
