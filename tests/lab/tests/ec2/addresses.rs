//! Elastic IPs, customer-owned IPs, network border groups and IPv6 (issue 15): the AWS
//! behaviours moto needed patching for, through the SDK, and the floatip adapter over them.

use std::net::IpAddr;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::DomainType;
use aws_sdk_ec2::Client;
use floatip::cloud::aws::Ec2;
use floatip::cloud::{AddressMove, Allocation, Cloud, ErrorKind};
use floatip::metrics::Metrics;
use floatip_lab::process::Ec2Lab;

use super::{assign, filter, world, World, VIP};

const REGION: &str = "us-west-2";
const LOCAL_ZONE: &str = "us-west-2-lax-1a";
const LOCAL_GROUP: &str = "us-west-2-lax-1";
const COIP_POOL: &str = "ipv4pool-coip-0123456789abcdef0";

fn adapter(lab: &Ec2Lab) -> Ec2 {
    Ec2::with_client(lab.client(), Metrics::new())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn in_block(address: IpAddr, block: &str) -> bool {
    let cidr: floatip::cloud::cidr::Cidr = block.parse().unwrap();
    cidr.contains(address)
}

/// AllocateAddress, with a border group or from a customer-owned pool; the allocation ID.
async fn allocate(ec2: &Client, group: Option<&str>, coip_pool: Option<&str>) -> String {
    let out = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .set_network_border_group(group.map(String::from))
        .set_customer_owned_ipv4_pool(coip_pool.map(String::from))
        .send()
        .await
        .unwrap();
    out.allocation_id().unwrap().to_owned()
}

async fn one_allocation(ec2: &Ec2, id: &str) -> Allocation {
    let found = ec2.allocations(&[id.to_string()]).await.unwrap();
    assert_eq!(found.len(), 1, "{id}: {found:?}");
    found.into_iter().next().unwrap()
}

/// A subnet of `w`'s VPC in the Local Zone, with one ENI; (subnet, ENI, its primary address).
async fn local_zone_eni(ec2: &Client, w: &World) -> (String, String, IpAddr) {
    let subnet = ec2
        .create_subnet()
        .vpc_id(&w.vpc)
        .cidr_block("10.0.9.0/24")
        .availability_zone(LOCAL_ZONE)
        .send()
        .await
        .expect("a subnet in the opted-in Local Zone");
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
    let eni = ec2
        .create_network_interface()
        .subnet_id(&subnet)
        .send()
        .await
        .unwrap();
    let eni = eni.network_interface().unwrap();
    let primary = ip(eni.private_ip_address().unwrap());
    (
        subnet,
        eni.network_interface_id().unwrap().to_owned(),
        primary,
    )
}

#[tokio::test]
async fn allocations_keep_their_border_group_and_come_from_the_test_range() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let region = allocate(&ec2, None, None).await;
    let local = allocate(&ec2, Some(LOCAL_GROUP), None).await;

    let out = ec2
        .describe_addresses()
        .allocation_ids(&local)
        .send()
        .await
        .unwrap();
    assert_eq!(out.addresses()[0].network_border_group(), Some(LOCAL_GROUP));

    let floatip = adapter(&lab);
    let region = one_allocation(&floatip, &region).await;
    assert_eq!(region.network_border_group.as_deref(), Some(REGION));
    let local = one_allocation(&floatip, &local).await;
    for a in [&region, &local] {
        let public = a.public_ip.expect("a public address");
        assert!(in_block(public, "198.51.100.0/24"), "{public}");
        assert_eq!(a.address(), Some(public));
        assert!(!a.is_customer_owned());
        assert_eq!(a.association, None);
    }
    assert_ne!(region.public_ip, local.public_ip);
}

