//! `floatip-lab up`: the demo. Builds floatip, starts the simulated cluster (two controllers,
//! three nodes), applies the example FloatingIP with kubectl, shows it, fails the holder node and
//! shows the address moving, then stays up until Ctrl-C (or exits with --exit). Everything is
//! torn down on the way out.

use std::time::Duration;

use anyhow::{Context, Result};

use super::bench::Failure;
use super::{Binaries, Options, Sim, FIP, VIP};

/// `floatip-lab up` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tear down right after the demo instead of waiting for Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// VPC convergence delay in milliseconds (AWS: about 1200).
    #[arg(long = "convergence-ms", default_value_t = 1200)]
    pub convergence_ms: u64,
    /// Where process logs go (kept after exit). Default: a temporary folder.
    #[arg(long)]
    pub log_dir: Option<std::path::PathBuf>,
    /// Show every process's log lines as they come.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(args: Args, bins: Binaries) -> Result<()> {
    let opts = Options {
        convergence: Duration::from_millis(args.convergence_ms),
        log_dir: args.log_dir.clone(),
        echo: args.verbose,
        progress: true,
        ..Options::default()
    };
    let exit = args.exit;
    let keep_logs = args.log_dir.is_some();
    super::isolated(move |infra| async move {
        let mut sim = tokio::select! {
            sim = Sim::start(&infra, bins, opts) => sim?,
            _ = tokio::signal::ctrl_c() => {
                interrupted();
                return Ok(());
            }
        };
        let result = tokio::select! {
            r = demo(&mut sim, exit, keep_logs) => r,
            _ = tokio::signal::ctrl_c() => {
                interrupted();
                Ok(())
            }
        };
        result.map_err(|e| {
            let logs = sim.keep_logs().display().to_string();
            e.context(format!("the demo failed (logs kept in {logs})"))
        })
    })?;
    println!("==> torn down: every process stopped, every namespace removed");
    Ok(())
}

fn interrupted() {
    println!("\n==> Ctrl-C: tearing down");
}

async fn demo(sim: &mut Sim, exit: bool, keep_logs: bool) -> Result<()> {
    show(sim, &["get", "fip", "-o", "wide"])?;
    let from = sim.holder().await.context("no holder")?;
    println!("\n==> client traffic to {VIP}:30080 every 10 ms; killing the holder {from} (links down, agent gone)");
    let m = sim.measure_failover(Failure::NodeDies).await?;
    println!(
        "==> the address moved: {} -> {} ({})",
        m.timeline.from, m.timeline.to, m.timeline.reason
    );
    show(sim, &["get", "fip", "-o", "wide"])?;
    println!("\n{}", m.timeline.text());
    println!("mutating EC2 calls for this failover: {}", m.mutating_calls);
    let inv = sim.check_invariants()?;
    println!(
        "invariants held: never on two ENIs in EC2 ({} reads), longest time on two live nodes {} ms (bound {} ms)",
        inv.ec2_reads,
        inv.longest_overlap.as_millis(),
        inv.bound.as_millis()
    );
    if keep_logs {
        println!("\nlogs: {}", sim.log_dir.display());
    } else {
        println!(
            "\nlogs: {} (removed on exit; --log-dir keeps them)",
            sim.log_dir.display()
        );
    }
    if !exit {
        println!(
            "\nThe cluster stays up. From another shell (as root):\n  ip netns exec {} kubectl --kubeconfig {} get fip {FIP} -o yaml\nCtrl-C tears everything down.",
            sim.infra_path().file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            sim.kubeconfig.display()
        );
        std::future::pending::<()>().await;
    }
    Ok(())
}

fn show(sim: &Sim, args: &[&str]) -> Result<()> {
    println!("\n$ kubectl {}", args.join(" "));
    let out = sim.kubectl(args, None)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
