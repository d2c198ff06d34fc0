use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::*;
use crate::cloud::fake::FakeCloud;
use crate::cloud::{floating_tags, Route};
use crate::mode::secondary_ip::tests::{eni, ip, CLUSTER, SUBNET};
use crate::mode::Reads;

const OVERLAY: &str = "100.64.0.10";
const T1: &str = "rtb-0000000a";
const T2: &str = "rtb-0000000b";
const VPC: &str = "vpc-0000000a";

fn spec(address: &str, tables: &[&str]) -> FloatingIPSpec {
    serde_json::from_value(
        json!({"address": address, "mode": "RouteTable", "routeTableIds": tables}),
    )
    .unwrap()
}

fn node(i: u8) -> NodeView {
    let n = json!({
        "metadata": {"name": format!("n{i}")},
        "spec": {"providerID": format!("aws:///zone/i-{i}")},
    });
    NodeView::from_node(&serde_json::from_value(n).unwrap())
}

fn route(destination: &str, target: RouteTarget) -> Route {
    Route {
        destination: destination.into(),
        target,
        blackhole: false,
    }
}

/// A table of the VPC 10.0.0.0/16 (and 2600:1f14::/56) with the routes `extra`.
fn table(id: &str, vpc: &str, extra: Vec<Route>) -> RouteTable {
    let mut routes = vec![
        route("10.0.0.0/16", RouteTarget::Local),
        route("2600:1f14::/56", RouteTarget::Local),
    ];
    routes.extend(extra);
    RouteTable {
        id: id.into(),
        vpc_id: vpc.into(),
        routes,
    }
}

fn to(eni: &str) -> Route {
    route(&format!("{OVERLAY}/32"), RouteTarget::Eni(eni.into()))
}

/// The nodes' ENIs (primary and floating, instances i-1 and i-2) and `tables`.
fn reads(tables: Vec<RouteTable>) -> Reads {
    Reads {
        route_tables: Some(tables.into_iter().map(|t| (t.id.clone(), t)).collect()),
        cluster_enis: Some(vec![eni(1, 1, &[]), eni(2, 1, &[])]),
        node_instances: HashSet::from(["i-1".to_string(), "i-2".to_string()]),
        ..Reads::default()
    }
}

