//! End to end for the address kinds beside "web": a SecondaryIP address with an Elastic IP
//! (clients use the public address, from the internet side), an ElasticIP-mode address, an
//! IPv6 SecondaryIP address and a RouteTable overlay address (10.200.0.10, outside the lab
//! VPC, routed by the clients' and the nodes' tables). One simulation runs the three
//! scenarios one after the other (CI time): the holder's service dies, the holder node dies,
//! the holder is cordoned and drained. Every kind prefers the same nodes, so each failure
//! moves all of them at once. After each scenario: every kind left the failed node, answers
//! its client from the new holder, status equals EC2, EC2 never showed two holders, every
//! listed route table leads to the holder's ENI and only to it, and for IPv6 the time EC2 had
//! the address on no ENI is bounded and reported in status. Root only (network namespaces).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use floatip::api::FloatingIP;
use floatip_lab::sim::flavor::Flavor;
use floatip_lab::sim::traffic::{failed_beside_switches, outage, Attempt, Proto, Traffic};
use floatip_lab::sim::{isolated, net, Binaries, Options, Sim};

const KINDS: [Flavor; 4] = [
    Flavor::SecondaryIpElastic,
    Flavor::ElasticIp,
    Flavor::Ipv6,
    Flavor::RouteTable,
];

fn binaries() -> Binaries {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_floatip-lab"));
    Binaries::beside(lab.clone(), false)
        .or_else(|_| Binaries::beside(lab, true))
        .expect("the floatip binary")
}

/// Every kind settled on one node: status equals EC2 and the kind's client gets answers from
/// it. Returns that node.
async fn settled_together(sim: &Sim) -> Result<String> {
    let mut holders = Vec::new();
    for k in KINDS {
        holders.push(sim.settle_flavor(k, Duration::from_secs(40)).await?);
    }
    if holders.windows(2).any(|w| w[0] != w[1]) {
        bail!("the kinds settled apart: {holders:?}");
    }
    Ok(holders.remove(0))
}

/// Client traffic to every kind, from its own side.
fn traffic(sim: &Sim) -> Result<Vec<(Flavor, Traffic)>> {
    KINDS
        .iter()
        .map(|k| Ok((*k, sim.traffic_for(*k)?)))
        .collect()
}

/// Stops the traffic and prints each kind's TCP and UDP outage since `from`; returns the
/// failed requests per kind.
fn outages(all: Vec<(Flavor, Traffic)>, from: SystemTime) -> Vec<(Flavor, usize)> {
    outages_beside(all, from, |_| Vec::new())
        .into_iter()
        .map(|(k, failed, _)| (k, failed))
        .collect()
}

/// [`outages`], and per kind how many of its failed requests were under way at an instant
/// `switches` gives for it (the VPC switching its address: such a request is cut by the VPC,
/// which drops the old holder's replies from then on, as AWS does).
fn outages_beside(
    all: Vec<(Flavor, Traffic)>,
    from: SystemTime,
    switches: impl Fn(Flavor) -> Vec<SystemTime>,
) -> Vec<(Flavor, usize, usize)> {
    let mut failed = Vec::new();
    for (k, t) in all {
        let attempts = t.stop();
        let since: Vec<Attempt> = (attempts.iter())
            .filter(|a| a.sent >= from)
            .cloned()
            .collect();
        let (_, cut) = failed_beside_switches(&since, &switches(k));
        let mut n = 0;
        for proto in [Proto::Tcp, Proto::Udp] {
            let o = outage(&attempts, proto, from);
            println!(
                "  {:<10} {proto:?}: {} requests, {} failed, outage {} ms",
                k.name(),
                o.requests,
                o.failed,
                o.report()
                    .outage_ms
                    .map_or("unrecovered".into(), |ms| ms.to_string())
            );
            n += o.failed;
            if std::env::var_os("E2E_DEBUG").is_some() {
                for a in attempts
                    .iter()
                    .filter(|a| a.proto == proto && a.result.is_err())
                    .take(12)
                {
                    println!(
                        "    {:?} {:?}",
                        floatip_lab::sim::timeline::clock(a.sent),
                        a.result
                    );
                }
            }
        }
        if cut > 0 {
            println!("  {:<10} {cut} under way at the VPC's switch", k.name());
        }
        failed.push((k, n, cut));
    }
    failed
}

/// Every route table the RouteTable kind lists leads to the ENI status names, none elsewhere.
async fn routes_lead_to_the_holder(sim: &Sim) -> Result<()> {
    let fip = sim.flavor(Flavor::RouteTable)?;
    let f = sim.fip_named(Flavor::RouteTable.name()).await?;
    let holder = f.status.and_then(|s| s.holder).context("no holder")?;
    let eni = holder.network_interface_id.context("no ENI in status")?;
    let routes = sim.route_targets(fip.address, &fip.route_tables).await?;
    println!("  {:<10} routes {routes:?}", Flavor::RouteTable.name());
    if routes.len() < 2
        || routes
            .iter()
            .any(|(_, to)| to.as_deref() != Some(eni.as_str()))
    {
        bail!(
            "the route tables do not all lead to {eni} ({}): {routes:?}",
            holder.node
        );
    }
    Ok(())
}

