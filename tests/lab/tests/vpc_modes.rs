//! The simulated VPC carries issue 15's address kinds by itself: EC2 is driven directly (as a
//! controller would), the node is given the address as its agent would, and the router must
//! follow. One simulation serves every check (CI time): IPv6 routed and dropped, an Elastic IP
//! associated with a node's primary address and reassociated, and an Elastic IP that follows
//! its secondary address when the address moves with AllowReassignment. Traffic goes only to
//! addresses of namespaces the simulation created. Root only; skipped with a message otherwise.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_ec2::types::Filter;
use floatip_lab::sim::flavor::Flavor;
use floatip_lab::sim::traffic::Proto;
use floatip_lab::sim::{isolated, net, Binaries, Options, Sim};

fn binaries() -> Binaries {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_floatip-lab"));
    Binaries::beside(lab.clone(), false)
        .or_else(|_| Binaries::beside(lab, true))
        .expect("the floatip binary")
}

/// The ENI at device index 0 of `node`'s instance.
async fn primary_eni(sim: &Sim, node: &str) -> Result<(String, String)> {
    let instance = sim.node(node)?.instance.clone();
    let out = sim
        .direct
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&instance)
                .build(),
        )
        .send()
        .await?;
    let eni = out
        .network_interfaces()
        .iter()
        .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
        .with_context(|| format!("{node} has no primary ENI"))?;
    Ok((
        eni.network_interface_id().context("id")?.to_string(),
        eni.private_ip_address().context("primary")?.to_string(),
    ))
}

/// Polls a request of `proto` to `to` from `flavor`'s client until `done` accepts the answer.
async fn until_answer(
    sim: &Sim,
    flavor: Flavor,
    to: SocketAddr,
    proto: Proto,
    what: &str,
    done: impl Fn(&Result<String, String>) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Err(String::new());
    while Instant::now() < deadline {
        last = sim.request_from(flavor, to, proto).await;
        if done(&last) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what}: the {proto:?} client to {to} last got {last:?}")
}

async fn served_by(sim: &Sim, flavor: Flavor, proto: Proto, node: &str) -> Result<()> {
    let to = sim.target_of(flavor)?;
    until_answer(sim, flavor, to, proto, &format!("{node} answers"), |r| {
        r.as_deref() == Ok(node)
    })
    .await
}

async fn dropped(sim: &Sim, flavor: Flavor) -> Result<()> {
    let to = sim.target_of(flavor)?;
    until_answer(sim, flavor, to, Proto::Tcp, "dropped", |r| {
        r.as_ref().is_err_and(|e| e.contains("timed out"))
    })
    .await
}

