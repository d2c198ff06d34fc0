//! `floatip-lab bench soak`: random packet loss on the VPC's router, nothing failing, for
//! minutes; every move counted (floatip must make none). Then, with the same loss, the
//! holder node dies: the address must still move, and the client's outage is measured.
//! The keepalived baselines go through the same soak; their failovers (notify_master runs)
//! are counted beside floatip's moves, so speed and false moves are compared together.
//!
//! The loss: an nftables rule in the router's namespace drops each packet arriving on any of
//! its wires (nodes, client, infra, internet) with the given probability (`numgen random`;
//! these kernels have no netem). ARP is not IP and is not dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};
use serde_json::json;

use super::bench::Failure;
use super::keepalived::{self, Baseline, Keepalived};
use super::traffic::{Attempt, Proto, Traffic};
use super::{Binaries, Options, Sim};

/// `floatip-lab bench soak` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Packet loss on every router wire, in percent (0.01 steps).
    #[arg(long)]
    pub loss: f64,
    /// How long the soak lasts before the holder is killed.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Also soak a baseline (after floatip, each on a simulation of its own); repeat for several.
    #[arg(long = "baseline", value_enum)]
    pub baselines: Vec<Baseline>,
    /// Soak only the baselines given, not floatip.
    #[arg(long)]
    pub baselines_only: bool,
    /// VPC convergence delay in milliseconds.
    #[arg(long = "convergence-ms", default_value_t = 1200)]
    pub convergence_ms: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where process logs go (a temporary folder by default).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
}

/// The nftables table that drops `pct` percent of the packets arriving on the router's wires.
pub fn loss_ruleset(pct: f64) -> String {
    let per_10k = (pct * 100.0).round().clamp(0.0, 10_000.0) as u32;
    format!(
        "table inet floatip_lab_loss {{\n\
         \x20   chain prerouting {{\n\
         \x20       type filter hook prerouting priority raw; policy accept;\n\
         \x20       iifname != \"lo\" numgen random mod 10000 < {per_10k} drop\n\
         \x20   }}\n\
         }}\n"
    )
}

/// The longest time the client went without an answer: between the sends of two successive
/// answered requests (or from `from` to the first answer, or from the last answer to the last
/// request when the client was never answered again), among requests of `proto` sent at or
/// after `from`. Under random loss [`super::traffic::outage`] would run to the last lost
/// request; this keeps the failover's gap and ignores the isolated losses around it.
pub fn longest_gap(attempts: &[Attempt], proto: Proto, from: SystemTime) -> Duration {
    let mut list: Vec<&Attempt> = (attempts.iter())
        .filter(|a| a.proto == proto && a.sent >= from)
        .collect();
    list.sort_by_key(|a| a.sent);
    let mut last = from;
    let mut longest = Duration::ZERO;
    for a in list {
        longest = longest.max(a.sent.duration_since(last).unwrap_or_default());
        if a.result.is_ok() {
            last = a.sent;
        }
    }
    longest
}

/// What one soak saw.
#[derive(Debug, Clone, Default)]
pub struct Soaked {
    pub system: &'static str,
    pub loss_pct: f64,
    pub minutes: f64,
    /// Changes of holder seen during the soak (floatip: status.holder; keepalived: EC2).
    pub moves: usize,
    pub mutating_calls: u64,
    /// keepalived's notify_master runs during the soak.
    pub vrrp_masters: Option<usize>,
    /// Client requests (TCP and UDP, every 100 ms) that failed during the soak, in percent.
    pub client_failed_pct: f64,
    pub kill: Kill,
}

/// The holder killed after the soak, with the loss still on.
#[derive(Debug, Clone, Default)]
pub struct Kill {
    pub from: String,
    pub to: Option<String>,
    /// Whether the client was answered by the holder EC2 names within 30 s of the move
    /// (keepalived can leave EC2 on a node that went back to BACKUP: a black hole).
    pub answered: bool,
    pub tcp_gap: Duration,
    pub udp_gap: Duration,
    pub mutating_calls: u64,
    /// keepalived's notify_master runs after the kill.
    pub vrrp_masters: Option<usize>,
}

