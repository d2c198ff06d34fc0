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
