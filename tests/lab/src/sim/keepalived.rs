//! keepalived as the baseline floatip is measured against (`bench failover --baseline`,
//! `bench soak --baseline`): what AWS users run when they have no load balancer, set up the
//! way they set it up, in the same simulated VPC, failed the same way, measured by the same
//! client.
//!
//! One keepalived (Debian's, 2.2.7) per candidate node, inside the node's namespace
//! (`ip netns exec`), with its configuration, scripts and pid files in a folder of its own:
//! - unicast VRRP between the nodes' primary addresses (a VPC carries no multicast); every
//!   node starts as BACKUP with its own priority (150, 125, 100, ...) and preempts, so the
//!   highest-priority healthy node holds the address;
//! - a `vrrp_script` that opens a TCP connection to the NodePort on the node's own address;
//! - the address as the instance's `virtual_ipaddress` on eth0: keepalived adds it when it
//!   becomes master and removes it when it becomes backup or faults (2.2.7 refuses an
//!   instance without one); `notify_master` takes the address in EC2
//!   (AssignPrivateIpAddresses with AllowReassignment onto the node's primary ENI, through
//!   the lab's EC2 endpoint, with boto3), which is what makes the VPC route it there;
//!   `notify_backup` and `notify_fault` only log. The primary ENI owns the address, so
//!   replies (local and DNATed ones) leave through eth0 with the default route and pass the
//!   source/dest check: no policy routing is needed.
//!
//! The two recipes ([`Recipe`]):
//! - `keepalived` (the usual one): VRRPv2, advert_int 1, check interval 1, fall 2, rise 2,
//!   `weight -N` with N larger than the spread of the priorities. A failing master only
//!   lowers its priority; the backups ignore its adverts and take over when their
//!   master-down timer (3 adverts plus skew) runs out.
//! - `keepalived-tuned`: VRRPv3, advert_int 0.2, check interval 1 (Debian's 2.2.7 takes
//!   whole seconds), fall 1, rise 2, and `weight 0`: a failing check puts the master in
//!   FAULT, it sends a priority-0 advert and the next node takes over after its skew time.
//!
//! Lab details that are not part of the recipe: the EC2 endpoint is on the infra namespace's
//! loopback (where floatip's controllers reach it too), so the notify script makes its call
//! from there; the lab's NodePort rules only cover traffic arriving at the node, so
//! [`output_nodeport`] adds kube-proxy's rule for the node's own connections; the ENI id is
//! written into the script (users read it from instance metadata).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use aws_sdk_ec2::types::Filter;

use super::bench::{answered_by, percentile, Failure, Measured, Summary};
use super::flavor::Flavor;
use super::procs::Proc;
use super::service::{NODE_PORT, POD_PORT};
use super::timeline::Failover;
use super::traffic::{outage, Proto};
use super::{Binaries, Options, Sim, REGION, VIP};

/// A baseline floatip is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// keepalived as AWS users usually set it up: VRRPv2, advert_int 1, fall 2, rise 2,
    /// weight -N.
    Keepalived,
    /// keepalived tuned for speed: VRRPv3, advert_int 0.2, fall 1, rise 2, weight 0.
    KeepalivedTuned,
}

/// One keepalived recipe: the settings that differ between the usual and the tuned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    pub vrrp_version: u8,
    /// advert_int as written in the configuration (seconds).
    pub advert_int: &'static str,
    /// The check's interval in whole seconds (keepalived 2.2.7 takes no less than 1).
    pub interval: u32,
    pub fall: u32,
    pub rise: u32,
    /// None for `weight -N` (N from the priorities, [`usual_weight`]); Some(0) for FAULT.
    pub weight: Option<i32>,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Self::Keepalived => "keepalived",
            Self::KeepalivedTuned => "keepalived-tuned",
        }
    }

    pub fn recipe(self) -> Recipe {
        match self {
            Self::Keepalived => Recipe {
                vrrp_version: 2,
                advert_int: "1",
                interval: 1,
                fall: 2,
                rise: 2,
                weight: None,
            },
            Self::KeepalivedTuned => Recipe {
                vrrp_version: 3,
                advert_int: "0.2",
                interval: 1,
                fall: 1,
                rise: 2,
                weight: Some(0),
            },
        }
    }
}

