use super::*;
use crate::cloud::{TAG_CLUSTER, TAG_NO_MANAGE};
use serde_json::json;

const SUBNET: &str = "subnet-0a1b2c3d";
const CLUSTER: &str = "lab";

fn subnets() -> HashMap<String, Subnet> {
    HashMap::from([(
        SUBNET.to_string(),
        Subnet {
            id: SUBNET.into(),
            cidr_v4: Some("10.0.8.0/22".into()),
            cidrs_v6: vec![],
        },
    )])
}

fn node(name: &str, i: u8, extra: serde_json::Value) -> NodeView {
    let mut n = json!({
        "metadata": {"name": name},
        "spec": {"providerID": format!("aws:///zone/i-{i:017x}")},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    });
    if let Some(spec) = extra.get("spec") {
        for (k, v) in spec.as_object().unwrap() {
            n["spec"][k] = v.clone();
        }
    }
    NodeView::from_node(&serde_json::from_value(n).unwrap())
}

fn eni(i: u8, holds: &[&str]) -> Eni {
    Eni {
        id: format!("eni-{i:017x}"),
        subnet_id: SUBNET.into(),
        instance_id: Some(format!("i-{i:017x}")),
        device_index: Some(1),
        mac: None,
        primary_ip: Some(format!("10.0.8.{}", 200 + u16::from(i)).parse().unwrap()),
        secondary: holds.iter().map(|a| a.parse().unwrap()).collect(),
        tags: [(TAG_CLUSTER, CLUSTER), (TAG_NO_MANAGE, "true")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        security_groups: Vec::new(),
    }
}

fn fip(name: &str, address: &str, created: i64, status: serde_json::Value) -> Arc<FloatingIP> {
    let mut f: FloatingIP = serde_json::from_value(json!({
        "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
        "metadata": {"name": name, "creationTimestamp": Timestamp::from_second(1_800_000_000 + created).unwrap().to_string(),
                     "finalizers": [FINALIZER]},
        "spec": {"address": address, "subnetId": SUBNET},
    }))
    .unwrap();
    if !status.is_null() {
        f.status = Some(serde_json::from_value(status).unwrap());
    }
    Arc::new(f)
}

fn run(fips: &[Arc<FloatingIP>], nodes: &[NodeView], enis: Vec<Eni>) -> Vec<Plan> {
    let enis = HashMap::from([(SUBNET.to_string(), enis)]);
    plan(&Picture {
        fips,
        nodes,
        agents_ready: None,
        agents_leaving: &HashSet::new(),
        enis: &enis,
        subnets: &subnets(),
        cluster: CLUSTER,
        now: Timestamp::from_second(1_800_001_000).unwrap(),
        health: &HashMap::new(),
        reensured: &HashMap::new(),
        peers: &HashMap::new(),
    })
}

fn three_nodes() -> Vec<NodeView> {
    vec![
        node("n1", 1, json!({})),
        node("n2", 2, json!({})),
        node("n3", 3, json!({})),
    ]
}

fn act(p: &Plan) -> &Placement {
    match p {
        Plan::Place(a) => a,
        other => panic!("expected Placement, got {other:?}"),
    }
}

fn holder_status(node: &str) -> serde_json::Value {
    json!({"holder": {"node": node, "instanceId": "i-x", "since": "2026-01-01T00:00:00Z"}})
}

#[test]
fn first_assignment_goes_to_a_fit_node_with_an_eni() {
    let plans = run(
        &[fip("web", "10.0.8.100", 0, json!(null))],
        &three_nodes(),
        vec![eni(1, &[]), eni(2, &[]), eni(3, &[])],
    );
    let a = act(&plans[0]);
    assert_eq!(
        a.decision,
        Decision::Move {
            to: "n1".into(),
            reason: MoveReason::Initial
        }
    );
    assert_eq!(a.target.as_ref().unwrap().eni, eni(1, &[]).id);
    assert_eq!(a.candidates, 3);
}

#[test]
fn nodes_without_a_floating_eni_are_not_candidates() {
    let mut foreign_tag = eni(1, &[]);
    foreign_tag
        .tags
        .insert(TAG_CLUSTER.into(), "other-cluster".into());
    let plans = run(
        &[fip("web", "10.0.8.100", 0, json!(null))],
        &three_nodes(),
        vec![foreign_tag, eni(3, &[])],
    );
    assert_eq!(
        act(&plans[0]).decision,
        Decision::Move {
            to: "n3".into(),
            reason: MoveReason::Initial
        }
    );
    let plans = run(
        &[fip("web", "10.0.8.100", 0, json!(null))],
        &three_nodes(),
        vec![],
    );
    let Decision::Stuck { why } = &act(&plans[0]).decision else {
        panic!("{:?}", act(&plans[0]).decision)
    };
    assert!(
        why.starts_with("no node is fit to hold the address (n1: the node has no floating ENI of cluster lab in subnet-0a1b2c3d"),
        "{why}"
    );

    // A nodeSelector that matches nothing says so, rather than "no node is fit".
    let mut picky = (*fip("picky", "10.0.8.101", 0, json!(null))).clone();
    picky.spec.node_selector =
        Some(serde_json::from_value(json!({"matchLabels": {"role": "edge"}})).unwrap());
    let plans = run(&[Arc::new(picky)], &three_nodes(), vec![eni(1, &[])]);
    assert_eq!(
        act(&plans[0]).decision,
        Decision::Stuck {
            why:
                "no node is fit to hold the address: spec.nodeSelector selects none of the 3 nodes"
                    .into()
        }
    );
}

#[test]
fn a_cordoned_holder_loses_the_address() {
    let nodes = vec![
        node("n1", 1, json!({"spec": {"unschedulable": true}})),
        node("n2", 2, json!({})),
    ];
    let plans = run(
        &[fip("web", "10.0.8.100", 0, holder_status("n1"))],
        &nodes,
        vec![eni(1, &["10.0.8.100"]), eni(2, &[])],
    );
    let a = act(&plans[0]);
    assert_eq!(a.holder.as_ref().unwrap().node, "n1");
    assert_eq!(
        a.decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::NodeCordoned
        }
    );
    assert_eq!(a.holder_fit, Some(Err(Unfit::Cordoned)));
}

