//! RouteTable FloatingIPs: where the tables lead is who holds the address, and tables that
//! disagree are routed again, all of them, to the node status names.

use super::*;
use crate::cloud::{Route, RouteTable, RouteTarget};

const OVERLAY: &str = "100.64.0.10";
const TABLES: [&str; 2] = ["rtb-0000000a", "rtb-0000000b"];

fn routed(status: serde_json::Value) -> Arc<FloatingIP> {
    let mut f = (*fip("overlay", OVERLAY, 0, status)).clone();
    f.spec = serde_json::from_value(
        json!({"address": OVERLAY, "mode": "RouteTable", "routeTableIds": TABLES}),
    )
    .unwrap();
    Arc::new(f)
}

/// The tables, each with its route for the address leading to n`i`'s floating ENI (or none).
fn reads(leads_to: [Option<u8>; 2]) -> Reads {
    let tables = TABLES.iter().zip(leads_to).map(|(id, to)| {
        let mut routes = vec![Route {
            destination: "10.0.0.0/16".into(),
            target: RouteTarget::Local,
            blackhole: false,
        }];
        routes.extend(to.map(|i| Route {
            destination: format!("{OVERLAY}/32"),
            target: RouteTarget::Eni(eni(i, &[]).id),
            blackhole: false,
        }));
        let table = RouteTable {
            id: id.to_string(),
            vpc_id: "vpc-0000000a".into(),
            routes,
        };
        (id.to_string(), table)
    });
    Reads {
        route_tables: Some(tables.collect()),
        cluster_enis: Some((1..=3).map(|i| eni(i, &[])).collect()),
        node_instances: (1..=3u8).map(|i| format!("i-{i:017x}")).collect(),
        ..Reads::default()
    }
}

fn run_routed(status: serde_json::Value, leads_to: [Option<u8>; 2]) -> Placement {
    placed(routed(status), &reads(leads_to))
}

/// The plan of `f` alone, on three nodes, from `reads`.
fn placed(f: Arc<FloatingIP>, reads: &Reads) -> Placement {
    let enis = HashMap::new();
    let plans = plan(&Picture {
        fips: &[f],
        nodes: &three_nodes(),
        agents_ready: None,
        agents_leaving: &HashSet::new(),
        enis: &enis,
        subnets: &HashMap::new(),
        reads,
        cluster: CLUSTER,
        now: Timestamp::from_second(1_800_001_000).unwrap(),
        health: &HashMap::new(),
        reensured: &HashMap::new(),
        peers: &HashMap::new(),
    });
    act(&plans[0]).clone()
}

#[test]
fn every_table_leading_to_the_holder_keeps_it_there() {
    let p = run_routed(holder_status("n2"), [Some(2), Some(2)]);
    assert_eq!(
        p.holder.as_ref().map(|h| h.eni.clone()),
        Some(eni(2, &[]).id)
    );
    assert_eq!(p.decision, Decision::Stay);
}

#[test]
fn tables_that_disagree_or_lack_the_route_are_routed_again_to_the_holder_status_names() {
    for leads_to in [[Some(2), None], [Some(1), Some(2)]] {
        let p = run_routed(holder_status("n2"), leads_to);
        assert_eq!(p.holder, None, "{leads_to:?}");
        assert_eq!(
            p.decision,
            Decision::Move {
                to: "n2".into(),
                reason: MoveReason::Drift
            },
            "{leads_to:?}"
        );
        assert_eq!(p.target.map(|t| t.eni), Some(eni(2, &[]).id));
    }
}

#[test]
fn an_unrouted_address_goes_to_the_first_candidate_on_its_floating_eni() {
    let p = run_routed(json!(null), [None, None]);
    assert_eq!(p.holder, None);
    match &p.decision {
        Decision::Move { to, reason } => {
            assert_eq!(*reason, MoveReason::Initial);
            assert_eq!(p.target.as_ref().map(|t| &t.node), Some(to));
        }
        other => panic!("{other:?}"),
    }
}

/// Candidates in other subnets (and zones) are candidates all the same: the preferred one is
/// chosen, on its floating ENI in its own subnet.
#[test]
fn candidates_in_other_subnets_are_placed_by_preference() {
    let mut f = (*routed(json!(null))).clone();
    f.spec.preferred_nodes = vec!["n3".into(), "n1".into()];
    let mut reads = reads([None, None]);
    let elsewhere = Eni {
        subnet_id: "subnet-0000000c".into(),
        ..eni(3, &[])
    };
    reads.cluster_enis = Some(vec![eni(1, &[]), elsewhere.clone()]);
    let p = placed(Arc::new(f), &reads);
    assert_eq!(
        p.decision,
        Decision::Move {
            to: "n3".into(),
            reason: MoveReason::Initial
        }
    );
    assert_eq!(p.target.as_ref().map(|t| t.eni.clone()), Some(elsewhere.id));
    // n2 has no floating ENI: it is no candidate, and says why.
    assert_eq!(p.candidates, 2);
}