/// Node `index`'s (1-based) VRRP priority: 150, 125, 100, ... (at least 1). Far enough apart
/// that the backups' skew times differ by tens of milliseconds even at advert_int 0.2, so two
/// never become master together.
pub fn priority(index: usize) -> u8 {
    150usize.saturating_sub(25 * index.saturating_sub(1)).max(1) as u8
}

/// `weight -N` for `nodes` nodes: a failing master must fall below every healthy node, so N
/// exceeds the spread of the priorities (users write a number larger than their spread).
pub fn usual_weight(nodes: usize) -> i32 {
    -(i32::from(priority(1)) - i32::from(priority(nodes)) + 10)
}

/// What one node's keepalived needs to know.
#[derive(Debug, Clone)]
pub struct NodeConf {
    pub name: String,
    pub index: usize,
    pub primary_ip: String,
    /// The other nodes' primary addresses.
    pub peers: Vec<String>,
    pub check: PathBuf,
    pub notify: PathBuf,
}

/// keepalived.conf for one node.
pub fn render_config(recipe: Recipe, node: &NodeConf, nodes: usize) -> String {
    let weight = recipe.weight.unwrap_or_else(|| usual_weight(nodes));
    let mut c = String::new();
    let _ = writeln!(c, "global_defs {{");
    let _ = writeln!(c, "    router_id {}", node.name);
    let _ = writeln!(c, "    script_user root");
    let _ = writeln!(c, "    vrrp_version {}", recipe.vrrp_version);
    let _ = writeln!(c, "}}\n");
    let _ = writeln!(c, "vrrp_script nodeport_check {{");
    let _ = writeln!(c, "    script \"{}\"", node.check.display());
    let _ = writeln!(c, "    interval {}", recipe.interval);
    let _ = writeln!(c, "    timeout {}", recipe.interval);
    let _ = writeln!(c, "    fall {}", recipe.fall);
    let _ = writeln!(c, "    rise {}", recipe.rise);
    let _ = writeln!(c, "    weight {weight}");
    let _ = writeln!(c, "}}\n");
    let _ = writeln!(c, "vrrp_instance web {{");
    let _ = writeln!(c, "    state BACKUP");
    let _ = writeln!(c, "    interface eth0");
    let _ = writeln!(c, "    virtual_router_id 51");
    let _ = writeln!(c, "    priority {}", priority(node.index));
    let _ = writeln!(c, "    advert_int {}", recipe.advert_int);
    let _ = writeln!(c, "    unicast_src_ip {}", node.primary_ip);
    let _ = writeln!(c, "    unicast_peer {{");
    for p in &node.peers {
        let _ = writeln!(c, "        {p}");
    }
    let _ = writeln!(c, "    }}");
    let _ = writeln!(
        c,
        "    virtual_ipaddress {{\n        {VIP}/32 dev eth0\n    }}"
    );
    let _ = writeln!(c, "    track_script {{\n        nodeport_check\n    }}");
    for state in ["master", "backup", "fault"] {
        let _ = writeln!(
            c,
            "    notify_{state} \"{} {state}\"",
            node.notify.display()
        );
    }
    let _ = writeln!(c, "}}");
    c
}

/// The vrrp_script: a TCP connection to the NodePort on the node's own address, 1 s at most.
pub fn render_check(primary_ip: &str) -> String {
    format!(
        "#!/bin/bash\n\
         # Healthy when the NodePort accepts a TCP connection.\n\
         exec timeout 1 bash -c ': < /dev/tcp/{primary_ip}/{NODE_PORT}'\n"
    )
}

/// Where the notify script makes its EC2 call from, and with what.
#[derive(Debug, Clone)]
pub struct Ec2Call {
    /// The infra namespace's name (the EC2 endpoint is on its loopback).
    pub infra: String,
    pub python: PathBuf,
    pub assign: PathBuf,
    pub endpoint: String,
    pub eni: String,
}