#[test]
fn a_deleted_holder_node_is_gone() {
    let nodes = vec![node("n2", 2, json!({}))];
    let status = json!({"holder": {"node": "n1", "instanceId": format!("i-{:017x}", 1), "since": "2026-01-01T00:00:00Z"}});
    let plans = run(
        &[fip("web", "10.0.8.100", 0, status)],
        &nodes,
        vec![eni(1, &["10.0.8.100"]), eni(2, &[])],
    );
    let a = act(&plans[0]);
    // The floating ENI still holds the address, but no node claims its instance any more.
    assert_eq!(a.holder.as_ref().unwrap().node, "n1");
    assert_eq!(a.holder_fit, Some(Err(Unfit::Gone)));
    assert_eq!(
        a.decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::NodeDeleted
        }
    );
}

#[test]
fn an_address_on_an_unmanaged_eni_is_never_taken() {
    let mut theirs = eni(9, &["10.0.8.100"]);
    theirs.tags.clear();
    let plans = run(
        &[fip("web", "10.0.8.100", 0, json!(null))],
        &three_nodes(),
        vec![theirs, eni(1, &[])],
    );
    let a = act(&plans[0]);
    assert_eq!(a.foreign.as_deref(), Some("eni-00000000000000009"));
    assert!(
        matches!(&a.decision, Decision::Stuck { why } if why.contains("which floatip does not manage"))
    );
    assert!(a.target.is_none());
}

#[test]
fn the_older_of_two_same_address_floatingips_wins() {
    let older = fip("zeta", "10.0.8.100", 0, json!(null));
    let newer = fip("alpha", "10.0.8.100", 10, json!(null));
    let plans = run(&[newer, older], &three_nodes(), vec![eni(1, &[])]);
    assert_eq!(
        plans[0],
        Plan::Conflict {
            name: "alpha".into(),
            winner: "zeta".into()
        }
    );
    assert!(matches!(&plans[1], Plan::Place(a) if a.name == "zeta"));
}

#[test]
fn invalid_specs_are_not_acted_on() {
    let bad = fip("bad", "127.0.0.1", 0, json!(null));
    let plans = run(&[bad], &three_nodes(), vec![eni(1, &[])]);
    assert!(
        matches!(&plans[0], Plan::Invalid { errors, .. } if errors.to_string().contains("unicast"))
    );
}

#[test]
fn deletion_releases_from_every_holding_eni_but_a_conflict_loser_touches_nothing() {
    let mut deleting = (*fip("web", "10.0.8.100", 0, holder_status("n1"))).clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(1_800_000_500).unwrap(),
        ));
    let plans = run(
        &[Arc::new(deleting.clone())],
        &three_nodes(),
        vec![eni(1, &["10.0.8.100"]), eni(2, &[])],
    );
    assert_eq!(
        plans[0],
        Plan::Release {
            name: "web".into(),
            address: "10.0.8.100".parse().unwrap(),
            from: vec![eni(1, &[]).id]
        }
    );

    deleting.metadata.name = Some("copy".into());
    deleting.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(1_800_000_900).unwrap(),
        ));
    let owner = fip("web", "10.0.8.100", 0, holder_status("n1"));
    let plans = run(
        &[owner, Arc::new(deleting)],
        &three_nodes(),
        vec![eni(1, &["10.0.8.100"])],
    );
    assert_eq!(
        plans[0],
        Plan::Release {
            name: "copy".into(),
            address: "10.0.8.100".parse().unwrap(),
            from: vec![]
        }
    );
}

