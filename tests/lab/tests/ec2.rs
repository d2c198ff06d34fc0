//! The EC2 lab against the real AWS SDK: every call floatip makes, the AWS behaviours moto needed
//! patching for, and each fault as the SDK sees it. Each test runs its own lab on 127.0.0.1.

// Under ec2/ so cargo does not build them as test binaries of their own.
#[path = "ec2/addresses.rs"]
mod addresses;
#[path = "ec2/attachments.rs"]
mod attachments;
#[path = "ec2/faults.rs"]
mod faults;
#[path = "ec2/interface.rs"]
mod interface;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, InstanceType, NetworkInterfaceAttribute, Tag,
};
use aws_sdk_ec2::Client;
use floatip_lab::process::Ec2Lab;

const VIP: &str = "10.0.1.200";

/// A VPC with one /24 subnet and two running instances in it, as two EKS nodes would be.
struct World {
    vpc: String,
    subnet: String,
    instances: Vec<String>,
    /// Each instance's primary ENI, same order.
    enis: Vec<String>,
}

async fn world(ec2: &Client) -> World {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.1.0/24")
        .send()
        .await
        .unwrap();
    let subnet = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .unwrap()
        .to_owned();
    let run = ec2
        .run_instances()
        .image_id("ami-0123456789abcdef0")
        .instance_type(InstanceType::M5Large)
        .subnet_id(&subnet)
        .min_count(2)
        .max_count(2)
        .send()
        .await
        .unwrap();
    let instances: Vec<_> = run
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    let enis = run
        .instances()
        .iter()
        .map(|i| {
            i.network_interfaces()[0]
                .network_interface_id()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(instances.len(), 2);
    World {
        vpc,
        subnet,
        instances,
        enis,
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

async fn addresses_of(ec2: &Client, eni: &str) -> Vec<String> {
    let out = ec2
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .unwrap();
    let eni = &out.network_interfaces()[0];
    let addrs = eni.private_ip_addresses().iter();
    addrs
        .filter_map(|a| a.private_ip_address().map(str::to_owned))
        .collect()
}

/// Which ENIs DescribeNetworkInterfaces finds holding `ip` (as any of their addresses).
async fn enis_holding(ec2: &Client, ip: &str) -> Vec<String> {
    let out = ec2
        .describe_network_interfaces()
        .filters(filter("addresses.private-ip-address", ip))
        .send()
        .await
        .unwrap();
    let enis = out.network_interfaces().iter();
    enis.map(|e| e.network_interface_id().unwrap().to_owned())
        .collect()
}

/// Which instances DescribeInstances finds holding `ip` on any of their ENIs.
async fn instances_holding(ec2: &Client, ip: &str) -> Vec<String> {
    let out = ec2
        .describe_instances()
        .filters(filter("network-interface.addresses.private-ip-address", ip))
        .send()
        .await
        .unwrap();
    let instances = out.reservations().iter().flat_map(|r| r.instances());
    instances
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect()
}

async fn assign(ec2: &Client, eni: &str, ip: &str, reassign: bool) -> Result<(), String> {
    let call = ec2
        .assign_private_ip_addresses()
        .network_interface_id(eni)
        .private_ip_addresses(ip)
        .allow_reassignment(reassign);
    match call.send().await {
        Ok(out) => {
            let assigned = out.assigned_private_ip_addresses();
            let assigned: Vec<_> = assigned
                .iter()
                .filter_map(|a| a.private_ip_address())
                .collect();
            assert_eq!(
                assigned,
                [ip],
                "the reply lists what was assigned, nothing more"
            );
            Ok(())
        }
        Err(err) => Err(err.code().unwrap_or("no code").to_owned()),
    }
}

#[tokio::test]
async fn describes_instances_and_enis_with_filters() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;

    let out = ec2
        .describe_instances()
        .filters(filter("subnet-id", &w.subnet))
        .filters(filter("instance-state-name", "running"))
        .send()
        .await
        .unwrap();
    let found: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|i| i.vpc_id() == Some(w.vpc.as_str())));

    let out = ec2
        .describe_network_interfaces()
        .filters(filter("attachment.instance-id", &w.instances[1]))
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = out
        .network_interfaces()
        .iter()
        .map(|e| e.network_interface_id().unwrap())
        .collect();
    assert_eq!(ids, [w.enis[1].as_str()]);

    // Nobody holds the VIP yet, so the filters on secondary addresses find nothing.
    assert!(enis_holding(&ec2, VIP).await.is_empty());
    assert!(instances_holding(&ec2, VIP).await.is_empty());
}

#[tokio::test]
async fn reassignment_moves_the_address_and_filters_follow_it() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;

    assign(&ec2, &w.enis[0], VIP, false).await.unwrap();
    assert_eq!(enis_holding(&ec2, VIP).await, [w.enis[0].clone()]);
    assert_eq!(instances_holding(&ec2, VIP).await, [w.instances[0].clone()]);

    assign(&ec2, &w.enis[1], VIP, true).await.unwrap();
    assert!(
        !addresses_of(&ec2, &w.enis[0])
            .await
            .contains(&VIP.to_owned()),
        "old ENI still has it"
    );
    assert!(addresses_of(&ec2, &w.enis[1])
        .await
        .contains(&VIP.to_owned()));
    assert_eq!(enis_holding(&ec2, VIP).await, [w.enis[1].clone()]);
    assert_eq!(instances_holding(&ec2, VIP).await, [w.instances[1].clone()]);
}