/// The notify script: `master` takes the address in EC2 (keepalived has added it on eth0
/// already); every run is logged with its time in milliseconds ([`transitions`]).
pub fn render_notify(call: &Ec2Call, log: &Path) -> String {
    format!(
        "#!/bin/bash\n\
         # keepalived notify: $1 is the new state (master, backup or fault).\n\
         PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         echo \"$(date +%s%3N) $1\" >> {log}\n\
         case \"$1\" in\n\
         master)\n\
         \x20   ip netns exec {infra} {python} {assign} {endpoint} {eni} {VIP} {REGION} >> {log} 2>&1\n\
         \x20   ;;\n\
         esac\n\
         exit 0\n",
        log = log.display(),
        infra = call.infra,
        python = call.python.display(),
        assign = call.assign.display(),
        endpoint = call.endpoint,
        eni = call.eni,
    )
}

/// The EC2 call of notify_master: arguments endpoint, ENI, address.
pub const ASSIGN_PY: &str = "\
\"\"\"notify_master's EC2 call: the address onto this node's ENI, off whichever had it.\"\"\"
import sys

import boto3

endpoint, eni, address = sys.argv[1:4]
ec2 = boto3.client(
    \"ec2\",
    endpoint_url=endpoint,
    region_name=sys.argv[4] if len(sys.argv) > 4 else \"us-west-2\",
    aws_access_key_id=\"keepalived\",
    aws_secret_access_key=\"lab\",
)
ec2.assign_private_ip_addresses(
    NetworkInterfaceId=eni, PrivateIpAddresses=[address], AllowReassignment=True
)
print(\"assigned\", address, \"to\", eni)
";

/// The state changes a notify log records, as (when, state), in order; other lines (the
/// EC2 call's output) are skipped.
pub fn transitions(log: &str) -> Vec<(SystemTime, String)> {
    log.lines()
        .filter_map(|l| {
            let (ms, state) = l.split_once(' ')?;
            let ms: u64 = ms.parse().ok()?;
            matches!(state, "master" | "backup" | "fault").then(|| {
                (
                    SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
                    state.to_string(),
                )
            })
        })
        .collect()
}

/// kube-proxy's rule for connections the node opens to its own NodePort (the lab's service
/// DNATs only what arrives from outside), for the check.
pub fn output_nodeport(primary_ip: &str, index: usize) -> String {
    format!(
        "table ip keepalived_nodeport {{\n\
         \x20   chain output {{\n\
         \x20       type nat hook output priority -100; policy accept;\n\
         \x20       ip daddr {primary_ip} tcp dport {NODE_PORT} dnat to 10.244.{index}.2:{POD_PORT}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Makes sure keepalived is installed (apt-get when root, as the lab installs its other
/// packages); one line saying what to do otherwise. Run before entering any namespace.
pub fn ensure_installed() -> Result<()> {
    if version().is_some() {
        return Ok(());
    }
    super::prepare::apt_install(
        &["keepalived"],
        "the keepalived baseline needs keepalived (Debian package keepalived)",
    )?;
    if version().is_none() {
        bail!("keepalived is still not runnable after installing it: check `keepalived --version`");
    }
    Ok(())
}

fn version() -> Option<String> {
    let out = Command::new("keepalived").arg("--version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.starts_with("Keepalived v"))
        .map(String::from)
}

/// One node's running keepalived.
struct Daemon {
    proc: Proc,
    vrrp_pid: PathBuf,
}

impl Daemon {
    /// SIGKILL for the VRRP child, then the parent: the node dies, no priority-0 advert.
    fn kill9(mut self) {
        let child = std::fs::read_to_string(&self.vrrp_pid)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        // Only while it is still this daemon's child: a pid file outlives its process.
        if let Some(pid) = child.filter(|&pid| parent_of(pid) == Some(self.proc.pid())) {
            // SAFETY: kill(2) of this keepalived's own VRRP child, checked just above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(&self.vrrp_pid);
        self.proc.kill9();
    }
}

/// The parent pid of process `pid`, from /proc.
fn parent_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_ppid(&status)
}

/// The PPid line of a /proc/<pid>/status text.
fn parse_ppid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// keepalived on every node of a simulation. Drop it before the simulation.
pub struct Keepalived {
    pub baseline: Baseline,
    dir: tempfile::TempDir,
    log_dir: PathBuf,
    /// Node name -> its primary ENI.
    pub enis: BTreeMap<String, String>,
    daemons: BTreeMap<String, Daemon>,
    echo: bool,
}

impl Keepalived {
    /// Writes every node's files and starts keepalived on each.
    pub async fn start(sim: &Sim, baseline: Baseline) -> Result<Self> {
        let venv = crate::venv::ensure(
            &crate::ec2::venv_root()?,
            &crate::ec2::python(),
            &crate::ec2::VENV,
        )
        .await?;
        let dir = tempfile::Builder::new().prefix("keepalived-").tempdir()?;
        let assign = dir.path().join("assign.py");
        std::fs::write(&assign, ASSIGN_PY)?;
        let enis = primary_enis(sim).await?;
        let mut k = Self {
            baseline,
            dir,
            log_dir: sim.log_dir.clone(),
            enis,
            daemons: BTreeMap::new(),
            echo: sim.opts.echo,
        };
        // The router answers ARP at once (network.rs): Linux's default proxy delay held the
        // first unicast adverts past the master-down timer, and every node became master.
        for node in &sim.nodes {
            node.ns
                .nft(&output_nodeport(&node.primary_ip, node.index))?;
            let call = Ec2Call {
                infra: sim.infra_name().to_string(),
                python: venv.python.clone(),
                assign: assign.clone(),
                endpoint: sim.ec2_endpoint.clone(),
                eni: k.enis.get(&node.name).cloned().unwrap_or_default(),
            };
            k.write_files(sim, &node.name, &call)?;
        }
        // The highest priority first, holding the address before the others start: a clean
        // start rather than an election race, as users bring nodes up one by one.
        let top = top_node(sim);
        k.start_node(sim, &top)?;
        k.settle(sim, Some(&top), Duration::from_secs(60)).await?;
        for name in sim.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>() {
            if name != top {
                k.start_node(sim, &name)?;
            }
        }
        Ok(k)
    }

    fn path(&self, name: &str, what: &str) -> PathBuf {
        self.dir.path().join(format!("{what}-{name}"))
    }

    /// The notify log of node `name` (kept with the simulation's logs).
    fn notify_log(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!(
            "keepalived-notify-{}-{name}.log",
            self.baseline.name()
        ))
    }

    fn write_files(&self, sim: &Sim, name: &str, call: &Ec2Call) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let node = sim.node(name)?;
        let check = self.path(name, "check.sh");
        let notify = self.path(name, "notify.sh");
        std::fs::write(&check, render_check(&node.primary_ip))?;
        std::fs::write(&notify, render_notify(call, &self.notify_log(name)))?;
        for f in [&check, &notify] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o700))?;
        }
        let conf = NodeConf {
            name: name.to_string(),
            index: node.index,
            primary_ip: node.primary_ip.clone(),
            peers: (sim.nodes.iter())
                .filter(|n| n.name != name)
                .map(|n| n.primary_ip.clone())
                .collect(),
            check,
            notify,
        };
        let text = render_config(self.baseline.recipe(), &conf, sim.nodes.len());
        std::fs::write(self.path(name, "keepalived.conf"), text)?;
        Ok(())
    }

    /// Starts keepalived (VRRP only, in the foreground) inside node `name`'s namespace.
    pub fn start_node(&mut self, sim: &Sim, name: &str) -> Result<()> {
        let ns = sim.node(name)?.ns.name.clone();
        let vrrp_pid = self.path(name, "vrrp.pid");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns,
            "keepalived",
            "--dont-fork",
            "--log-console",
        ])
        .args(["--log-detail", "--vrrp", "--use-file"])
        .arg(self.path(name, "keepalived.conf"))
        .arg("--pid")
        .arg(self.path(name, "keepalived.pid"))
        .arg("--vrrp_pid")
        .arg(&vrrp_pid)
        .arg("--checkers_pid")
        .arg(self.path(name, "checkers.pid"));
        let label = format!("{}-{name}", self.baseline.name());
        let proc =
            Proc::spawn(&label, cmd, &self.log_dir, self.echo).context("starting keepalived")?;
        self.daemons
            .insert(name.to_string(), Daemon { proc, vrrp_pid });
        Ok(())
    }

    /// Kills node `name`'s keepalived as the node's death would (SIGKILL).
    pub fn kill_node(&mut self, name: &str) {
        if let Some(d) = self.daemons.remove(name) {
            d.kill9();
        }
    }

    /// Every node's state changes, as (when, node, state).
    pub fn transitions(&self) -> Vec<(SystemTime, String, String)> {
        let mut all = Vec::new();
        for name in self.enis.keys() {
            let log = std::fs::read_to_string(self.notify_log(name)).unwrap_or_default();
            for (at, state) in transitions(&log) {
                all.push((at, name.clone(), state));
            }
        }
        all.sort();
        all
    }

    /// notify_master runs (failovers) since `since`, on any node.
    pub fn masters_since(&self, since: SystemTime) -> usize {
        (self.transitions().iter())
            .filter(|(at, _, state)| *at >= since && state == "master")
            .count()
    }

    /// The node whose primary ENI holds the address in EC2 (straight from moto), if one does.
    pub async fn holder(&self, sim: &Sim) -> Result<Option<String>> {
        let enis = sim.ec2_holders().await?;
        if enis.len() > 1 {
            bail!("EC2 has {VIP} on {enis:?} at once");
        }
        Ok(enis.first().and_then(|e| {
            (self.enis.iter())
                .find(|(_, id)| *id == e)
                .map(|(n, _)| n.clone())
        }))
    }

    /// Waits until EC2, the node and the client agree on a holder (`expected` if given).
    pub async fn settle(
        &self,
        sim: &Sim,
        expected: Option<&str>,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut why = String::new();
        while Instant::now() < deadline {
            match self.agreement(sim, expected).await {
                Ok(holder) => return Ok(holder),
                Err(e) => why = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{} did not settle within {timeout:?}: {why}",
            self.baseline.name()
        )
    }

    async fn agreement(&self, sim: &Sim, expected: Option<&str>) -> Result<String> {
        let holder = self
            .holder(sim)
            .await?
            .context("no ENI holds the address")?;
        if expected.is_some_and(|e| e != holder) {
            bail!("{holder} holds it, not {}", expected.unwrap_or_default());
        }
        if !sim.configured_on().contains(&sim.node(&holder)?.index) {
            bail!("{holder} does not have the address configured");
        }
        let answer = sim.request_once().await;
        if answer.as_deref().ok() != Some(holder.as_str()) {
            bail!("the client got {answer:?}, not an answer from {holder}");
        }
        Ok(holder)
    }

    /// Waits up to 60 s for EC2 to put the address on a node other than `from`.
    pub async fn wait_moved(&self, sim: &Sim, from: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(h) = self.holder(sim).await?.filter(|h| h != from) {
                return Ok(h);
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: the address did not leave {from} within 60 s",
                    self.baseline.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Breaks `from` as `failure` says.
    pub fn break_node(&mut self, sim: &mut Sim, failure: Failure, from: &str) -> Result<()> {
        match failure {
            Failure::ServiceDies => sim.set_service(from, false),
            Failure::NodeDies => {
                self.kill_node(from);
                sim.kill_node(from)
            }
        }
    }

    /// One measured failover, as [`Sim::measure_failover`] measures floatip's.
    pub async fn measure(&mut self, sim: &mut Sim, failure: Failure) -> Result<Measured> {
        let top = top_node(sim);
        let from = self
            .settle(sim, Some(&top), Duration::from_secs(60))
            .await?;
        let calls_before = sim.ec2_mutating()?;
        let traffic = sim.traffic();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let injected = SystemTime::now();
        self.break_node(sim, failure, &from)?;
        let to = self.wait_moved(sim, &from).await?;
        answered_by(&traffic, injected, &to).await?;
        tokio::time::sleep(sim.opts.release_delay + Duration::from_millis(500)).await;
        let attempts = traffic.stop();
        let mut timeline = Failover {
            scenario: failure.name().to_string(),
            from: from.clone(),
            to: to.clone(),
            reason: "vrrp".into(),
            injected,
            first_failed_probe: None,
            detected: None,
            address_down: None,
            confirmed: None,
            decided: (self.transitions().into_iter())
                .find(|(at, n, s)| *at >= injected && *n == to && s == "master")
                .map(|(at, _, _)| at),
            ec2: Vec::new(),
            agent: None,
            routed: None,
            tcp: outage(&attempts, Proto::Tcp, injected),
            udp: outage(&attempts, Proto::Udp, injected),
        };
        fill_points(sim, &mut timeline)?;
        let mutating_calls = sim.ec2_mutating()? - calls_before;
        Ok(Measured {
            address_outages: vec![timeline.tcp.duration],
            timeline,
            mutating_calls,
        })
    }

    /// Puts `node` back and waits until the highest-priority node holds the address again.
    pub async fn recover(&mut self, sim: &mut Sim, failure: Failure, node: &str) -> Result<()> {
        match failure {
            Failure::ServiceDies => sim.set_service(node, true)?,
            Failure::NodeDies => {
                sim.revive_node(node)?;
                self.start_node(sim, node)?;
            }
        }
        let top = top_node(sim);
        self.settle(sim, Some(&top), Duration::from_secs(60))
            .await?;
        // The preempting node's EC2 call and the VPC's tail.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        for (_, d) in std::mem::take(&mut self.daemons) {
            d.kill9();
        }
    }
}

/// The node with the highest priority: the holder whenever every node is healthy.
pub fn top_node(sim: &Sim) -> String {
    (sim.nodes.iter())
        .min_by_key(|n| n.index)
        .map(|n| n.name.clone())
        .unwrap_or_default()
}

/// Node name -> its primary ENI (device 0), from EC2.
async fn primary_enis(sim: &Sim) -> Result<BTreeMap<String, String>> {
    let out = sim
        .direct
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("subnet-id")
                .values(&sim.subnet)
                .build(),
        )
        .send()
        .await?;
    let mut enis = BTreeMap::new();
    for ni in out.network_interfaces() {
        let Some(att) = ni.attachment() else { continue };
        if att.device_index() != Some(0) {
            continue;
        }
        let node = (sim.nodes.iter()).find(|n| att.instance_id() == Some(n.instance.as_str()));
        if let (Some(node), Some(id)) = (node, ni.network_interface_id()) {
            enis.insert(node.name.clone(), id.to_string());
        }
    }
    if enis.len() != sim.nodes.len() {
        bail!("found the primary ENIs of {} nodes only", enis.len());
    }
    Ok(enis)
}

