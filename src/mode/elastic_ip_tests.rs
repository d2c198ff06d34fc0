//! The Elastic IP checks and reads of both modes that carry one, on EC2 as a pass read it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::json;

use super::*;
use crate::cloud::{Allocation, Association, Subnet};
use crate::mode::secondary_ip::tests::{eni, ip, CLUSTER, SUBNET};
use crate::mode::{Associate, Reads, SecondaryIp};

const ALLOCATION: &str = "eipalloc-0123abcd";
const PUBLIC: &str = "198.51.100.7";

fn spec(mode: &str, address: &str, extra: serde_json::Value) -> FloatingIPSpec {
    let mut s = json!({"address": address, "mode": mode, "subnetId": SUBNET,
                       "elasticIP": {"allocationId": ALLOCATION}});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(s).unwrap()
}

fn node(i: u8, zone: &str) -> NodeView {
    NodeView::from_node(
        &serde_json::from_value(json!({
            "metadata": {"name": format!("n{i}"), "labels": {"topology.kubernetes.io/zone": zone}},
            "spec": {"providerID": format!("aws:///{zone}/i-{i}")},
        }))
        .unwrap(),
    )
}

fn allocation(group: &str, associated: Option<(&str, &str)>) -> Allocation {
    Allocation {
        allocation_id: ALLOCATION.into(),
        public_ip: Some(ip(PUBLIC)),
        customer_owned_ip: None,
        customer_owned_pool: None,
        network_border_group: Some(group.into()),
        association: associated.map(|(eni, private)| Association {
            id: "eipassoc-1".into(),
            eni: Some(eni.into()),
            private_ip: Some(ip(private)),
            instance_id: None,
        }),
    }
}

/// EC2 as a pass read it: nodes 1 and 2 with a primary and a floating ENI each, the subnet in
/// a Local Zone, and `a` as the only allocation.
struct World {
    enis: HashMap<String, Vec<Eni>>,
    subnets: HashMap<String, Subnet>,
    reads: Reads,
}

impl World {
    fn new(a: Option<Allocation>) -> Self {
        let enis = vec![
            eni(1, 0, &[]),
            eni(1, 1, &[]),
            eni(2, 0, &[]),
            eni(2, 1, &[]),
        ];
        let subnet = Subnet {
            id: SUBNET.into(),
            zone: Some("us-west-2-lax-1a".into()),
            cidr_v4: Some("10.0.8.0/22".into()),
            cidrs_v6: vec![],
        };
        Self {
            enis: HashMap::from([(SUBNET.to_string(), enis.clone())]),
            subnets: HashMap::from([(SUBNET.to_string(), subnet)]),
            reads: Reads {
                allocations: Some(
                    a.into_iter()
                        .map(|a| (a.allocation_id.clone(), a))
                        .collect(),
                ),
                border_groups: BTreeMap::from([
                    ("us-west-2a".to_string(), "us-west-2".to_string()),
                    (
                        "us-west-2-lax-1a".to_string(),
                        "us-west-2-lax-1".to_string(),
                    ),
                ]),
                node_enis: Some(enis),
                node_instances: HashSet::from(["i-1".to_string(), "i-2".to_string()]),
                ..Reads::default()
            },
        }
    }

    fn ec2(&self) -> Snapshot<'_> {
        Snapshot::new(&self.enis, &self.subnets, CLUSTER, &self.reads)
    }
}

fn reason(r: Result<(), Unusable>) -> &'static str {
    r.map_or_else(|e| e.reason(), |()| "usable")
}

#[test]
fn an_allocation_is_checked_before_any_call() {
    let s = spec("ElasticIP", PUBLIC, json!({}));
    let w = World::new(None);
    let missing = ElasticIp.usable(&s, ip(PUBLIC), &w.ec2()).unwrap_err();
    assert_eq!(missing.reason(), "AllocationNotFound");
    assert!(missing.to_string().contains(ALLOCATION), "{missing}");

    let w = World::new(Some(allocation("us-west-2-lax-1", None)));
    assert_eq!(reason(ElasticIp.usable(&s, ip(PUBLIC), &w.ec2())), "usable");
    let other = spec("ElasticIP", "198.51.100.9", json!({}));
    let e = ElasticIp
        .usable(&other, ip("198.51.100.9"), &w.ec2())
        .unwrap_err();
    assert_eq!(e.reason(), "AllocationAddressMismatch");
    assert!(e.to_string().contains(PUBLIC), "{e}");

    // Allocated for the Region, used in a Local Zone's subnet: both groups named.
    let w = World::new(Some(allocation("us-west-2", None)));
    let e = ElasticIp.usable(&s, ip(PUBLIC), &w.ec2()).unwrap_err();
    assert_eq!(e.reason(), "BorderGroupMismatch");
    let text = e.to_string();
    assert!(
        text.contains("us-west-2-lax-1") && text.contains("group us-west-2,"),
        "{text}"
    );
    let secondary = spec("SecondaryIP", "10.0.8.100", json!({}));
    assert_eq!(
        reason(SecondaryIp.usable(&secondary, ip("10.0.8.100"), &w.ec2())),
        "BorderGroupMismatch"
    );
}