/// The invariants of every kind, and for IPv6 the window on no ENI, bounded and reported.
async fn invariants(sim: &Sim, moved: bool) -> Result<()> {
    routes_lead_to_the_holder(sim).await?;
    for k in KINDS {
        let r = sim.check_invariants_for(k)?;
        println!(
            "  {:<10} {} EC2 reads never saw two holders; longest on two live nodes {} ms (bound {} ms)",
            k.name(),
            r.ec2_reads,
            r.longest_overlap.as_millis(),
            r.bound.as_millis()
        );
        if k != Flavor::Ipv6 || !moved {
            continue;
        }
        // The router reads EC2 every 100 ms: a window shorter than that reads as zero.
        println!(
            "  {:<10} longest on no ENI in EC2: {} ms",
            k.name(),
            r.longest_unheld.as_millis()
        );
        if r.longest_unheld > Duration::from_secs(2) {
            bail!(
                "EC2 had the IPv6 address on no ENI for {} ms",
                r.longest_unheld.as_millis()
            );
        }
        let f = sim.fip_named(k.name()).await?;
        let last = f.status.and_then(|s| s.last_move).context("no lastMove")?;
        let window = last
            .unassigned_ms
            .context("an IPv6 move reports its window")?;
        println!("  {:<10} status lastMove.unassignedMs {window}", k.name());
        if window > 2000 {
            bail!("status reports the IPv6 address unassigned for {window} ms");
        }
    }
    Ok(())
}

fn holder(f: &FloatingIP) -> Option<String> {
    f.status.as_ref()?.holder.as_ref().map(|h| h.node.clone())
}

