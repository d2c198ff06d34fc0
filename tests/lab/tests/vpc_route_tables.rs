//! The simulated VPC carries route-table routes (issue 18's RouteTable mode) by itself: EC2 is
//! driven through the EC2 lab's endpoint (as a controller would, so its calls are counted and
//! the router hears of them), the node is given the overlay address as its agent would, and
//! the client (in the `clients` table's subnet) must reach it through the route. One
//! simulation serves every check (CI time). The overlay addresses (10.200.0.10,
//! fd00:200::10) are outside the VPC's CIDRs and used nowhere else; traffic goes only to
//! namespaces the simulation created. Root only; skipped with a message otherwise.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter};
use floatip_lab::sim::service::NODE_PORT;
use floatip_lab::sim::traffic::{request_once_with, Proto};
use floatip_lab::sim::{ec2_client_with, isolated, net, Binaries, Options, Sim};

const OVERLAY: &str = "10.200.0.10";
const OVERLAY6: &str = "fd00:200::10";

fn binaries() -> Binaries {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_floatip-lab"));
    Binaries::beside(lab.clone(), false)
        .or_else(|_| Binaries::beside(lab, true))
        .expect("the floatip binary")
}

/// The id of the ENI at device index 0 of `node`'s instance.
async fn primary_eni(sim: &Sim, node: &str) -> Result<String> {
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
    Ok(eni.network_interface_id().context("id")?.to_string())
}

/// Polls a request of `proto` to `address` port 30080 from the client until `done` accepts
/// the answer.
async fn until(
    sim: &Sim,
    address: &str,
    proto: Proto,
    what: &str,
    done: impl Fn(&Result<String, String>) -> bool,
) -> Result<()> {
    let to = SocketAddr::new(address.parse()?, NODE_PORT);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Err(String::new());
    while Instant::now() < deadline {
        last = request_once_with(sim.client_ns.path(), to, proto, Duration::from_millis(500)).await;
        if done(&last) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what}: the {proto:?} client to {to} last got {last:?}")
}

async fn served_by(sim: &Sim, address: &str, proto: Proto, node: &str) -> Result<()> {
    until(sim, address, proto, &format!("{node} answers"), |r| {
        r.as_deref() == Ok(node)
    })
    .await
}

/// Dropped silently, as AWS drops it: the request times out (no ICMP error comes back).
async fn dropped(sim: &Sim, address: &str, why: &str) -> Result<()> {
    until(sim, address, Proto::Tcp, why, |r| {
        r.as_ref().is_err_and(|e| e.contains("timed out"))
    })
    .await
}

/// Puts `address` on `node`'s eth0 (`add`) or takes it off, as an agent would.
fn configure(sim: &Sim, node: &str, address: &str, add: bool) -> Result<()> {
    let verb = if add { "add" } else { "del" };
    let (family, len) = if address.contains(':') {
        ("-6 ", "128 nodad")
    } else {
        ("", "32")
    };
    let len = if add {
        len
    } else {
        &len[..len.find(' ').unwrap_or(len.len())]
    };
    sim.node(node)?
        .ns
        .ip(&format!("{family}addr {verb} {address}/{len} dev eth0"))?;
    Ok(())
}

async fn source_dest_check(ec2: &aws_sdk_ec2::Client, eni: &str, on: bool) -> Result<()> {
    ec2.modify_network_interface_attribute()
        .network_interface_id(eni)
        .source_dest_check(AttributeBooleanValue::builder().value(on).build())
        .send()
        .await?;
    Ok(())
}

