//! The fake's Elastic IPs behave as EC2's do, so controller tests built on it mean something.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::FakeCloud;
use crate::cloud::{AddressMove, Allocation, Cloud, Eni, Subnet};

const VIP: &str = "10.0.1.200";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn eni(n: u8, subnet: &str) -> Eni {
    Eni {
        id: format!("eni-{n}"),
        subnet_id: subnet.into(),
        instance_id: Some(format!("i-{n}")),
        device_index: Some(1),
        mac: None,
        primary_ip: Some(ip(&format!("10.0.1.{n}"))),
        secondary: Vec::new(),
        tags: BTreeMap::new(),
        security_groups: Vec::new(),
    }
}

fn allocation(id: &str, group: &str) -> Allocation {
    Allocation {
        allocation_id: id.into(),
        public_ip: Some(ip("198.51.100.7")),
        customer_owned_ip: None,
        customer_owned_pool: None,
        network_border_group: Some(group.into()),
        association: None,
    }
}

/// eni-1 and eni-2 in a Region subnet, eni-3 in a Local Zone subnet; eipalloc-r of the
/// Region's group, eipalloc-l of the Local Zone's.
fn cloud() -> FakeCloud {
    let subnet = |id: &str, zone: &str| Subnet {
        id: id.into(),
        cidr_v4: Some("10.0.1.0/24".into()),
        cidrs_v6: Vec::new(),
        zone: Some(zone.into()),
    };
    FakeCloud {
        enis: vec![eni(1, "subnet-r"), eni(2, "subnet-r"), eni(3, "subnet-l")].into(),
        subnets: vec![
            subnet("subnet-r", "us-west-2a"),
            subnet("subnet-l", "us-west-2-lax-1a"),
        ]
        .into(),
        border_groups: BTreeMap::from([
            ("us-west-2a".to_string(), "us-west-2".to_string()),
            (
                "us-west-2-lax-1a".to_string(),
                "us-west-2-lax-1".to_string(),
            ),
        ])
        .into(),
        allocations: vec![
            allocation("eipalloc-r", "us-west-2"),
            allocation("eipalloc-l", "us-west-2-lax-1"),
        ]
        .into(),
        ..FakeCloud::default()
    }
}

async fn bound(cloud: &FakeCloud, id: &str) -> Option<(String, IpAddr, String)> {
    let found = cloud.allocations(&[id.to_string()]).await.unwrap();
    let b = found.first()?.association.clone()?;
    Some((b.eni?, b.private_ip?, b.instance_id?))
}

fn moved_to(eni: &str, instance: &str) -> Option<(String, IpAddr, String)> {
    Some((eni.into(), ip(VIP), instance.into()))
}

