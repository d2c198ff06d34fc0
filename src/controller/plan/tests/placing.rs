//! Where the address goes: candidates, node signals, drift, spreading, agents.

use super::*;

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
        reads: &Reads::default(),
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
        reads: &Reads::default(),
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
            reads: &Reads::default(),
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

/// `interface: Primary` (clusters without the VPC CNI): the address sits on the node's primary
/// ENI, a node with only a floating ENI is no candidate, and a primary ENI holding the address
/// is the holder, while for the default Dedicated choice it is an ENI floatip does not manage.
#[test]
fn the_interface_choice_decides_which_eni_carries_the_address() {
    let mut on_primary = (*fip("web", "10.0.8.100", 0, json!(null))).clone();
    on_primary.spec.interface = Some(serde_json::from_value(json!("Primary")).unwrap());
    let plans = run(
        &[Arc::new(on_primary.clone())],
        &three_nodes(),
        vec![eni(1, &[]), primary_eni(2, &[])],
    );
    let a = act(&plans[0]);
    assert_eq!(
        a.decision,
        Decision::Move {
            to: "n2".into(),
            reason: MoveReason::Initial
        }
    );
    assert_eq!(a.target.as_ref().unwrap().eni, primary_eni(2, &[]).id);
    assert_eq!(a.candidates, 1);

    let held = || vec![eni(1, &[]), primary_eni(3, &["10.0.8.100"])];
    let plans = run(&[Arc::new(on_primary)], &three_nodes(), held());
    let a = act(&plans[0]);
    assert_eq!(a.holder.as_ref().unwrap().eni, primary_eni(3, &[]).id);
    assert_eq!((&a.decision, &a.foreign), (&Decision::Stay, &None));

    let dedicated = fip("web", "10.0.8.100", 0, json!(null));
    let plans = run(&[dedicated], &three_nodes(), held());
    let a = act(&plans[0]);
    assert_eq!(a.holder, None);
    assert_eq!(a.foreign.as_deref(), Some(primary_eni(3, &[]).id.as_str()));
}
