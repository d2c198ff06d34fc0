//! Probe results reach the decision: the address's and each node's own check.

use super::*;
use crate::probe::{Health as P, TargetState};
use std::time::Instant;

fn node_ip(name: &str, ip: &str) -> NodeView {
    let mut n = node(name, name[1..].parse().unwrap(), json!({}));
    n.internal_ip = Some(ip.parse().unwrap());
    n
}

fn checked_fip() -> Arc<FloatingIP> {
    let mut f = (*fip("web", "10.0.8.100", 0, holder_status("n1"))).clone();
    f.spec.health_check = Some(serde_json::from_value(json!({"port": 80})).unwrap());
    f.spec.failover.min_hold_seconds = 0;
    Arc::new(f)
}

fn health(states: &[(&str, P)]) -> HashMap<Target, TargetState> {
    states
        .iter()
        .map(|(ip, st)| {
            let t = Target::new(
                crate::api::Protocol::TCP,
                format!("{ip}:80").parse().unwrap(),
            );
            (
                t,
                TargetState {
                    state: *st,
                    last_failure: (*st == P::Down).then(|| "refused".to_string()),
                    // In this state for a while: long past one probe interval.
                    since: Instant::now()
                        .checked_sub(Duration::from_secs(10))
                        .unwrap_or_else(Instant::now),
                    // A Down target's latest probe failed, in a run that began before it
                    // went Down.
                    failing_since: (*st == P::Down).then(|| {
                        Instant::now()
                            .checked_sub(Duration::from_secs(11))
                            .unwrap_or_else(Instant::now)
                    }),
                },
            )
        })
        .collect()
}

fn decide_with(states: &[(&str, P)], reensured: Option<Duration>) -> Placement {
    decide_with_health(health(states), reensured, &HashMap::new())
}

fn decide_with_health(
    health: HashMap<Target, TargetState>,
    reensured: Option<Duration>,
    peers: &HashMap<String, crate::controller::doubt::PeerReport>,
) -> Placement {
    decide_among(2, health, reensured, peers)
}

/// Plans `web` (held by n1) among `n` nodes n1.. at 10.0.8.11.. with these probe results.
fn decide_among(
    n: u8,
    health: HashMap<Target, TargetState>,
    reensured: Option<Duration>,
    peers: &HashMap<String, crate::controller::doubt::PeerReport>,
) -> Placement {
    let fips = [checked_fip()];
    let nodes: Vec<NodeView> = (1..=n)
        .map(|i| node_ip(&format!("n{i}"), &format!("10.0.8.{}", 10 + i)))
        .collect();
    let enis = HashMap::from([(
        SUBNET.to_string(),
        (1..=n)
            .map(|i| eni(i, if i == 1 { &["10.0.8.100"] } else { &[] }))
            .collect(),
    )]);
    let reensured: HashMap<String, Duration> = reensured
        .map(|d| ("web".to_string(), d))
        .into_iter()
        .collect();
    let plans = plan(&Picture {
        fips: &fips,
        nodes: &nodes,
        agents_ready: None,
        agents_leaving: &HashSet::new(),
        enis: &enis,
        subnets: &subnets(),
        reads: &Reads::default(),
        cluster: CLUSTER,
        now: Timestamp::from_second(1_800_001_000).unwrap(),
        health: &health,
        reensured: &reensured,
        peers,
    });
    act(&plans[0]).clone()
}

#[test]
fn an_unplanned_move_names_the_target_check_to_probe_once_more() {
    let a = decide_with(
        &[
            ("10.0.8.100", P::Down),
            ("10.0.8.11", P::Down),
            ("10.0.8.12", P::Up),
        ],
        None,
    );
    assert_eq!(
        a.confirm_target,
        Some(Target::new(
            crate::api::Protocol::TCP,
            "10.0.8.12:80".parse().unwrap()
        ))
    );
    // Staying needs no probe.
    let stay = decide_with(&[("10.0.8.100", P::Up), ("10.0.8.11", P::Up)], None);
    assert_eq!(stay.confirm_target, None);
}