/// Whether the router recorded `address` leading to node `index` (it applies a change before
/// recording it, so this waits up to 2 s).
async fn switched(sim: &Sim, address: &str, index: usize) -> bool {
    let address: IpAddr = address.parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let seen = (sim.follower.seen.lock().unwrap().switches.iter())
            .any(|s| s.address == address && s.node == index);
        if seen || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the router's route for `address` in the client's table starts with `want`
/// (the table the router's rule for the client's wire looks up).
async fn client_route(sim: &Sim, address: &str, want: &str) -> Result<()> {
    let family = if address.contains(':') { "-6 " } else { "" };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rule = sim
            .router
            .ip(&format!("{family}rule show iif rclient pref 900"))?;
        let table = rule
            .split_whitespace()
            .skip_while(|w| *w != "lookup")
            .nth(1)
            .with_context(|| format!("no table for the client: {rule:?}"))?
            .to_string();
        let route = sim
            .router
            .ip(&format!("{family}route show table {table} {address}"))?;
        if route.trim_start().starts_with(want) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the client's route to {address}: {route:?}, not {want}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn routes_follow_the_table(sim: &Sim) -> Result<()> {
    let ec2 = ec2_client_with(&sim.ec2_endpoint, RetryConfig::disabled());
    let table = sim.vpc.client_table.clone();
    let (eni1, eni2) = (
        primary_eni(sim, "node-1").await?,
        primary_eni(sim, "node-2").await?,
    );
    let before = sim.ec2_calls()?;
    configure(sim, "node-1", OVERLAY, true)?;
    ec2.create_route()
        .route_table_id(&table)
        .destination_cidr_block(format!("{OVERLAY}/32"))
        .network_interface_id(&eni1)
        .send()
        .await?;
    dropped(sim, OVERLAY, "node-1's source/dest check is on").await?;

    source_dest_check(&ec2, &eni1, false).await?;
    served_by(sim, OVERLAY, Proto::Tcp, "node-1").await?;
    served_by(sim, OVERLAY, Proto::Udp, "node-1").await?;
    assert!(
        switched(sim, OVERLAY, 1).await,
        "{OVERLAY} -> node-1 recorded"
    );

    source_dest_check(&ec2, &eni2, false).await?;
    configure(sim, "node-2", OVERLAY, true)?;
    ec2.replace_route()
        .route_table_id(&table)
        .destination_cidr_block(format!("{OVERLAY}/32"))
        .network_interface_id(&eni2)
        .send()
        .await?;
    served_by(sim, OVERLAY, Proto::Tcp, "node-2").await?;
    served_by(sim, OVERLAY, Proto::Udp, "node-2").await?;
    assert!(
        switched(sim, OVERLAY, 2).await,
        "{OVERLAY} -> node-2 recorded"
    );

    source_dest_check(&ec2, &eni2, true).await?;
    dropped(sim, OVERLAY, "node-2's source/dest check is back on").await?;
    // Dropped on the way in, not only its replies on the way out.
    client_route(sim, OVERLAY, "blackhole").await?;
    source_dest_check(&ec2, &eni2, false).await?;
    served_by(sim, OVERLAY, Proto::Tcp, "node-2").await?;

    ec2.delete_route()
        .route_table_id(&table)
        .destination_cidr_block(format!("{OVERLAY}/32"))
        .send()
        .await?;
    dropped(sim, OVERLAY, "the route is gone").await?;
    client_route(sim, OVERLAY, "blackhole").await?;

    // The router heard of each change from the EC2 lab, which counts them all as mutating
    // (the bench counts mutating calls per failover).
    let calls = sim.ec2_calls()?;
    let count = |c: &serde_json::Value, action: &str| c["actions"][action]["calls"].as_u64();
    for (action, n) in [
        ("CreateRoute", 1),
        ("ReplaceRoute", 1),
        ("DeleteRoute", 1),
        ("ModifyNetworkInterfaceAttribute", 4),
    ] {
        let made = count(&calls, action).unwrap_or(0) - count(&before, action).unwrap_or(0);
        assert_eq!(made, n, "{action}: {calls}");
        assert_eq!(
            calls["actions"][action]["mutating"], true,
            "{action}: {calls}"
        );
    }
    let mutating = |c: &serde_json::Value| c["mutating"].as_u64().unwrap_or(0);
    assert!(mutating(&calls) >= mutating(&before) + 7, "{calls}");
    configure(sim, "node-1", OVERLAY, false)?;
    configure(sim, "node-2", OVERLAY, false)?;
    Ok(())
}

async fn an_ipv6_route_follows_too(sim: &Sim) -> Result<()> {
    let ec2 = ec2_client_with(&sim.ec2_endpoint, RetryConfig::disabled());
    let table = sim.vpc.client_table.clone();
    let eni1 = primary_eni(sim, "node-1").await?;
    configure(sim, "node-1", OVERLAY6, true)?;
    ec2.create_route()
        .route_table_id(&table)
        .destination_ipv6_cidr_block(format!("{OVERLAY6}/128"))
        .network_interface_id(&eni1)
        .send()
        .await?;
    served_by(sim, OVERLAY6, Proto::Tcp, "node-1").await?;
    served_by(sim, OVERLAY6, Proto::Udp, "node-1").await?;
    // A route in a table the client's subnet is not associated with does not reach it.
    ec2.delete_route()
        .route_table_id(&table)
        .destination_ipv6_cidr_block(format!("{OVERLAY6}/128"))
        .send()
        .await?;
    ec2.create_route()
        .route_table_id(&sim.vpc.node_table)
        .destination_ipv6_cidr_block(format!("{OVERLAY6}/128"))
        .network_interface_id(&eni1)
        .send()
        .await?;
    dropped(sim, OVERLAY6, "the route is in the nodes' table only").await?;
    client_route(sim, OVERLAY6, "blackhole").await?;
    Ok(())
}

#[test]
fn the_router_follows_route_tables() {
    let name = "the_router_follows_route_tables";
    if let Some(why) = net::unavailable() {
        eprintln!("SKIP {name}: the simulated VPC {why}");
        return;
    }
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("vpc_route_tables")
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
        let sim = Sim::start(&infra, bins, opts).await?;
        routes_follow_the_table(&sim).await?;
        an_ipv6_route_follows_too(&sim).await?;
        // "web" went on untouched by all of it.
        sim.check_invariants()?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e:#} (logs in {})", logs.display());
    }
}
