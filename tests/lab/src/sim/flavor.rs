//! FloatingIPs of several kinds in one simulation, so the scenarios of every address mode share
//! one set-up. "web" (SecondaryIP, [`super::VIP`]) is always there; [`super::Options::flavors`]
//! adds the others, each with a name and an address of its own. The Sim allocates the Elastic
//! IPs they need and picks free addresses in the subnet; what a client uses, who holds the
//! address in EC2 and the invariants are asked per flavor.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use aws_sdk_ec2::types::{DomainType, Filter};

use super::monitor::{self, Changes, Monitor};
use super::network::in_64;
use super::service::NODE_PORT;
use super::traffic::{self, Traffic};
use super::{timeline, Sim, VIP};

/// A kind of FloatingIP (`floatip-lab bench failover --mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Flavor {
    /// "web": a secondary private IPv4 address (the simulation's first FloatingIP).
    #[value(name = "secondary-ip")]
    SecondaryIp,
    /// "web-eip": a secondary private address whose Elastic IP follows it.
    #[value(name = "secondary-ip-eip")]
    SecondaryIpElastic,
    /// "web-public": an Elastic IP associated with the holder ENI's own primary address.
    #[value(name = "elastic-ip")]
    ElasticIp,
    /// "web6": a secondary IPv6 address (unassign, then assign).
    #[value(name = "ipv6")]
    Ipv6,
    /// "web-routed": an overlay address outside the VPC (10.200.0.10), routed to the holder's
    /// floating ENI by the clients' and the nodes' route tables.
    #[value(name = "route-table", alias = "RouteTable")]
    RouteTable,
    /// "web-eni": the primary address of an ENI of its own, moved whole (detach, then
    /// attach). Not among the kinds every simulation test adds: its moves take the lab's ENI attachment delays.
    #[value(name = "interface", alias = "Interface")]
    Interface,
}

/// The RouteTable flavor's address: outside the lab VPC's 10.99.0.0/16, used nowhere else.
pub const ROUTED: &str = "10.200.0.10";

impl Flavor {
    pub const ALL: [Flavor; 5] = [
        Flavor::SecondaryIp,
        Flavor::SecondaryIpElastic,
        Flavor::ElasticIp,
        Flavor::Ipv6,
        Flavor::RouteTable,
    ];

    /// The FloatingIP's name.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::SecondaryIp => super::FIP,
            Flavor::SecondaryIpElastic => "web-eip",
            Flavor::ElasticIp => "web-public",
            Flavor::Ipv6 => "web6",
            Flavor::RouteTable => "web-routed",
            Flavor::Interface => "web-eni",
        }
    }

    /// The mode as benchmark rows name it.
    pub fn mode(self) -> &'static str {
        match self {
            Flavor::SecondaryIp => "SecondaryIP",
            Flavor::SecondaryIpElastic => "SecondaryIP+ElasticIP",
            Flavor::ElasticIp => "ElasticIP",
            Flavor::Ipv6 => "SecondaryIP-IPv6",
            Flavor::RouteTable => "RouteTable",
            Flavor::Interface => "Interface",
        }
    }

    /// Whether clients reach it through an Elastic IP, from the internet.
    pub fn public(self) -> bool {
        matches!(self, Flavor::SecondaryIpElastic | Flavor::ElasticIp)
    }
}

/// An Elastic IP allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub id: String,
    /// The public address (what moto allocated).
    pub public: IpAddr,
}

/// A FloatingIP of one flavor, as the simulation set it up.
pub struct Fip {
    pub flavor: Flavor,
    /// spec.address.
    pub address: IpAddr,
    /// For the Elastic IP flavors.
    pub allocation: Option<Allocation>,
    /// Interface: the ENI whose primary address `address` is (named in the FloatingIP).
    pub eni: Option<String>,
    /// Where a node has the private address configured (from `ip monitor`); empty for
    /// ElasticIp, whose address is never on a node.
    pub changes: Changes,
    /// The RouteTable flavor's spec.routeTableIds: the clients' (and infra's) table and the
    /// nodes' table. Empty for the others.
    pub route_tables: Vec<String>,
    _monitors: Vec<Monitor>,
}