/// The EC2 calls since the failure, when the new node configured the address, when the VPC
/// routed it there.
fn fill_points(sim: &Sim, t: &mut Failover) -> Result<()> {
    t.ec2 = sim.ec2_calls_since(t.injected)?;
    let to = sim.node(&t.to)?.index;
    t.agent = (sim.changes.lock().unwrap().iter())
        .find(|c| c.at >= t.injected && c.node == to && c.present)
        .map(|c| c.at);
    let vip: std::net::IpAddr = VIP.parse()?;
    t.routed = (sim.follower.seen.lock().unwrap().switches.iter())
        .find(|s| s.at >= t.injected && s.node == to && s.address == vip)
        .map(|s| s.at);
    Ok(())
}

/// What one baseline simulation measures.
#[derive(Debug, Clone)]
pub struct Plan {
    pub baseline: Baseline,
    pub convergence_ms: u64,
    pub ec2_latency_ms: u64,
    pub scenarios: Vec<Failure>,
    pub runs: usize,
    pub quiet: bool,
    pub log_dir: Option<PathBuf>,
}

/// Starts a simulation without floatip and with `plan.baseline` on the nodes.
pub async fn start(
    infra: &super::net::Netns,
    bins: Binaries,
    baseline: Baseline,
    (convergence_ms, ec2_latency_ms): (u64, u64),
    log_dir: Option<PathBuf>,
) -> Result<(Sim, Keepalived)> {
    let opts = Options {
        convergence: Duration::from_millis(convergence_ms),
        ec2_latency: Duration::from_millis(ec2_latency_ms),
        log_dir,
        floatip: false,
        ..Options::default()
    };
    let mut sim = Sim::start(infra, bins, opts).await?;
    match Keepalived::start(&sim, baseline).await {
        Ok(k) => Ok((sim, k)),
        Err(e) => {
            let logs = sim.keep_logs().display().to_string();
            Err(e.context(format!("starting {} (logs in {logs})", baseline.name())))
        }
    }
}