#[test]
fn a_dead_holder_service_moves_the_address_to_a_passing_node() {
    let a = decide_with(
        &[
            ("10.0.8.100", P::Down),
            ("10.0.8.11", P::Down),
            ("10.0.8.12", P::Up),
        ],
        None,
    );
    assert_eq!(
        a.decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::HolderUnhealthy
        }
    );
    let vip = a.vip.unwrap();
    assert_eq!(
        (vip.health, vip.last_failure.as_deref()),
        (Health::Down, Some("refused"))
    );
}

#[test]
fn an_unproven_candidate_is_no_candidate() {
    let a = decide_with(&[("10.0.8.100", P::Down), ("10.0.8.11", P::Down)], None);
    assert_eq!(
        a.decision,
        Decision::Stuck {
            why: "n1 fails its health check, but none of the 1 fit nodes passes its health check"
                .into()
        }
    );
}

#[test]
fn an_address_failing_on_a_passing_holder_is_reensured_then_moved() {
    let states = [
        ("10.0.8.100", P::Down),
        ("10.0.8.11", P::Up),
        ("10.0.8.12", P::Up),
    ];
    assert_eq!(decide_with(&states, None).decision, Decision::Reensure);
    assert_eq!(
        decide_with(&states, Some(Duration::from_millis(500))).decision,
        Decision::Stay
    );
    // Assigned again 2.5 s ago: the VPC may still be routing it back (about 1.2 s in
    // AWS), then the check needs its successes. Moving now would move a healthy holder.
    assert_eq!(
        decide_with(&states, Some(Duration::from_millis(2500))).decision,
        Decision::Stay
    );
    assert_eq!(
        decide_with(&states, Some(Duration::from_secs(5))).decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::HolderUnhealthy
        }
    );
}

#[test]
fn a_failing_holder_takes_along_addresses_whose_checks_started_failing() {
    // n1's own check is Down; the address's check is still Up, but its latest probe
    // failed (probes run out of phase): it moves in this pass, with the others.
    let mut states = health(&[
        ("10.0.8.100", P::Up),
        ("10.0.8.11", P::Down),
        ("10.0.8.12", P::Up),
    ]);
    let vip = Target::new(crate::api::Protocol::TCP, "10.0.8.100:80".parse().unwrap());
    states.get_mut(&vip).unwrap().failing_since = Some(Instant::now());
    assert_eq!(
        decide_with_health(states.clone(), None, &HashMap::new()).decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::HolderUnhealthy
        }
    );
    // Its latest probe passed: the path clients use works, so it stays.
    states.get_mut(&vip).unwrap().failing_since = None;
    assert_eq!(
        decide_with_health(states, None, &HashMap::new()).decision,
        Decision::Stay
    );
}

/// Finding 4: two of three nodes fail the controller's checks at once. It moves the address
/// only when an agent confirms the holder is down; while an agent still sees the holder
/// answer, or none says anything, it holds and says why.
#[test]
fn a_doubted_move_waits_for_an_agent_to_confirm_the_holder_is_down() {
    use crate::controller::doubt::PeerReport;
    let view = |of_n1: Health| {
        HashMap::from([(
            "n3".to_string(),
            PeerReport {
                age: Duration::from_secs(1),
                nodes: HashMap::from([("n1".to_string(), of_n1)]),
            },
        )])
    };
    let decide = |peers: &HashMap<String, PeerReport>| {
        let states = [
            ("10.0.8.100", P::Down),
            ("10.0.8.11", P::Down),
            ("10.0.8.12", P::Down),
            ("10.0.8.13", P::Up),
        ];
        decide_among(3, health(&states), None, peers)
    };
    let alone = decide(&HashMap::new());
    assert_eq!(alone.decision, Decision::Stay);
    let held = alone.doubt.expect("held in doubt");
    assert_eq!(held.reason, "ControllerInDoubt");
    let why = held.message;
    assert!(
        why.contains("fail for 2 of 3 nodes at once (n1, n2)"),
        "{why}"
    );
    assert!(why.contains("no agent confirms that n1 is down"), "{why}");

    let denied = decide(&view(Health::Up));
    assert_eq!(denied.decision, Decision::Stay);
    assert!(denied
        .doubt
        .unwrap()
        .message
        .contains("the agents on n3 still see n1 answer"));

    let confirmed = decide(&view(Health::Down));
    assert_eq!(
        confirmed.decision,
        Decision::Move {
            to: "n3".into(),
            reason: MoveReason::HolderUnhealthy
        }
    );
    assert_eq!(confirmed.doubt, None);
}