impl Fip {
    /// The address a client sends to: the public address for the Elastic IP flavors.
    pub fn target(&self) -> IpAddr {
        self.allocation
            .as_ref()
            .map(|a| a.public)
            .unwrap_or(self.address)
    }

    /// The private address that moves between ENIs, if the flavor has one.
    pub fn private(&self) -> Option<IpAddr> {
        (self.flavor != Flavor::ElasticIp).then_some(self.address)
    }
}

/// What the invariant checks saw of one flavor.
#[derive(Debug, Clone)]
pub struct FlavorReport {
    pub ec2_reads: u64,
    pub longest_overlap: Duration,
    pub bound: Duration,
    /// IPv6: the longest time EC2 showed the address on no ENI after it had been held (a move
    /// in flight, unassign then assign), and when it began; zero for other flavors.
    pub longest_unheld: Duration,
    pub longest_unheld_from: Option<SystemTime>,
}

impl Sim {
    /// The set-up of `flavor`.
    pub fn flavor(&self, flavor: Flavor) -> Result<&Fip> {
        self.flavors
            .iter()
            .find(|f| f.flavor == flavor)
            .with_context(|| format!("the simulation has no {} ({flavor:?})", flavor.name()))
    }

    /// Where a client of `flavor` sends to: its target address, port [`NODE_PORT`].
    pub fn target_of(&self, flavor: Flavor) -> Result<SocketAddr> {
        Ok(SocketAddr::new(self.flavor(flavor)?.target(), NODE_PORT))
    }

    /// The namespace a client of `flavor` runs in: the internet for the Elastic IP flavors.
    pub fn client_of(&self, flavor: Flavor) -> PathBuf {
        if flavor.public() {
            self.internet_ns.path()
        } else {
            self.client_ns.path()
        }
    }

    /// One TCP request to `flavor`'s target from its client's namespace.
    pub async fn request_once_for(&self, flavor: Flavor) -> Result<String, String> {
        let to = self.target_of(flavor).map_err(|e| format!("{e:#}"))?;
        self.request_from(flavor, to, traffic::Proto::Tcp).await
    }

    /// One request of `proto` to `to` from `flavor`'s client namespace.
    pub async fn request_from(
        &self,
        flavor: Flavor,
        to: SocketAddr,
        proto: traffic::Proto,
    ) -> Result<String, String> {
        let ns = self.client_of(flavor);
        traffic::request_once_with(ns, to, proto, Duration::from_millis(500)).await
    }

    /// Client traffic to `flavor`'s target, as [`Sim::traffic`] sends to "web".
    pub fn traffic_for(&self, flavor: Flavor) -> Result<Traffic> {
        Ok(Traffic::start(
            self.client_of(flavor),
            self.target_of(flavor)?,
            Duration::from_millis(10),
            Duration::from_secs(1),
        ))
    }

    /// The ENIs holding `flavor`'s address in EC2, straight from moto: for the Elastic IP
    /// flavors the ENI the allocation is associated with (DescribeAddresses).
    pub async fn ec2_holders_for(&self, flavor: Flavor) -> Result<Vec<String>> {
        let fip = self.flavor(flavor)?;
        if !fip.route_tables.is_empty() {
            return self.routed_to(fip.address, &fip.route_tables).await;
        }
        match (&fip.allocation, &fip.eni) {
            (Some(a), _) => self.associated_eni(&a.id).await,
            (None, Some(eni)) => {
                let attached = self.instances_with_eni(eni).await?;
                Ok(attached.iter().map(|_| eni.clone()).take(1).collect())
            }
            (None, None) => self.enis_holding(fip.address).await,
        }
    }

    /// The ENIs the host route of `address` leads to in `tables`, straight from moto: none
    /// when no table has the route; an error when some tables have it and others do not (the
    /// address is then reached from some subnets only).
    pub async fn routed_to(&self, address: IpAddr, tables: &[String]) -> Result<Vec<String>> {
        let by_table = self.route_targets(address, tables).await?;
        let missing: Vec<&String> = (by_table.iter())
            .filter(|(_, t)| t.is_none())
            .map(|(id, _)| id)
            .collect();
        let mut enis: Vec<String> = by_table.iter().filter_map(|(_, t)| t.clone()).collect();
        if !enis.is_empty() && !missing.is_empty() {
            bail!("{address} is routed to {enis:?}, but not in {missing:?}");
        }
        enis.sort();
        enis.dedup();
        Ok(enis)
    }