/// Every run of every scenario with the baseline, on a simulation of its own.
pub fn one_simulation(plan: Plan, bins: Binaries) -> Result<Vec<Summary>> {
    super::isolated(move |infra| async move {
        let (mut sim, mut k) = start(
            &infra,
            bins,
            plan.baseline,
            (plan.convergence_ms, plan.ec2_latency_ms),
            plan.log_dir.clone(),
        )
        .await?;
        let result = measure_all(&mut sim, &mut k, &plan).await;
        drop(k);
        result.map_err(|e| {
            let logs = sim.keep_logs().display().to_string();
            e.context(format!("baseline run failed (logs kept in {logs})"))
        })
    })
}

async fn measure_all(sim: &mut Sim, k: &mut Keepalived, plan: &Plan) -> Result<Vec<Summary>> {
    let mut out = Vec::new();
    for &failure in &plan.scenarios {
        let mut summary = Summary {
            scenario: failure.name(),
            mode: Flavor::SecondaryIp,
            convergence_ms: plan.convergence_ms,
            ec2_latency_ms: plan.ec2_latency_ms,
            addresses: 1,
            baseline: Some(plan.baseline.name()),
            runs: Vec::new(),
        };
        for run in 1..=plan.runs {
            let m = k.measure(sim, failure).await?;
            if !plan.quiet {
                eprintln!(
                    "{} {} convergence {} ms run {run}/{}: {} -> {}: TCP outage {} ms, UDP {} ms, {} mutating EC2 calls",
                    plan.baseline.name(),
                    failure.name(),
                    plan.convergence_ms,
                    plan.runs,
                    m.timeline.from,
                    m.timeline.to,
                    m.timeline.tcp.duration.as_millis(),
                    m.timeline.udp.duration.as_millis(),
                    m.mutating_calls
                );
            }
            let from = m.timeline.from.clone();
            summary.runs.push(m);
            k.recover(sim, failure, &from).await?;
        }
        out.push(summary);
    }
    Ok(out)
}