/// The plan's view of `reads` (no subnet is read in this mode).
fn with<T>(reads: &Reads, f: impl FnOnce(&Snapshot<'_>) -> T) -> T {
    let (enis, subnets) = (HashMap::new(), HashMap::new());
    f(&Snapshot::new(&enis, &subnets, CLUSTER, reads))
}

fn usable(spec: &FloatingIPSpec, reads: &Reads) -> Result<(), Unusable> {
    let address = crate::api::parse_address(&spec.address).unwrap();
    with(reads, |ec2| RouteTableMode.usable(spec, address, ec2))
}

/// (ENI, managed, attached) of each holder, in the order the plan reads them.
fn holding(spec: &FloatingIPSpec, reads: &Reads) -> Vec<(String, bool, bool)> {
    let address = crate::api::parse_address(&spec.address).unwrap();
    with(reads, |ec2| {
        (RouteTableMode.holding(spec, address, ec2).iter())
            .map(|h| (h.eni.id.clone(), h.managed, h.eni.instance_id.is_some()))
            .collect()
    })
}

#[test]
fn an_overlay_address_outside_the_vpc_is_usable() {
    let r = reads(vec![table(T1, VPC, vec![]), table(T2, VPC, vec![])]);
    assert_eq!(usable(&spec(OVERLAY, &[T1, T2]), &r), Ok(()));
    assert_eq!(usable(&spec("fd00:200::10", &[T1]), &r), Ok(()));
    // Unread: the plan keeps it Unknown before asking (Snapshot::has_read).
    let unread = Reads::default();
    with(&unread, |ec2| {
        assert!(!ec2.has_read(&RouteTableMode, &spec(OVERLAY, &[T1])));
    });
    with(&r, |ec2| {
        assert!(ec2.has_read(&RouteTableMode, &spec(OVERLAY, &[T1])));
    });
}

#[test]
fn an_address_inside_the_vpc_is_refused_with_the_reason() {
    let r = reads(vec![table(T1, VPC, vec![])]);
    for address in ["10.0.200.10", "2600:1f14::10"] {
        let err = usable(&spec(address, &[T1]), &r).unwrap_err();
        assert_eq!(err.reason(), "AddressInsideVpc");
        assert_eq!(err.condition(), crate::api::condition::INVALID_SPEC);
        let text = err.to_string();
        assert!(
            text.contains("takes effect only for a whole subnet's CIDR"),
            "{text}"
        );
        assert!(text.contains(&format!("route table {T1}")), "{text}");
    }
}

#[test]
fn a_missing_table_and_a_table_of_another_vpc_are_refused() {
    let r = reads(vec![table(T1, VPC, vec![])]);
    let missing = usable(&spec(OVERLAY, &[T1, T2]), &r).unwrap_err();
    assert_eq!(missing.reason(), "RouteTableNotFound");
    assert!(missing.to_string().contains(T2), "{missing}");

    // Another VPC: its local block does not hold the nodes' floating ENIs (10.0.8.x).
    let mut other = table(T2, "vpc-0000000b", vec![]);
    other.routes[0].destination = "10.50.0.0/16".into();
    let r = reads(vec![table(T1, VPC, vec![]), other]);
    let err = usable(&spec(OVERLAY, &[T1, T2]), &r).unwrap_err();
    assert_eq!(err.reason(), "RouteTableInOtherVpc");
    let text = err.to_string();
    assert!(
        text.contains("route table rtb-0000000b belongs to vpc-0000000b"),
        "{text}"
    );
    assert!(text.contains("eni-11 (10.0.8.211)"), "{text}");
}

#[test]
fn every_table_leading_to_one_floating_eni_is_that_eni_holding_it() {
    let s = spec(OVERLAY, &[T1, T2]);
    let r = reads(vec![
        table(T1, VPC, vec![to("eni-11")]),
        table(T2, VPC, vec![to("eni-11")]),
    ]);
    assert_eq!(holding(&s, &r), [("eni-11".to_string(), true, true)]);
    let unrouted = reads(vec![table(T1, VPC, vec![]), table(T2, VPC, vec![])]);
    assert_eq!(holding(&s, &unrouted), []);
}

/// Tables that disagree or lack the route hold the address for nobody (an ENI without its
/// instance), so the plan routes it again everywhere; a blackholed route leads nowhere.
#[test]
fn tables_that_disagree_hold_the_address_for_nobody() {
    let s = spec(OVERLAY, &[T1, T2]);
    let r = reads(vec![
        table(T1, VPC, vec![to("eni-11")]),
        table(T2, VPC, vec![to("eni-21")]),
    ]);
    assert_eq!(
        holding(&s, &r),
        [
            ("eni-11".to_string(), true, false),
            ("eni-21".to_string(), true, false)
        ]
    );
    let mut dead = to("eni-21");
    dead.blackhole = true;
    let r = reads(vec![
        table(T1, VPC, vec![to("eni-11")]),
        table(T2, VPC, vec![dead]),
    ]);
    assert_eq!(holding(&s, &r), [("eni-11".to_string(), true, false)]);
}

#[test]
fn a_route_to_anything_floatip_does_not_manage_comes_first_and_is_foreign() {
    let s = spec(OVERLAY, &[T1, T2]);
    let gateway = route(
        &format!("{OVERLAY}/32"),
        RouteTarget::Other("igw-0a".into()),
    );
    let r = reads(vec![
        table(T1, VPC, vec![to("eni-11")]),
        table(T2, VPC, vec![gateway]),
    ]);
    assert_eq!(holding(&s, &r)[0], ("igw-0a".to_string(), false, false));
    // An ENI that is not one of the cluster's floating ENIs (a node's primary ENI here).
    let r = reads(vec![table(T1, VPC, vec![to("eni-10")])]);
    assert_eq!(
        holding(&spec(OVERLAY, &[T1]), &r),
        [("eni-10".to_string(), false, false)]
    );
}

#[test]
fn the_seat_is_the_nodes_floating_eni_in_any_subnet() {
    let s = spec(OVERLAY, &[T1]);
    let mut r = reads(vec![table(T1, VPC, vec![])]);
    let mut elsewhere = eni(2, 2, &[]);
    elsewhere.subnet_id = "subnet-0000000b".into();
    elsewhere.tags = floating_tags(CLUSTER, "n2");
    r.cluster_enis = Some(vec![eni(1, 1, &[]), elsewhere]);
    let seat = with(&r, |ec2| RouteTableMode.seat(&s, &node(2), ec2)).unwrap();
    assert_eq!(
        (seat.node.as_str(), seat.eni.as_str(), seat.mac.as_deref()),
        ("n2", "eni-22", Some("02:00:00:00:02:02"))
    );
    let none = with(&r, |ec2| RouteTableMode.seat(&s, &node(3), ec2));
    assert!(
        matches!(none, Err(Unfit::NoInterface(m)) if m.contains("no floating ENI of cluster lab"))
    );
    let other_cluster = with(&r, |ec2| {
        RouteTableMode.seat(
            &s,
            &node(1),
            &Snapshot {
                cluster: "other",
                ..*ec2
            },
        )
    });
    assert!(other_cluster.is_err());
}

fn fake(tables: Vec<RouteTable>) -> FakeCloud {
    FakeCloud {
        enis: vec![eni(1, 1, &[]), eni(2, 1, &[])].into(),
        route_tables: tables.into(),
        vpc_of_subnet: std::collections::BTreeMap::from([(SUBNET.to_string(), VPC.to_string())])
            .into(),
        ..Default::default()
    }
}

fn seat_on(eni: &str) -> Seat {
    Seat {
        node: "n2".into(),
        instance_id: "i-2".into(),
        eni: eni.into(),
        mac: None,
        private_ip: None,
    }
}

fn mv(address: &str, tables: &[&str]) -> AddressMove {
    AddressMove {
        address: ip(address),
        from_eni: None,
        allocation_id: None,
        route_tables: tables.iter().map(|t| t.to_string()).collect(),
    }
}

fn target_in(c: &FakeCloud, table: &str, address: &str) -> Option<RouteTarget> {
    let tables = c.route_tables.lock().unwrap();
    let t = tables.iter().find(|t| t.id == table)?;
    t.host_route_of(ip(address)).map(|r| r.target.clone())
}

/// One route call per table (replaced or created), the source/dest check turned off once,
/// then read back.
#[tokio::test]
async fn a_move_routes_every_table_to_the_target_one_call_each() {
    let c = fake(vec![
        table(T1, VPC, vec![to("eni-11")]),
        table(T2, VPC, vec![]),
    ]);
    let port = crate::mode::carrier::<FakeCloud>(crate::api::Mode::RouteTable)
        .map_or(&RouteTableMode as &dyn Carrier<FakeCloud>, |p| p);
    let moves = [mv(OVERLAY, &[T1, T2]), mv("fd00:200::10", &[T1])];
    let seat = seat_on("eni-21");
    port.move_to(&c, &seat, &moves).await.unwrap();
    let mut calls = c.calls.lock().unwrap().clone();
    calls.sort();
    let call = |a: &'static str, on: &str| (a, on.to_string());
    assert_eq!(
        calls,
        [
            call("ModifyNetworkInterfaceAttribute", "eni-21"),
            call("ReplaceRoute", T1),
            call("ReplaceRoute", T1),
            call("ReplaceRoute", T2),
        ]
    );
    for (t, a) in [(T1, OVERLAY), (T2, OVERLAY), (T1, "fd00:200::10")] {
        assert_eq!(
            target_in(&c, t, a),
            Some(RouteTarget::Eni("eni-21".into())),
            "{t} {a}"
        );
    }
    port.verify(&c, &seat, &moves).await.unwrap();
    // Moving again: the check is already off, so only the routes are called.
    port.move_to(&c, &seat, &moves[..1]).await.unwrap();
    assert_eq!(c.calls.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn verify_names_the_table_that_leads_elsewhere() {
    let c = fake(vec![
        table(T1, VPC, vec![to("eni-21")]),
        table(T2, VPC, vec![to("eni-11")]),
    ]);
    let err = Carrier::<FakeCloud>::verify(
        &RouteTableMode,
        &c,
        &seat_on("eni-21"),
        &[mv(OVERLAY, &[T1, T2])],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, "MoveNotVisible");
    assert!(err.retryable());
    assert!(
        err.message
            .contains(&format!("to eni-21 in {T2}, EC2 shows Eni(\"eni-11\")")),
        "{err}"
    );
}

/// A table that refuses (a route to another VPC's ENI) does not keep the others from being
/// routed; its error is returned.
#[tokio::test]
async fn one_table_refusing_leaves_the_others_routed() {
    let c = fake(vec![
        table(T1, "vpc-0000000b", vec![]),
        table(T2, VPC, vec![]),
    ]);
    let err = Carrier::<FakeCloud>::move_to(
        &RouteTableMode,
        &c,
        &seat_on("eni-21"),
        &[mv(OVERLAY, &[T1, T2])],
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("different networks"), "{err}");
    assert!(!err.retryable());
    assert_eq!(
        target_in(&c, T2, OVERLAY),
        Some(RouteTarget::Eni("eni-21".into()))
    );
    assert_eq!(target_in(&c, T1, OVERLAY), None);
}

#[tokio::test]
async fn release_deletes_only_the_routes_that_lead_to_the_eni() {
    let c = fake(vec![
        table(T1, VPC, vec![to("eni-11")]),
        table(T2, VPC, vec![to("eni-21")]),
    ]);
    let s = spec(OVERLAY, &[T1, T2]);
    Carrier::<FakeCloud>::release(&RouteTableMode, &c, &s, "eni-11", ip(OVERLAY))
        .await
        .unwrap();
    assert_eq!(target_in(&c, T1, OVERLAY), None);
    assert_eq!(
        target_in(&c, T2, OVERLAY),
        Some(RouteTarget::Eni("eni-21".into()))
    );
    assert_eq!(*c.calls.lock().unwrap(), [("DeleteRoute", T1.to_string())]);
}

/// The source/dest check comes off before any route leads to the ENI: when EC2 refuses that
/// (a missing permission), no route is changed.
#[tokio::test]
async fn no_route_leads_to_an_eni_whose_check_could_not_be_turned_off() {
    let c = fake(vec![table(T1, VPC, vec![to("eni-11")])]);
    *c.fail_with.lock().unwrap() = Some(CloudError {
        action: "ModifyNetworkInterfaceAttribute",
        code: "UnauthorizedOperation".into(),
        message: "not allowed".into(),
        kind: ErrorKind::Permanent,
    });
    let err = Carrier::<FakeCloud>::move_to(
        &RouteTableMode,
        &c,
        &seat_on("eni-21"),
        &[mv(OVERLAY, &[T1])],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, "UnauthorizedOperation");
    assert_eq!(
        *c.calls.lock().unwrap(),
        [("ModifyNetworkInterfaceAttribute", "eni-21".to_string())]
    );
    assert_eq!(
        target_in(&c, T1, OVERLAY),
        Some(RouteTarget::Eni("eni-11".into()))
    );
}
