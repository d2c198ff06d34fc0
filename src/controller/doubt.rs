//! The controller doubts its own eyes first. When most nodes fail its health checks at once, a
//! cut in its own network is likelier than that many nodes dying together, and moving addresses
//! then resets every client connection for an event that touched no node. So an unplanned move
//! (the holder failing its checks) needs a second vantage point that sees the nodes from their
//! own network: the agents, which probe the holders and publish what they see on their pods.
//!
//! | controller's node checks | agents' fresh views of the holder | move? |
//! |---|---|---|
//! | fewer than half (or one) failing | any | yes, on the controller's evidence |
//! | half or more failing | at least one Down, none Up (views taken since the failure began) | yes: confirmed |
//! | half or more failing | any Up | no: held, the agents still see the holder |
//! | half or more failing | none | no: held, nothing confirms it |
//!
//! Pure: the caller passes what the probes and the agents' pods say.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use crate::probe::{Health, Target, TargetState};

/// A view older than this is not evidence: three of the agents' refreshes (5 s).
pub const FRESH: Duration = Duration::from_secs(15);

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

/// The agents' views of `holder` taken since its checks began failing (`failing_for` ago) and
/// still fresh; its own agent left out (it cannot vouch for itself). An older view cannot
/// testify about this failure: a node that died with the holder leaves a last view that still
/// says the holder answers.
pub fn confirm(
    holder: &str,
    failing_for: Duration,
    peers: &HashMap<String, PeerReport>,
) -> Verdict {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (reporter, report) in peers {
        if reporter == holder || report.age > FRESH || report.age > failing_for {
            continue;
        }
        match report.nodes.get(holder) {
            Some(Health::Up) => up.push(reporter.clone()),
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

/// Why an unplanned move off `holder` is held, or None when it may go ahead.
pub fn hold_reason(
    doubt: Option<&str>,
    holder: &str,
    failing_for: Duration,
    peers: &HashMap<String, PeerReport>,
) -> Option<String> {
    let doubt = doubt?;
    match confirm(holder, failing_for, peers) {
        Verdict::Confirmed(_) => None,
        Verdict::Denied(who) => Some(format!(
            "{doubt}; the agents on {} still see {holder} answer, so the address stays",
            who.join(", ")
        )),
        Verdict::Unconfirmed => Some(format!(
            "{doubt}; no agent confirms that {holder} is down, so the address stays"
        )),
    }
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

    #[test]
    fn a_doubted_move_needs_a_fresh_agent_that_sees_the_holder_down_and_none_up() {
        let doubt = Some("the controller's checks fail");
        let failing = Duration::from_secs(5);
        let peers = HashMap::from([
            ("n2".to_string(), report(1, &[("n1", Health::Up)])),
            ("n3".to_string(), report(1, &[("n1", Health::Down)])),
        ]);
        assert_eq!(
            hold_reason(None, "n1", failing, &peers),
            None,
            "no doubt, no question"
        );
        let held = hold_reason(doubt, "n1", failing, &peers).unwrap();
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
        assert_eq!(hold_reason(doubt, "n1", failing, &confirmed), None);
        assert_eq!(
            confirm("n1", failing, &confirmed),
            Verdict::Confirmed(vec!["n3".into()])
        );

        let silent = HashMap::from([("n2".to_string(), report(1, &[("n4", Health::Down)]))]);
        assert!(hold_reason(doubt, "n1", failing, &silent)
            .unwrap()
            .contains("no agent confirms"));
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
            hold_reason(doubt, "n1", Duration::from_secs(2), &died_together),
            None
        );
        assert!(hold_reason(doubt, "n1", Duration::from_secs(10), &died_together).is_some());
    }
}