#[tokio::test]
async fn allocations_leave_missing_ids_out() {
    let c = cloud();
    let ids = ["eipalloc-l".to_string(), "eipalloc-gone".to_string()];
    let found = c.allocations(&ids).await.unwrap();
    let found: Vec<_> = found.iter().map(|a| a.allocation_id.as_str()).collect();
    assert_eq!(found, ["eipalloc-l"]);
    assert!(c.allocations(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn reassociation_needs_the_flag_and_the_eip_follows_its_secondary_address() {
    let c = cloud();
    c.assign_unused("eni-1", &[ip(VIP)]).await.unwrap();
    c.associate("eipalloc-r", "eni-1", ip(VIP), false)
        .await
        .unwrap();
    assert_eq!(bound(&c, "eipalloc-r").await, moved_to("eni-1", "i-1"));
    // Again to the same address is harmless, as on AWS.
    c.associate("eipalloc-r", "eni-1", ip(VIP), false)
        .await
        .unwrap();

    let taken = c
        .associate("eipalloc-r", "eni-2", ip("10.0.1.2"), false)
        .await
        .unwrap_err();
    assert_eq!(taken.code, "Resource.AlreadyAssociated");
    assert!(!taken.retryable());
    assert_eq!(bound(&c, "eipalloc-r").await, moved_to("eni-1", "i-1"));

    let to_eni2 = AddressMove {
        address: ip(VIP),
        from_eni: None,
        allocation_id: None,
        route_tables: Vec::new(),
    };
    c.assign("eni-2", &[to_eni2]).await.unwrap();
    assert_eq!(c.holder_of(ip(VIP)), ["eni-2"]);
    assert_eq!(bound(&c, "eipalloc-r").await, moved_to("eni-2", "i-2"));

    c.associate("eipalloc-r", "eni-1", ip("10.0.1.1"), true)
        .await
        .unwrap();
    let primary = Some(("eni-1".to_string(), ip("10.0.1.1"), "i-1".to_string()));
    assert_eq!(bound(&c, "eipalloc-r").await, primary);
    let actions: Vec<_> = c.calls.lock().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(
        actions,
        [
            "AssignUnused",
            "AssociateAddress",
            "AssociateAddress",
            "AssociateAddress",
            "Assign",
            "AssociateAddress"
        ]
    );
}

#[tokio::test]
async fn an_address_bound_to_another_allocation_needs_the_flag_too() {
    let c = cloud();
    c.associate("eipalloc-r", "eni-1", ip("10.0.1.1"), false)
        .await
        .unwrap();
    c.allocations
        .lock()
        .unwrap()
        .push(allocation("eipalloc-r2", "us-west-2"));
    let err = c
        .associate("eipalloc-r2", "eni-1", ip("10.0.1.1"), false)
        .await
        .unwrap_err();
    assert_eq!(err.code, "Resource.AlreadyAssociated");
    c.associate("eipalloc-r2", "eni-1", ip("10.0.1.1"), true)
        .await
        .unwrap();
    assert_eq!(bound(&c, "eipalloc-r").await, None, "the old one let go");
    assert!(bound(&c, "eipalloc-r2").await.is_some());
}

#[tokio::test]
async fn border_groups_must_match_and_are_listed() {
    let c = cloud();
    for (allocation, eni, address) in [
        ("eipalloc-l", "eni-1", "10.0.1.1"),
        ("eipalloc-r", "eni-3", "10.0.1.3"),
    ] {
        let err = c
            .associate(allocation, eni, ip(address), true)
            .await
            .unwrap_err();
        assert_eq!(err.code, "InvalidParameterCombination", "{allocation}");
        assert_eq!(bound(&c, allocation).await, None);
    }
    c.associate("eipalloc-l", "eni-3", ip("10.0.1.3"), false)
        .await
        .unwrap();
    assert_eq!(
        c.border_groups().await.unwrap()["us-west-2-lax-1a"],
        "us-west-2-lax-1"
    );
}

#[tokio::test]
async fn associate_refuses_what_does_not_exist() {
    let c = cloud();
    let no_address = c.associate("eipalloc-r", "eni-1", ip(VIP), true).await;
    assert_eq!(no_address.unwrap_err().code, "InvalidParameterValue");
    let no_eni = c.associate("eipalloc-r", "eni-9", ip(VIP), true).await;
    assert_eq!(
        no_eni.unwrap_err().code,
        "InvalidNetworkInterfaceID.NotFound"
    );
    let no_allocation = c.associate("eipalloc-x", "eni-1", ip("10.0.1.1"), true);
    assert_eq!(
        no_allocation.await.unwrap_err().code,
        "InvalidAllocationID.NotFound"
    );
}

#[tokio::test]
async fn disassociate_and_unassign_end_the_association() {
    let c = cloud();
    c.assign_unused("eni-1", &[ip(VIP)]).await.unwrap();
    c.associate("eipalloc-r", "eni-1", ip(VIP), false)
        .await
        .unwrap();
    c.unassign("eni-1", &[ip(VIP)]).await.unwrap();
    assert_eq!(bound(&c, "eipalloc-r").await, None);

    c.associate("eipalloc-r", "eni-1", ip("10.0.1.1"), false)
        .await
        .unwrap();
    let found = c.allocations(&["eipalloc-r".into()]).await.unwrap();
    let association = found[0].association.clone().unwrap().id;
    c.disassociate(&association).await.unwrap();
    assert_eq!(bound(&c, "eipalloc-r").await, None);
    c.disassociate(&association)
        .await
        .expect("an association already gone is not an error");
}

#[tokio::test]
async fn injected_failures_reach_the_new_calls() {
    let c = cloud();
    *c.fail_with.lock().unwrap() = Some(crate::cloud::CloudError {
        action: "AssociateAddress",
        code: "RequestLimitExceeded".into(),
        message: "slow down".into(),
        kind: crate::cloud::ErrorKind::Throttled,
    });
    let err = c
        .associate("eipalloc-r", "eni-1", ip("10.0.1.1"), true)
        .await
        .unwrap_err();
    assert!(err.retryable());
    assert_eq!(bound(&c, "eipalloc-r").await, None);
    assert!(c.disassociate("eipassoc-1").await.is_err());
}