#[test]
fn an_allocation_associated_elsewhere_is_a_conflict_unless_the_spec_allows_taking_it() {
    // Associated with an instance floatip does not manage.
    let w = World::new(Some(allocation(
        "us-west-2-lax-1",
        Some(("eni-99", "10.0.8.99")),
    )));
    let s = spec("ElasticIP", PUBLIC, json!({}));
    let e = ElasticIp.usable(&s, ip(PUBLIC), &w.ec2()).unwrap_err();
    assert_eq!(e.reason(), "AllocationInUse");
    assert_eq!(e.condition(), crate::api::condition::CONFLICT);
    assert!(e.to_string().contains("10.0.8.99 on eni-99"), "{e}");
    let secondary = spec("SecondaryIP", "10.0.8.100", json!({}));
    assert_eq!(
        reason(SecondaryIp.usable(&secondary, ip("10.0.8.100"), &w.ec2())),
        "AllocationInUse"
    );

    let allow = json!({"elasticIP": {"allocationId": ALLOCATION, "allowReassociation": true}});
    let s = spec("ElasticIP", PUBLIC, allow.clone());
    assert_eq!(reason(ElasticIp.usable(&s, ip(PUBLIC), &w.ec2())), "usable");
    // Taken from there: the holding ENI is managed (may be taken), but no node's.
    let held = ElasticIp.holding(&s, ip(PUBLIC), &w.ec2());
    assert_eq!(held.len(), 1);
    assert!(
        held[0].managed && held[0].eni.instance_id.is_none(),
        "{held:?}"
    );
    let secondary = spec("SecondaryIP", "10.0.8.100", allow);
    assert_eq!(
        reason(SecondaryIp.usable(&secondary, ip("10.0.8.100"), &w.ec2())),
        "usable"
    );
}

#[test]
fn elastic_ip_mode_holds_on_a_floating_enis_primary_address() {
    let w = World::new(Some(allocation(
        "us-west-2-lax-1",
        Some(("eni-11", "10.0.8.211")),
    )));
    let s = spec("ElasticIP", PUBLIC, json!({}));
    assert_eq!(reason(ElasticIp.usable(&s, ip(PUBLIC), &w.ec2())), "usable");
    let held = ElasticIp.holding(&s, ip(PUBLIC), &w.ec2());
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].eni.id.as_str(), held[0].managed, held[0].private_ip),
        ("eni-11", true, Some(ip("10.0.8.211")))
    );
    let seat = ElasticIp
        .seat(&s, &node(2, "us-west-2-lax-1a"), &w.ec2())
        .unwrap();
    assert_eq!(
        (seat.eni.as_str(), seat.private_ip),
        ("eni-21", Some(ip("10.0.8.221")))
    );
    // Primary: the node's primary ENI, in any subnet when none is named.
    let primary = spec(
        "ElasticIP",
        PUBLIC,
        json!({"interface": "Primary", "subnetId": null}),
    );
    assert!(ElasticIp.needs_node_enis(&primary));
    let seat = ElasticIp
        .seat(&primary, &node(2, "us-west-2-lax-1a"), &w.ec2())
        .unwrap();
    assert_eq!(
        (seat.eni.as_str(), seat.private_ip),
        ("eni-20", Some(ip("10.0.8.220")))
    );
    // A secondary address of a managed ENI is not floatip's association.
    let w = World::new(Some(allocation(
        "us-west-2-lax-1",
        Some(("eni-11", "10.0.8.150")),
    )));
    assert_eq!(
        reason(ElasticIp.usable(&s, ip(PUBLIC), &w.ec2())),
        "AllocationInUse"
    );
}

