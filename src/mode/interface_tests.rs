use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::cloud::fake::FakeCloud;
use crate::cloud::{Instance, Subnet};
use crate::mode::Reads;

const SUBNET: &str = "subnet-0a1b2c3d";
const CLUSTER: &str = "lab";
const VIP: &str = "10.0.8.100";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The FloatingIP's ENI with primary address `primary`, attached to `instance` at index 1.
fn vip_eni(id: &str, primary: &str, instance: Option<&str>, tags: &[(&str, &str)]) -> Eni {
    Eni {
        id: id.into(),
        subnet_id: SUBNET.into(),
        instance_id: instance.map(String::from),
        device_index: instance.map(|_| 1),
        mac: Some("02:00:00:00:aa:01".into()),
        primary_ip: Some(ip(primary)),
        secondary: Vec::new(),
        tags: (tags.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        security_groups: Vec::new(),
    }
}

fn ours(instance: Option<&str>) -> Eni {
    let tags = [(TAG_CLUSTER, CLUSTER), (TAG_FLOATINGIP, "web")];
    vip_eni("eni-0000000a", VIP, instance, &tags)
}

fn spec(extra: serde_json::Value) -> FloatingIPSpec {
    let mut v = json!({"address": VIP, "mode": "Interface", "subnetId": SUBNET});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

fn named() -> FloatingIPSpec {
    spec(json!({"networkInterfaceId": "eni-0000000a"}))
}

fn node(i: u8) -> NodeView {
    let n = json!({
        "metadata": {"name": format!("n{i}")},
        "spec": {"providerID": format!("aws:///zone/i-{i}")},
    });
    NodeView::from_node(&serde_json::from_value(n).unwrap())
}

/// EC2 as the plan reads it: the subnet's ENIs, its block, nodes on i-1 and i-2.
struct Ec2 {
    enis: HashMap<String, Vec<Eni>>,
    subnets: HashMap<String, Subnet>,
    reads: Reads,
}

impl Ec2 {
    fn new(enis: Vec<Eni>) -> Self {
        let subnet = Subnet {
            id: SUBNET.into(),
            cidr_v4: Some("10.0.8.0/22".into()),
            cidrs_v6: Vec::new(),
            zone: None,
        };
        Self {
            enis: HashMap::from([(SUBNET.to_string(), enis)]),
            subnets: HashMap::from([(SUBNET.to_string(), subnet)]),
            reads: Reads {
                node_instances: ["i-1", "i-2"].map(String::from).into(),
                ..Default::default()
            },
        }
    }

    fn snapshot(&self) -> Snapshot<'_> {
        Snapshot::new(&self.enis, &self.subnets, CLUSTER, &self.reads)
    }
}

fn reason(r: Result<(), Unusable>) -> &'static str {
    r.map_or_else(|e| e.reason(), |()| "usable")
}

