//! `floatip-lab up`: the demo. Builds floatip, starts the simulated cluster (two controllers,
//! three nodes), applies the example FloatingIP with kubectl, shows it, fails the holder node and
//! shows the address moving, then stays up until Ctrl-C (or exits with --exit). With --no-demo
//! it only starts the cluster and stays up. While it stays up, its env file says how to reach it
//! and `floatip-lab ctl` drives it through its control socket. Everything is torn down on the
//! way out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::UnixListener;

use super::bench::Failure;
use super::envfile::{self, EnvFile, DEFAULT_PATH, PATH_VAR};
use super::service::NODE_PORT;
use super::{control, Binaries, Options, Sim, VIP};

/// `floatip-lab up` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tear down right after the demo instead of staying up.
    #[arg(long, conflicts_with = "no_demo")]
    pub exit: bool,
    /// No demo: start the cluster, fail nothing, and stay up to be driven with `floatip-lab ctl`.
    #[arg(long)]
    pub no_demo: bool,
    /// Where a lab that stays up writes its env file (KUBECONFIG, AWS_ENDPOINT_URL, namespaces,
    /// nodes, admin ports); its control socket goes beside it. Removed on exit.
    #[arg(long, env = PATH_VAR, default_value = DEFAULT_PATH)]
    pub env_file: PathBuf,
    /// VPC convergence delay in milliseconds (AWS: about 1200).
    #[arg(long = "convergence-ms", default_value_t = 1200)]
    pub convergence_ms: u64,
    /// Milliseconds every EC2 call waits in the lab's EC2 before it is carried out (a round
    /// trip to the Region; the lab's EC2 answers in a few ms).
    #[arg(long = "ec2-latency-ms", default_value_t = 0)]
    pub ec2_latency_ms: u64,
    #[command(flatten)]
    pub eni: crate::ec2::EniDelays,
    /// Where process logs go (kept after exit). Default: a temporary folder.
    #[arg(long)]
    pub log_dir: Option<std::path::PathBuf>,
    /// Show every process's log lines as they come.
    #[arg(long)]
    pub verbose: bool,
    /// Address kinds to add beside "web" (repeat): an Elastic IP on a secondary address, an
    /// ElasticIP-mode address, an IPv6 address, a RouteTable overlay address, an Interface-mode ENI. Their names and the addresses their clients
    /// use are in the env file (FLOATIP_LAB_WEB_EIP_TARGET...); Elastic IPs are reached from
    /// the internet namespace ($FLOATIP_LAB_INTERNET).
    #[arg(long = "kind", value_enum)]
    pub kinds: Vec<super::flavor::Flavor>,
}

pub fn run(args: Args, bins: Binaries) -> Result<()> {
    let opts = Options {
        convergence: Duration::from_millis(args.convergence_ms),
        ec2_latency: Duration::from_millis(args.ec2_latency_ms),
        eni_delays: args.eni,
        log_dir: args.log_dir.clone(),
        echo: args.verbose,
        progress: true,
        flavors: std::iter::once(super::flavor::Flavor::SecondaryIp)
            .chain(args.kinds.iter().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        ..Options::default()
    };
    let (demo_first, stay_up) = (!args.no_demo, !args.exit);
    if stay_up {
        // Before minutes of setup: another lab may own this env file.
        EnvFile::claim(&args.env_file)?;
    }
    let keep_logs = args.log_dir.is_some();
    let env_file = args.env_file;
    let lab = bins.lab.clone();
    super::isolated(move |infra| async move {
        let mut sim = tokio::select! {
            sim = Sim::start(&infra, bins, opts) => sim?,
            _ = stop_signal() => {
                interrupted();
                return Ok(());
            }
        };
        if demo_first {
            let result = tokio::select! {
                r = demo(&mut sim) => r,
                _ = stop_signal() => {
                    interrupted();
                    return Ok(());
                }
            };
            result.map_err(|e| {
                let logs = sim.keep_logs().display().to_string();
                e.context(format!("the demo failed (logs kept in {logs})"))
            })?;
        }
        let logs = if keep_logs {
            sim.log_dir.display().to_string()
        } else {
            format!(
                "{} (removed on exit; --log-dir keeps them)",
                sim.log_dir.display()
            )
        };
        println!("\nlogs: {logs}");
        if stay_up {
            serve(sim, &env_file, &lab).await?;
        }
        Ok(())
    })?;
    println!("==> torn down: every process stopped, every namespace removed");
    Ok(())
}

/// Ctrl-C (SIGINT) or SIGTERM: how a person or a test stops the lab.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => drop(s.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn interrupted() {
    println!("\n==> stopping: tearing down");
}

/// Stays up until a stop signal, serving `floatip-lab ctl` on the control socket beside the env
/// file. The env file goes first on the way out, so `ctl` says no lab runs rather than talk to
/// one being torn down.
async fn serve(sim: Sim, env: &Path, lab: &Path) -> Result<()> {
    let socket = envfile::socket_path(env);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    let file = EnvFile::write(env, &sim, lab)?;
    how_to(&sim, env).await;
    control::serve(sim, listener, async move {
        stop_signal().await;
        drop(file);
        interrupted();
    })
    .await;
    Ok(())
}

async fn how_to(sim: &Sim, env: &Path) {
    let holder = sim.holder().await.unwrap_or_else(|| "no node".into());
    let n = holder.trim_start_matches("node-");
    println!(
        "\n==> the lab stays up; how to reach it is in {env}. From another shell, as root:\n  \
         source {env}\n  \
         ip netns exec $FLOATIP_LAB_INFRA kubectl get fip -o wide\n  \
         $FLOATIP_LAB_BIN ctl traffic $FLOATIP_LAB_VIP:{NODE_PORT} --seconds 20 &\n  \
         $FLOATIP_LAB_BIN ctl kill-node {n}          # {holder} holds {VIP} now\n  \
         $FLOATIP_LAB_BIN ctl revive-node {n}\n  \
         $FLOATIP_LAB_BIN ctl partition controllers --seconds 10\n  \
         $FLOATIP_LAB_BIN ctl restart agent 2     # or: restart controllers\n\
         Ctrl-C tears everything down.",
        env = env.display()
    );
}

async fn demo(sim: &mut Sim) -> Result<()> {
    show(sim, &["get", "fip", "-o", "wide"])?;
    let from = sim.holder().await.context("no holder")?;
    println!("\n==> client traffic to {VIP}:{NODE_PORT} every 10 ms; killing the holder {from} (links down, agent gone)");
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
    Ok(())
}

fn show(sim: &Sim, args: &[&str]) -> Result<()> {
    println!("\n$ kubectl {}", args.join(" "));
    let out = sim.kubectl(args, None)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
