//! What is settled before placement: conflicts, invalid specs, deletion, unsupported modes,
//! unusable and foreign-held addresses.

use super::*;

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
fn an_address_on_a_detached_eni_of_ours_is_taken_not_called_foreign() {
    // A floating ENI of this cluster left detached (its instance stopped or replaced) still
    // carries the address: floatip manages that ENI, so the address goes to a fit node instead
    // of being reported as held by an ENI floatip does not manage.
    let mut detached = eni(9, &["10.0.8.100"]);
    detached.instance_id = None;
    detached.device_index = None;
    let plans = run(
        &[fip("web", "10.0.8.100", 0, json!(null))],
        &three_nodes(),
        vec![detached, eni(1, &[])],
    );
    let a = act(&plans[0]);
    assert_eq!(a.foreign, None);
    assert!(
        matches!(&a.decision, Decision::Move { to, .. } if to == "n1"),
        "{:?}",
        a.decision
    );
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
fn deletion_never_takes_the_address_off_an_eni_floatip_does_not_manage() {
    // The address sits on another workload's ENI (the primary ENI of n2, which a Dedicated
    // FloatingIP never manages): deleting the FloatingIP must leave it there.
    let mut deleting = (*fip("web", "10.0.8.100", 0, holder_status("n1"))).clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(1_800_000_500).unwrap(),
        ));
    let plans = run(
        &[Arc::new(deleting)],
        &three_nodes(),
        vec![primary_eni(2, &["10.0.8.100"]), eni(1, &["10.0.8.100"])],
    );
    assert_eq!(
        plans[0],
        Plan::Release {
            name: "web".into(),
            address: "10.0.8.100".parse().unwrap(),
            from: vec![eni(1, &[]).id]
        }
    );
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

/// The subnet the mode reads could not be read this pass: nothing is decided, not even a
/// release (which ENIs hold the address is unknown), and the other subnets are planned as usual.
#[test]
fn a_floatingip_whose_subnet_was_not_read_is_unknown() {
    let mut elsewhere = (*fip("elsewhere", "10.0.12.100", 0, json!(null))).clone();
    elsewhere.spec.subnet_id = Some("subnet-0e0e0e0e".into());
    let mut leaving = elsewhere.clone();
    leaving.metadata.name = Some("leaving".into());
    leaving.spec.address = "10.0.12.101".into();
    leaving.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(1_800_000_500).unwrap(),
        ));
    let fips = [
        Arc::new(elsewhere),
        Arc::new(leaving),
        fip("web", "10.0.8.100", 0, json!(null)),
    ];
    let plans = run(&fips, &three_nodes(), vec![eni(1, &[])]);
    assert_eq!(
        plans[..2],
        [
            Plan::Unknown {
                name: "elsewhere".into()
            },
            Plan::Unknown {
                name: "leaving".into()
            }
        ]
    );
    assert!(matches!(act(&plans[2]).decision, Decision::Move { .. }));
}