#[tokio::test]
async fn assignment_without_reassignment_is_refused_while_another_eni_holds_it() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;

    assign(&ec2, &w.enis[0], VIP, false).await.unwrap();
    let refused = assign(&ec2, &w.enis[1], VIP, false).await;
    assert_eq!(refused, Err("InvalidParameterValue".to_owned()));
    assert_eq!(
        enis_holding(&ec2, VIP).await,
        [w.enis[0].clone()],
        "nothing moved"
    );
    // Assigning again to the holder is harmless, as on AWS.
    assign(&ec2, &w.enis[0], VIP, false).await.unwrap();
}

#[tokio::test]
async fn addresses_outside_the_subnet_are_refused() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    for ip in ["10.0.2.10", "192.168.50.10"] {
        assert_eq!(
            assign(&ec2, &w.enis[0], ip, true).await,
            Err("InvalidParameterValue".into())
        );
    }
    assert_eq!(
        addresses_of(&ec2, &w.enis[0]).await.len(),
        1,
        "only the primary address"
    );
}

#[tokio::test]
async fn unassign_removes_the_address_and_refuses_one_not_held() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    assign(&ec2, &w.enis[0], VIP, false).await.unwrap();
    let unassign = |eni: &str| {
        ec2.unassign_private_ip_addresses()
            .network_interface_id(eni)
            .private_ip_addresses(VIP)
            .send()
    };
    let wrong_eni = unassign(&w.enis[1]).await.unwrap_err();
    assert_eq!(wrong_eni.code(), Some("InvalidParameterValue"));
    unassign(&w.enis[0]).await.unwrap();
    assert!(enis_holding(&ec2, VIP).await.is_empty());
    assert!(instances_holding(&ec2, VIP).await.is_empty());
}