/// One node of three fails the controller's checks, just now (300 ms): no doubt of its own
/// network, but the move still needs an agent on another node to agree. Without a word from
/// one it waits (Hold, not a condition); an agent that sees the holder answer holds it
/// (and status says so); one that sees it down lets it go.
#[test]
fn a_fresh_failure_moves_once_an_agent_on_another_node_agrees() {
    use crate::controller::doubt::{PeerReport, UNCONFIRMED_AFTER};
    let just_now = |st: P| TargetState {
        state: st,
        last_failure: (st == P::Down).then(|| "timeout".to_string()),
        since: Instant::now(),
        failing_since: (st == P::Down).then(|| {
            Instant::now()
                .checked_sub(Duration::from_millis(300))
                .unwrap()
        }),
    };
    let mut states = health(&[("10.0.8.12", P::Up), ("10.0.8.13", P::Up)]);
    for ip in ["10.0.8.100", "10.0.8.11"] {
        let t = Target::new(
            crate::api::Protocol::TCP,
            format!("{ip}:80").parse().unwrap(),
        );
        states.insert(t, just_now(P::Down));
    }
    let view = |of_n1: Health| {
        HashMap::from([(
            "n3".to_string(),
            PeerReport {
                age: Duration::from_millis(20),
                nodes: HashMap::from([("n1".to_string(), of_n1)]),
            },
        )])
    };
    let silent = decide_among(3, states.clone(), None, &HashMap::new());
    match silent.decision {
        Decision::Hold { remaining } => assert!(remaining <= UNCONFIRMED_AFTER, "{remaining:?}"),
        other => panic!("moved on the controller's word alone: {other:?}"),
    }
    assert_eq!(silent.doubt, None);
    assert!(silent.verdict_pending);

    let denied = decide_among(3, states.clone(), None, &view(Health::Up));
    assert_eq!(denied.decision, Decision::Stay);
    assert!(!denied.verdict_pending);
    let held = denied.doubt.as_ref().unwrap();
    assert_eq!(
        held.reason, "AgentsDisagree",
        "the controller does not doubt itself"
    );
    assert!(
        held.message
            .contains("the agents on n3 still see it answer"),
        "{denied:?}"
    );

    let confirmed = decide_among(3, states, None, &view(Health::Down));
    assert_eq!(
        confirmed.decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::HolderUnhealthy
        }
    );
}

/// Cut off from every node, the controller sees no candidate either: what it says is that
/// it doubts itself, not that no node passes.
#[test]
fn a_controller_cut_off_from_every_node_holds_in_doubt() {
    let states = [
        ("10.0.8.100", P::Down),
        ("10.0.8.11", P::Down),
        ("10.0.8.12", P::Down),
        ("10.0.8.13", P::Down),
    ];
    let a = &decide_among(3, health(&states), None, &HashMap::new());
    assert_eq!(a.decision, Decision::Stay);
    assert!(
        a.doubt.as_ref().unwrap().message.contains("3 of 3 nodes"),
        "{a:?}"
    );
    let ready = crate::controller::execute::ready_condition(a);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        ("Unknown", "HeldInDoubt")
    );
}

#[test]
fn a_dead_holder_is_not_ready_even_with_nowhere_to_go() {
    let states = [
        ("10.0.8.100", P::Down),
        ("10.0.8.11", P::Down),
        ("10.0.8.12", P::Down),
    ];
    // Both nodes fail the controller's checks, so it doubts itself until n2's agent
    // confirms n1 is down: then n1 is dead and there is nowhere to go.
    let confirmed = HashMap::from([(
        "n2".to_string(),
        crate::controller::doubt::PeerReport {
            age: Duration::from_secs(1),
            nodes: HashMap::from([("n1".to_string(), Health::Down)]),
        },
    )]);
    let a = decide_with_health(health(&states), None, &confirmed);
    assert!(matches!(a.decision, Decision::Stuck { .. }), "{a:?}");
    assert_eq!(a.holder_health, Health::Down);
    let ready = crate::controller::execute::ready_condition(&a);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        ("False", "HolderUnhealthy"),
        "{ready:?}"
    );
    // A holder whose own check passes stays Ready.
    let fine = decide_with(&[("10.0.8.100", P::Up), ("10.0.8.11", P::Up)], None);
    assert_eq!(
        crate::controller::execute::ready_condition(&fine).status,
        "True"
    );
}