/// Waits until every kind is held by a node other than `from`; returns the last move reasons.
async fn all_left(sim: &Sim, from: &str) -> Result<Vec<String>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut reasons = Vec::new();
        for k in KINDS {
            let f = sim.fip_named(k.name()).await?;
            match holder(&f) {
                Some(h) if h != from => reasons.push(
                    f.status
                        .and_then(|s| s.last_move)
                        .map(|m| m.reason.as_str().to_string())
                        .unwrap_or_default(),
                ),
                _ => break,
            }
        }
        if reasons.len() == KINDS.len() {
            return Ok(reasons);
        }
        if std::time::Instant::now() > deadline {
            bail!("not every kind left {from} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The holder's service dies: every kind moves, for HolderUnhealthy.
async fn service_dies(sim: &mut Sim) -> Result<()> {
    let from = settled_together(sim).await?;
    println!("service dies on {from}");
    let t = traffic(sim)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = SystemTime::now();
    sim.set_service(&from, false)?;
    let reasons = all_left(sim, &from).await?;
    assert!(
        reasons.iter().all(|r| r == "HolderUnhealthy"),
        "{reasons:?}"
    );
    let to = settled_together(sim).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (k, failed) in outages(t, start) {
        assert!(failed > 0, "{}: the client saw the service die", k.name());
    }
    assert_ne!(to, from);
    invariants(sim, true).await?;
    sim.set_service(&from, true)?;
    Ok(())
}

/// The holder node dies: every kind moves; the node comes back and holds nothing.
async fn node_dies(sim: &mut Sim) -> Result<()> {
    let from = settled_together(sim).await?;
    println!("node {from} dies");
    let t = traffic(sim)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = SystemTime::now();
    sim.kill_node(&from)?;
    let reasons = all_left(sim, &from).await?;
    assert!(
        reasons
            .iter()
            .all(|r| r == "HolderUnhealthy" || r == "NodeNotReady"),
        "{reasons:?}"
    );
    let to = settled_together(sim).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (k, failed) in outages(t, start) {
        assert!(failed > 0, "{}: the client saw the node die", k.name());
    }
    assert_ne!(to, from);
    invariants(sim, true).await?;
    sim.revive_node(&from)?;
    Ok(())
}

/// The holder is cordoned and drained: every kind moves first, for NodeCordoned, and no
/// request of any kind fails.
async fn drained(sim: &mut Sim) -> Result<()> {
    let from = settled_together(sim).await?;
    println!("{from} cordoned and drained");
    let t = traffic(sim)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = SystemTime::now();
    let out = sim.kubectl(&["cordon", &from], None)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reasons = all_left(sim, &from).await?;
    assert!(reasons.iter().all(|r| r == "NodeCordoned"), "{reasons:?}");
    settled_together(sim).await?;
    // Drained, the node shuts down: the kubelet stops the agent, then the machine goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let node = sim
        .nodes
        .iter_mut()
        .find(|n| n.name == from)
        .context("node")?;
    let agent = node.agent.as_mut().context("agent")?;
    agent.signal("TERM");
    assert_eq!(
        agent.wait(Duration::from_secs(25)),
        Some(0),
        "the agent exits cleanly"
    );
    sim.kill_node(&from)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let targets: Vec<(Flavor, IpAddr)> = (KINDS.iter())
        .map(|k| Ok((*k, sim.flavor(*k)?.target())))
        .collect::<Result<_>>()?;
    let failed = outages_beside(t, start, |k| {
        (targets.iter().find(|(f, _)| *f == k))
            .map(|(_, a)| sim.follower.switches(*a))
            .unwrap_or_default()
    });
    // Where every kind went is checked before what the clients saw, so a lost request does
    // not hide a broken invariant.
    invariants(sim, true).await?;
    for (k, failed, cut) in failed {
        assert_eq!(
            failed - cut,
            0,
            "{}: requests failed during a planned move, beside {cut} under way at the VPC's switch",
            k.name()
        );
        assert!(
            cut <= 2,
            "{}: {cut} requests cut at the VPC's switch",
            k.name()
        );
    }
    Ok(())
}

/// Waits until FloatingIP `name` has condition `type_` True with `reason`; returns its message.
async fn condition(sim: &Sim, name: &str, type_: &str, reason: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let f = sim.fip_named(name).await?;
        let found = (f.status.iter().flat_map(|s| s.conditions.iter()))
            .find(|c| c.type_ == type_ && c.status == "True" && c.reason == reason);
        if let Some(c) = found {
            return Ok(c.message.clone());
        }
        if std::time::Instant::now() > deadline {
            bail!("{name} never got {type_}={reason}: {:?}", f.status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn apply(sim: &Sim, name: &str, spec: &str) -> Result<()> {
    let manifest = format!(
        "apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata:\n  name: {name}\nspec:\n{spec}"
    );
    let out = sim.kubectl(&["apply", "-f", "-"], Some(&manifest))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// What EC2 would refuse is refused first, on the FloatingIP concerned, with no call: an
/// allocation of another network border group (a Local Zone's), an allocation associated
/// with something floatip did not associate, an IPv6 address outside the subnet's block, a
/// RouteTable address inside the VPC, and a route table of another VPC.
async fn refusals(sim: &Sim) -> Result<()> {
    // The kinds' own first placement and association are done first.
    settled_together(sim).await?;
    let before = sim.ec2_mutating()?;
    let zone_eip = sim
        .direct
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .network_border_group("us-west-2-lax-1")
        .send()
        .await?;
    let zone_eip = zone_eip.allocation_id().context("allocation")?.to_string();
    let taken = sim.allocate().await?;
    let node1 = sim.node("node-1")?.instance.clone();
    sim.direct
        .associate_address()
        .allocation_id(&taken.id)
        .instance_id(&node1)
        .send()
        .await?;
    let subnet = &sim.subnet;
    // The next /64 of the VPC's block: in the VPC, outside the subnet.
    let mut next = sim.vpc.subnet_v6.octets();
    next[7] ^= 0x01;
    let outside = floatip_lab::sim::network::in_64(next.into(), 0x100);
    apply(sim, "bad-zone", &format!("  address: 10.99.8.190\n  subnetId: {subnet}\n  elasticIP:\n    allocationId: {zone_eip}\n"))?;
    apply(
        sim,
        "bad-taken",
        &format!(
            "  address: 10.99.8.191\n  subnetId: {subnet}\n  elasticIP:\n    allocationId: {}\n",
            taken.id
        ),
    )?;
    apply(
        sim,
        "bad-v6",
        &format!("  address: \"{outside}\"\n  subnetId: {subnet}\n"),
    )?;
    let other_vpc = sim
        .direct
        .create_vpc()
        .cidr_block("10.98.0.0/16")
        .send()
        .await?;
    let other_vpc = (other_vpc.vpc().and_then(|v| v.vpc_id()))
        .context("vpc")?
        .to_string();
    let other_table = sim
        .direct
        .create_route_table()
        .vpc_id(&other_vpc)
        .send()
        .await?;
    let other_table = (other_table.route_table().and_then(|t| t.route_table_id()))
        .context("route table")?
        .to_string();
    let clients = &sim.vpc.client_table;
    apply(
        sim,
        "bad-in-vpc",
        &format!("  mode: RouteTable\n  address: 10.99.150.10\n  routeTableIds: [{clients}]\n"),
    )?;
    apply(
        sim,
        "bad-table",
        &format!("  mode: RouteTable\n  address: 10.200.0.20\n  routeTableIds: [{clients}, {other_table}]\n"),
    )?;
    let zone = condition(sim, "bad-zone", "InvalidSpec", "BorderGroupMismatch").await?;
    println!("bad-zone: {zone}");
    assert!(
        zone.contains("group us-west-2-lax-1")
            && zone.contains("zone us-west-2a is in group us-west-2;"),
        "{zone}"
    );
    let held = condition(sim, "bad-taken", "Conflict", "AllocationInUse").await?;
    println!("bad-taken: {held}");
    assert!(held.contains(&taken.id) && held.contains(&node1), "{held}");
    let v6 = condition(sim, "bad-v6", "InvalidSpec", "AddressOutsideSubnet").await?;
    println!("bad-v6: {v6}");
    let in_vpc = condition(sim, "bad-in-vpc", "InvalidSpec", "AddressInsideVpc").await?;
    println!("bad-in-vpc: {in_vpc}");
    assert!(in_vpc.contains("10.99.0.0/16"), "{in_vpc}");
    let table = condition(sim, "bad-table", "InvalidSpec", "RouteTableInOtherVpc").await?;
    println!("bad-table: {table}");
    assert!(table.contains(&other_vpc), "{table}");
    // A few passes later, still no call for any of them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sim.ec2_mutating()?;
    assert_eq!(
        after,
        before,
        "a refused FloatingIP made an EC2 call: {}",
        sim.ec2_calls()?
    );
    for name in ["bad-zone", "bad-taken", "bad-v6", "bad-in-vpc", "bad-table"] {
        let out = sim.kubectl(&["delete", "fip", name], None)?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// An Outposts customer-owned address in ElasticIP mode on the nodes' primary ENIs (no subnet:
/// the controller reads every node's ENIs): placed, shown as CustomerOwnedIP, reached by an
/// on-premises client through the local gateway's translation, and disassociated when the
/// FloatingIP is deleted.
async fn customer_owned(sim: &Sim) -> Result<()> {
    let out = sim
        .direct
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .customer_owned_ipv4_pool("ipv4pool-coip-0123456789abcdef0")
        .send()
        .await?;
    let id = out.allocation_id().context("allocation")?.to_string();
    let coip: std::net::IpAddr = out.customer_owned_ip().context("CoIP")?.parse()?;
    apply(
        sim,
        "onprem",
        &format!("  mode: ElasticIP\n  address: {coip}\n  interface: Primary\n  elasticIP:\n    allocationId: {id}\n  healthCheck:\n    port: 30080\n"),
    )?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (holder, public) = loop {
        let f = sim.fip_named("onprem").await?;
        let status = f.status.unwrap_or_default();
        if let (Some(h), Some(p)) = (status.holder, status.public_address) {
            break (h, p);
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "onprem was not placed: {:?}",
                sim.fip_named("onprem").await?.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("onprem: {coip} on {} ({:?})", holder.node, public.kind);
    assert_eq!(
        public.kind,
        floatip::api::PublicAddressKind::CustomerOwnedIP
    );
    assert_eq!(public.address, coip.to_string());
    let primary = sim.node(&holder.node)?.primary_ip.clone();
    assert_eq!(holder.private_address.as_deref(), Some(primary.as_str()));
    let to = std::net::SocketAddr::new(coip, 30080);
    let ns = sim.internet_ns.path();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = floatip_lab::sim::traffic::request_once_with(
            ns.clone(),
            to,
            Proto::Tcp,
            Duration::from_millis(500),
        )
        .await;
        if got.as_deref() == Ok(holder.node.as_str()) {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the on-premises client got {got:?}, not an answer from {}",
                holder.node
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = sim.kubectl(&["delete", "fip", "onprem", "--timeout=30s"], None)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = sim.associated_eni(&id).await?;
    assert!(left.is_empty(), "still associated with {left:?}");
    Ok(())
}

#[test]
fn every_address_kind_is_refused_when_ec2_would_refuse_and_survives_failures_and_a_drain() {
    let name = "every_address_kind";
    if let Some(why) = net::unavailable() {
        eprintln!("SKIP {name}: the simulated VPC {why}");
        return;
    }
    let bins = binaries();
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&logs);
    let opts = Options {
        log_dir: Some(logs.clone()),
        flavors: Flavor::ALL.to_vec(),
        ..Options::default()
    };
    let result = isolated(move |infra| async move {
        let mut sim = Sim::start(&infra, bins, opts).await?;
        refusals(&sim).await.context("refusals")?;
        customer_owned(&sim).await.context("customer-owned IP")?;
        service_dies(&mut sim).await.context("service dies")?;
        node_dies(&mut sim).await.context("node dies")?;
        drained(&mut sim).await.context("drain")?;
        sim.settle(Duration::from_secs(30)).await?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e:#} (logs in {})", logs.display());
    }
}