/// What the plan may use, and what it must refuse before any call, as a table.
#[test]
fn which_enis_the_plan_may_move() {
    let foreign_tags: &[(&str, &str)] = &[];
    let tagged: &[(&str, &str)] = &[(TAG_CLUSTER, CLUSTER)];
    let cases: Vec<(&str, FloatingIPSpec, Vec<Eni>, &str)> = vec![
        (
            "floatip's own, on a node",
            spec(json!({})),
            vec![ours(Some("i-1"))],
            "usable",
        ),
        (
            "floatip's own, detached",
            spec(json!({})),
            vec![ours(None)],
            "usable",
        ),
        // Its node was deleted: the ENI follows the FloatingIP away from the instance.
        (
            "floatip's own, on a gone node",
            spec(json!({})),
            vec![ours(Some("i-9"))],
            "usable",
        ),
        ("none yet", spec(json!({})), vec![], "usable"),
        (
            "someone else's with the address",
            spec(json!({})),
            vec![vip_eni("eni-0000000b", VIP, Some("i-1"), foreign_tags)],
            "InterfaceNotOurs",
        ),
        (
            "named, on a node",
            named(),
            vec![vip_eni("eni-0000000a", VIP, Some("i-2"), tagged)],
            "usable",
        ),
        (
            "named, not tagged for the cluster",
            named(),
            vec![vip_eni("eni-0000000a", VIP, Some("i-2"), foreign_tags)],
            "InterfaceUntagged",
        ),
        (
            "named, in another subnet or VPC",
            named(),
            vec![vip_eni("eni-0000000b", "10.0.8.9", None, foreign_tags)],
            "InterfaceNotInSubnet",
        ),
        (
            "named, another primary address",
            named(),
            vec![vip_eni("eni-0000000a", "10.0.8.9", None, foreign_tags)],
            "InterfaceAddressMismatch",
        ),
        (
            "named, on an instance that is no node",
            named(),
            vec![vip_eni("eni-0000000a", VIP, Some("i-9"), tagged)],
            "InterfaceOnForeignInstance",
        ),
        (
            "outside the subnet",
            spec(json!({"address": "10.1.0.5"})),
            vec![],
            "AddressOutsideSubnet",
        ),
    ];
    for (case, spec, enis, want) in cases {
        let ec2 = Ec2::new(enis);
        let address = ip(&spec.address);
        let got = reason(Interface.usable(&spec, address, &ec2.snapshot()));
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn an_attached_eni_holds_the_address_and_a_detached_one_holds_it_for_nobody() {
    let ec2 = Ec2::new(vec![ours(Some("i-1"))]);
    let held = Interface.holding(&spec(json!({})), ip(VIP), &ec2.snapshot());
    assert_eq!(held.len(), 1);
    assert!(held[0].managed);
    assert_eq!(held[0].eni.instance_id.as_deref(), Some("i-1"));

    let ec2 = Ec2::new(vec![ours(None)]);
    assert!(Interface
        .holding(&spec(json!({})), ip(VIP), &ec2.snapshot())
        .is_empty());

    // A node's floating ENI (SecondaryIP's) is never the FloatingIP's, whatever it holds.
    let mut floating = ours(Some("i-1"));
    floating.tags.insert(TAG_NODE.into(), "n1".into());
    let ec2 = Ec2::new(vec![floating]);
    let held = Interface.holding(&spec(json!({})), ip(VIP), &ec2.snapshot());
    assert!(!held[0].managed);
}

#[test]
fn every_node_seats_the_one_eni_and_none_does_before_it_exists() {
    let ec2 = Ec2::new(vec![ours(Some("i-1"))]);
    let seat = Interface
        .seat(&spec(json!({})), &node(2), &ec2.snapshot())
        .unwrap();
    assert_eq!(
        (
            seat.instance_id.as_str(),
            seat.eni.as_str(),
            seat.mac.as_deref()
        ),
        ("i-2", "eni-0000000a", Some("02:00:00:00:aa:01"))
    );
    let ec2 = Ec2::new(vec![]);
    match Interface.seat(&spec(json!({})), &node(2), &ec2.snapshot()) {
        Err(Unfit::NoInterface(why)) => assert!(why.contains("10.0.8.100"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_device_index_is_the_lowest_free_one_under_the_types_limit() {
    assert_eq!(pick_device_index(&[0], Some(3)), Some(1));
    assert_eq!(pick_device_index(&[0, 1], Some(3)), Some(2));
    assert_eq!(pick_device_index(&[0, 2], Some(3)), Some(1));
    assert_eq!(pick_device_index(&[0, 1, 2], Some(3)), None);
    assert_eq!(pick_device_index(&[0, 1, 2], None), Some(3));
}

/// Instances i-1 and i-2 of a type with `max` interfaces, the ENI on `on`.
fn cloud(on: Option<&str>, max: u32, used_on_target: &[i32]) -> FakeCloud {
    let instance = |id: &str, used: &[i32]| Instance {
        id: id.into(),
        instance_type: "m5.large".into(),
        device_indexes: used.to_vec(),
        primary_security_groups: Vec::new(),
    };
    let mut first = vec![0];
    first.extend(on.filter(|i| *i == "i-1").map(|_| 1));
    FakeCloud {
        enis: vec![ours(on)].into(),
        instances: vec![instance("i-1", &first), instance("i-2", used_on_target)].into(),
        max_interfaces: [("m5.large".to_string(), max)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
            .into(),
        ..Default::default()
    }
}

fn calls(c: &FakeCloud) -> Vec<&'static str> {
    c.calls.lock().unwrap().iter().map(|(a, _)| *a).collect()
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test]
async fn a_move_detaches_then_attaches_at_a_free_index_and_reads_back() {
    let c = cloud(Some("i-1"), 3, &[0]);
    move_eni(&c, "eni-0000000a", "i-2", later()).await.unwrap();
    assert_eq!(
        calls(&c),
        ["DetachNetworkInterface", "AttachNetworkInterface"]
    );
    assert_eq!(*c.detach_forced.lock().unwrap(), [false]);
    let a = c.attachment("eni-0000000a").await.unwrap().unwrap();
    assert_eq!((a.instance_id.as_str(), a.device_index), ("i-2", Some(1)));
    verify(&c, "eni-0000000a", "i-2", later()).await.unwrap();
    // The old instance let go of its slot.
    assert_eq!(c.instance("i-1").await.unwrap().device_indexes, [0]);
}

/// The lease lost while the ENI detached: no attach from this replica; the ENI is left free
/// for the next leader.
#[tokio::test]
async fn a_replica_that_stops_leading_during_the_detach_does_not_attach() {
    let c = cloud(Some("i-1"), 3, &[0]);
    let e = move_eni_gated(&c, "eni-0000000a", "i-2", later(), &|| false)
        .await
        .unwrap_err();
    assert_eq!(e.code, "NotLeading");
    assert_eq!(calls(&c), ["DetachNetworkInterface"]);
    assert_eq!(c.attachment("eni-0000000a").await.unwrap(), None);
}

#[tokio::test]
async fn a_stopped_instance_is_detached_with_force() {
    let c = cloud(Some("i-1"), 3, &[0]);
    c.instance_states
        .lock()
        .unwrap()
        .insert("i-1".into(), "stopped".into());
    move_eni(&c, "eni-0000000a", "i-2", later()).await.unwrap();
    assert_eq!(*c.detach_forced.lock().unwrap(), [true]);
}

#[tokio::test]
async fn a_full_target_is_refused_with_no_mutating_call() {
    let c = cloud(Some("i-1"), 3, &[0, 1, 2]);
    let e = move_eni(&c, "eni-0000000a", "i-2", later())
        .await
        .unwrap_err();
    assert_eq!(e.code, "NoFreeDeviceIndex");
    assert!(!e.retryable());
    assert!(
        e.message.contains("i-2") && e.message.contains("all 3"),
        "{}",
        e.message
    );
    assert!(calls(&c).is_empty(), "{:?}", calls(&c));
    // The ENI stays where it was.
    let a = c.attachment("eni-0000000a").await.unwrap().unwrap();
    assert_eq!(a.instance_id, "i-1");
}

#[tokio::test]
async fn an_eni_already_on_the_target_is_left_alone_and_a_detached_one_only_attached() {
    let c = cloud(Some("i-1"), 3, &[0]);
    move_eni(&c, "eni-0000000a", "i-1", later()).await.unwrap();
    assert!(calls(&c).is_empty());

    let c = cloud(None, 3, &[0]);
    move_eni(&c, "eni-0000000a", "i-2", later()).await.unwrap();
    assert_eq!(calls(&c), ["AttachNetworkInterface"]);
}

#[tokio::test]
async fn the_read_back_fails_while_the_eni_is_elsewhere() {
    let c = cloud(Some("i-1"), 3, &[0]);
    let e = verify(&c, "eni-0000000a", "i-2", Instant::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "MoveNotVisible");
    assert!(e.message.contains("i-1"), "{}", e.message);
}

/// A FloatingIP going: floatip's own ENI is detached and deleted, a named one only detached;
/// an ENI already gone or detached is no error.
#[tokio::test]
async fn release_detaches_deletes_what_floatip_made_and_leaves_a_named_eni() {
    let c = cloud(Some("i-1"), 3, &[0]);
    let release = |s: FloatingIPSpec| {
        let c = &c;
        async move { Carrier::<FakeCloud>::release(&Interface, c, &s, "eni-0000000a", ip(VIP)).await }
    };
    release(spec(json!({}))).await.unwrap();
    assert_eq!(
        calls(&c),
        ["DetachNetworkInterface", "DeleteNetworkInterface"]
    );
    release(spec(json!({}))).await.unwrap();
    assert_eq!(calls(&c).len(), 2, "gone: nothing more to do");

    let c = cloud(Some("i-1"), 3, &[0]);
    let s = named();
    Carrier::<FakeCloud>::release(&Interface, &c, &s, "eni-0000000a", ip(VIP))
        .await
        .unwrap();
    assert_eq!(calls(&c), ["DetachNetworkInterface"]);
    Carrier::<FakeCloud>::release(&Interface, &c, &s, "eni-0000000a", ip(VIP))
        .await
        .unwrap();
    assert_eq!(calls(&c), ["DetachNetworkInterface"], "detached already");
}

/// attach makes the ENI once: not when it exists, not for a spec that names one, and a
/// concurrent maker's win (the address in use) reads as made.
#[tokio::test]
async fn the_eni_is_made_once_tagged_with_the_address_as_its_primary() {
    let sg = vec!["sg-1".to_string()];
    let c = FakeCloud::default();
    let made = ensure_eni(&c, &spec(json!({})), "web", CLUSTER, &sg).await;
    let Ok(Ensured::Made(id)) = made else {
        panic!("{made:?}")
    };
    let eni = c.enis.lock().unwrap()[0].clone();
    assert_eq!((eni.id, eni.primary_ip), (id, Some(ip(VIP))));
    assert_eq!(eni.tags, tags(CLUSTER, "web"));
    assert_eq!(eni.security_groups, sg);
    let again = ensure_eni(&c, &spec(json!({})), "web", CLUSTER, &sg).await;
    assert_eq!(again.unwrap(), Ensured::Exists);
    assert_eq!(
        ensure_eni(&c, &named(), "web", CLUSTER, &sg).await.unwrap(),
        Ensured::NotOurs
    );
    let theirs = cloud(None, 3, &[0]);
    theirs.enis.lock().unwrap()[0].tags.clear();
    assert_eq!(
        ensure_eni(&theirs, &spec(json!({})), "web", CLUSTER, &sg)
            .await
            .unwrap(),
        Ensured::NotOurs
    );
    assert_eq!(calls(&c), ["CreateNetworkInterface"]);
}