#[test]
fn drift_is_put_back_on_the_intended_holder() {
    // Removed outside floatip.
    let plans = run(
        &[fip("web", "10.0.8.100", 0, holder_status("n2"))],
        &three_nodes(),
        vec![eni(1, &[]), eni(2, &[]), eni(3, &[])],
    );
    assert_eq!(
        act(&plans[0]).decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::Drift
        }
    );
    // Moved outside floatip.
    let plans = run(
        &[fip("web", "10.0.8.100", 0, holder_status("n2"))],
        &three_nodes(),
        vec![eni(1, &["10.0.8.100"]), eni(2, &[]), eni(3, &[])],
    );
    assert_eq!(
        act(&plans[0]).decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::Drift
        }
    );
}

#[test]
fn an_interrupted_move_is_finished_with_its_reason() {
    let status = json!({
        "holder": {"node": "n1", "instanceId": "i-x", "since": "2026-01-01T00:00:00Z"},
        "pendingMove": {"from": "n1", "to": "n3", "reason": "NodeCordoned", "since": "2026-01-01T00:00:00Z"}
    });
    let plans = run(
        &[fip("web", "10.0.8.100", 0, status)],
        &three_nodes(),
        vec![eni(1, &["10.0.8.100"]), eni(2, &[]), eni(3, &[])],
    );
    assert_eq!(
        act(&plans[0]).decision,
        Decision::Move {
            to: "n3".into(),
            reason: MoveReason::NodeCordoned
        }
    );
}

#[test]
fn addresses_spread_across_nodes() {
    let fips: Vec<_> = (0..6)
        .map(|i| {
            fip(
                &format!("f{i}"),
                &format!("10.0.8.{}", 10 + i),
                i,
                json!(null),
            )
        })
        .collect();
    let plans = run(
        &fips,
        &three_nodes(),
        vec![eni(1, &[]), eni(2, &[]), eni(3, &[])],
    );
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &plans {
        if let Decision::Move { to, .. } = &act(p).decision {
            *per_node.entry(to.clone()).or_default() += 1;
        }
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_node:?}"
    );
}

#[test]
fn agents_are_required_when_configured() {
    let fips = [fip("web", "10.0.8.100", 0, json!(null))];
    let nodes = three_nodes();
    let enis = HashMap::from([(SUBNET.to_string(), vec![eni(1, &[]), eni(2, &[])])]);
    let ready = HashSet::from(["n2".to_string()]);
    let plans = plan(&Picture {
        fips: &fips,
        nodes: &nodes,
        agents_ready: Some(&ready),
        agents_leaving: &HashSet::new(),
        enis: &enis,
        subnets: &subnets(),
        cluster: CLUSTER,
        now: Timestamp::from_second(1_800_001_000).unwrap(),
        health: &HashMap::new(),
        reensured: &HashMap::new(),
        peers: &HashMap::new(),
    });
    assert_eq!(
        act(&plans[0]).decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::Initial
        }
    );
}

#[test]
fn a_leaving_agent_hands_its_addresses_over() {
    let fips = [fip("web", "10.0.8.100", 0, holder_status("n1"))];
    let nodes = three_nodes();
    let enis = HashMap::from([(
        SUBNET.to_string(),
        vec![eni(1, &["10.0.8.100"]), eni(2, &[])],
    )]);
    let leaving = HashSet::from(["n1".to_string()]);
    let plans = plan(&Picture {
        fips: &fips,
        nodes: &nodes,
        agents_ready: None,
        agents_leaving: &leaving,
        enis: &enis,
        subnets: &subnets(),
        cluster: CLUSTER,
        now: Timestamp::from_second(1_800_001_000).unwrap(),
        health: &HashMap::new(),
        reensured: &HashMap::new(),
        peers: &HashMap::new(),
    });
    let a = act(&plans[0]);
    assert_eq!(
        a.decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::Handover
        }
    );
    assert_eq!(a.holder_fit, Some(Err(Unfit::AgentLeaving)));
}