/// The TCP outage p50 of a summary, in seconds.
fn tcp_p50(s: &Summary) -> f64 {
    let mut v: Vec<f64> = (s.runs.iter())
        .map(|m| m.timeline.tcp.duration.as_secs_f64())
        .collect();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

/// floatip's TCP outage p50 over each baseline's, per scenario and convergence delay: the
/// lines printed under the benchmark's table (nothing when no baseline ran).
pub fn ratios(summaries: &[Summary]) -> String {
    let mut out = String::new();
    for b in summaries.iter().filter(|s| s.baseline.is_some()) {
        let ours = summaries.iter().find(|s| {
            s.baseline.is_none()
                && s.mode == b.mode
                && s.scenario == b.scenario
                && s.convergence_ms == b.convergence_ms
        });
        let Some(ours) = ours else { continue };
        if out.is_empty() {
            out.push_str("\nfloatip/baseline, TCP outage p50:\n");
        }
        let (f, k) = (tcp_p50(ours), tcp_p50(b));
        let ratio = if k > 0.0 {
            format!("{:.2}", f / k)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "  {:<14} {:>5} ms  {:<17} {ratio:>5}  ({f:.2} s / {k:.2} s)",
            b.scenario,
            b.convergence_ms,
            b.baseline.unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> NodeConf {
        NodeConf {
            name: "node-2".into(),
            index: 2,
            primary_ip: "10.99.8.12".into(),
            peers: vec!["10.99.8.11".into(), "10.99.8.13".into()],
            check: "/k/check.sh-node-2".into(),
            notify: "/k/notify.sh-node-2".into(),
        }
    }

    #[test]
    fn priorities_are_far_apart_and_the_usual_weight_exceeds_their_spread() {
        assert_eq!((priority(1), priority(2), priority(3)), (150, 125, 100));
        assert_eq!(priority(9), 1);
        assert_eq!(usual_weight(3), -60);
        // A failing master falls below the lowest healthy node.
        assert!(i32::from(priority(1)) + usual_weight(3) < i32::from(priority(3)));
    }

    #[test]
    fn the_usual_recipe_is_vrrp2_with_fall_2_rise_2_and_a_negative_weight() {
        let c = render_config(Baseline::Keepalived.recipe(), &conf(), 3);
        for line in [
            "    vrrp_version 2",
            "    interval 1",
            "    fall 2",
            "    rise 2",
            "    weight -60",
            "    priority 125",
            "    advert_int 1",
            "    state BACKUP",
            "    interface eth0",
            "    unicast_src_ip 10.99.8.12",
            "        10.99.8.11",
            "        10.99.8.13",
            "        10.99.8.100/32 dev eth0",
            "    script \"/k/check.sh-node-2\"",
            "    notify_master \"/k/notify.sh-node-2 master\"",
            "    notify_backup \"/k/notify.sh-node-2 backup\"",
            "    notify_fault \"/k/notify.sh-node-2 fault\"",
        ] {
            assert!(c.lines().any(|l| l == line), "{line:?} missing from:\n{c}");
        }
        assert!(!c.contains("nopreempt"), "weight -N needs preemption");
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn the_tuned_recipe_is_vrrp3_every_200_ms_with_fall_1_and_weight_0() {
        let c = render_config(Baseline::KeepalivedTuned.recipe(), &conf(), 3);
        for line in [
            "    vrrp_version 3",
            "    advert_int 0.2",
            "    fall 1",
            "    rise 2",
            "    weight 0",
            "    interval 1",
        ] {
            assert!(c.lines().any(|l| l == line), "{line:?} missing from:\n{c}");
        }
    }

    #[test]
    fn notify_master_takes_the_address_in_ec2() {
        let call = Ec2Call {
            infra: "fipl1-0-infra".into(),
            python: "/v/bin/python".into(),
            assign: "/k/assign.py".into(),
            endpoint: "http://127.0.0.1:9".into(),
            eni: "eni-1".into(),
        };
        let s = render_notify(&call, Path::new("/l/notify.log"));
        let master = s.find("master)").expect("the master case");
        let assign = s
            .find("ip netns exec fipl1-0-infra /v/bin/python /k/assign.py http://127.0.0.1:9 eni-1 10.99.8.100 us-west-2")
            .expect("the EC2 call");
        assert!(master < assign);
        assert!(s.contains("echo \"$(date +%s%3N) $1\" >> /l/notify.log"));
        assert!(render_check("10.99.8.12").contains("/dev/tcp/10.99.8.12/30080"));
        assert!(ASSIGN_PY.contains("AllowReassignment=True"));
    }

    #[test]
    fn transitions_are_read_from_the_notify_log_and_masters_counted() {
        let log =
            "1000 backup\n2500 master\nassigned 10.99.8.100 to eni-1\nnot a line\n4000 fault\n";
        let t = transitions(log);
        let states: Vec<&str> = t.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(states, ["backup", "master", "fault"]);
        assert_eq!(t[1].0, SystemTime::UNIX_EPOCH + Duration::from_millis(2500));
    }

    #[test]
    fn the_vrrp_child_is_recognised_by_its_parent_pid() {
        let status = "Name:\tkeepalived\nState:\tS (sleeping)\nPid:\t42\nPPid:\t41\n";
        assert_eq!(parse_ppid(status), Some(41));
        assert_eq!(parse_ppid("Name:\tx\n"), None);
    }

    #[test]
    fn kube_proxys_output_rule_sends_the_nodes_own_check_to_its_pod() {
        let r = output_nodeport("10.99.8.11", 1);
        assert!(r.contains("type nat hook output priority -100;"));
        assert!(r.contains("ip daddr 10.99.8.11 tcp dport 30080 dnat to 10.244.1.2:8080"));
    }
}