impl Soaked {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "system": self.system,
            "baseline": (self.system != "floatip").then_some(self.system),
            "lossPct": self.loss_pct,
            "minutes": self.minutes,
            "moves": self.moves,
            "mutatingEc2Calls": self.mutating_calls,
            "vrrpMasters": self.vrrp_masters,
            "clientFailedPct": (self.client_failed_pct * 100.0).round() / 100.0,
            "kill": {
                "from": self.kill.from,
                "to": self.kill.to,
                "moved": self.kill.to.is_some(),
                "answered": self.kill.answered,
                "vrrpMasters": self.kill.vrrp_masters,
                "tcpOutageMs": self.kill.tcp_gap.as_millis() as u64,
                "udpOutageMs": self.kill.udp_gap.as_millis() as u64,
                "mutatingEc2Calls": self.kill.mutating_calls,
            },
        })
    }
}

/// The soak's table.
pub fn table(rows: &[Soaked]) -> String {
    let mut out = format!(
        "{:<17} {:>6} {:>7} {:>6} {:>9} {:>12} {:>9}   {:<34} {:>9} {:>9} {:>9}\n",
        "system",
        "loss",
        "minutes",
        "moves",
        "EC2 mut.",
        "VRRP masters",
        "client ✗",
        "kill: from -> to",
        "TCP gap",
        "UDP gap",
        "EC2 mut."
    );
    for r in rows {
        let mut to = r.kill.to.clone().unwrap_or("(no move)".into());
        if r.kill.to.is_some() && !r.kill.answered {
            to.push_str(" (no answer)");
        }
        if let Some(m) = r.kill.vrrp_masters {
            to.push_str(&format!(" [{m} masters]"));
        }
        out.push_str(&format!(
            "{:<17} {:>5.1}% {:>7.1} {:>6} {:>9} {:>12} {:>8.1}%   {:<34} {:>7} ms {:>6} ms {:>9}\n",
            r.system,
            r.loss_pct,
            r.minutes,
            r.moves,
            r.mutating_calls,
            r.vrrp_masters.map_or("-".into(), |m| m.to_string()),
            r.client_failed_pct,
            format!("{} -> {to}", r.kill.from),
            r.kill.tcp_gap.as_millis(),
            r.kill.udp_gap.as_millis(),
            r.kill.mutating_calls,
        ));
    }
    out
}