#[test]
fn a_node_in_another_border_group_is_no_candidate_and_says_why() {
    let w = World::new(Some(allocation("us-west-2-lax-1", None)));
    let primary = spec(
        "ElasticIP",
        PUBLIC,
        json!({"interface": "Primary", "subnetId": null}),
    );
    let unfit = ElasticIp
        .seat(&primary, &node(1, "us-west-2a"), &w.ec2())
        .unwrap_err();
    let Unfit::NoInterface(why) = unfit else {
        panic!("{unfit:?}")
    };
    assert!(
        why.contains("group us-west-2-lax-1")
            && why.contains("zone us-west-2a is in group us-west-2"),
        "{why}"
    );
}

#[test]
fn a_secondary_address_gets_its_elastic_ip_associated_once_where_it_is() {
    let s = spec("SecondaryIP", "10.0.8.100", json!({}));
    let holder = Seat {
        node: "n1".into(),
        instance_id: "i-1".into(),
        eni: "eni-11".into(),
        mac: None,
        private_ip: None,
    };
    let w = World::new(Some(allocation("us-west-2-lax-1", None)));
    assert_eq!(
        SecondaryIp.associate(&s, ip("10.0.8.100"), &holder, &w.ec2()),
        Some(Associate {
            allocation_id: ALLOCATION.into(),
            eni: "eni-11".into(),
            private_ip: ip("10.0.8.100"),
            allow_reassociation: false,
        })
    );
    // On the address already (even on the old ENI while EC2 remaps it): nothing to do.
    for on in ["eni-11", "eni-21"] {
        let w = World::new(Some(allocation(
            "us-west-2-lax-1",
            Some((on, "10.0.8.100")),
        )));
        assert_eq!(
            SecondaryIp.associate(&s, ip("10.0.8.100"), &holder, &w.ec2()),
            None
        );
    }
    // Elsewhere: taken back only with the spec's consent.
    let w = World::new(Some(allocation(
        "us-west-2-lax-1",
        Some(("eni-99", "10.0.8.99")),
    )));
    assert_eq!(
        SecondaryIp.associate(&s, ip("10.0.8.100"), &holder, &w.ec2()),
        None
    );
    let allow = spec(
        "SecondaryIP",
        "10.0.8.100",
        json!({"elasticIP": {"allocationId": ALLOCATION, "allowReassociation": true}}),
    );
    let a = SecondaryIp.associate(&allow, ip("10.0.8.100"), &holder, &w.ec2());
    assert!(a.is_some_and(|a| a.allow_reassociation));
    // ElasticIP mode never associates outside a move.
    assert_eq!(ElasticIp.associate(&s, ip(PUBLIC), &holder, &w.ec2()), None);
}

#[test]
fn status_shows_the_public_or_customer_owned_address() {
    let s = spec("SecondaryIP", "10.0.8.100", json!({}));
    let w = World::new(Some(allocation(
        "us-west-2-lax-1",
        Some(("eni-11", "10.0.8.100")),
    )));
    let p = public::public_address(&s, &w.ec2()).unwrap();
    assert_eq!(
        (p.address.as_str(), p.kind, p.associated_with.as_deref()),
        (
            PUBLIC,
            crate::api::PublicAddressKind::ElasticIP,
            Some("10.0.8.100")
        )
    );
    let mut coip = allocation("us-west-2", None);
    coip.public_ip = None;
    coip.customer_owned_ip = Some(ip("203.0.113.9"));
    let w = World::new(Some(coip));
    let p = public::public_address(&s, &w.ec2()).unwrap();
    assert_eq!(
        (p.address.as_str(), p.kind),
        (
            "203.0.113.9",
            crate::api::PublicAddressKind::CustomerOwnedIP
        )
    );
}

fn fake_with(a: Allocation) -> crate::cloud::fake::FakeCloud {
    crate::cloud::fake::FakeCloud {
        enis: vec![eni(1, 1, &[]), eni(2, 1, &[])].into(),
        allocations: vec![a].into(),
        ..Default::default()
    }
}

fn seat_on(e: &Eni) -> Seat {
    Seat {
        node: "n".into(),
        instance_id: e.instance_id.clone().unwrap(),
        eni: e.id.clone(),
        mac: e.mac.clone(),
        private_ip: e.primary_ip,
    }
}

fn association_of(c: &crate::cloud::fake::FakeCloud) -> Option<(String, IpAddr)> {
    let all = c.allocations.lock().unwrap();
    let b = all[0].association.as_ref()?;
    Some((b.eni.clone()?, b.private_ip?))
}

