//! A move off a holder that fails its checks needs a second opinion. The controller's probes
//! are one vantage point; a lossy or cut network between it and the nodes would make it move
//! addresses (resetting every client connection) for an event that touched no node. The
//! agents give the second: each probes the holders from its own node and publishes what it
//! sees on its pod, at once when that changes.
//!
//! | the controller sees | agents' views of the holder | move? |
//! |---|---|---|
//! | the address failing, its holder's node answering | any | yes: the controller reaches the node, its network works (the address is first assigned again, see placement) |
//! | the holder's node failing, fewer than half the nodes (or one) failing | an agent on another node sees it down, none up | yes: confirmed |
//! | same | an agent sees it up (taken since the failure began) | no: held, an agent still sees the holder |
//! | same | no agent has said anything since the failure began | held up to [`UNCONFIRMED_AFTER`], then yes (the agents are gone or cannot write) |
//! | half or more of the nodes failing (at least two) | an agent on another node sees it down, none up | yes: confirmed |
//! | same | any up, or none | no: held, the controller doubts its own network |
//!
//! Pure: the caller passes what the probes and the agents' pods say.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use crate::probe::{Health, Target, TargetState};
use crate::status::HeldBack;

/// A view older than this is not evidence: three of the agents' refreshes (5 s).
pub const FRESH: Duration = Duration::from_secs(15);

/// How long an unplanned move waits for an agent's word when no agent has said anything
/// since the failure began, before the controller acts on its own probes. An agent that still
/// sees the holder answer says so within one refresh (5 s); a view that confirms comes within
/// the agent's own detection time. Silence this long means the agents cannot report.
pub const UNCONFIRMED_AFTER: Duration = Duration::from_secs(6);

/// What one agent saw of the holders, from its own node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// How long ago the agent took the snapshot.
    pub age: Duration,
    pub nodes: HashMap<String, Health>,
}