    /// Per table of `tables`, the ENI (or other target) its host route of `address` leads to.
    pub async fn route_targets(
        &self,
        address: IpAddr,
        tables: &[String],
    ) -> Result<Vec<(String, Option<String>)>> {
        let out = self
            .direct
            .describe_route_tables()
            .set_route_table_ids(Some(tables.to_vec()))
            .send()
            .await?;
        let host = floatip::cloud::host_route(address);
        let mut by_table = Vec::new();
        for id in tables {
            let table = (out.route_tables().iter())
                .find(|t| t.route_table_id() == Some(id.as_str()))
                .with_context(|| format!("no route table {id}"))?;
            let target = (table.routes().iter())
                .find(|r| {
                    r.destination_cidr_block()
                        .or(r.destination_ipv6_cidr_block())
                        == Some(host.as_str())
                })
                .map(|r| {
                    (r.network_interface_id().or(r.gateway_id()))
                        .unwrap_or("unknown")
                        .to_string()
                });
            by_table.push((id.clone(), target));
        }
        Ok(by_table)
    }

    /// The nodes whose ENIs [`Sim::ec2_holders_for`] names.
    pub async fn holder_nodes_for(&self, flavor: Flavor) -> Result<Vec<String>> {
        let enis = self.ec2_holders_for(flavor).await?;
        let mut nodes = Vec::new();
        for eni in enis {
            nodes.push(self.node_of_eni(&eni).await?);
        }
        Ok(nodes)
    }

    /// The ENI an allocation is associated with (none or one).
    pub async fn associated_eni(&self, allocation: &str) -> Result<Vec<String>> {
        let out = self
            .direct
            .describe_addresses()
            .allocation_ids(allocation)
            .send()
            .await?;
        Ok(out
            .addresses()
            .iter()
            .filter_map(|a| a.network_interface_id())
            .map(String::from)
            .collect())
    }

    /// The ENIs in the subnet holding `address` (IPv4 as a secondary address, or IPv6).
    pub async fn enis_holding(&self, address: IpAddr) -> Result<Vec<String>> {
        let interfaces = self.subnet_interfaces().await?;
        let text = address.to_string();
        let holds = |n: &aws_sdk_ec2::types::NetworkInterface| match address {
            IpAddr::V4(_) => n
                .private_ip_addresses()
                .iter()
                .any(|a| a.primary() != Some(true) && a.private_ip_address() == Some(&text)),
            IpAddr::V6(v6) => n
                .ipv6_addresses()
                .iter()
                .any(|a| a.ipv6_address().and_then(|s| s.parse().ok()) == Some(v6)),
        };
        Ok(interfaces
            .iter()
            .filter(|n| holds(n))
            .filter_map(|n| n.network_interface_id().map(String::from))
            .collect())
    }

    /// The instances EC2 (moto, under the lab's attachment delays) shows `eni` attached to,
    /// attaching to or detaching from: DescribeInstances filtered by the ENI. Never more than
    /// one, or the ENI was attached twice.
    pub async fn instances_with_eni(&self, eni: &str) -> Result<Vec<String>> {
        instances_with_eni(&self.direct, eni).await
    }

    /// The node whose instance `eni` is attached to.
    pub async fn node_of_eni(&self, eni: &str) -> Result<String> {
        let out = self
            .direct
            .describe_network_interfaces()
            .network_interface_ids(eni)
            .send()
            .await?;
        let instance = out
            .network_interfaces()
            .first()
            .and_then(|n| n.attachment())
            .and_then(|a| a.instance_id())
            .with_context(|| format!("{eni} is attached to no instance"))?;
        self.nodes
            .iter()
            .find(|n| n.instance == instance)
            .map(|n| n.name.clone())
            .with_context(|| format!("{eni} is attached to {instance}, no node's instance"))
    }