#[tokio::test]
async fn network_interface_lifecycle_and_source_dest_check() {
    // Without attachment delays: this is about the calls, attachments.rs about their timing.
    let lab = Ec2Lab::start_with(&["--eni-attach-ms", "0", "--eni-detach-ms", "0"]);
    let ec2 = lab.client();
    let w = world(&ec2).await;

    let created = ec2
        .create_network_interface()
        .subnet_id(&w.subnet)
        .description("floatip standby")
        .send()
        .await
        .unwrap();
    let eni = created
        .network_interface()
        .and_then(|e| e.network_interface_id())
        .unwrap()
        .to_owned();
    let attached = ec2
        .attach_network_interface()
        .network_interface_id(&eni)
        .instance_id(&w.instances[0])
        .device_index(1)
        .send()
        .await
        .unwrap();
    let attachment = attached.attachment_id().unwrap().to_owned();
    let on_instance = ec2
        .describe_network_interfaces()
        .filters(filter("attachment.instance-id", &w.instances[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(on_instance.network_interfaces().len(), 2);

    ec2.modify_network_interface_attribute()
        .network_interface_id(&eni)
        .source_dest_check(AttributeBooleanValue::builder().value(false).build())
        .send()
        .await
        .unwrap();
    let check = ec2
        .describe_network_interface_attribute()
        .network_interface_id(&eni)
        .attribute(NetworkInterfaceAttribute::SourceDestCheck)
        .send()
        .await
        .unwrap();
    assert_eq!(
        check.source_dest_check().and_then(|v| v.value()),
        Some(false)
    );

    ec2.detach_network_interface()
        .attachment_id(&attachment)
        .send()
        .await
        .unwrap();
    let detached = ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await
        .unwrap();
    assert!(detached.network_interfaces()[0].attachment().is_none());
    ec2.delete_network_interface()
        .network_interface_id(&eni)
        .send()
        .await
        .unwrap();
    let gone = ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await;
    assert_eq!(
        gone.unwrap_err().code(),
        Some("InvalidNetworkInterfaceID.NotFound")
    );
}

/// EC2 picks a new ENI's primary address among the subnet's free ones, and a floating address
/// nobody holds yet is one of them: a test can make it EC2's pick.
#[tokio::test]
async fn a_queued_address_is_the_primary_of_the_next_eni_naming_none() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    lab.give_next_eni(VIP);
    let create = |named: Option<&str>| {
        ec2.create_network_interface()
            .subnet_id(&w.subnet)
            .set_private_ip_address(named.map(String::from))
            .send()
    };
    let primary =
        |out: aws_sdk_ec2::operation::create_network_interface::CreateNetworkInterfaceOutput| {
            let eni = out.network_interface().unwrap();
            (
                eni.network_interface_id().unwrap().to_owned(),
                eni.private_ip_address().unwrap().to_owned(),
            )
        };
    let (_, named) = primary(create(Some("10.0.1.150")).await.unwrap());
    assert_eq!(named, "10.0.1.150", "a request naming its address keeps it");
    let (eni, picked) = primary(create(None).await.unwrap());
    assert_eq!(picked, VIP);
    assert_eq!(addresses_of(&ec2, &eni).await, [VIP]);
    let queued = lab.control_json("GET", "/_lab/primaries", "");
    assert_eq!(
        queued,
        serde_json::json!([]),
        "each queued address goes to one ENI"
    );
}

/// EC2 gives a new ENI that names no address a free one, never one of the five it reserves in
/// every subnet (the network address, the VPC router's, the two after it, the broadcast
/// address), and refuses once none is left. moto picked any address of the CIDR at random: a
/// node's floating ENI once got the gateway's.
#[tokio::test]
async fn a_new_eni_gets_a_free_address_never_a_reserved_one() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    // A /28: 16 addresses, 11 of them usable (10.0.2.4 to 10.0.2.14).
    let small = ec2
        .create_subnet()
        .vpc_id(&w.vpc)
        .cidr_block("10.0.2.0/28")
        .send()
        .await
        .unwrap();
    let small = small
        .subnet()
        .and_then(|s| s.subnet_id())
        .unwrap()
        .to_owned();
    let mut got = Vec::new();
    for _ in 0..11 {
        let out = ec2
            .create_network_interface()
            .subnet_id(&small)
            .send()
            .await
            .expect("a usable address is left");
        let a: std::net::Ipv4Addr = out
            .network_interface()
            .and_then(|n| n.private_ip_address())
            .unwrap()
            .parse()
            .unwrap();
        got.push(a.octets()[3]);
    }
    got.sort();
    assert_eq!(
        got,
        (4..=14).collect::<Vec<u8>>(),
        "each usable address once"
    );
    let full = ec2
        .create_network_interface()
        .subnet_id(&small)
        .send()
        .await
        .expect_err("no free address is left");
    assert_eq!(
        full.code(),
        Some("InsufficientFreeAddressesInSubnet"),
        "{full:?}"
    );
}

async fn security_group(ec2: &Client, vpc: &str, name: &str) -> String {
    let out = ec2
        .create_security_group()
        .vpc_id(vpc)
        .group_name(name)
        .description(name)
        .send()
        .await
        .unwrap();
    out.group_id().unwrap().to_owned()
}

/// The groups DescribeNetworkInterfaces lists for `eni`, sorted.
async fn groups_of(ec2: &Client, eni: &str) -> Vec<String> {
    let out = ec2
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .unwrap();
    let mut groups: Vec<String> = out.network_interfaces()[0]
        .groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    groups.sort();
    groups
}

/// What `floatip attach` relies on: an instance's primary ENI shows the groups it was launched
/// with, in DescribeInstances too; an ENI created with Groups has those, without them the VPC's
/// default group; attaching an ENI does not add the instance's groups to it; and
/// ModifyNetworkInterfaceAttribute replaces them. A group that does not exist is refused.
#[tokio::test]
async fn security_groups_belong_to_each_network_interface() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let nodes = security_group(&ec2, &w.vpc, "nodes").await;
    let vip = security_group(&ec2, &w.vpc, "vip").await;
    let default = ec2
        .describe_security_groups()
        .filters(filter("vpc-id", &w.vpc))
        .filters(filter("group-name", "default"))
        .send()
        .await
        .unwrap();
    let default = default.security_groups()[0].group_id().unwrap().to_owned();

    let run = ec2
        .run_instances()
        .image_id("ami-0123456789abcdef0")
        .instance_type(InstanceType::M5Large)
        .subnet_id(&w.subnet)
        .security_group_ids(&nodes)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let instance = run.instances()[0].instance_id().unwrap().to_owned();
    let described = ec2
        .describe_instances()
        .instance_ids(&instance)
        .send()
        .await
        .unwrap();
    let primary = &described.reservations()[0].instances()[0].network_interfaces()[0];
    assert_eq!(primary.attachment().and_then(|a| a.device_index()), Some(0));
    let primary_groups: Vec<_> = primary
        .groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(primary_groups, [nodes.as_str()]);
    let primary = primary.network_interface_id().unwrap().to_owned();
    assert_eq!(groups_of(&ec2, &primary).await, [nodes.as_str()]);

    let create = |groups: Option<Vec<String>>| {
        ec2.create_network_interface()
            .subnet_id(&w.subnet)
            .set_groups(groups)
            .send()
    };
    let with_vip = create(Some(vec![vip.clone()])).await.unwrap();
    let with_vip = with_vip.network_interface().unwrap();
    let eni = with_vip.network_interface_id().unwrap().to_owned();
    let created: Vec<_> = with_vip
        .groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(created, [vip.as_str()], "the reply lists the groups too");
    ec2.attach_network_interface()
        .network_interface_id(&eni)
        .instance_id(&instance)
        .device_index(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        groups_of(&ec2, &eni).await,
        [vip.as_str()],
        "attaching does not add the instance's groups"
    );

    let without = create(None).await.unwrap();
    let without = without
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap();
    assert_eq!(groups_of(&ec2, without).await, [default.as_str()]);

    let mut both = vec![nodes.clone(), vip.clone()];
    both.sort();
    ec2.modify_network_interface_attribute()
        .network_interface_id(&eni)
        .set_groups(Some(both.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(groups_of(&ec2, &eni).await, both);

    let missing = "sg-0123456789abcdef0".to_string();
    let err = create(Some(vec![missing.clone()])).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidGroup.NotFound"));
    let err = ec2
        .modify_network_interface_attribute()
        .network_interface_id(&eni)
        .groups(&missing)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidGroup.NotFound"));
    assert_eq!(
        groups_of(&ec2, &eni).await,
        both,
        "a refused call changes nothing"
    );
}

#[tokio::test]
async fn tags_are_created_and_filtered_on() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let tag = Tag::builder()
        .key("floatip.io/holder")
        .value("web-vip")
        .build();
    ec2.create_tags()
        .resources(&w.enis[1])
        .tags(tag)
        .send()
        .await
        .unwrap();
    let tagged = ec2
        .describe_network_interfaces()
        .filters(filter("tag:floatip.io/holder", "web-vip"))
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = tagged
        .network_interfaces()
        .iter()
        .map(|e| e.network_interface_id().unwrap())
        .collect();
    assert_eq!(ids, [w.enis[1].as_str()]);
    let other = ec2
        .describe_network_interfaces()
        .filters(filter("tag:floatip.io/holder", "db-vip"))
        .send()
        .await
        .unwrap();
    assert!(other.network_interfaces().is_empty());
}

#[tokio::test]
async fn elastic_ip_follows_associations_and_the_private_address() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let eip = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .unwrap();
    let allocation = eip.allocation_id().unwrap().to_owned();
    let held_by = || async {
        let out = ec2
            .describe_addresses()
            .allocation_ids(&allocation)
            .send()
            .await
            .unwrap();
        let address = &out.addresses()[0];
        let eni = address.network_interface_id().map(str::to_owned);
        let private_ip = address.private_ip_address().map(str::to_owned);
        (eni, private_ip, address.association_id().map(str::to_owned))
    };
    let associate = |eni: &str, private_ip: Option<&str>, reassociate: bool| {
        ec2.associate_address()
            .allocation_id(&allocation)
            .network_interface_id(eni)
            .set_private_ip_address(private_ip.map(str::to_owned))
            .allow_reassociation(reassociate)
            .send()
    };
    let (eni0, eni1) = (Some(w.enis[0].clone()), Some(w.enis[1].clone()));
    let vip = Some(VIP.to_owned());
    assert_eq!(held_by().await, (None, None, None));

    assign(&ec2, &w.enis[0], VIP, false).await.unwrap();
    associate(&w.enis[0], Some(VIP), false).await.unwrap();
    assert_eq!(held_by().await.0, eni0);
    assert_eq!(
        held_by().await.1,
        vip,
        "bound to the secondary address, not the primary"
    );
    let taken = associate(&w.enis[1], None, false).await.unwrap_err();
    assert_eq!(taken.code(), Some("Resource.AlreadyAssociated"));

    // Moving the secondary address carries its Elastic IP along, as on AWS.
    assign(&ec2, &w.enis[1], VIP, true).await.unwrap();
    assert_eq!(held_by().await.0, eni1);
    assert_eq!(held_by().await.1, vip);

    associate(&w.enis[0], None, true).await.unwrap();
    assert_eq!(held_by().await.0, eni0);
    let eni1_now = ec2
        .describe_network_interfaces()
        .network_interface_ids(&w.enis[1])
        .send();
    let eni1_now = eni1_now.await.unwrap();
    assert!(
        eni1_now.network_interfaces()[0].association().is_none(),
        "old ENI let go"
    );

    let association = held_by().await.2.unwrap();
    ec2.disassociate_address()
        .association_id(&association)
        .send()
        .await
        .unwrap();
    assert_eq!(held_by().await, (None, None, None));
}

#[tokio::test]
async fn routes_to_an_eni_are_created_and_replaced() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let table = ec2
        .create_route_table()
        .vpc_id(&w.vpc)
        .send()
        .await
        .unwrap();
    let table = table
        .route_table()
        .and_then(|t| t.route_table_id())
        .unwrap()
        .to_owned();
    let vip = "192.168.100.10/32";
    ec2.create_route()
        .route_table_id(&table)
        .destination_cidr_block(vip)
        .network_interface_id(&w.enis[0])
        .send()
        .await
        .unwrap();
    ec2.replace_route()
        .route_table_id(&table)
        .destination_cidr_block(vip)
        .network_interface_id(&w.enis[1])
        .send()
        .await
        .unwrap();
    let tables = ec2
        .describe_route_tables()
        .route_table_ids(&table)
        .send()
        .await
        .unwrap();
    let routes = tables.route_tables()[0].routes();
    let route = routes
        .iter()
        .find(|r| r.destination_cidr_block() == Some(vip))
        .unwrap();
    assert_eq!(route.network_interface_id(), Some(w.enis[1].as_str()));
}
