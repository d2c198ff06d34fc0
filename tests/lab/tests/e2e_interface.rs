//! End to end for Interface mode (issue 18): "web-eni" is the primary address of an ENI of its
//! own, named in the FloatingIP and moved whole (detach, then attach) under the lab's
//! attachment delays (short ones, for CI). One simulation runs three scenarios one after the
//! other: the holder's service dies, the holder node dies, the holder is cordoned and drained.
//! Throughout, a watcher reads EC2 every 50 ms: the ENI is never on two instances. After each:
//! the address left the failed node, answers its client from the new holder, status equals
//! EC2 and shows the ENI attached, with the detach's and the attach's times. While the dead
//! node is down, a second FloatingIP that names no ENI is applied: the revived node's
//! `floatip attach` makes its ENI, the controller places it, and deleting it deletes the ENI.
//! Root only (network namespaces).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use floatip::api::{AttachmentPhase, FloatingIP};
use floatip_lab::ec2::EniDelays;
use floatip_lab::sim::flavor::{instances_with_eni, Flavor};
use floatip_lab::sim::traffic::{outage, Proto, Traffic};
use floatip_lab::sim::{isolated, net, Binaries, Options, Sim};

const ENI: Flavor = Flavor::Interface;

fn binaries() -> Binaries {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_floatip-lab"));
    Binaries::beside(lab.clone(), false)
        .or_else(|_| Binaries::beside(lab, true))
        .expect("the floatip binary")
}

/// Reads EC2 every 50 ms for the instances the ENI is on; remembers every read that found
/// more than one.
struct AttachmentWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(u64, Vec<Vec<String>>)>>,
}

