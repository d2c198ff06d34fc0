//! IPv6 addresses and dual-stack pairs: a move interrupted between its two EC2 calls, an
//! address outside the subnet's IPv6 block, and two families of one service staying together.

use super::*;

const V6: &str = "2600:1f14:abc:de00::100";

/// A leader that died between UnassignIpv6Addresses and AssignIpv6Addresses left the address
/// on no ENI, with its claim in status: the next leader finishes that move, to the node the
/// claim names, for the claim's reason.
#[test]
fn an_ipv6_move_cut_between_its_two_calls_is_finished_by_the_next_leader() {
    let status = json!({
        "holder": {"node": "n1", "instanceId": "i-x", "since": "2026-01-01T00:00:00Z"},
        "pendingMove": {"from": "n1", "to": "n3", "reason": "HolderUnhealthy",
                        "since": "2026-01-01T00:10:00Z"},
    });
    let plans = run(
        &[fip("web6", V6, 0, status)],
        &three_nodes(),
        vec![eni(1, &[]), eni(2, &[]), eni(3, &[])],
    );
    let a = act(&plans[0]);
    assert_eq!(a.holder, None, "EC2 has it nowhere");
    assert_eq!(
        a.decision,
        Decision::Move {
            to: "n3".into(),
            reason: MoveReason::HolderUnhealthy
        }
    );
    assert_eq!(a.target.as_ref().unwrap().eni, eni(3, &[]).id);
}

#[test]
fn an_ipv6_address_outside_the_subnets_ipv6_block_is_refused_before_any_call() {
    let plans = run(
        &[fip("web6", "2600:1f14:abc:df00::100", 0, json!(null))],
        &three_nodes(),
        vec![eni(1, &[])],
    );
    let Plan::Unusable { problem, .. } = &plans[0] else {
        panic!("{:?}", plans[0])
    };
    assert_eq!(problem.reason(), "AddressOutsideSubnet");
    assert!(
        problem.to_string().contains("2600:1f14:abc:de00::/64"),
        "{problem}"
    );
}

/// The documented dual-stack pattern: one FloatingIP per family with the same preferredNodes
/// (and nodeSelector, tolerations and check) is placed from the same inputs, so both land on
/// the same node, first and after a failure.
#[test]
fn the_two_families_of_a_service_follow_the_same_node() {
    let pair = |holder: Option<&str>| {
        let status = holder.map_or(json!(null), holder_status);
        [("web4", "10.0.8.100"), ("web6", V6)].map(|(name, address)| {
            let mut f = (*fip(name, address, 0, status.clone())).clone();
            f.spec.preferred_nodes = vec!["n2".into(), "n3".into(), "n1".into()];
            Arc::new(f)
        })
    };
    let targets = |plans: &[Plan]| -> Vec<Option<String>> {
        plans
            .iter()
            .map(|p| act(p).target.as_ref().map(|t| t.node.clone()))
            .collect()
    };
    let first = run(
        &pair(None),
        &three_nodes(),
        vec![eni(1, &[]), eni(2, &[]), eni(3, &[])],
    );
    assert_eq!(targets(&first), [Some("n2".into()), Some("n2".into())]);

    let nodes = vec![
        node("n1", 1, json!({})),
        node("n2", 2, json!({"spec": {"unschedulable": true}})),
        node("n3", 3, json!({})),
    ];
    let after = run(
        &pair(Some("n2")),
        &nodes,
        vec![eni(1, &[]), eni(2, &["10.0.8.100", V6]), eni(3, &[])],
    );
    assert_eq!(targets(&after), [Some("n3".into()), Some("n3".into())]);
}
