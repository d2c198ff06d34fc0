//! The VPC in EC2 (an IPv4 block and the IPv6 block EC2 gives it, a node subnet with an IPv6
//! /64 out of that block) and the namespaces at the router's edges: infra, the client inside
//! the VPC's reach, and the internet (documentation addresses), whose client reaches nodes
//! only through Elastic IPs.
//!
//! The client and infra namespaces sit in subnets of their own in EC2 (no ENIs: nothing of
//! theirs moves), so that route tables reach them as they reach an in-VPC client: each subnet
//! has an explicit route table association, `nodes` for the node subnet and `clients` for the
//! client and infra subnets, which the router follows ([`super::vpc`]).

use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Context, Result};

use super::net::{veth, Netns};
use super::{REGION, ROUTER_ON_INFRA, VPC_CIDR};

const SUBNET_CIDR: &str = "10.99.8.0/22";
/// Which /64 of the VPC's IPv6 block the node subnet gets (AWS numbers them 00..ff in a /56).
const SUBNET_V6_INDEX: u128 = 8;
const INFRA: &str = "10.99.200.2";
const INFRA_SUBNET: &str = "10.99.200.0/24";
const CLIENT: &str = "10.99.100.2";
const CLIENT_SUBNET: &str = "10.99.100.0/24";
/// The router's wires to the client and infra namespaces.
pub const CLIENT_WIRE: &str = "rclient";
pub const INFRA_WIRE: &str = "rinfra";
/// The client's IPv6 network: a unique local one, the lab's own.
const CLIENT6: &str = "fd00:99:100::2";
const ROUTER_ON_CLIENT6: &str = "fd00:99:100::1";
/// The infra namespace's IPv6 address (unique local, like the client's), and the router's.
pub const INFRA6: &str = "fd00:99:200::2";
const ROUTER_ON_INFRA6: &str = "fd00:99:200::1";

/// The internet side: TEST-NET-1 (RFC 5737), used by no one.
pub const INTERNET: &str = "192.0.2.2";
const ROUTER_ON_INTERNET: &str = "192.0.2.1";

/// What the lab created in EC2.
#[derive(Debug, Clone)]
pub struct Vpc {
    pub id: String,
    pub subnet: String,
    /// The node subnet's IPv6 /64 (its network address).
    pub subnet_v6: Ipv6Addr,
    /// The nodes' own security group.
    pub node_group: String,
    /// The subnets of the client and infra namespaces.
    pub client_subnet: String,
    pub infra_subnet: String,
    /// The route table associated with the node subnet, and the one associated with the
    /// client and infra subnets (the VPC's main table is associated with none).
    pub node_table: String,
    pub client_table: String,
}

impl Vpc {
    /// The router's wires from namespaces other than nodes, each with its subnet.
    pub fn edge_subnets(&self) -> Vec<(String, String)> {
        vec![
            (CLIENT_WIRE.to_string(), self.client_subnet.clone()),
            (INFRA_WIRE.to_string(), self.infra_subnet.clone()),
        ]
    }
}

/// Creates the VPC (with an Amazon-provided IPv6 block: moto lets no one choose it), the node
/// subnet (IPv4, and the block's /64 number 8) and the nodes' security group.
pub async fn create_vpc(aws: &aws_sdk_ec2::Client) -> Result<Vpc> {
    let vpc = aws
        .create_vpc()
        .cidr_block(VPC_CIDR)
        .amazon_provided_ipv6_cidr_block(true)
        .send()
        .await?;
    let vpc = vpc.vpc().context("no VPC in CreateVpc's answer")?;
    let id = vpc.vpc_id().context("vpc id")?.to_string();
    let block = vpc
        .ipv6_cidr_block_association_set()
        .iter()
        .find_map(|a| a.ipv6_cidr_block())
        .context("the VPC got no IPv6 block")?;
    let subnet_v6 = nth_64(block, SUBNET_V6_INDEX)?;
    let subnet = aws
        .create_subnet()
        .vpc_id(&id)
        .cidr_block(SUBNET_CIDR)
        .ipv6_cidr_block(format!("{subnet_v6}/64"))
        .availability_zone(format!("{REGION}a"))
        .send()
        .await?;
    let subnet = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .context("subnet id")?
        .to_string();
    // As EKS gives them: the floating ENIs must carry it, not the VPC's default group.
    let group = aws
        .create_security_group()
        .vpc_id(&id)
        .group_name("nodes")
        .description("lab nodes")
        .send()
        .await?;
    let node_group = group.group_id().context("group id")?.to_string();
    let client_subnet = plain_subnet(aws, &id, CLIENT_SUBNET).await?;
    let infra_subnet = plain_subnet(aws, &id, INFRA_SUBNET).await?;
    let node_table = route_table(aws, &id, "nodes", &[&subnet]).await?;
    let client_table = route_table(aws, &id, "clients", &[&client_subnet, &infra_subnet]).await?;
    Ok(Vpc {
        id,
        subnet,
        subnet_v6,
        node_group,
        client_subnet,
        infra_subnet,
        node_table,
        client_table,
    })
}

/// An IPv4-only subnet in the node subnet's zone.
async fn plain_subnet(aws: &aws_sdk_ec2::Client, vpc: &str, cidr: &str) -> Result<String> {
    let out = aws
        .create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .availability_zone(format!("{REGION}a"))
        .send()
        .await?;
    Ok(out
        .subnet()
        .and_then(|s| s.subnet_id())
        .with_context(|| format!("no id for subnet {cidr}"))?
        .to_string())
}