    /// The invariants of `flavor`: never two holders in EC2, never configured on two live
    /// nodes for longer than [`Sim::overlap_bound`]; for IPv6 also the longest window with
    /// no holder in EC2 (reported, for a test to bound).
    pub fn check_invariants_for(&self, flavor: Flavor) -> Result<FlavorReport> {
        let fip = self.flavor(flavor)?;
        let seen = self.follower.seen.lock().unwrap();
        if let Some((at, ip, enis)) = seen
            .double_holders
            .iter()
            .find(|(_, ip, _)| Some(*ip) == fip.private())
        {
            bail!(
                "EC2 had {ip} on {enis:?} at once (at {})",
                timeline::clock(*at)
            );
        }
        let now = SystemTime::now();
        let (longest_unheld, longest_unheld_from) = seen
            .unheld
            .get(&fip.address)
            .map(|u| u.longest_at(now))
            .unwrap_or_default();
        let changes = fip.changes.lock().unwrap().clone();
        let overlap = monitor::longest_overlap(&changes, &self.downs, now);
        let bound = self.overlap_bound();
        if let Some((at, d)) = overlap.filter(|(_, d)| *d > bound) {
            bail!(
                "{} was configured on two live nodes for {} ms from {} (bound {} ms)",
                fip.address,
                d.as_millis(),
                timeline::clock(at),
                bound.as_millis()
            );
        }
        Ok(FlavorReport {
            ec2_reads: seen.reads,
            longest_overlap: overlap.map(|(_, d)| d).unwrap_or_default(),
            bound,
            longest_unheld,
            longest_unheld_from,
        })
    }