/// Why the controller doubts its probes, if it does: half or more of the nodes it checks (at
/// least two) fail, or have started failing, at once.
pub fn self_doubt(
    node_ips: &HashMap<IpAddr, String>,
    health: &HashMap<Target, TargetState>,
) -> Option<String> {
    let mut checked = BTreeSet::new();
    let mut failing = BTreeSet::new();
    for (target, state) in health {
        let Some(node) = node_ips.get(&target.addr.ip()) else {
            continue;
        };
        if state.state == Health::Unknown {
            continue;
        }
        checked.insert(node.as_str());
        if state.state == Health::Down || state.failing_since.is_some() {
            failing.insert(node.as_str());
        }
    }
    (failing.len() >= 2 && failing.len() * 2 >= checked.len()).then(|| {
        format!(
            "the controller's health checks fail for {} of {} nodes at once ({}), which points at the controller's own network",
            failing.len(),
            checked.len(),
            failing.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// What the agents say of `holder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Agents on these nodes see it down, and none sees it up.
    Confirmed(Vec<String>),
    /// Agents on these nodes still see it answer.
    Denied(Vec<String>),
    /// No fresh view names it.
    Unconfirmed,
}

/// The agents' fresh views of `holder`, its own agent left out (it cannot vouch for itself). A
/// view saying it answers counts only if taken since its checks began failing (`failing_for`
/// ago): a node that died with the holder leaves a last view that still says the holder
/// answers. A fresh view saying it is down counts whenever it was taken: the agent has seen
/// it down since.
pub fn confirm(
    holder: &str,
    failing_for: Duration,
    peers: &HashMap<String, PeerReport>,
) -> Verdict {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (reporter, report) in peers {
        if reporter == holder || report.age > FRESH {
            continue;
        }
        match report.nodes.get(holder) {
            Some(Health::Up) if report.age <= failing_for => up.push(reporter.clone()),
            Some(Health::Down) => down.push(reporter.clone()),
            _ => {}
        }
    }
    up.sort();
    down.sort();
    match (up.is_empty(), down.is_empty()) {
        (false, _) => Verdict::Denied(up),
        (true, false) => Verdict::Confirmed(down),
        (true, true) => Verdict::Unconfirmed,
    }
}

/// Why an unplanned move off `holder` is held, or None when it may go ahead; see the table
/// above. `node_failing`: the holder's own node fails the controller's check (not only the
/// address), for `failing_for`.
pub fn hold_reason(
    doubt: Option<&str>,
    holder: &str,
    node_failing: bool,
    failing_for: Duration,
    peers: &HashMap<String, PeerReport>,
) -> Option<Hold> {
    let verdict = confirm(holder, failing_for, peers);
    let Some(doubt) = doubt else {
        return match verdict {
            _ if !node_failing => None,
            Verdict::Confirmed(_) => None,
            Verdict::Denied(who) => Some(Hold::Denied(HeldBack {
                reason: "AgentsDisagree",
                message: format!(
                    "{holder} fails the controller's health check, but the agents on {} still see it answer, so the address stays",
                    who.join(", ")
                ),
            })),
            Verdict::Unconfirmed if failing_for < UNCONFIRMED_AFTER => {
                Some(Hold::Awaiting(UNCONFIRMED_AFTER - failing_for))
            }
            Verdict::Unconfirmed => None,
        };
    };
    match verdict {
        Verdict::Confirmed(_) => None,
        Verdict::Denied(who) => Some(Hold::Denied(in_doubt(format!(
            "{doubt}; the agents on {} still see {holder} answer, so the address stays",
            who.join(", ")
        )))),
        Verdict::Unconfirmed => Some(Hold::Denied(in_doubt(format!(
            "{doubt}; no agent confirms that {holder} is down, so the address stays"
        )))),
    }
}

fn in_doubt(message: String) -> HeldBack {
    HeldBack {
        reason: "ControllerInDoubt",
        message,
    }
}

/// Why a move is held for want of a second opinion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Held while it lasts: status says why (condition HeldInDoubt).
    Denied(HeldBack),
    /// No agent has spoken yet: wait at most this long for one (a moment, not a condition).
    Awaiting(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn state(s: Health, suspect: bool) -> TargetState {
        TargetState {
            state: s,
            last_failure: None,
            since: Instant::now(),
            failing_since: suspect.then(Instant::now),
        }
    }

    fn picture(
        states: &[(&str, Health, bool)],
    ) -> (HashMap<IpAddr, String>, HashMap<Target, TargetState>) {
        let mut ips = HashMap::new();
        let mut health = HashMap::new();
        for (i, (node, s, suspect)) in states.iter().enumerate() {
            let ip: IpAddr = format!("10.0.8.{}", 11 + i).parse().unwrap();
            ips.insert(ip, node.to_string());
            let t = Target::new(
                crate::api::Protocol::TCP,
                std::net::SocketAddr::new(ip, 30080),
            );
            health.insert(t, state(*s, *suspect));
        }
        (ips, health)
    }

    use Health::{Down, Unknown, Up};

    #[test]
    fn doubt_needs_half_the_checked_nodes_and_at_least_two() {
        let (ips, h) = picture(&[("n1", Down, false), ("n2", Up, false), ("n3", Up, false)]);
        assert_eq!(
            self_doubt(&ips, &h),
            None,
            "one node down is a node failure"
        );
        let (ips, h) = picture(&[("n1", Down, false), ("n2", Down, false), ("n3", Up, false)]);
        assert!(self_doubt(&ips, &h).unwrap().contains("2 of 3 nodes"));
        // Probes run out of phase: the others have only started failing.
        let (ips, h) = picture(&[("n1", Down, false), ("n2", Up, true), ("n3", Up, true)]);
        assert!(self_doubt(&ips, &h)
            .unwrap()
            .contains("3 of 3 nodes at once (n1, n2, n3)"));
        let (ips, h) = picture(&[("n1", Down, false), ("n2", Up, false)]);
        assert_eq!(self_doubt(&ips, &h), None, "two nodes, one down");
        let (ips, h) = picture(&[
            ("n1", Down, false),
            ("n2", Unknown, false),
            ("n3", Up, false),
        ]);
        assert_eq!(self_doubt(&ips, &h), None, "unchecked nodes do not count");
    }

    fn report(age_s: u64, nodes: &[(&str, Health)]) -> PeerReport {
        PeerReport {
            age: Duration::from_secs(age_s),
            nodes: nodes.iter().map(|(n, h)| (n.to_string(), *h)).collect(),
        }
    }

    fn why(hold: Option<Hold>) -> String {
        match hold {
            Some(Hold::Denied(why)) => why.message,
            other => panic!("not denied: {other:?}"),
        }
    }

    #[test]
    fn a_doubted_move_needs_a_fresh_agent_that_sees_the_holder_down_and_none_up() {
        let doubt = Some("the controller's checks fail");
        let failing = Duration::from_secs(5);
        let peers = HashMap::from([
            ("n2".to_string(), report(1, &[("n1", Health::Up)])),
            ("n3".to_string(), report(1, &[("n1", Health::Down)])),
        ]);
        let held = why(hold_reason(doubt, "n1", true, failing, &peers));
        assert!(
            held.ends_with("the agents on n2 still see n1 answer, so the address stays"),
            "{held}"
        );

        let confirmed = HashMap::from([
            ("n3".to_string(), report(1, &[("n1", Health::Down)])),
            // Its own agent and a stale view do not count.
            ("n1".to_string(), report(1, &[("n1", Health::Up)])),
            ("n2".to_string(), report(60, &[("n1", Health::Up)])),
        ]);
        assert_eq!(hold_reason(doubt, "n1", true, failing, &confirmed), None);
        assert_eq!(
            confirm("n1", failing, &confirmed),
            Verdict::Confirmed(vec!["n3".into()])
        );

        let silent = HashMap::from([("n2".to_string(), report(1, &[("n4", Health::Down)]))]);
        assert!(why(hold_reason(doubt, "n1", true, failing, &silent)).contains("no agent confirms"));
    }

    /// Without doubt, a holder failing the controller's check still needs an agent to agree:
    /// one that sees it answer holds the move, silence waits a while, a confirmation goes.
    #[test]
    fn an_unplanned_move_needs_a_second_opinion_even_without_doubt() {
        let failing = Duration::from_millis(300);
        let denied = HashMap::from([
            ("n2".to_string(), report(0, &[("n1", Health::Up)])),
            ("n3".to_string(), report(0, &[("n1", Health::Up)])),
        ]);
        let held = why(hold_reason(None, "n1", true, failing, &denied));
        assert!(
            held.contains("n1 fails the controller's health check, but the agents on n2, n3 still see it answer"),
            "{held}"
        );
        let confirmed = HashMap::from([("n2".to_string(), report(0, &[("n1", Health::Down)]))]);
        assert_eq!(hold_reason(None, "n1", true, failing, &confirmed), None);
        // Nobody has spoken since the failure began: wait, then act alone.
        let silent = HashMap::from([("n2".to_string(), report(7, &[("n1", Health::Up)]))]);
        assert_eq!(
            hold_reason(None, "n1", true, failing, &silent),
            Some(Hold::Awaiting(UNCONFIRMED_AFTER - failing))
        );
        assert_eq!(
            hold_reason(None, "n1", true, UNCONFIRMED_AFTER, &silent),
            None
        );
        // The address fails but the controller reaches the node: its own network works.
        assert_eq!(hold_reason(None, "n1", false, failing, &denied), None);
    }

    /// A fresh view saying the holder is down counts even if taken before the controller's
    /// checks began failing: the agent has seen it down since.
    #[test]
    fn a_fresh_down_view_counts_whenever_it_was_taken() {
        let early = HashMap::from([("n2".to_string(), report(2, &[("n1", Health::Down)]))]);
        assert_eq!(
            confirm("n1", Duration::from_millis(300), &early),
            Verdict::Confirmed(vec!["n2".into()])
        );
    }

    /// n2 died with n1: its last view, taken before the failure, still says n1 answers. It
    /// cannot testify about this failure; n3's view, taken since, confirms it.
    #[test]
    fn a_view_from_before_the_failure_is_no_evidence() {
        let died_together = HashMap::from([
            ("n2".to_string(), report(4, &[("n1", Health::Up)])),
            ("n3".to_string(), report(1, &[("n1", Health::Down)])),
        ]);
        let doubt = Some("the controller's checks fail");
        assert_eq!(
            hold_reason(doubt, "n1", true, Duration::from_secs(2), &died_together),
            None
        );
        assert!(hold_reason(doubt, "n1", true, Duration::from_secs(10), &died_together).is_some());
    }
}
