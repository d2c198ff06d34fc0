use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::cloud::fake::FakeCloud;
use crate::cloud::{floating_tags, Subnet};
use crate::mode::Reads;

pub(crate) const SUBNET: &str = "subnet-0a1b2c3d";
pub(crate) const CLUSTER: &str = "lab";

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// ENI `i` of instance i-`i`, at `device_index`; a floating ENI of the cluster unless 0.
pub(crate) fn eni(i: u8, device_index: i32, holds: &[&str]) -> Eni {
    Eni {
        id: format!("eni-{i}{device_index}"),
        subnet_id: SUBNET.into(),
        instance_id: Some(format!("i-{i}")),
        device_index: Some(device_index),
        mac: Some(format!("02:00:00:00:0{i}:0{device_index}")),
        primary_ip: Some(ip(&format!(
            "10.0.8.{}",
            200 + i32::from(i) * 10 + device_index
        ))),
        secondary: holds.iter().map(|a| ip(a)).collect(),
        tags: if device_index == 0 {
            Default::default()
        } else {
            floating_tags(CLUSTER, &format!("n{i}"))
        },
        security_groups: Vec::new(),
    }
}

fn seat(e: &Eni) -> Seat {
    Seat {
        node: "n".into(),
        instance_id: e.instance_id.clone().unwrap(),
        eni: e.id.clone(),
        mac: e.mac.clone(),
        private_ip: None,
    }
}