#[test]
fn the_grace_covers_the_probes_needed_to_see_the_address_pass_again() {
    let hc: crate::api::HealthCheck =
        serde_json::from_value(json!({"port": 80, "intervalMs": 1000, "successThreshold": 3}))
            .unwrap();
    assert_eq!(reensure_grace(&hc), Duration::from_secs(4));
    let fast: crate::api::HealthCheck =
        serde_json::from_value(json!({"port": 80, "intervalMs": 100})).unwrap();
    assert_eq!(
        reensure_grace(&fast),
        Duration::from_secs(2),
        "never below 2 s"
    );
}

/// Targets are derived in one place: the probe engine is given what `checks_of` lists, and the
/// targets whose results the plan reads are among them. The address and its holder (n1) are
/// probed every interval, each linked to the other; the other node every idle interval.
#[test]
fn the_plan_reads_the_targets_the_probes_are_given() {
    let nodes: Vec<(String, IpAddr)> = [("n1", "10.0.8.11"), ("n2", "10.0.8.12")]
        .iter()
        .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
        .collect();
    let node_ips: Vec<IpAddr> = nodes.iter().map(|(_, ip)| *ip).collect();
    let f = checked_fip();
    let checks = checks_of(&f, &nodes);
    let hc = f.spec.health_check.as_ref().unwrap();
    let address: IpAddr = "10.0.8.100".parse().unwrap();
    let plain = crate::probe::health_check_targets(
        hc,
        std::iter::once(address).chain(node_ips.iter().copied()),
    );
    let (vip, holder, idle) = (plain[0].0, plain[1].0, plain[2].0);
    let listed: Vec<Target> = checks.iter().map(|(t, _)| *t).collect();
    assert_eq!(listed, [vip, holder, idle]);
    let spec = |t: Target| checks.iter().find(|(c, _)| *c == t).unwrap().1.clone();
    let every = |ms| Duration::from_millis(ms);
    assert_eq!(spec(vip).interval, every(100));
    assert_eq!(spec(vip).linked, [holder]);
    assert_eq!(spec(holder).interval, every(100));
    assert_eq!(spec(holder).linked, [vip]);
    assert_eq!(spec(idle).interval, every(1000));
    assert!(spec(idle).linked.is_empty());
    assert_eq!(spec(idle).timeout, plain[2].1.timeout);
    let targets: Vec<Target> = checks.iter().map(|(t, _)| *t).collect();
    let a = decide_with(
        &[
            ("10.0.8.100", P::Down),
            ("10.0.8.11", P::Down),
            ("10.0.8.12", P::Up),
        ],
        None,
    );
    assert_eq!(a.vip.as_ref().map(|v| v.target), Some(targets[0]));
    assert_eq!(a.confirm_target, Some(targets[2]));

    // Nothing to probe without a check, or with one the prober cannot use.
    let mut unchecked = (*f).clone();
    unchecked.spec.health_check = None;
    assert_eq!(checks_of(&unchecked, &nodes), []);
    let mut unusable = (*f).clone();
    unusable.spec.health_check =
        Some(serde_json::from_value(json!({"port": 80, "intervalMs": 0})).unwrap());
    assert_eq!(checks_of(&unusable, &nodes), []);
}

#[test]
fn a_holder_answering_again_is_not_moved_for_failures_it_stopped_having() {
    // After the controller's own network heals, targets come back out of phase: the other
    // nodes are Up again while the holder and its address are still Down, though their latest
    // probes passed. Moving then would be a false move, the doubt having just ended.
    let mut states = health(&[
        ("10.0.8.100", P::Down),
        ("10.0.8.11", P::Down),
        ("10.0.8.12", P::Up),
    ]);
    let failing = decide_with_health(states.clone(), None, &HashMap::new());
    assert!(
        matches!(failing.decision, Decision::Move { .. }),
        "{:?}",
        failing.decision
    );
    for s in states.values_mut() {
        s.failing_since = None;
    }
    let recovering = decide_with_health(states, None, &HashMap::new());
    assert_eq!(recovering.decision, Decision::Stay);
    assert!(recovering.vip.as_ref().is_some_and(|v| v.recovering));
}