#[tokio::test]
async fn customer_owned_pools_allocate_coips_without_a_public_address() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let out = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .customer_owned_ipv4_pool(COIP_POOL)
        .send()
        .await
        .unwrap();
    assert_eq!(out.customer_owned_ipv4_pool(), Some(COIP_POOL));
    assert_eq!(out.public_ip(), None);
    let id = out.allocation_id().unwrap();

    let coip = one_allocation(&adapter(&lab), id).await;
    assert!(coip.is_customer_owned());
    assert_eq!(coip.public_ip, None);
    assert_eq!(coip.customer_owned_pool.as_deref(), Some(COIP_POOL));
    let address = coip.address().expect("the customer-owned address");
    assert!(in_block(address, "203.0.113.0/24"), "{address}");
    assert_eq!(Some(address), coip.customer_owned_ip);
}

#[tokio::test]
async fn zones_name_their_border_groups_and_local_zones_take_subnets() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let names = |all: bool| {
        let call = ec2
            .describe_availability_zones()
            .all_availability_zones(all);
        async move {
            let out = call.send().await.unwrap();
            let zones = out.availability_zones();
            assert!(zones.iter().all(|z| z.network_border_group().is_some()));
            zones
                .iter()
                .map(|z| z.zone_name().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let opted_in = names(false).await;
    assert!(opted_in.contains(&LOCAL_ZONE.to_owned()));
    assert!(!opted_in.contains(&"us-west-2-lax-1b".to_owned()));

    let groups = adapter(&lab).border_groups().await.unwrap();
    assert_eq!(groups["us-west-2a"], REGION);
    assert_eq!(groups[LOCAL_ZONE], LOCAL_GROUP);
    assert_eq!(
        groups.get("us-west-2-lax-1b").map(String::as_str),
        Some(LOCAL_GROUP),
        "AllAvailabilityZones lists zones not opted in too"
    );
    assert_eq!(groups.len(), names(true).await.len());

    let w = world(&ec2).await;
    let (subnet, _, _) = local_zone_eni(&ec2, &w).await;
    let subnet = adapter(&lab).subnet(&subnet).await.unwrap();
    assert_eq!(subnet.zone.as_deref(), Some(LOCAL_ZONE));
}

#[tokio::test]
async fn associations_outside_the_border_group_are_refused() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let (_, local_eni, local_ip) = local_zone_eni(&ec2, &w).await;
    let region = allocate(&ec2, None, None).await;
    let local = allocate(&ec2, Some(LOCAL_GROUP), None).await;
    let primary = |eni: &str| {
        let out = ec2.describe_network_interfaces().network_interface_ids(eni);
        async move {
            let out = out.send().await.unwrap();
            ip(out.network_interfaces()[0].private_ip_address().unwrap())
        }
    };
    let region_ip = primary(&w.enis[0]).await;
    let floatip = adapter(&lab);

    for (allocation, eni, address) in [
        (&local, &w.enis[0], region_ip),
        (&region, &local_eni, local_ip),
    ] {
        let err = floatip
            .associate(allocation, eni, address, true)
            .await
            .unwrap_err();
        assert_eq!(
            (err.action, err.code.as_str()),
            ("AssociateAddress", "InvalidParameterCombination")
        );
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert_eq!(one_allocation(&floatip, allocation).await.association, None);
    }
    floatip
        .associate(&local, &local_eni, local_ip, false)
        .await
        .unwrap();
    floatip
        .associate(&region, &w.enis[0], region_ip, false)
        .await
        .unwrap();
    assert!(one_allocation(&floatip, &local)
        .await
        .is_bound_to(&local_eni, local_ip));
}

/// ElasticIP mode's move (reassociation to the holder's own address) and SecondaryIP's (the
/// EIP follows its private address), through the adapter.
#[tokio::test]
async fn the_adapter_associates_follows_moves_and_disassociates() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let floatip = adapter(&lab);
    let id = allocate(&ec2, None, None).await;
    let found = floatip
        .allocations(&[id.clone(), "eipalloc-0123456789abcdef0".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "a missing allocation is left out");
    assert!(floatip.allocations(&[]).await.unwrap().is_empty());

    assign(&ec2, &w.enis[0], VIP, false).await.unwrap();
    floatip
        .associate(&id, &w.enis[0], ip(VIP), false)
        .await
        .unwrap();
    let bound = one_allocation(&floatip, &id).await.association.unwrap();
    assert_eq!(bound.eni.as_deref(), Some(w.enis[0].as_str()));
    assert_eq!(bound.private_ip, Some(ip(VIP)));
    assert_eq!(bound.instance_id.as_deref(), Some(w.instances[0].as_str()));

    let to_eni1 = AddressMove {
        address: ip(VIP),
        from_eni: Some(w.enis[0].clone()),
        allocation_id: None,
        route_tables: Vec::new(),
    };
    floatip.assign(&w.enis[1], &[to_eni1]).await.unwrap();
    assert!(one_allocation(&floatip, &id)
        .await
        .is_bound_to(&w.enis[1], ip(VIP)));

    // The same ENI's primary address is another binding: refused without reassociation.
    let eni1 = floatip.enis(&[w.enis[1].clone()]).await.unwrap();
    let eni1_primary = eni1[0].primary_ip.unwrap();
    let err = floatip
        .associate(&id, &w.enis[1], eni1_primary, false)
        .await
        .unwrap_err();
    assert_eq!(err.code, "Resource.AlreadyAssociated");
    floatip
        .associate(&id, &w.enis[1], eni1_primary, true)
        .await
        .unwrap();
    let bound = one_allocation(&floatip, &id).await.association.unwrap();
    assert_eq!(bound.private_ip, Some(eni1_primary));

    floatip.disassociate(&bound.id).await.unwrap();
    assert_eq!(one_allocation(&floatip, &id).await.association, None);
    floatip
        .disassociate(&bound.id)
        .await
        .expect("an association already gone is not an error");
}

#[tokio::test]
async fn rebinding_on_the_same_eni_needs_reassociation() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let id = allocate(&ec2, None, None).await;
    assign(&ec2, &w.enis[0], VIP, false).await.unwrap();
    let associate = |private_ip: Option<&str>, reassociate: bool| {
        ec2.associate_address()
            .allocation_id(&id)
            .network_interface_id(&w.enis[0])
            .set_private_ip_address(private_ip.map(str::to_owned))
            .allow_reassociation(reassociate)
            .send()
    };
    associate(Some(VIP), false).await.unwrap();
    associate(Some(VIP), false)
        .await
        .expect("the same binding again is idempotent");
    let err = associate(None, false).await.unwrap_err();
    assert_eq!(err.code(), Some("Resource.AlreadyAssociated"));
    let out = ec2
        .describe_addresses()
        .allocation_ids(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(out.addresses()[0].private_ip_address(), Some(VIP));
}

/// A VPC with an Amazon IPv6 block, a dual-stack /24 subnet and two ENIs in it.
struct DualStack {
    block: String,
    enis: [String; 2],
}

async fn dual_stack(ec2: &Client) -> DualStack {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.1.0.0/16")
        .amazon_provided_ipv6_cidr_block(true)
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap();
    let v56 = vpc.ipv6_cidr_block_association_set()[0]
        .ipv6_cidr_block()
        .unwrap();
    let block = v56.replace("/56", "/64");
    let subnet = ec2
        .create_subnet()
        .vpc_id(vpc.vpc_id().unwrap())
        .cidr_block("10.1.1.0/24")
        .ipv6_cidr_block(&block)
        .send()
        .await
        .unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
    let mut enis = Vec::new();
    for _ in 0..2 {
        let out = ec2
            .create_network_interface()
            .subnet_id(&subnet)
            .send()
            .await
            .unwrap();
        enis.push(
            out.network_interface()
                .unwrap()
                .network_interface_id()
                .unwrap()
                .to_owned(),
        );
    }
    DualStack {
        block,
        enis: enis.try_into().unwrap(),
    }
}

/// An address of the block (`::10`-style host part appended to its prefix).
fn v6_in(block: &str, host: u16) -> String {
    let net: std::net::Ipv6Addr = block.split('/').next().unwrap().parse().unwrap();
    let mut segments = net.segments();
    segments[7] = host;
    std::net::Ipv6Addr::from(segments).to_string()
}

async fn v6_holders(ec2: &Client, address: &str) -> Vec<String> {
    let out = ec2
        .describe_network_interfaces()
        .filters(filter("ipv6-addresses.ipv6-address", address))
        .send()
        .await
        .unwrap();
    let enis = out.network_interfaces().iter();
    enis.map(|e| e.network_interface_id().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn ipv6_assignment_refuses_what_aws_refuses_and_filters_find_the_holder() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let d = dual_stack(&ec2).await;
    let vip = v6_in(&d.block, 0x10);
    let assign6 = |eni: &str, address: &str| {
        ec2.assign_ipv6_addresses()
            .network_interface_id(eni)
            .ipv6_addresses(address)
            .send()
    };
    let out = assign6(&d.enis[0], &vip).await.unwrap();
    assert_eq!(
        out.assigned_ipv6_addresses(),
        [vip.as_str()],
        "the reply lists what was assigned"
    );
    assert_eq!(v6_holders(&ec2, &vip).await, [d.enis[0].clone()]);

    let outside = assign6(&d.enis[0], "2001:db8::10").await.unwrap_err();
    assert_eq!(outside.code(), Some("InvalidParameterValue"));
    let elsewhere = assign6(&d.enis[1], &vip).await.unwrap_err();
    assert_eq!(elsewhere.code(), Some("InvalidParameterValue"));
    assert_eq!(
        v6_holders(&ec2, &vip).await,
        [d.enis[0].clone()],
        "no reassignment"
    );

    let not_held = ec2
        .unassign_ipv6_addresses()
        .network_interface_id(&d.enis[1])
        .ipv6_addresses(&vip)
        .send()
        .await
        .unwrap_err();
    assert_eq!(not_held.code(), Some("InvalidParameterValue"));
    assert_eq!(
        v6_holders(&ec2, &v6_in(&d.block, 0x11)).await,
        Vec::<String>::new()
    );
}

/// The port's IPv6 move: unassign from the old ENI, then assign, in one `assign`; `unassign`
/// of an address already gone is not an error.
#[tokio::test]
async fn the_adapter_moves_ipv6_by_unassigning_first() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let d = dual_stack(&ec2).await;
    let floatip = adapter(&lab);
    let vip = ip(&v6_in(&d.block, 0x20));
    floatip.assign_unused(&d.enis[0], &[vip]).await.unwrap();
    let moved = AddressMove {
        address: vip,
        from_eni: Some(d.enis[0].clone()),
        allocation_id: None,
        route_tables: Vec::new(),
    };
    floatip.assign(&d.enis[1], &[moved]).await.unwrap();
    assert_eq!(
        v6_holders(&ec2, &vip.to_string()).await,
        [d.enis[1].clone()]
    );
    let enis = floatip.enis(&d.enis).await.unwrap();
    let holding: Vec<_> = enis
        .iter()
        .filter(|e| e.holds(vip))
        .map(|e| &e.id)
        .collect();
    assert_eq!(holding, [&d.enis[1]]);

    // A claim must never steal: without reassignment the held address is refused.
    let err = floatip.assign_unused(&d.enis[0], &[vip]).await.unwrap_err();
    assert_eq!(
        (err.action, err.code.as_str()),
        ("AssignIpv6Addresses", "InvalidParameterValue")
    );
    floatip.unassign(&d.enis[0], &[vip]).await.unwrap();
    floatip.unassign(&d.enis[1], &[vip]).await.unwrap();
    assert!(v6_holders(&ec2, &vip.to_string()).await.is_empty());
}