fn spec(interface: Option<&str>) -> FloatingIPSpec {
    serde_json::from_value(
        json!({"address": "10.0.8.100", "subnetId": SUBNET, "interface": interface}),
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

fn cloud(enis: Vec<Eni>) -> FakeCloud {
    FakeCloud {
        enis: enis.into(),
        ..Default::default()
    }
}

fn mv(address: &str, from: Option<&Eni>) -> AddressMove {
    AddressMove {
        address: ip(address),
        from_eni: from.map(|e| e.id.clone()),
        allocation_id: None,
        route_tables: Vec::new(),
    }
}

/// Three addresses from two ENIs (and one from nowhere) onto one seat: ONE call, and EC2 then
/// has each on the target only.
#[tokio::test]
async fn a_batch_onto_one_seat_is_one_call() {
    let (a, b, to) = (
        eni(1, 1, &["10.0.8.100"]),
        eni(2, 1, &["10.0.8.101"]),
        eni(3, 1, &[]),
    );
    let c = cloud(vec![a.clone(), b.clone(), to.clone()]);
    let moves = [
        mv("10.0.8.100", Some(&a)),
        mv("10.0.8.101", Some(&b)),
        mv("10.0.8.102", None),
    ];
    let port = crate::mode::carrier::<FakeCloud>(crate::api::Mode::SecondaryIP).unwrap();
    port.move_to(&c, &seat(&to), &moves).await.unwrap();
    assert_eq!(*c.calls.lock().unwrap(), [("Assign", to.id.clone())]);
    for m in &moves {
        assert_eq!(c.holder_of(m.address), vec![to.id.clone()]);
    }
    port.verify(&c, &seat(&to), &moves).await.unwrap();
    assert_eq!(c.calls.lock().unwrap().len(), 1, "verifying only reads");
}

/// EC2 did not do what the call said (the address is still on its old ENI, or on no ENI at
/// all): verify says so, naming the address and where EC2 has it, as a retryable error.
#[tokio::test]
async fn verify_fails_when_ec2_shows_the_address_elsewhere_or_missing() {
    let (from, to) = (eni(1, 1, &["10.0.8.100"]), eni(2, 1, &[]));
    let c = cloud(vec![from.clone(), to.clone()]);
    let moves = [mv("10.0.8.100", Some(&from))];
    let elsewhere = Carrier::<FakeCloud>::verify(&SecondaryIp, &c, &seat(&to), &moves)
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code, "MoveNotVisible");
    assert!(elsewhere.retryable());
    assert!(
        elsewhere.message.contains(&format!(
            "after assigning 10.0.8.100 to {}, EC2 shows it on {}: false, elsewhere: [\"{}\"]",
            to.id, to.id, from.id
        )),
        "{elsewhere}"
    );

    let c = cloud(vec![eni(1, 1, &[]), to.clone()]);
    let missing = Carrier::<FakeCloud>::verify(&SecondaryIp, &c, &seat(&to), &moves)
        .await
        .unwrap_err();
    assert!(
        missing.message.ends_with(": false, elsewhere: []"),
        "{missing}"
    );
}

#[tokio::test]
async fn release_takes_the_address_off_and_an_address_already_gone_is_no_error() {
    let e = eni(1, 1, &["10.0.8.100", "10.0.8.101"]);
    let c = cloud(vec![e.clone()]);
    let port: &dyn Carrier<FakeCloud> = &SecondaryIp;
    port.release(&c, &spec(None), &e.id, ip("10.0.8.100"))
        .await
        .unwrap();
    assert!(c.holder_of(ip("10.0.8.100")).is_empty());
    assert_eq!(
        c.holder_of(ip("10.0.8.101")),
        vec![e.id.clone()],
        "only that one"
    );
    port.release(&c, &spec(None), &e.id, ip("10.0.8.100"))
        .await
        .unwrap();
    port.release(&c, &spec(None), "eni-gone", ip("10.0.8.100"))
        .await
        .unwrap();
    assert_eq!(c.calls.lock().unwrap().len(), 3, "one call each");
}

/// The read side: which ENIs floatip manages, and where the address sits on a node, for both
/// interface choices.
#[test]
fn the_interface_choice_decides_which_eni_is_managed_and_where_the_address_sits() {
    let enis = HashMap::from([(
        SUBNET.to_string(),
        vec![
            eni(1, 0, &["10.0.8.100"]),
            eni(1, 1, &["10.0.8.100"]),
            eni(2, 0, &[]),
        ],
    )]);
    let subnets = HashMap::new();
    let reads = Reads::default();
    let ec2 = Snapshot::new(&enis, &subnets, CLUSTER, &reads);
    let managed = |s: &FloatingIPSpec| -> Vec<(String, bool)> {
        SecondaryIp
            .holding(s, ip("10.0.8.100"), &ec2)
            .iter()
            .map(|h| (h.eni.id.clone(), h.managed))
            .collect()
    };
    let (dedicated, primary) = (spec(None), spec(Some("Primary")));
    assert_eq!(
        managed(&dedicated),
        [("eni-10".to_string(), false), ("eni-11".to_string(), true)]
    );
    assert_eq!(
        managed(&primary),
        [("eni-10".to_string(), true), ("eni-11".to_string(), false)]
    );
    assert_eq!(
        SecondaryIp.seat(&dedicated, &node(1), &ec2).unwrap().eni,
        "eni-11"
    );
    assert_eq!(
        SecondaryIp.seat(&primary, &node(2), &ec2).unwrap().eni,
        "eni-20"
    );
    assert_eq!(
        SecondaryIp.seat(&dedicated, &node(2), &ec2),
        Err(Unfit::NoInterface(format!(
            "the node has no floating ENI of cluster lab in {SUBNET} (floatip attach creates it)"
        )))
    );
    assert_eq!(
        SecondaryIp.seat(&primary, &node(3), &ec2),
        Err(Unfit::NoInterface(format!(
            "the node's primary ENI is not in {SUBNET}"
        )))
    );
    let other_cluster = Snapshot {
        cluster: "other",
        ..ec2
    };
    assert!(SecondaryIp
        .seat(&dedicated, &node(1), &other_cluster)
        .is_err());
}

#[test]
fn it_reads_its_subnet_and_checks_the_address_against_it() {
    assert_eq!(SecondaryIp.subnets(&spec(None)), [SUBNET.to_string()]);
    let enis = HashMap::from([(SUBNET.to_string(), vec![eni(1, 1, &[])])]);
    let subnets = HashMap::from([(
        SUBNET.to_string(),
        Subnet {
            id: SUBNET.into(),
            cidr_v4: Some("10.0.8.0/22".into()),
            cidrs_v6: vec![],
            zone: None,
        },
    )]);
    let reads = Reads::default();
    let ec2 = Snapshot::new(&enis, &subnets, CLUSTER, &reads);
    let s = spec(None);
    assert_eq!(SecondaryIp.usable(&s, ip("10.0.8.100"), &ec2), Ok(()));
    let primary = SecondaryIp.usable(&s, ip("10.0.8.211"), &ec2).unwrap_err();
    assert_eq!(primary.reason(), "AddressIsPrimary");
    let outside = SecondaryIp.usable(&s, ip("10.0.20.5"), &ec2).unwrap_err();
    assert_eq!(outside.reason(), "AddressOutsideSubnet");
    // The subnet's blocks unread: nothing to check against, and EC2 will say.
    let unread = Snapshot {
        subnets: &HashMap::new(),
        ..ec2
    };
    assert_eq!(SecondaryIp.usable(&s, ip("10.0.20.5"), &unread), Ok(()));
}