impl AttachmentWatch {
    fn start(sim: &Sim) -> Result<Self> {
        let eni = sim.flavor(ENI)?.eni.clone().context("web-eni has no ENI")?;
        let ec2 = sim.direct.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((0, Vec::new())));
        let (s, seen2) = (stop.clone(), seen.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Ok(on) = instances_with_eni(&ec2, &eni).await {
                    let mut seen = seen2.lock().unwrap();
                    seen.0 += 1;
                    if on.len() > 1 {
                        seen.1.push(on);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Ok(Self { stop, seen })
    }

    /// The reads so far; an error if one found the ENI on two instances.
    fn check(&self) -> Result<u64> {
        let seen = self.seen.lock().unwrap();
        if let Some(two) = seen.1.first() {
            bail!("EC2 showed the ENI on {two:?} at once");
        }
        if seen.0 == 0 {
            bail!("the watcher never read EC2");
        }
        Ok(seen.0)
    }
}

impl Drop for AttachmentWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn holder(f: &FloatingIP) -> Option<String> {
    f.status.as_ref()?.holder.as_ref().map(|h| h.node.clone())
}

/// Waits until web-eni is held by a node other than `from`; returns the move's reason.
async fn left(sim: &Sim, from: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let f = sim.fip_named(ENI.name()).await?;
        if holder(&f).is_some_and(|h| h != from) {
            let last = f.status.and_then(|s| s.last_move).context("no lastMove")?;
            return Ok(last.reason.as_str().to_string());
        }
        if std::time::Instant::now() > deadline {
            bail!("web-eni did not leave {from} within 40 s: {:?}", f.status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the traffic and prints its outage since `from`; returns the failed requests.
fn stop(t: Traffic, from: SystemTime) -> usize {
    let attempts = t.stop();
    let mut failed = 0;
    for proto in [Proto::Tcp, Proto::Udp] {
        let o = outage(&attempts, proto, from);
        println!(
            "  {proto:?}: {} requests, {} failed, outage {} ms",
            o.requests,
            o.failed,
            o.report()
                .outage_ms
                .map_or("unrecovered".into(), |ms| ms.to_string())
        );
        failed += o.failed;
    }
    failed
}

/// Settled on a new node: status equals EC2, the client is answered there, the invariants of
/// the address hold and the watcher never saw the ENI twice.
async fn after_move(sim: &Sim, watch: &AttachmentWatch, from: &str) -> Result<String> {
    let to = sim.settle_flavor(ENI, Duration::from_secs(40)).await?;
    if to == from {
        bail!("web-eni settled back on {from}");
    }
    let r = sim.check_invariants_for(ENI)?;
    let reads = watch.check()?;
    // The read-back follows the arrival: wait for it to say Attached.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let phases = loop {
        let f = sim.fip_named(ENI.name()).await?;
        let i = f
            .status
            .and_then(|s| s.interface)
            .context("no status.interface")?;
        if i.phase == AttachmentPhase::Attached {
            break i;
        }
        if std::time::Instant::now() > deadline {
            bail!("status.interface is {i:?}, not Attached");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (detach, attach) = (phases.detach_ms, phases.attach_ms);
    println!("  status.interface: Attached; detach {detach:?} ms, attach {attach:?} ms");
    if detach.is_none() || attach.is_none() {
        bail!("a move from a holder reports both times: {phases:?}");
    }
    println!(
        "  on {to}; {reads} reads of EC2 never saw the ENI on two instances; longest on two live nodes {} ms (bound {} ms)",
        r.longest_overlap.as_millis(),
        r.bound.as_millis()
    );
    Ok(to)
}

async fn service_dies(sim: &mut Sim, watch: &AttachmentWatch) -> Result<()> {
    let from = sim.settle_flavor(ENI, Duration::from_secs(40)).await?;
    println!("service dies on {from}");
    let t = sim.traffic_for(ENI)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = SystemTime::now();
    sim.set_service(&from, false)?;
    let reason = left(sim, &from).await?;
    assert_eq!(reason, "HolderUnhealthy");
    after_move(sim, watch, &from).await?;
    assert!(stop(t, start) > 0, "the client saw the service die");
    sim.set_service(&from, true)?;
    Ok(())
}

async fn node_dies(sim: &mut Sim, watch: &AttachmentWatch) -> Result<()> {
    let from = sim.settle_flavor(ENI, Duration::from_secs(40)).await?;
    println!("node {from} dies");
    let t = sim.traffic_for(ENI)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = SystemTime::now();
    sim.kill_node(&from)?;
    let reason = left(sim, &from).await?;
    assert!(
        reason == "HolderUnhealthy" || reason == "NodeNotReady",
        "{reason}"
    );
    after_move(sim, watch, &from).await?;
    assert!(stop(t, start) > 0, "the client saw the node die");
    made_by_attach(sim, &from).await
}

/// A FloatingIP that names no ENI gets one from `floatip attach` (here the dead node's, as it
/// comes back), tagged with the cluster and its name; deleting the FloatingIP deletes it.
async fn made_by_attach(sim: &mut Sim, dead: &str) -> Result<()> {
    let address = sim.free_address(false, &[]).await?;
    let manifest = floatip_lab::sim::flavor::floating_ip_yaml(
        "made",
        "Interface",
        address,
        &sim.subnet.clone(),
        "",
        sim.opts.min_hold_seconds,
    );
    let out = sim.kubectl(&["apply", "-f", "-"], Some(&manifest))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let f = sim.fip_named("made").await?;
    if holder(&f).is_some() {
        bail!("placed before any ENI existed: {:?}", f.status);
    }
    println!("made: no ENI yet, not placed; {dead} comes back and runs floatip attach");
    sim.revive_node(dead)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let held = loop {
        let f = sim.fip_named("made").await?;
        if let Some(h) = f.status.and_then(|s| s.holder) {
            break h;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "made was never placed: {:?}",
                sim.fip_named("made").await?.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let eni = held.network_interface_id.context("no ENI in the holder")?;
    let out = (sim.direct.describe_network_interfaces())
        .network_interface_ids(&eni)
        .send()
        .await?;
    let ni = out.network_interfaces().first().context("the ENI")?;
    let tags: Vec<(String, String)> = (ni.tag_set().iter())
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    println!("made: on {} with {eni}, tags {tags:?}", held.node);
    let want = |k: &str, v: &str| tags.contains(&(k.to_string(), v.to_string()));
    if !want("floatip.io/cluster", "lab") || !want("floatip.io/floatingip", "made") {
        bail!("{eni} is not tagged as floatip's: {tags:?}");
    }
    if ni.private_ip_address() != Some(address.to_string().as_str()) {
        bail!(
            "{eni}'s primary address is {:?}, not {address}",
            ni.private_ip_address()
        );
    }
    let out = sim.kubectl(&["delete", "fip", "made", "--timeout=60s"], None)?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let left = (sim.direct.describe_network_interfaces())
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:floatip.io/floatingip")
                .values("made")
                .build(),
        )
        .send()
        .await?;
    if !left.network_interfaces().is_empty() {
        bail!(
            "the FloatingIP's ENI outlived it: {:?}",
            left.network_interfaces()
        );
    }
    Ok(())
}

/// Cordoned and drained: the ENI leaves before the node goes. A whole ENI is on no instance
/// between its detach and its attach, so unlike SecondaryIP this move is not lossless; the
/// outage is printed, not bounded.
async fn drained(sim: &mut Sim, watch: &AttachmentWatch) -> Result<()> {
    let from = sim.settle_flavor(ENI, Duration::from_secs(40)).await?;
    println!("{from} cordoned and drained");
    let t = sim.traffic_for(ENI)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = SystemTime::now();
    let out = sim.kubectl(&["cordon", &from], None)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reason = left(sim, &from).await?;
    assert_eq!(reason, "NodeCordoned");
    after_move(sim, watch, &from).await?;
    stop(t, start);
    Ok(())
}

#[test]
fn an_interface_mode_address_moves_its_eni_whole_on_failures_and_a_drain() {
    let name = "interface_mode";
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
        flavors: vec![Flavor::SecondaryIp, ENI],
        // Short, for CI: the bench runs the realistic defaults.
        eni_delays: EniDelays {
            attach_ms: 300,
            detach_ms: 500,
        },
        ..Options::default()
    };
    let result = isolated(move |infra| async move {
        let mut sim = Sim::start(&infra, bins, opts).await?;
        let watch = AttachmentWatch::start(&sim)?;
        service_dies(&mut sim, &watch)
            .await
            .context("service dies")?;
        node_dies(&mut sim, &watch).await.context("node dies")?;
        drained(&mut sim, &watch).await.context("drain")?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e:#} (logs in {})", logs.display());
    }
}
