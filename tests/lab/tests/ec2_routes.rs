//! Route tables through the EC2 lab as floatip's RouteTable mode (issue 18) will use them:
//! what moto does as AWS does, and what the lab's proxy refuses where moto does not.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::Client;
use floatip_lab::process::Ec2Lab;

const OVERLAY: &str = "10.200.0.10/32";
const OVERLAY6: &str = "fd00:200::10/128";

async fn vpc(ec2: &Client, cidr: &str, subnet: &str) -> (String, String) {
    let vpc = ec2.create_vpc().cidr_block(cidr).send().await.unwrap();
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block(subnet)
        .send()
        .await
        .unwrap();
    (
        vpc,
        subnet.subnet().unwrap().subnet_id().unwrap().to_owned(),
    )
}

async fn eni(ec2: &Client, subnet: &str) -> String {
    let out = ec2
        .create_network_interface()
        .subnet_id(subnet)
        .send()
        .await
        .unwrap();
    let ni = out.network_interface().unwrap();
    ni.network_interface_id().unwrap().to_owned()
}

/// The ENI the route to `dest` in `table` points at.
async fn target(ec2: &Client, table: &str, dest: &str) -> Option<String> {
    let out = ec2
        .describe_route_tables()
        .route_table_ids(table)
        .send()
        .await
        .unwrap();
    let routes = out.route_tables()[0].routes().to_vec();
    routes
        .iter()
        .find(|r| {
            r.destination_cidr_block()
                .or(r.destination_ipv6_cidr_block())
                == Some(dest)
        })
        .and_then(|r| r.network_interface_id().map(str::to_owned))
}