    /// [`Sim::settle`] for `flavor`: no move pending, status names the node EC2 has the address
    /// on (for an Elastic IP: the node of the associated ENI), that node has the private
    /// address configured (when the flavor has one), and the flavor's client is answered by
    /// it. Returns the holder.
    pub async fn settle_flavor(&self, flavor: Flavor, timeout: Duration) -> Result<String> {
        if flavor == Flavor::SecondaryIp {
            return self.settle(timeout).await;
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut why = String::new();
        while std::time::Instant::now() < deadline {
            match self.flavor_agreement(flavor).await {
                Ok(holder) => return Ok(holder),
                Err(e) => why = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} did not settle within {timeout:?}: {why}", flavor.name())
    }

    async fn flavor_agreement(&self, flavor: Flavor) -> Result<String> {
        let status = self.fip_named(flavor.name()).await?.status;
        let status = status.context("no status")?;
        if status.pending_move.is_some() {
            bail!("a move is pending");
        }
        let holder = status.holder.context("no holder")?.node;
        let in_ec2 = self.holder_nodes_for(flavor).await?;
        if in_ec2 != [holder.clone()] {
            bail!("status says {holder}, EC2 has it on {in_ec2:?}");
        }
        let fip = self.flavor(flavor)?;
        if fip.private().is_some() {
            let index = self.node(&holder)?.index;
            let on = fip
                .changes
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|c| c.node == index)
                .map(|c| c.present);
            if on != Some(true) {
                bail!("{holder} does not have {} configured", fip.address);
            }
        }
        match self.request_once_for(flavor).await {
            Ok(a) if a == holder => Ok(holder),
            other => bail!("the client got {other:?}, not an answer from {holder}"),
        }
    }

    /// Sets up `flavor` in EC2 and starts watching the nodes for its address, without a
    /// FloatingIP (for tests that drive EC2 themselves); [`Sim::add_flavor`] adds that.
    pub async fn prepare_flavor(&mut self, flavor: Flavor) -> Result<&Fip> {
        if flavor == Flavor::SecondaryIp {
            bail!("SecondaryIp is web, which every simulation has");
        }
        let allocation = match flavor.public() {
            true => Some(self.allocate().await?),
            false => None,
        };
        let address = match (flavor, &allocation) {
            (Flavor::ElasticIp, Some(a)) => a.public,
            (Flavor::RouteTable, _) => ROUTED.parse()?,
            _ => self.free_address(flavor == Flavor::Ipv6, &[]).await?,
        };
        let route_tables = match flavor {
            Flavor::RouteTable => vec![self.vpc.client_table.clone(), self.vpc.node_table.clone()],
            _ => Vec::new(),
        };
        let eni = match flavor {
            Flavor::Interface => Some(self.address_eni(address).await?),
            _ => None,
        };
        let changes = Changes::default();
        let mut monitors = Vec::new();
        if flavor != Flavor::ElasticIp {
            for n in &self.nodes {
                let a = address.to_string();
                monitors.push(Monitor::start(&n.ns.name, n.index, &a, changes.clone())?);
            }
        }
        self.flavors.push(Fip {
            flavor,
            address,
            allocation,
            eni,
            changes,
            route_tables,
            _monitors: monitors,
        });
        self.flavor(flavor)
    }

    /// [`Sim::prepare_flavor`], then the flavor's FloatingIP (kubectl apply).
    pub async fn add_flavor(&mut self, flavor: Flavor) -> Result<()> {
        self.prepare_flavor(flavor).await?;
        let manifest = self.flavor_manifest(self.flavor(flavor)?);
        let out = self.kubectl(&["apply", "-f", "-"], Some(&manifest))?;
        if !out.status.success() {
            bail!(
                "kubectl apply of {}: {}",
                flavor.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// [`Sim::add_flavor`] whose FloatingIP may never be on `node`: the benchmark keeps a
    /// kind away from "web", so that a failover moves that kind alone.
    pub async fn add_flavor_away_from(&mut self, flavor: Flavor, node: &str) -> Result<()> {
        self.prepare_flavor(flavor).await?;
        let nodes: Vec<String> = (self.nodes.iter())
            .filter(|n| n.name != node)
            .map(|n| n.name.clone())
            .collect();
        let fip = self.flavor(flavor)?;
        let manifest = manifest_avoiding(
            fip,
            &self.subnet,
            self.opts.min_hold_seconds,
            &nodes,
            Some(node),
        );
        let out = self.kubectl(&["apply", "-f", "-"], Some(&manifest))?;
        if !out.status.success() {
            bail!(
                "kubectl apply of {}: {}",
                flavor.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The FloatingIP of `fip`, in YAML: as "web", with the flavor's mode, address and
    /// Elastic IP.
    pub fn flavor_manifest(&self, fip: &Fip) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        manifest(fip, &self.subnet, self.opts.min_hold_seconds, &nodes)
    }

    /// A detached ENI in the node subnet whose primary address is `address`, tagged for the
    /// cluster as the README asks of users for Interface mode, straight from moto.
    pub async fn address_eni(&self, address: IpAddr) -> Result<String> {
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::NetworkInterface)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(floatip::cloud::TAG_CLUSTER)
                    .value(super::CLUSTER)
                    .build(),
            )
            .build();
        let out = self
            .direct
            .create_network_interface()
            .subnet_id(&self.subnet)
            .private_ip_address(address.to_string())
            .description("web-eni: Interface mode's ENI")
            .tag_specifications(tags)
            .send()
            .await?;
        let eni = out
            .network_interface()
            .and_then(|n| n.network_interface_id());
        Ok(eni.context("no ENI id")?.to_string())
    }

    /// A new Elastic IP (AllocateAddress, domain vpc), straight from moto.
    pub async fn allocate(&self) -> Result<Allocation> {
        // Tagged for the cluster, as the README asks of users: the controller's IAM policy
        // lets it associate only such allocations.
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::ElasticIp)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(floatip::cloud::TAG_CLUSTER)
                    .value(super::CLUSTER)
                    .build(),
            )
            .build();
        let out = self
            .direct
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tags)
            .send()
            .await?;
        let public: IpAddr = out
            .public_ip()
            .and_then(|p| p.parse().ok())
            .context("no public IP")?;
        if public.is_loopback() {
            // Unpatched moto allocates from 127.0.0.0/8, which no namespace can route.
            bail!("EC2 allocated {public}, a loopback address: the lab's moto patch that allocates from documentation ranges is missing");
        }
        Ok(Allocation {
            id: out.allocation_id().context("no allocation id")?.to_string(),
            public,
        })
    }

    /// An address in the node subnet (IPv4 from 10.99.8.101 on, or IPv6 from ::101 of its
    /// /64) that no ENI has, no FloatingIP of the lab uses and `avoid` does not name.
    pub async fn free_address(&self, v6: bool, avoid: &[IpAddr]) -> Result<IpAddr> {
        let mut one = self.free_addresses(v6, avoid, 1).await?;
        one.pop().context("no free address in the subnet")
    }

    /// `n` addresses as [`Sim::free_address`] picks one, from one read of EC2.
    pub async fn free_addresses(
        &self,
        v6: bool,
        avoid: &[IpAddr],
        n: usize,
    ) -> Result<Vec<IpAddr>> {
        let used = self.subnet_addresses().await?;
        let free: Vec<IpAddr> = (101..=250u8)
            .map(|host| match v6 {
                true => in_64(self.vpc.subnet_v6, 0x100 + u64::from(host)),
                false => IpAddr::V4([10, 99, 8, host].into()),
            })
            .filter(|a| {
                a.to_string() != VIP
                    && !avoid.contains(a)
                    && !used.contains(a)
                    && self.flavors.iter().all(|f| f.address != *a)
                    && self.companions.iter().all(|c| c.address != *a)
            })
            .take(n)
            .collect();
        if free.len() < n {
            bail!(
                "only {} free addresses in the subnet, {n} wanted",
                free.len()
            );
        }
        Ok(free)
    }

    /// Every ENI in the node subnet, straight from EC2.
    pub(super) async fn subnet_interfaces(
        &self,
    ) -> Result<Vec<aws_sdk_ec2::types::NetworkInterface>> {
        let out = self
            .direct
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("subnet-id")
                    .values(&self.subnet)
                    .build(),
            )
            .send()
            .await?;
        Ok(out.network_interfaces().to_vec())
    }