/// Whether the router switched `address` to node `index` (the convergence delay after EC2).
/// Whether the router recorded `address` leading to node `index`, waiting up to 2 s: the
/// router applies a change before recording it, so traffic can reach the node an instant
/// before the record exists.
async fn switched(sim: &Sim, address: IpAddr, index: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let seen = sim
            .follower
            .seen
            .lock()
            .unwrap()
            .switches
            .iter()
            .any(|s| s.address == address && s.node == index);
        if seen || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts `address` on `node`'s eth0 (`add`) or takes it off, as an agent would.
fn configure(sim: &Sim, node: &str, address: IpAddr, add: bool) -> Result<()> {
    let (verb, len) = match (add, address.is_ipv4()) {
        (true, true) => ("add", "32"),
        (true, false) => ("add", "128 nodad"),
        (false, true) => ("del", "32"),
        (false, false) => ("del", "128"),
    };
    let family = if address.is_ipv4() { "" } else { "-6 " };
    sim.node(node)?
        .ns
        .ip(&format!("{family}addr {verb} {address}/{len} dev eth0"))?;
    Ok(())
}

async fn ipv6_is_routed_then_dropped_then_moved(sim: &mut Sim) -> Result<()> {
    let v6 = sim.prepare_flavor(Flavor::Ipv6).await?.address;
    let (eni1, _) = primary_eni(sim, "node-1").await?;
    let (eni2, _) = primary_eni(sim, "node-2").await?;
    sim.direct
        .assign_ipv6_addresses()
        .network_interface_id(&eni1)
        .ipv6_addresses(v6.to_string())
        .send()
        .await?;
    configure(sim, "node-1", v6, true)?;
    served_by(sim, Flavor::Ipv6, Proto::Tcp, "node-1").await?;
    served_by(sim, Flavor::Ipv6, Proto::Udp, "node-1").await?;
    assert!(
        switched(sim, v6, 1).await,
        "the router recorded {v6} -> node-1"
    );
    assert_eq!(sim.holder_nodes_for(Flavor::Ipv6).await?, ["node-1"]);

    sim.direct
        .unassign_ipv6_addresses()
        .network_interface_id(&eni1)
        .ipv6_addresses(v6.to_string())
        .send()
        .await?;
    dropped(sim, Flavor::Ipv6).await?;
    let route = sim.router.ip(&format!("-6 route show {v6}"))?;
    assert!(route.starts_with("blackhole"), "router: {route}");
    assert!(sim.ec2_holders_for(Flavor::Ipv6).await?.is_empty());

    sim.direct
        .assign_ipv6_addresses()
        .network_interface_id(&eni2)
        .ipv6_addresses(v6.to_string())
        .send()
        .await?;
    configure(sim, "node-1", v6, false)?;
    configure(sim, "node-2", v6, true)?;
    served_by(sim, Flavor::Ipv6, Proto::Tcp, "node-2").await?;
    served_by(sim, Flavor::Ipv6, Proto::Udp, "node-2").await?;
    let report = sim.check_invariants_for(Flavor::Ipv6)?;
    println!(
        "IPv6 {v6}: on no ENI for at most {} ms in EC2",
        report.longest_unheld.as_millis()
    );
    // The router dropped it only once EC2 had shown it on no ENI for the delay.
    assert!(report.longest_unheld >= sim.opts.convergence, "{report:?}");
    Ok(())
}

async fn elastic_ip_on_a_primary_address_is_reassociated(sim: &mut Sim) -> Result<()> {
    let fip = sim.prepare_flavor(Flavor::ElasticIp).await?;
    let (allocation, public) = fip.allocation.clone().map(|a| (a.id, a.public)).unzip();
    let (allocation, public) = (allocation.context("id")?, public.context("ip")?);
    dropped(sim, Flavor::ElasticIp).await?;
    for (index, node) in [(1, "node-1"), (2, "node-2")] {
        let (eni, primary) = primary_eni(sim, node).await?;
        sim.direct
            .associate_address()
            .allocation_id(&allocation)
            .network_interface_id(&eni)
            .private_ip_address(&primary)
            .allow_reassociation(true)
            .send()
            .await?;
        served_by(sim, Flavor::ElasticIp, Proto::Tcp, node).await?;
        served_by(sim, Flavor::ElasticIp, Proto::Udp, node).await?;
        assert!(
            switched(sim, public, index).await,
            "{public} -> {node} recorded"
        );
        assert_eq!(sim.holder_nodes_for(Flavor::ElasticIp).await?, [node]);
    }
    sim.check_invariants_for(Flavor::ElasticIp)?;
    Ok(())
}

async fn elastic_ip_follows_its_secondary_address(sim: &mut Sim) -> Result<()> {
    let fip = sim.prepare_flavor(Flavor::SecondaryIpElastic).await?;
    let (private, allocation) = (fip.address, fip.allocation.clone().context("EIP")?);
    let (eni1, _) = primary_eni(sim, "node-1").await?;
    let (eni2, _) = primary_eni(sim, "node-2").await?;
    sim.direct
        .assign_private_ip_addresses()
        .network_interface_id(&eni1)
        .private_ip_addresses(private.to_string())
        .send()
        .await?;
    configure(sim, "node-1", private, true)?;
    sim.direct
        .associate_address()
        .allocation_id(&allocation.id)
        .network_interface_id(&eni1)
        .private_ip_address(private.to_string())
        .send()
        .await?;
    served_by(sim, Flavor::SecondaryIpElastic, Proto::Tcp, "node-1").await?;
    sim.direct
        .assign_private_ip_addresses()
        .network_interface_id(&eni2)
        .private_ip_addresses(private.to_string())
        .allow_reassignment(true)
        .send()
        .await?;
    assert_eq!(
        sim.holder_nodes_for(Flavor::SecondaryIpElastic).await?,
        ["node-2"],
        "EC2 moved the Elastic IP with its address"
    );
    configure(sim, "node-1", private, false)?;
    configure(sim, "node-2", private, true)?;
    served_by(sim, Flavor::SecondaryIpElastic, Proto::Tcp, "node-2").await?;
    served_by(sim, Flavor::SecondaryIpElastic, Proto::Udp, "node-2").await?;
    assert!(
        switched(sim, allocation.public, 2).await,
        "public -> node-2 recorded"
    );
    sim.check_invariants_for(Flavor::SecondaryIpElastic)?;
    Ok(())
}

#[test]
fn the_router_follows_ipv6_and_elastic_ips() {
    let name = "the_router_follows_ipv6_and_elastic_ips";
    if let Some(why) = net::unavailable() {
        eprintln!("SKIP {name}: the simulated VPC {why}");
        return;
    }
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("vpc_modes")
        .join(name);
    let _ = std::fs::remove_dir_all(&logs);
    let opts = Options {
        nodes: 2,
        controllers: 1,
        log_dir: Some(logs.clone()),
        ..Options::default()
    };
    let bins = binaries();
    let result = isolated(move |infra| async move {
        let mut sim = Sim::start(&infra, bins, opts).await?;
        ipv6_is_routed_then_dropped_then_moved(&mut sim).await?;
        elastic_ip_on_a_primary_address_is_reassociated(&mut sim).await?;
        elastic_ip_follows_its_secondary_address(&mut sim).await?;
        // "web" went on untouched by all of it.
        sim.check_invariants()?;
        sim.settle(Duration::from_secs(30)).await?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e:#} (logs in {})", logs.display());
    }
}