#[tokio::test]
async fn routes_to_enis_are_created_replaced_and_refused_as_aws_does() {
    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let (vpc_id, subnet) = vpc(&ec2, "10.0.0.0/16", "10.0.1.0/24").await;
    let (_, other_subnet) = vpc(&ec2, "10.50.0.0/16", "10.50.0.0/24").await;
    let (eni1, eni2) = (eni(&ec2, &subnet).await, eni(&ec2, &subnet).await);
    let foreign = eni(&ec2, &other_subnet).await;
    let table = ec2
        .create_route_table()
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap();
    let table = table
        .route_table()
        .unwrap()
        .route_table_id()
        .unwrap()
        .to_owned();

    ec2.create_route()
        .route_table_id(&table)
        .destination_cidr_block(OVERLAY)
        .network_interface_id(&eni1)
        .send()
        .await
        .unwrap();
    let again = ec2
        .create_route()
        .route_table_id(&table)
        .destination_cidr_block(OVERLAY)
        .network_interface_id(&eni2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("RouteAlreadyExists"), "{again:?}");
    assert_eq!(target(&ec2, &table, OVERLAY).await, Some(eni1.clone()));

    ec2.replace_route()
        .route_table_id(&table)
        .destination_cidr_block(OVERLAY)
        .network_interface_id(&eni2)
        .send()
        .await
        .unwrap();
    assert_eq!(target(&ec2, &table, OVERLAY).await, Some(eni2.clone()));

    let missing = ec2
        .replace_route()
        .route_table_id(&table)
        .destination_cidr_block("10.200.0.99/32")
        .network_interface_id(&eni2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("InvalidParameterValue"), "{missing:?}");

    // AWS refuses a route to another VPC's ENI; moto takes it.
    let create = ec2
        .create_route()
        .route_table_id(&table)
        .destination_cidr_block("10.200.0.11/32")
        .network_interface_id(&foreign)
        .send()
        .await
        .unwrap_err();
    let replace = ec2
        .replace_route()
        .route_table_id(&table)
        .destination_cidr_block(OVERLAY)
        .network_interface_id(&foreign)
        .send()
        .await
        .unwrap_err();
    for (code, message) in [
        (create.code(), create.message()),
        (replace.code(), replace.message()),
    ] {
        assert_eq!(code, Some("InvalidParameterValue"), "{message:?}");
        assert!(
            message.unwrap_or_default().contains("different networks"),
            "{message:?}"
        );
    }
    assert_eq!(target(&ec2, &table, "10.200.0.11/32").await, None);
    assert_eq!(target(&ec2, &table, OVERLAY).await, Some(eni2));

    ec2.create_route()
        .route_table_id(&table)
        .destination_ipv6_cidr_block(OVERLAY6)
        .network_interface_id(&eni1)
        .send()
        .await
        .unwrap();
    let again6 = ec2
        .create_route()
        .route_table_id(&table)
        .destination_ipv6_cidr_block(OVERLAY6)
        .network_interface_id(&eni1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(again6.code(), Some("RouteAlreadyExists"), "{again6:?}");
    ec2.delete_route()
        .route_table_id(&table)
        .destination_ipv6_cidr_block(OVERLAY6)
        .send()
        .await
        .unwrap();
    assert_eq!(target(&ec2, &table, OVERLAY6).await, None);
}

/// The calls of `action` the lab's EC2 counted.
fn count(lab: &Ec2Lab, action: &str) -> u64 {
    lab.calls()["actions"][action]["calls"]
        .as_u64()
        .unwrap_or(0)
}

/// floatip's AWS adapter (RouteTable mode's calls) against the lab's EC2: a first route is
/// created after ReplaceRoute finds none, later ones replaced in one call each; a route to
/// another VPC's ENI is refused, not created; deleting a route already gone makes no call;
/// the source/dest check is turned off once; missing tables are left out of reads.
#[tokio::test]
async fn the_adapter_routes_replaces_deletes_and_turns_the_check_off() {
    use floatip::cloud::aws::Ec2;
    use floatip::cloud::{Cloud, RouteTarget};
    use floatip::metrics::Metrics;

    let lab = Ec2Lab::start();
    let ec2 = lab.client();
    let floatip = Ec2::with_client(lab.client(), Metrics::new());
    let (vpc_id, subnet) = vpc(&ec2, "10.0.0.0/16", "10.0.1.0/24").await;
    let (_, other_subnet) = vpc(&ec2, "10.50.0.0/16", "10.50.0.0/24").await;
    let (eni1, eni2) = (eni(&ec2, &subnet).await, eni(&ec2, &subnet).await);
    let foreign = eni(&ec2, &other_subnet).await;
    let table = ec2
        .create_route_table()
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap();
    let table = table
        .route_table()
        .unwrap()
        .route_table_id()
        .unwrap()
        .to_owned();
    let address: std::net::IpAddr = OVERLAY.trim_end_matches("/32").parse().unwrap();
    let address6: std::net::IpAddr = OVERLAY6.trim_end_matches("/128").parse().unwrap();

    let read = floatip
        .route_tables(&[table.clone(), "rtb-0123456789abcdef0".into()])
        .await
        .unwrap();
    assert_eq!(read.len(), 1, "the missing table is left out: {read:?}");
    assert_eq!(read[0].vpc_id, vpc_id);
    let blocks: Vec<String> = read[0]
        .local_blocks()
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert_eq!(
        blocks,
        ["10.0.0.0/16"],
        "the local route is the VPC's block"
    );

    lab.reset_calls();
    floatip.route_to(&table, address, &eni1).await.unwrap();
    assert_eq!(target(&ec2, &table, OVERLAY).await, Some(eni1.clone()));
    assert_eq!(
        (count(&lab, "ReplaceRoute"), count(&lab, "CreateRoute")),
        (1, 1)
    );
    floatip.route_to(&table, address, &eni2).await.unwrap();
    assert_eq!(target(&ec2, &table, OVERLAY).await, Some(eni2.clone()));
    assert_eq!(
        (count(&lab, "ReplaceRoute"), count(&lab, "CreateRoute")),
        (2, 1)
    );
    floatip.route_to(&table, address6, &eni1).await.unwrap();
    assert_eq!(target(&ec2, &table, OVERLAY6).await, Some(eni1.clone()));
    let read = floatip
        .route_tables(std::slice::from_ref(&table))
        .await
        .unwrap();
    assert_eq!(
        read[0].host_route_of(address).map(|r| r.target.clone()),
        Some(RouteTarget::Eni(eni2.clone()))
    );

    let refused = floatip
        .route_to(&table, address, &foreign)
        .await
        .unwrap_err();
    assert_eq!(refused.code, "InvalidParameterValue", "{refused}");
    assert!(!refused.retryable());
    assert_eq!(target(&ec2, &table, OVERLAY).await, Some(eni2.clone()));

    floatip.delete_route(&table, address).await.unwrap();
    assert_eq!(target(&ec2, &table, OVERLAY).await, None);
    let deletes = count(&lab, "DeleteRoute");
    floatip.delete_route(&table, address).await.unwrap();
    assert_eq!(
        count(&lab, "DeleteRoute"),
        deletes,
        "nothing to delete: no call"
    );

    let modify = |lab: &Ec2Lab| count(lab, "ModifyNetworkInterfaceAttribute");
    let before = modify(&lab);
    assert!(floatip.source_dest_check_off(&eni1).await.unwrap());
    assert!(!floatip.source_dest_check_off(&eni1).await.unwrap());
    assert_eq!(modify(&lab), before + 1, "turned off once");
    let out = ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni1)
        .send()
        .await
        .unwrap();
    assert_eq!(out.network_interfaces()[0].source_dest_check(), Some(false));
}