/// Probe results reach the decision: the address's and each node's own check.
mod with_health_checks {
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
                        failing_since: None,
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
                why:
                    "n1 fails its health check, but none of the 1 fit nodes passes its health check"
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
        let why = alone.doubt.expect("held in doubt");
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
        assert!(a.doubt.as_ref().unwrap().contains("3 of 3 nodes"), "{a:?}");
        let ready = crate::controller::pass::ready_condition(a);
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
        let ready = crate::controller::pass::ready_condition(&a);
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            ("False", "HolderUnhealthy"),
            "{ready:?}"
        );
        // A holder whose own check passes stays Ready.
        let fine = decide_with(&[("10.0.8.100", P::Up), ("10.0.8.11", P::Up)], None);
        assert_eq!(
            crate::controller::pass::ready_condition(&fine).status,
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
}

#[test]
fn a_fresh_attach_claim_is_left_to_finish_while_the_agent_starts() {
    let now = Timestamp::from_second(1_800_001_000).unwrap();
    let claim = |age: i64| {
        fip(
            "web",
            "10.0.8.100",
            0,
            json!({"pendingMove": {"to": "n1", "reason": "Initial",
            "since": Timestamp::from_second(1_800_001_000 - age).unwrap().to_string()}}),
        )
    };
    let nodes = three_nodes();
    let enis = HashMap::from([(SUBNET.to_string(), vec![eni(1, &[]), eni(2, &[])])]);
    let ready = HashSet::from(["n2".to_string()]);
    let run_with = |f: Arc<FloatingIP>| {
        let fips = [f];
        let plans = plan(&Picture {
            fips: &fips,
            nodes: &nodes,
            agents_ready: Some(&ready),
            agents_leaving: &HashSet::new(),
            enis: &enis,
            subnets: &subnets(),
            cluster: CLUSTER,
            now,
            health: &HashMap::new(),
            reensured: &HashMap::new(),
            peers: &HashMap::new(),
        });
        act(&plans[0]).decision.clone()
    };
    assert_eq!(
        run_with(claim(10)),
        Decision::Hold {
            remaining: Duration::from_secs(110)
        }
    );
    // A claim whose agent never came: placed elsewhere.
    assert_eq!(
        run_with(claim(600)),
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::Initial
        }
    );
}

#[test]
fn modes_not_carried_out_are_left_alone_with_a_reason() {
    for (mode, extra) in [
        (
            "ElasticIP",
            json!({"elasticIP": {"allocationId": "eipalloc-0123456789abcdef0"}, "subnetId": null}),
        ),
        (
            "RouteTable",
            json!({"address": "192.168.50.1", "routeTableIds": ["rtb-0123456789abcdef0"]}),
        ),
        ("Interface", json!({})),
    ] {
        let mut f = (*fip("other", "10.0.8.100", 0, json!(null))).clone();
        let mut spec = serde_json::to_value(&f.spec).unwrap();
        spec["mode"] = json!(mode);
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        f.spec = serde_json::from_value(spec).unwrap();
        let plans = run(&[Arc::new(f)], &three_nodes(), vec![eni(1, &[])]);
        match &plans[0] {
            Plan::Unsupported { name, why } => {
                assert_eq!(name, "other");
                assert!(
                    why.contains(&format!("mode {mode} is not carried out")),
                    "{why}"
                );
                assert!(
                    why.contains("SecondaryIP"),
                    "names the modes that work: {why}"
                );
            }
            other => panic!("{mode}: {other:?}"),
        }
    }
}

#[test]
fn an_address_ec2_would_refuse_is_never_planned_beside_good_ones() {
    // n1's floating ENI has primary 10.0.8.201; n1's node address 10.0.8.11 is its primary ENI.
    let good = fip("good", "10.0.8.100", 0, json!(null));
    let outside = fip("outside", "10.0.20.5", 1, json!(null));
    let reserved = fip("reserved", "10.0.8.2", 2, json!(null));
    let primary = fip("primary", "10.0.8.201", 3, json!(null));
    let plans = run(
        &[good, outside, reserved, primary],
        &three_nodes(),
        vec![eni(1, &[])],
    );
    let by_name: HashMap<&str, &Plan> = plans.iter().map(|p| (plan_name(p), p)).collect();
    assert!(
        matches!(act(by_name["good"]).decision, Decision::Move { .. }),
        "{:?}",
        by_name["good"]
    );
    for (name, reason) in [
        ("outside", "AddressOutsideSubnet"),
        ("reserved", "AddressReserved"),
        ("primary", "AddressIsPrimary"),
    ] {
        match by_name[name] {
            Plan::Unusable { problem, .. } => assert_eq!(problem.reason(), reason, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}