/// Runs the soak for floatip (unless --baselines-only) and each baseline.
pub fn run(args: Args, bins: Binaries) -> Result<()> {
    if !(0.0..=100.0).contains(&args.loss) {
        bail!("--loss is a percentage: 0 to 100");
    }
    if !args.baselines.is_empty() {
        keepalived::ensure_installed()?;
    }
    let mut systems: Vec<Option<Baseline>> = Vec::new();
    if !args.baselines_only {
        systems.push(None);
    }
    systems.extend(args.baselines.iter().copied().map(Some));
    let mut rows = Vec::new();
    for system in systems {
        let plan = Plan {
            baseline: system,
            loss: args.loss,
            soak: Duration::from_secs_f64(args.minutes * 60.0),
            convergence_ms: args.convergence_ms,
            quiet: args.json,
            log_dir: (args.log_dir.as_ref())
                .map(|d| d.join(format!("soak-{}", system.map_or("floatip", Baseline::name)))),
        };
        rows.push(one(plan, bins.clone())?);
    }
    if args.json {
        let all: Vec<_> = rows.iter().map(Soaked::json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Plan {
    baseline: Option<Baseline>,
    loss: f64,
    soak: Duration,
    convergence_ms: u64,
    quiet: bool,
    log_dir: Option<PathBuf>,
}

/// The system under test: floatip's own processes, or a baseline in their place.
struct System {
    sim: Sim,
    keepalived: Option<Keepalived>,
}

impl System {
    async fn holder(&self) -> Result<Option<String>> {
        match &self.keepalived {
            Some(k) => k.holder(&self.sim).await,
            None => Ok(self.sim.holder().await),
        }
    }

    async fn settle(&self) -> Result<String> {
        let timeout = Duration::from_secs(60);
        match &self.keepalived {
            Some(k) => k.settle(&self.sim, None, timeout).await,
            None => self.sim.settle(timeout).await,
        }
    }
}

fn one(plan: Plan, bins: Binaries) -> Result<Soaked> {
    super::isolated(move |infra| async move {
        let mut system = match plan.baseline {
            Some(b) => {
                let (sim, k) = keepalived::start(
                    &infra,
                    bins,
                    b,
                    (plan.convergence_ms, 0),
                    plan.log_dir.clone(),
                )
                .await?;
                System {
                    sim,
                    keepalived: Some(k),
                }
            }
            None => {
                let opts = Options {
                    convergence: Duration::from_millis(plan.convergence_ms),
                    log_dir: plan.log_dir.clone(),
                    ..Options::default()
                };
                System {
                    sim: Sim::start(&infra, bins, opts).await?,
                    keepalived: None,
                }
            }
        };
        let result = soak(&mut system, &plan).await;
        let System {
            mut sim,
            keepalived,
        } = system;
        drop(keepalived);
        result.map_err(|e| {
            let logs = sim.keep_logs().display().to_string();
            e.context(format!("soak failed (logs kept in {logs})"))
        })
    })
}

async fn soak(system: &mut System, plan: &Plan) -> Result<Soaked> {
    let name = plan.baseline.map_or("floatip", Baseline::name);
    let mut holder = system.settle().await?;
    // Let the first placement's hold time and checks pass before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let say = |msg: String| {
        if !plan.quiet {
            eprintln!("{name}: {msg}");
        }
    };
    say(format!(
        "{} % loss on every router wire for {:.1} min; {holder} holds the address",
        plan.loss,
        plan.soak.as_secs_f64() / 60.0
    ));
    system.sim.router.nft(&loss_ruleset(plan.loss))?;
    let calls_before = system.sim.ec2_mutating()?;
    let started = SystemTime::now();
    let traffic = Traffic::start(
        system.sim.client_ns.path(),
        format!("{}:{}", super::VIP, super::service::NODE_PORT).parse()?,
        Duration::from_millis(100),
        Duration::from_secs(1),
    );
    let (mut moves, deadline) = (0, Instant::now() + plan.soak);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(Some(h)) = system.holder().await {
            if h != holder {
                say(format!("moved from {holder} to {h}"));
                moves += 1;
                holder = h;
            }
        }
    }
    let attempts = traffic.stop();
    let failed = attempts.iter().filter(|a| a.result.is_err()).count();
    let mutating_calls = system.sim.ec2_mutating()? - calls_before;
    let vrrp_masters = system.keepalived.as_ref().map(|k| k.masters_since(started));
    say(format!(
        "{moves} moves, {mutating_calls} mutating EC2 calls; now killing {holder}"
    ));
    let kill = kill_holder(system, &holder).await?;
    Ok(Soaked {
        system: name,
        loss_pct: plan.loss,
        minutes: plan.soak.as_secs_f64() / 60.0,
        moves,
        mutating_calls,
        vrrp_masters,
        client_failed_pct: 100.0 * failed as f64 / attempts.len().max(1) as f64,
        kill,
    })
}

/// Kills the holder with the loss still on; waits up to 60 s for the address to move.
async fn kill_holder(system: &mut System, from: &str) -> Result<Kill> {
    let calls_before = system.sim.ec2_mutating()?;
    let traffic = system.sim.traffic();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let injected = SystemTime::now();
    match system.keepalived.as_mut() {
        Some(k) => k.break_node(&mut system.sim, Failure::NodeDies, from)?,
        None => system.sim.kill_node(from)?,
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut to = None;
    while Instant::now() < deadline {
        if let Ok(Some(h)) = system.holder().await {
            if h != from {
                to = Some(h);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The holder EC2 names last: a second master's late EC2 call may have taken it.
    let mut answered = false;
    if to.is_some() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answered && Instant::now() < deadline {
            if let Ok(Some(h)) = system.holder().await {
                answered = answered_by_within(&traffic, injected, &h).await;
                to = Some(h);
            }
        }
    }
    tokio::time::sleep(system.sim.opts.release_delay + Duration::from_millis(500)).await;
    let attempts = traffic.stop();
    Ok(Kill {
        from: from.to_string(),
        to,
        answered,
        tcp_gap: longest_gap(&attempts, Proto::Tcp, injected),
        udp_gap: longest_gap(&attempts, Proto::Udp, injected),
        mutating_calls: system.sim.ec2_mutating()? - calls_before,
        vrrp_masters: (system.keepalived.as_ref()).map(|k| k.masters_since(injected)),
    })
}

/// Whether the client is answered by `to` within a second.
async fn answered_by_within(traffic: &Traffic, since: SystemTime, to: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let answered = (traffic.snapshot().iter())
            .any(|a| a.proto == Proto::Tcp && a.sent > since && a.result.as_deref() == Ok(to));
        if answered {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_rule_drops_a_random_share_of_what_arrives_on_every_wire() {
        let r = loss_ruleset(5.0);
        assert!(r.contains("type filter hook prerouting priority raw; policy accept;"));
        assert!(r.contains("iifname != \"lo\" numgen random mod 10000 < 500 drop"));
        assert!(loss_ruleset(0.25).contains("< 25 drop"));
        assert!(loss_ruleset(250.0).contains("< 10000 drop"));
    }

    fn at(ms: u64, proto: Proto, ok: bool) -> Attempt {
        Attempt {
            proto,
            to: "10.99.8.100:30080".parse().unwrap(),
            sent: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            took: Duration::from_millis(1),
            connected: None,
            result: if ok { Ok("n".into()) } else { Err("x".into()) },
        }
    }

    #[test]
    fn the_longest_gap_ignores_isolated_losses_and_other_protocols() {
        let t0 = SystemTime::UNIX_EPOCH;
        let a = [
            at(0, Proto::Tcp, true),
            at(10, Proto::Tcp, false),
            at(20, Proto::Tcp, true),
            at(30, Proto::Tcp, false),
            at(900, Proto::Tcp, false),
            at(1000, Proto::Tcp, true),
            at(1010, Proto::Tcp, false),
            at(1020, Proto::Tcp, true),
            at(500, Proto::Udp, true),
        ];
        assert_eq!(longest_gap(&a, Proto::Tcp, t0), Duration::from_millis(980));
        // From the kill to the first answer counts too.
        let later = t0 + Duration::from_millis(25);
        assert_eq!(
            longest_gap(&a, Proto::Tcp, later),
            Duration::from_millis(975)
        );
        assert_eq!(longest_gap(&[], Proto::Tcp, t0), Duration::ZERO);
        // Never answered again: the gap runs to the last request.
        let dark = [
            at(0, Proto::Tcp, true),
            at(10, Proto::Tcp, false),
            at(3000, Proto::Tcp, false),
        ];
        assert_eq!(
            longest_gap(&dark, Proto::Tcp, t0),
            Duration::from_millis(3000)
        );
    }

    #[test]
    fn rows_print_moves_and_the_kill() {
        let row = Soaked {
            system: "keepalived",
            loss_pct: 5.0,
            minutes: 2.0,
            moves: 1,
            mutating_calls: 2,
            vrrp_masters: Some(1),
            client_failed_pct: 9.5,
            kill: Kill {
                from: "node-1".into(),
                to: Some("node-2".into()),
                answered: true,
                tcp_gap: Duration::from_millis(4200),
                vrrp_masters: Some(2),
                ..Kill::default()
            },
        };
        let t = table(std::slice::from_ref(&row));
        assert!(t.contains("node-1 -> node-2 [2 masters]"), "{t}");
        assert!(t.contains("4200 ms"), "{t}");
        let j = row.json();
        assert_eq!(j["baseline"], "keepalived");
        assert_eq!(j["vrrpMasters"], 1);
        assert_eq!(j["kill"]["moved"], true);
        let floatip = Soaked {
            system: "floatip",
            ..row
        };
        assert!(floatip.json()["baseline"].is_null());
    }
}