/// A route table tagged `Name=name`, associated with each of `subnets`.
async fn route_table(
    aws: &aws_sdk_ec2::Client,
    vpc: &str,
    name: &str,
    subnets: &[&str],
) -> Result<String> {
    let name_tag = aws_sdk_ec2::types::Tag::builder()
        .key("Name")
        .value(name)
        .build();
    let out = aws
        .create_route_table()
        .vpc_id(vpc)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::RouteTable)
                .tags(name_tag)
                .build(),
        )
        .send()
        .await?;
    let id = out
        .route_table()
        .and_then(|t| t.route_table_id())
        .with_context(|| format!("no id for route table {name}"))?
        .to_string();
    for subnet in subnets {
        aws.associate_route_table()
            .route_table_id(&id)
            .subnet_id(*subnet)
            .send()
            .await?;
    }
    Ok(id)
}

/// The network address of /64 number `n` in `block` (a /56 or larger, e.g. "2400:6500:ab:1200::/56").
fn nth_64(block: &str, n: u128) -> Result<Ipv6Addr> {
    let (net, len) = block
        .split_once('/')
        .with_context(|| format!("IPv6 block {block} has no prefix length"))?;
    let net: Ipv6Addr = net.parse().with_context(|| format!("IPv6 block {block}"))?;
    let len: u32 = len.parse().with_context(|| format!("IPv6 block {block}"))?;
    anyhow::ensure!(
        len <= 64 && n < 1 << (64 - len),
        "{block} has no /64 number {n}"
    );
    Ok(Ipv6Addr::from(u128::from(net) | n << 64))
}

/// Address `host` of the /64 at `net`.
pub fn in_64(net: Ipv6Addr, host: u64) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(u128::from(net) | u128::from(host)))
}

/// The namespaces at the router's edges.
pub struct Edges {
    pub router: Netns,
    pub client: Netns,
    pub internet: Netns,
}

/// The router (forwarding IPv4 and IPv6) and its wires to infra, the client and the internet.
pub fn wire(infra: &Netns) -> Result<Edges> {
    let router = Netns::new("router")?;
    router.sysctl("net.ipv4.ip_forward", "1")?;
    router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    // Nodes see their subnet as on-link and ARP for each other, as in a VPC, whose router
    // answers for every address in the subnet: without this a node could not reach
    // another (the agents' peer probes go node to node).
    // (It answers at once: see the proxy delay of each node's wire in vpc.rs.)
    router.sysctl("net.ipv4.conf.all.proxy_arp", "1")?;
    veth(infra, "vpc0", &router, INFRA_WIRE)?;
    infra.ip(&format!("addr add {INFRA}/24 dev vpc0"))?;
    for route in super::infra_routes() {
        infra.ip(&route)?;
    }
    router.ip(&format!("addr add {ROUTER_ON_INFRA}/24 dev rinfra"))?;
    // The controllers probe IPv6 addresses too (an address's own check) from here.
    infra.ip(&format!("-6 addr add {INFRA6}/64 dev vpc0 nodad"))?;
    infra.ip(&format!("-6 route add default via {ROUTER_ON_INFRA6}"))?;
    router.ip(&format!(
        "-6 addr add {ROUTER_ON_INFRA6}/64 dev rinfra nodad"
    ))?;
    let client = Netns::new("client")?;
    veth(&client, "c0", &router, CLIENT_WIRE)?;
    client.ip(&format!("addr add {CLIENT}/24 dev c0"))?;
    client.ip("route add default via 10.99.100.1")?;
    client.ip(&format!("-6 addr add {CLIENT6}/64 dev c0 nodad"))?;
    client.ip(&format!("-6 route add default via {ROUTER_ON_CLIENT6}"))?;
    router.ip("addr add 10.99.100.1/24 dev rclient")?;
    router.ip(&format!(
        "-6 addr add {ROUTER_ON_CLIENT6}/64 dev rclient nodad"
    ))?;
    let internet = Netns::new("internet")?;
    veth(&internet, "i0", &router, "rinternet")?;
    internet.ip(&format!("addr add {INTERNET}/24 dev i0"))?;
    internet.ip(&format!("route add default via {ROUTER_ON_INTERNET}"))?;
    router.ip(&format!("addr add {ROUTER_ON_INTERNET}/24 dev rinternet"))?;
    Ok(Edges {
        router,
        client,
        internet,
    })
}

/// A node's namespace as an EKS node's IPv6 comes up: addresses without duplicate address
/// detection (the lab's are unique by construction), kept while a link is down (a killed node
/// keeps its configuration), and forwarding on for the NodePort's IPv6 DNAT.
pub fn node_ns(index: usize) -> Result<Netns> {
    let ns = Netns::new(&format!("n{index}"))?;
    for key in ["all", "default"] {
        ns.sysctl(&format!("net.ipv6.conf.{key}.keep_addr_on_down"), "1")?;
    }
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    Ok(ns)
}

/// What a router advertisement does on each of a node's ENI interfaces that is up: an IPv6
/// default route through the VPC's router (floatip's agent takes its IPv6 reply routes from
/// these). Called whenever the lab brings a node's interfaces up.
pub fn advertise6(ns: &Netns) {
    for dev in ["eth0", "eth1"] {
        if ns
            .ip(&format!("-o link show dev {dev} up"))
            .is_ok_and(|l| !l.is_empty())
        {
            let _ = ns.ip(&super::vpc::default6(dev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subnet_gets_the_blocks_eighth_64() {
        assert_eq!(
            nth_64("2400:6500:ab:1200::/56", 8).unwrap(),
            "2400:6500:ab:1208::".parse::<Ipv6Addr>().unwrap()
        );
        assert!(nth_64("2400:6500:ab:1200::/56", 256).is_err());
        assert_eq!(
            in_64("2400:6500:ab:1208::".parse().unwrap(), 0x100).to_string(),
            "2400:6500:ab:1208::100"
        );
    }
}