/// A move in ElasticIP mode is one AssociateAddress per address, onto the seat's own private
/// address, read back with DescribeAddresses; releasing disassociates only from that ENI.
#[tokio::test]
async fn elastic_ip_mode_moves_by_reassociating_and_releases_by_disassociating() {
    use crate::cloud::fake::FakeCloud;
    let c = fake_with(allocation("us-west-2", Some(("eni-11", "10.0.8.211"))));
    let to = seat_on(&eni(2, 1, &[]));
    let moves = [AddressMove {
        address: ip(PUBLIC),
        from_eni: Some("eni-11".into()),
        allocation_id: Some(ALLOCATION.into()),
        route_tables: Vec::new(),
    }];
    let port: &dyn Carrier<FakeCloud> = &ElasticIp;
    let moved = port.move_to(&c, &to, &moves).await.unwrap();
    assert_eq!(moved.unassigned_for, None);
    assert_eq!(
        c.calls.lock().unwrap().len(),
        1,
        "one call: {:?}",
        c.calls.lock().unwrap()
    );
    assert_eq!(
        association_of(&c),
        Some(("eni-21".into(), ip("10.0.8.221")))
    );
    port.verify(&c, &to, &moves).await.unwrap();
    let old = seat_on(&eni(1, 1, &[]));
    let e = port.verify(&c, &old, &moves).await.unwrap_err();
    assert_eq!(e.code, "MoveNotVisible");
    assert!(e.message.contains("10.0.8.221 on eni-21"), "{e}");

    let s = spec("ElasticIP", PUBLIC, json!({}));
    port.release(&c, &s, "eni-11", ip(PUBLIC)).await.unwrap();
    assert!(
        association_of(&c).is_some(),
        "not associated there: left alone"
    );
    port.release(&c, &s, "eni-21", ip(PUBLIC)).await.unwrap();
    assert_eq!(association_of(&c), None);
}

/// IPv6 has no reassignment: the address leaves its ENI in one call and arrives in another,
/// and the time between is reported.
#[tokio::test]
async fn an_ipv6_move_is_two_calls_and_reports_the_window_between() {
    use crate::cloud::fake::FakeCloud;
    let v6 = "2600:1f14:abc:de00::100";
    let c = FakeCloud {
        enis: vec![eni(1, 1, &[v6, "2600:1f14:abc:de00::101"]), eni(2, 1, &[])].into(),
        ..Default::default()
    };
    let to = seat_on(&eni(2, 1, &[]));
    let moves: Vec<AddressMove> = [v6, "2600:1f14:abc:de00::101"]
        .iter()
        .map(|a| AddressMove {
            address: ip(a),
            from_eni: Some("eni-11".into()),
            allocation_id: None,
            route_tables: Vec::new(),
        })
        .collect();
    let port: &dyn Carrier<FakeCloud> = &SecondaryIp;
    let moved = port.move_to(&c, &to, &moves).await.unwrap();
    assert!(moved.unassigned_for.is_some());
    assert_eq!(
        *c.calls.lock().unwrap(),
        [
            ("Unassign", "eni-11".to_string()),
            ("Assign", "eni-21".to_string())
        ],
        "one call per ENI, the old one first"
    );
    port.verify(&c, &to, &moves).await.unwrap();
    // IPv4 stays one call with no window.
    let v4 = [AddressMove {
        address: ip("10.0.8.100"),
        from_eni: Some("eni-11".into()),
        allocation_id: None,
        route_tables: Vec::new(),
    }];
    let moved = port.move_to(&c, &to, &v4).await.unwrap();
    assert_eq!(moved.unassigned_for, None);
    assert_eq!(c.calls.lock().unwrap().len(), 3);
}

/// A SecondaryIP address leaving for good takes its Elastic IP off first: the allocation is
/// left unassociated, never bound to an address nobody holds.
#[tokio::test]
async fn releasing_a_secondary_address_disassociates_its_elastic_ip_first() {
    use crate::cloud::fake::FakeCloud;
    let c = FakeCloud {
        enis: vec![eni(1, 1, &["10.0.8.100"])].into(),
        allocations: vec![allocation("us-west-2", Some(("eni-11", "10.0.8.100")))].into(),
        ..Default::default()
    };
    let s = spec("SecondaryIP", "10.0.8.100", json!({}));
    let port: &dyn Carrier<FakeCloud> = &SecondaryIp;
    port.release(&c, &s, "eni-11", ip("10.0.8.100"))
        .await
        .unwrap();
    assert_eq!(association_of(&c), None);
    assert!(c.holder_of(ip("10.0.8.100")).is_empty());
    let calls: Vec<&str> = c.calls.lock().unwrap().iter().map(|(a, _)| *a).collect();
    assert_eq!(calls, ["DisassociateAddress", "Unassign"]);
}