    /// Every address (primary, secondary, IPv6) of every ENI in the node subnet.
    async fn subnet_addresses(&self) -> Result<std::collections::BTreeSet<IpAddr>> {
        let interfaces = self.subnet_interfaces().await?;
        let mut all = std::collections::BTreeSet::new();
        for n in &interfaces {
            let v4 = n
                .private_ip_addresses()
                .iter()
                .map(|a| a.private_ip_address());
            let v6 = n.ipv6_addresses().iter().map(|a| a.ipv6_address());
            all.extend(
                v4.chain(v6)
                    .flatten()
                    .filter_map(|a| a.parse::<IpAddr>().ok()),
            );
        }
        Ok(all)
    }
}

/// [`Sim::instances_with_eni`] through any client (a watcher of its own): every instance's
/// interfaces are read, so no filter of moto's is trusted with the answer.
pub async fn instances_with_eni(ec2: &aws_sdk_ec2::Client, eni: &str) -> Result<Vec<String>> {
    let out = ec2.describe_instances().send().await?;
    Ok((out.reservations().iter())
        .flat_map(|r| r.instances())
        .filter(|i| (i.network_interfaces().iter()).any(|n| n.network_interface_id() == Some(eni)))
        .filter_map(|i| i.instance_id().map(String::from))
        .collect())
}

/// The FloatingIP of `fip`. Every flavor lists the nodes in the same order as preferred nodes,
/// the README's pattern for addresses that must stay together (a dual-stack pair): the
/// scenarios fail one node and expect every kind to leave it for the same one.
fn manifest(fip: &Fip, subnet: &str, min_hold_seconds: u32, nodes: &[String]) -> String {
    manifest_avoiding(fip, subnet, min_hold_seconds, nodes, None)
}

/// [`manifest`], never on node `avoid` (a nodeSelector) when given.
fn manifest_avoiding(
    fip: &Fip,
    subnet: &str,
    min_hold_seconds: u32,
    nodes: &[String],
    avoid: Option<&str>,
) -> String {
    let (mode, subnet) = match fip.flavor {
        Flavor::ElasticIp => ("ElasticIP", subnet),
        Flavor::Interface => ("Interface", subnet),
        // Routed to any floating ENI of a node, in any subnet: spec.subnetId has no use.
        Flavor::RouteTable => ("RouteTable", ""),
        _ => ("SecondaryIP", subnet),
    };
    let tables: String = fip
        .route_tables
        .iter()
        .map(|t| {
            format!(
                "  - {t}
"
            )
        })
        .collect();
    let tables = match tables.is_empty() {
        true => String::new(),
        false => format!(
            "  routeTableIds:
{tables}"
        ),
    };
    let elastic = fip
        .allocation
        .as_ref()
        .map(|a| format!("  elasticIP:\n    allocationId: {}\n", a.id))
        .unwrap_or_default();
    let elastic = elastic
        + &(fip.eni.as_ref())
            .map(|e| format!("  networkInterfaceId: {e}\n"))
            .unwrap_or_default();
    let mut placement = preferred_nodes(nodes);
    if let Some(node) = avoid {
        placement += &format!("  nodeSelector:\n    matchExpressions:\n    - key: kubernetes.io/hostname\n      operator: NotIn\n      values: [{node}]\n");
    }
    floating_ip_yaml(
        fip.flavor.name(),
        mode,
        fip.address,
        subnet,
        &(elastic + &tables + &placement),
        min_hold_seconds,
    )
}

