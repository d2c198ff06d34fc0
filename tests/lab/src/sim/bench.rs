//! Failovers, measured from the client's side: `floatip-lab bench failover`.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde_json::json;

use std::net::IpAddr;

use floatip::api::FloatingIP;

use super::flavor::Flavor;
use super::keepalived::{self, Baseline};
use super::scale;
use super::timeline::{before, field, Failover};
use super::traffic::{outage, Proto, Traffic};
use super::{Binaries, Options, Sim};

/// What breaks the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Failure {
    /// The service's pod on the holder stops (TCP refused, UDP port unreachable).
    ServiceDies,
    /// The holder node dies: its links go down and its agent is gone.
    NodeDies,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Self::ServiceDies => "service-dies",
            Self::NodeDies => "node-dies",
        }
    }
}

/// One measured failover and the mutating EC2 calls it took.
#[derive(Debug, Clone)]
pub struct Measured {
    pub timeline: Failover,
    pub mutating_calls: u64,
    /// The TCP outage of each address that moved: the measured kind's, then each companion's
    /// ([`scale`]).
    pub address_outages: Vec<Duration>,
}

/// Waits until the client is answered by `to` (TCP), at most 30 s.
pub(super) async fn answered_by(traffic: &Traffic, since: SystemTime, to: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = traffic
            .snapshot()
            .iter()
            .any(|a| a.proto == Proto::Tcp && a.sent > since && a.result.as_deref() == Ok(to));
        if answered {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the client got no answer from {to} within 30 s of the move");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn holder_of(f: &FloatingIP) -> Option<String> {
    Some(f.status.as_ref()?.holder.as_ref()?.node.clone())
}

impl Sim {
    /// Breaks the holder of "web", waits for the address to move and the client to get
    /// answers again, and measures every step; see [`Sim::measure_failover_of`].
    pub async fn measure_failover(&mut self, failure: Failure) -> Result<Measured> {
        self.measure_failover_of(failure, Flavor::SecondaryIp).await
    }

    /// Breaks the holder of `kind`'s address, waits for the address to move and the kind's
    /// client to get answers again, and measures every step. The client sends TCP and UDP
    /// requests every 10 ms throughout.
    pub async fn measure_failover_of(
        &mut self,
        failure: Failure,
        kind: Flavor,
    ) -> Result<Measured> {
        let from = self.settle_flavor(kind, Duration::from_secs(60)).await?;
        self.settle_companions(&from, Duration::from_secs(60))
            .await?;
        let calls_before = self.ec2_mutating()?;
        let traffic = match kind {
            Flavor::SecondaryIp => self.traffic(),
            _ => self.traffic_for(kind)?,
        };
        let companions = self.companion_traffic();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let injected = SystemTime::now();
        match failure {
            Failure::ServiceDies => self.set_service(&from, false)?,
            Failure::NodeDies => self.kill_node(&from)?,
        }
        let f = self
            .wait_fip_named(kind.name(), "the move away from the failed holder", |f| {
                holder_of(f).is_some_and(|h| h != from)
            })
            .await?;
        let to = holder_of(&f).unwrap_or_default();
        answered_by(&traffic, injected, &to).await?;
        if let Some(companions) = &companions {
            scale::all_moved(companions, injected, &from).await?;
        }
        // The old holder's release delay and the VPC's tail, then the verdict.
        tokio::time::sleep(self.opts.release_delay + Duration::from_millis(500)).await;
        let attempts = traffic.stop();
        let others = companions.map(Traffic::stop).unwrap_or_default();
        self.settle_flavor(kind, Duration::from_secs(30)).await?;
        let reason = f
            .status
            .as_ref()
            .and_then(|s| s.last_move.as_ref())
            .map(|m| m.reason.as_str().to_string())
            .unwrap_or_default();
        let mut timeline = Failover {
            scenario: failure.name().to_string(),
            from: from.clone(),
            to: to.clone(),
            reason,
            injected,
            first_failed_probe: None,
            detected: None,
            address_down: None,
            confirmed: None,
            decided: None,
            ec2: Vec::new(),
            agent: None,
            routed: None,
            tcp: outage(&attempts, Proto::Tcp, injected),
            udp: outage(&attempts, Proto::Udp, injected),
        };
        self.fill_timeline(&mut timeline, kind, &f)?;
        let mutating_calls = self.ec2_mutating()? - calls_before;
        let address_outages = std::iter::once(timeline.tcp.duration)
            .chain(
                scale::outages(&others, injected)
                    .into_iter()
                    .map(|(_, d)| d),
            )
            .collect();
        Ok(Measured {
            timeline,
            mutating_calls,
            address_outages,
        })
    }

    /// Waits up to 60 s for FloatingIP `name` to satisfy `done`.
    async fn wait_fip_named(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&FloatingIP) -> bool,
    ) -> Result<FloatingIP> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let f = self.fip_named(name).await?;
            if done(&f) {
                return Ok(f);
            }
            if Instant::now() > deadline {
                bail!(
                    "{what}: {name} did not get there within 60 s: {:?}",
                    f.status
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Puts the failed node back in service after a measured failover and waits until the
    /// address may move again (minHoldSeconds) and the node passes its checks.
    pub async fn recover(&mut self, failure: Failure, node: &str) -> Result<()> {
        self.recover_of(failure, node, Flavor::SecondaryIp).await
    }

    /// [`Sim::recover`], then `kind` settled.
    pub async fn recover_of(&mut self, failure: Failure, node: &str, kind: Flavor) -> Result<()> {
        match failure {
            Failure::ServiceDies => self.set_service(node, true)?,
            Failure::NodeDies => self.revive_node(node)?,
        }
        // Two intervals for the success threshold, then the hold time.
        tokio::time::sleep(
            Duration::from_secs(u64::from(self.opts.min_hold_seconds)) + Duration::from_secs(2),
        )
        .await;
        self.settle_flavor(kind, Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// The decision, the detections (the address's check, the holder's own) and the first
    /// failed probe, from the controllers' logs.
    fn read_controller_logs(
        &self,
        t: &mut Failover,
        (address, holder): (&str, &str),
        move_line: &str,
    ) {
        for c in self.controllers.iter().flatten() {
            let lines = c.proc.log.lock().unwrap().clone();
            let Some(moved) = lines
                .iter()
                .find(|l| l.at >= t.injected && l.text.contains(move_line))
            else {
                continue;
            };
            // "... in 31 ms" ends the move's note: from the decision to its status write.
            let took = moved
                .text
                .split(" in ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|ms| ms.parse::<u64>().ok())
                .unwrap_or(0);
            t.decided = Some(before(moved.at, Duration::from_millis(took)));
            let down = |target: &str| {
                lines.iter().find(|l| {
                    l.at >= t.injected
                        && l.at <= moved.at
                        && l.text.contains("probe target changed health")
                        && field(&l.text, "to") == Some("Down")
                        && l.text.contains(target)
                })
            };
            let failing_from = |l: &super::procs::Line| {
                let failing = field(&l.text, "failing_ms").and_then(|v| v.parse().ok());
                before(l.at, Duration::from_millis(failing.unwrap_or(0)))
            };
            let (address_down, holder_down) = (down(address), down(holder));
            t.address_down = address_down.map(|l| l.at);
            t.detected = holder_down.or(address_down).map(|l| l.at);
            t.first_failed_probe = [address_down, holder_down]
                .into_iter()
                .flatten()
                .map(failing_from)
                .min();
        }
    }

    /// The first time an agent on another node published that it sees `from` down, after the
    /// failure: the second opinion the move waited for.
    fn read_agent_logs(&self, t: &mut Failover) {
        let down = format!("\"{}\": Down", t.from);
        t.confirmed = (self.nodes.iter())
            .filter(|n| n.name != t.from)
            .filter_map(|n| n.agent.as_ref())
            .filter_map(|agent| {
                let lines = agent.log.lock().unwrap();
                (lines.iter())
                    .find(|l| {
                        l.at >= t.injected
                            && l.text.contains("published the peer view")
                            && l.text.contains(&down)
                    })
                    .map(|l| l.at)
            })
            .min();
    }

    /// The EC2 calls the EC2 lab recorded that started at or after `since`: (action, started,
    /// answered).
    pub(super) fn ec2_calls_since(
        &self,
        since: SystemTime,
    ) -> Result<Vec<(String, SystemTime, SystemTime)>> {
        let since_ms = since.duration_since(SystemTime::UNIX_EPOCH)?.as_secs_f64() * 1000.0;
        let at = |ms: f64| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(ms / 1000.0);
        let calls = self.ec2_calls()?;
        let mut out = Vec::new();
        for c in calls["recent"].as_array().context("recent calls")? {
            let started = c["startedMs"].as_f64().unwrap_or(0.0);
            if started >= since_ms {
                let action = c["action"].as_str().unwrap_or("?").to_string();
                let finished = c["finishedMs"].as_f64().unwrap_or(started);
                out.push((action, at(started), at(finished)));
            }
        }
        Ok(out)
    }

    fn fill_timeline(&self, t: &mut Failover, kind: Flavor, f: &FloatingIP) -> Result<()> {
        let from_ip = self.node(&t.from)?.primary_ip.clone();
        let address: IpAddr = f.spec.address.parse()?;
        // Probe targets print as "TCP 10.99.8.100:30080" or "TCP [2600::1]:30080".
        let probed = match address {
            IpAddr::V4(a) => format!(" {a}:"),
            IpAddr::V6(a) => format!(" [{a}]:"),
        };
        let holder = format!(" {from_ip}:");
        let move_line = format!("moved {address} from {} to {}", t.from, t.to);
        self.read_controller_logs(t, (&probed, &holder), &move_line);
        self.read_agent_logs(t);
        t.ec2 = self.ec2_calls_since(t.injected)?;
        let to_index = self.node(&t.to)?.index;
        // What the client's address is routed by, and where a node configures the address
        // (an ElasticIP address is configured nowhere: the VPC translates it).
        let (changes, routed) = match kind {
            Flavor::SecondaryIp => (Some(self.changes.clone()), address),
            _ => {
                let fip = self.flavor(kind)?;
                let changes = fip.private().map(|_| fip.changes.clone());
                (changes, fip.target())
            }
        };
        t.agent = changes.and_then(|changes| {
            (changes.lock().unwrap().iter())
                .find(|c| c.at >= t.injected && c.node == to_index && c.present)
                .map(|c| c.at)
        });
        t.routed = (self.follower.seen.lock().unwrap().switches.iter())
            .find(|s| s.at >= t.injected && s.node == to_index && s.address == routed)
            .map(|s| s.at);
        Ok(())
    }
}

/// `floatip-lab bench failover` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Failovers per scenario.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// VPC convergence delay in milliseconds; repeat to compare (AWS: about 1200).
    #[arg(long = "convergence-ms", default_values_t = [1200])]
    pub convergence_ms: Vec<u64>,
    /// Milliseconds every EC2 call waits in the lab's EC2 before it is carried out: the round
    /// trip to the Region (the lab's EC2 answers in a few ms; AWS in tens to hundreds).
    #[arg(long = "ec2-latency-ms", default_value_t = 0)]
    pub ec2_latency_ms: u64,
    #[command(flatten)]
    pub eni: crate::ec2::EniDelays,
    /// Scenarios to run (default: all).
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Failure>,
    /// Address kinds to measure, one simulation each (default: secondary-ip). Another kind
    /// runs beside "web", kept off web's node, so that each failover moves it alone.
    #[arg(long = "mode", value_enum)]
    pub modes: Vec<Flavor>,
    /// Addresses on the failing node (secondary-ip only): with N > 1, N-1 FloatingIPs beside
    /// "web" on its node, all preferring the same nodes, and a client sending TCP to each
    /// every 20 ms; rows add the slowest address's outage and the spread across addresses.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub addresses: u16,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG timeline of the median failover of the first scenario here (per
    /// convergence delay, the delay is added to the name).
    #[arg(long)]
    pub svg: Option<std::path::PathBuf>,
    /// Where process logs go (a temporary folder by default).
    #[arg(long)]
    pub log_dir: Option<std::path::PathBuf>,
    /// Also measure a baseline in place of floatip, on a simulation of its own in the same
    /// run (SecondaryIP mode); repeat for several. Prints floatip/baseline ratios.
    #[arg(long = "baseline", value_enum)]
    pub baselines: Vec<Baseline>,
}

/// Percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summary of one scenario at one convergence delay.
#[derive(Debug, Clone)]
pub struct Summary {
    pub scenario: &'static str,
    pub mode: Flavor,
    pub convergence_ms: u64,
    pub ec2_latency_ms: u64,
    /// The baseline that stood in for floatip ([`keepalived`]); None for floatip.
    pub baseline: Option<&'static str>,
    /// Addresses on the failing node.
    pub addresses: usize,
    pub runs: Vec<Measured>,
}

impl Summary {
    fn sorted(&self, f: impl Fn(&Measured) -> f64) -> Vec<f64> {
        let mut v: Vec<f64> = self.runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn json(&self) -> serde_json::Value {
        let tcp = self.sorted(|m| m.timeline.tcp.duration.as_secs_f64() * 1000.0);
        let udp = self.sorted(|m| m.timeline.udp.duration.as_secs_f64() * 1000.0);
        let calls = self.sorted(|m| m.mutating_calls as f64);
        let slowest = self.sorted(slowest_ms);
        let mut every: Vec<f64> = (self.runs.iter())
            .flat_map(|m| m.address_outages.iter().map(|d| d.as_secs_f64() * 1000.0))
            .collect();
        every.sort_by(f64::total_cmp);
        let stats = |v: &[f64]| json!({"p50": percentile(v, 50.0), "p95": percentile(v, 95.0), "max": v.last().copied().unwrap_or(0.0)});
        json!({
            "scenario": self.scenario,
            "mode": self.mode.mode(),
            "convergenceMs": self.convergence_ms,
            "ec2LatencyMs": self.ec2_latency_ms,
            "baseline": self.baseline,
            "runs": self.runs.len(),
            "tcpOutageMs": stats(&tcp),
            "udpOutageMs": stats(&udp),
            "mutatingEc2CallsPerFailover": stats(&calls),
            "addresses": self.addresses,
            "slowestAddressOutageMs": stats(&slowest),
            "addressOutageMs": stats(&every),
            "samples": self.runs.iter().map(|m| json!({
                "from": m.timeline.from, "to": m.timeline.to, "reason": m.timeline.reason,
                "tcpOutageMs": m.timeline.tcp.duration.as_millis() as u64,
                "tcpFailed": m.timeline.tcp.failed,
                "tcpLastFailure": m.timeline.tcp.last_failure.as_ref().map(|(sent, why)| json!({
                    "sentMs": sent.duration_since(m.timeline.injected).unwrap_or_default().as_millis() as u64,
                    "error": why,
                })),
                "udpOutageMs": m.timeline.udp.duration.as_millis() as u64,
                "mutatingEc2Calls": m.mutating_calls,
                "ec2Actions": m.timeline.ec2.iter().map(|(action, _, _)| action).collect::<Vec<_>>(),
                "slowestAddressOutageMs": slowest_ms(m),
                "addressOutageMs": stats(&address_ms(m)),
                "timeline": m.timeline.points(),
            })).collect::<Vec<_>>(),
        })
    }

    /// With several addresses: a line on how long they were out, the slowest address of each
    /// run and all addresses of all runs.
    fn addresses_line(&self) -> Option<String> {
        if self.addresses < 2 {
            return None;
        }
        let slowest = self.sorted(slowest_ms);
        let mut every: Vec<f64> = self.runs.iter().flat_map(address_ms).collect();
        every.sort_by(f64::total_cmp);
        Some(format!(
            "    {} addresses: slowest address's TCP outage p50/p95/max {:.2}/{:.2}/{:.2} s; every address p50 {:.2} s, p95 {:.2} s\n",
            self.addresses,
            percentile(&slowest, 50.0) / 1000.0,
            percentile(&slowest, 95.0) / 1000.0,
            slowest.last().copied().unwrap_or(0.0) / 1000.0,
            percentile(&every, 50.0) / 1000.0,
            percentile(&every, 95.0) / 1000.0,
        ))
    }

    /// The run with the median TCP outage.
    pub fn median(&self) -> Option<&Measured> {
        let mut runs: Vec<&Measured> = self.runs.iter().collect();
        runs.sort_by_key(|m| m.timeline.tcp.duration);
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    }
}

/// The TCP outage of each address of one run in ms, in order.
fn address_ms(m: &Measured) -> Vec<f64> {
    let mut v: Vec<f64> = (m.address_outages.iter())
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The slowest address's TCP outage of one run in ms.
fn slowest_ms(m: &Measured) -> f64 {
    address_ms(m).last().copied().unwrap_or(0.0)
}

/// Prints the table header and rows.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = format!(
        "{:<22} {:<14} {:>11} {:>11} {:>5} {:>22} {:>22} {:>14}\n",
        "mode",
        "scenario",
        "convergence",
        "EC2 latency",
        "runs",
        "TCP outage p50/p95/max",
        "UDP outage p50/p95/max",
        "EC2 mutating"
    );
    for s in summaries {
        let tcp = s.sorted(|m| m.timeline.tcp.duration.as_secs_f64());
        let udp = s.sorted(|m| m.timeline.udp.duration.as_secs_f64());
        let calls = s.sorted(|m| m.mutating_calls as f64);
        let trio = |v: &[f64]| {
            format!(
                "{:.2}/{:.2}/{:.2} s",
                percentile(v, 50.0),
                percentile(v, 95.0),
                v.last().copied().unwrap_or(0.0)
            )
        };
        out.push_str(&format!(
            "{:<22} {:<14} {:>8} ms {:>8} ms {:>5} {:>22} {:>22} {:>7.1} (max {})\n",
            s.baseline.unwrap_or(s.mode.mode()),
            s.scenario,
            s.convergence_ms,
            s.ec2_latency_ms,
            s.runs.len(),
            trio(&tcp),
            trio(&udp),
            calls.iter().sum::<f64>() / calls.len().max(1) as f64,
            calls.last().copied().unwrap_or(0.0)
        ));
        out.extend(s.addresses_line());
    }
    out
}

/// Runs the benchmark: one simulation per convergence delay, `runs` failovers per scenario.
pub fn run(args: Args, bins: Binaries) -> Result<()> {
    let scenarios = if args.scenarios.is_empty() {
        vec![Failure::ServiceDies, Failure::NodeDies]
    } else {
        args.scenarios.clone()
    };
    let modes = if args.modes.is_empty() {
        vec![Flavor::SecondaryIp]
    } else {
        args.modes.clone()
    };
    if args.addresses > 1 && modes != [Flavor::SecondaryIp] {
        bail!(
            "--addresses puts SecondaryIP addresses beside web: it takes --mode secondary-ip only"
        );
    }
    if !args.baselines.is_empty() {
        keepalived::ensure_installed()?;
    }
    let mut summaries = Vec::new();
    for &mode in &modes {
        for &convergence_ms in &args.convergence_ms {
            let plan = Plan {
                mode,
                convergence_ms,
                ec2_latency_ms: args.ec2_latency_ms,
                addresses: usize::from(args.addresses),
                scenarios: scenarios.clone(),
                runs: args.runs,
                quiet: args.json,
            };
            summaries.extend(one_simulation(plan, &args, bins.clone())?);
        }
    }
    for &baseline in &args.baselines {
        for &convergence_ms in &args.convergence_ms {
            let plan = keepalived::Plan {
                baseline,
                convergence_ms,
                ec2_latency_ms: args.ec2_latency_ms,
                scenarios: scenarios.clone(),
                runs: args.runs,
                quiet: args.json,
                log_dir: (args.log_dir.as_ref())
                    .map(|d| d.join(format!("{}-convergence-{convergence_ms}", baseline.name()))),
            };
            summaries.extend(keepalived::one_simulation(plan, bins.clone())?);
        }
    }
    if let Some(path) = &args.svg {
        let several = args.convergence_ms.len() * modes.len() > 1;
        for s in summaries
            .iter()
            .filter(|s| s.scenario == scenarios[0].name() && s.baseline.is_none())
        {
            write_svg(path, s, several)?;
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summaries.iter().map(Summary::json).collect::<Vec<_>>())?
        );
    } else {
        print!("{}", table(&summaries));
        print!("{}", keepalived::ratios(&summaries));
    }
    Ok(())
}

/// The timeline of `s`'s median failover as an SVG at `path` (with the mode and the delay in
/// its name when there are several).
fn write_svg(path: &std::path::Path, s: &Summary, several: bool) -> Result<()> {
    let Some(m) = s.median() else {
        return Ok(());
    };
    let file = if several {
        let stem = (path.file_stem().and_then(|s| s.to_str())).unwrap_or("timeline");
        path.with_file_name(format!(
            "{stem}-{}-{}ms.svg",
            s.mode.name(),
            s.convergence_ms
        ))
    } else {
        path.to_path_buf()
    };
    let title = format!(
        "One failover ({}, {}), VPC convergence {} ms",
        s.mode.mode(),
        s.scenario,
        s.convergence_ms
    );
    std::fs::write(&file, m.timeline.svg(&title))?;
    eprintln!("{}", m.timeline.text());
    eprintln!("timeline written to {}", file.display());
    Ok(())
}

/// What one simulation measures.
#[derive(Debug, Clone)]
struct Plan {
    mode: Flavor,
    convergence_ms: u64,
    ec2_latency_ms: u64,
    addresses: usize,
    scenarios: Vec<Failure>,
    runs: usize,
    quiet: bool,
}

/// One simulation at one convergence delay, for one address kind.
fn one_simulation(plan: Plan, args: &Args, bins: Binaries) -> Result<Vec<Summary>> {
    let dir = format!("{}-convergence-{}", plan.mode.name(), plan.convergence_ms);
    let opts = Options {
        convergence: Duration::from_millis(plan.convergence_ms),
        ec2_latency: Duration::from_millis(plan.ec2_latency_ms),
        eni_delays: args.eni,
        log_dir: args.log_dir.as_ref().map(|d| d.join(dir)),
        ..Options::default()
    };
    super::isolated(move |infra| async move {
        let mut sim = Sim::start(&infra, bins, opts).await?;
        let result = measure(&mut sim, plan).await;
        result.map_err(|e| {
            let logs = sim.keep_logs().display().to_string();
            e.context(format!("benchmark run failed (logs kept in {logs})"))
        })
    })
}

/// Every run of every scenario on one simulation.
async fn measure(sim: &mut Sim, plan: Plan) -> Result<Vec<Summary>> {
    let kind = plan.mode;
    if kind != Flavor::SecondaryIp {
        let web = sim.settle(Duration::from_secs(60)).await?;
        sim.add_flavor_away_from(kind, &web).await?;
        // Placed just now: its first failover would wait out minHoldSeconds.
        sim.settle_flavor(kind, Duration::from_secs(60)).await?;
        let hold = Duration::from_secs(u64::from(sim.opts.min_hold_seconds));
        tokio::time::sleep(hold + Duration::from_secs(1)).await;
    }
    if plan.addresses > 1 {
        sim.add_companions(plan.addresses - 1).await?;
        // Placed just now: a failover would wait out minHoldSeconds.
        let hold = Duration::from_secs(u64::from(sim.opts.min_hold_seconds));
        tokio::time::sleep(hold + Duration::from_secs(1)).await;
    }
    let mut out = Vec::new();
    for failure in plan.scenarios {
        let mut summary = Summary {
            scenario: failure.name(),
            mode: kind,
            convergence_ms: plan.convergence_ms,
            ec2_latency_ms: plan.ec2_latency_ms,
            baseline: None,
            addresses: plan.addresses,
            runs: Vec::new(),
        };
        for run in 1..=plan.runs {
            let m = sim.measure_failover_of(failure, kind).await?;
            if !plan.quiet {
                eprintln!(
                    "{} {} convergence {} ms run {run}/{}: {} -> {}: TCP outage {} ms, UDP {} ms, {} mutating EC2 calls",
                    kind.mode(),
                    failure.name(),
                    plan.convergence_ms,
                    plan.runs,
                    m.timeline.from,
                    m.timeline.to,
                    m.timeline.tcp.duration.as_millis(),
                    m.timeline.udp.duration.as_millis(),
                    m.mutating_calls
                );
                if plan.addresses > 1 {
                    eprintln!(
                        "  {} addresses: the slowest was out {:.0} ms",
                        plan.addresses,
                        slowest_ms(&m)
                    );
                }
            }
            let from = m.timeline.from.clone();
            summary.runs.push(m);
            sim.recover_of(failure, &from, kind).await?;
        }
        out.push(summary);
    }
    sim.check_invariants()?;
    if kind != Flavor::SecondaryIp {
        sim.check_invariants_for(kind)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::traffic::Outage;

    fn run(tcp_ms: u64, companions_ms: &[u64]) -> Measured {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let tcp = Outage {
            duration: Duration::from_millis(tcp_ms),
            ..Outage::default()
        };
        let timeline = Failover {
            scenario: "node-dies".into(),
            from: "node-1".into(),
            to: "node-2".into(),
            reason: "HolderGone".into(),
            injected: t0,
            first_failed_probe: Some(ms(50)),
            address_down: Some(ms(390)),
            detected: Some(ms(400)),
            confirmed: None,
            decided: Some(ms(405)),
            ec2: vec![("AssignPrivateIpAddresses".into(), ms(410), ms(420))],
            agent: Some(ms(440)),
            routed: Some(ms(445)),
            tcp: tcp.clone(),
            udp: tcp,
        };
        let address_outages = std::iter::once(tcp_ms)
            .chain(companions_ms.iter().copied())
            .map(Duration::from_millis)
            .collect();
        Measured {
            timeline,
            mutating_calls: 1,
            address_outages,
        }
    }

    #[test]
    fn rows_say_what_was_measured_and_how_each_address_fared() {
        let s = Summary {
            scenario: "node-dies",
            mode: Flavor::SecondaryIp,
            convergence_ms: 0,
            ec2_latency_ms: 150,
            baseline: None,
            addresses: 3,
            runs: vec![run(500, &[520, 700]), run(450, &[460, 480])],
        };
        let row = s.json();
        assert_eq!(row["ec2LatencyMs"], 150);
        assert_eq!(row["baseline"], serde_json::Value::Null);
        assert_eq!(row["addresses"], 3);
        assert_eq!(row["slowestAddressOutageMs"]["max"], 700.0);
        assert_eq!(row["slowestAddressOutageMs"]["p50"], 480.0);
        assert_eq!(row["addressOutageMs"]["p50"], 480.0);
        assert_eq!(row["tcpOutageMs"]["max"], 500.0);
        assert_eq!(row["mutatingEc2CallsPerFailover"]["max"], 1.0);
        let sample = &row["samples"][0];
        assert_eq!(sample["slowestAddressOutageMs"], 700.0);
        assert_eq!(sample["ec2Actions"], json!(["AssignPrivateIpAddresses"]));
        let points = &sample["timeline"];
        for (point, at) in [
            ("down", 400.0),
            ("decided", 405.0),
            ("ec2Call", 410.0),
            ("agent", 440.0),
        ] {
            assert_eq!(points[point], at, "{point}");
        }
        let table = table(std::slice::from_ref(&s));
        assert!(table.contains("150 ms"), "{table}");
        assert!(
            table
                .contains("3 addresses: slowest address's TCP outage p50/p95/max 0.48/0.70/0.70 s"),
            "{table}"
        );
        let one = Summary { addresses: 1, ..s };
        assert!(!table_of(&one).contains("addresses:"));
    }

    fn table_of(s: &Summary) -> String {
        table(std::slice::from_ref(s))
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 95.0), 19.0);
        assert_eq!(percentile(&v, 100.0), 20.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
    }
}