/// The spec lines that list `nodes` as preferred, in order (none for no nodes).
pub fn preferred_nodes(nodes: &[String]) -> String {
    let list: String = nodes.iter().map(|n| format!("  - {n}\n")).collect();
    match list.is_empty() {
        true => String::new(),
        false => format!("  preferredNodes:\n{list}"),
    }
}

/// A FloatingIP the lab applies: `more` is spec lines (two-space indented) besides the mode,
/// address, subnet (none when empty), health check (the node's service) and hold time.
pub fn floating_ip_yaml(
    name: &str,
    mode: &str,
    address: IpAddr,
    subnet: &str,
    more: &str,
    min_hold_seconds: u32,
) -> String {
    let subnet = match subnet {
        "" => String::new(),
        s => format!("  subnetId: {s}\n"),
    };
    format!(
        "apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata:\n  name: {name}\nspec:\n  mode: {mode}\n  address: \"{address}\"\n{subnet}{more}  healthCheck:\n    protocol: TCP\n    port: {NODE_PORT}\n  failover:\n    minHoldSeconds: {min_hold_seconds}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fip(flavor: Flavor, address: &str, allocation: Option<&str>) -> Fip {
        Fip {
            flavor,
            address: address.parse().unwrap(),
            allocation: allocation.map(|id| Allocation {
                id: id.into(),
                public: "198.51.100.7".parse().unwrap(),
            }),
            eni: None,
            changes: Changes::default(),
            route_tables: match flavor {
                Flavor::RouteTable => vec!["rtb-1".into(), "rtb-2".into()],
                _ => Vec::new(),
            },
            _monitors: Vec::new(),
        }
    }

    fn spec(f: &Fip) -> serde_json::Value {
        let v: serde_json::Value =
            serde_yaml_ng::from_str(&manifest(f, "subnet-1", 3, &[])).unwrap();
        v["spec"].clone()
    }

    #[test]
    fn each_flavor_is_the_floatingip_the_controller_expects() {
        let eip = spec(&fip(
            Flavor::SecondaryIpElastic,
            "10.99.8.101",
            Some("eipalloc-1"),
        ));
        assert_eq!(eip["mode"], "SecondaryIP");
        assert_eq!(eip["address"], "10.99.8.101");
        assert_eq!(eip["elasticIP"]["allocationId"], "eipalloc-1");
        assert_eq!(eip["healthCheck"]["port"], NODE_PORT);
        let public = spec(&fip(Flavor::ElasticIp, "198.51.100.7", Some("eipalloc-2")));
        assert_eq!(
            (&public["mode"], &public["subnetId"]),
            (&"ElasticIP".into(), &"subnet-1".into())
        );
        let v6 = spec(&fip(Flavor::Ipv6, "2400:6500:ab:1208::165", None));
        assert_eq!(v6["address"], "2400:6500:ab:1208::165");
        assert!(v6.get("elasticIP").is_none());
        let routed = spec(&fip(Flavor::RouteTable, ROUTED, None));
        assert_eq!(routed["mode"], "RouteTable");
        assert_eq!(
            routed["routeTableIds"],
            serde_json::json!(["rtb-1", "rtb-2"])
        );
        assert!(routed.get("subnetId").is_none(), "{routed}");
        assert_eq!(
            fip(Flavor::ElasticIp, "198.51.100.7", Some("a")).private(),
            None,
            "an ElasticIP FloatingIP has no private address that moves"
        );
    }
}
