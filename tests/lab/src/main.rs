//! `floatip-lab`: the stand-ins floatip is tested against, since no real kube-apiserver or EC2
//! can run here, and the simulated VPC that runs floatip end to end. Dev only: it never ships
//! in the image.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use floatip_lab::{chart, ec2, kube, sim};

#[derive(Debug, Parser)]
#[command(name = "floatip-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a Kubernetes API (plain HTTP, in memory) and write a kubeconfig for it.
    Kube(kube::Args),
    /// Serve EC2 (moto, patched) behind a fault proxy; prints AWS_ENDPOINT_URL=... first.
    Ec2(ec2::Args),
    /// Render the Helm chart with Helm's library, validate every object against the
    /// Kubernetes schemas, and write the plain manifests (deploy/floatip.yaml).
    RenderChart(chart::Args),
    /// The demo (root): build floatip, start a simulated cluster in a simulated VPC (two
    /// controllers, three nodes), apply a FloatingIP, fail its holder and show the move; then
    /// stay up for `ctl` (--no-demo: start and stay up, failing nothing).
    Up(sim::up::Args),
    /// Drive a lab that `up` keeps running (root): kill or revive a node, cut the controllers
    /// off, send client traffic and print the outage, restart floatip's processes.
    Ctl(sim::ctl::Args),
    /// Benchmarks (root).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Repeated failovers in the simulated VPC; prints the client-visible outage (p50, p95,
    /// max) and the mutating EC2 calls per failover, per scenario.
    Failover(sim::bench::Args),
    /// Random packet loss on the VPC's router for minutes, nothing failing: counts moves
    /// (floatip must make none, keepalived's failovers are counted too), then kills the
    /// holder under the same loss and prints the outage.
    Soak(sim::soak::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli.command)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The message and its causes on one line, never a backtrace: these are errors a
            // user can cause (not root, a package missing, a port taken).
            eprintln!("floatip-lab: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Kube(args) => kube::run(args).await,
        Command::Ec2(args) => ec2::run(args).await,
        Command::RenderChart(args) => chart::run(args).await,
        Command::Ctl(args) => sim::ctl::run(args).await,
        // The machine is made ready first (packages, moto), then floatip is built, so a
        // missing package stops the run before minutes of compiling. The simulation runs its
        // own runtime on a thread inside its namespace.
        Command::Up(args) => {
            tokio::task::spawn_blocking(move || {
                sim::prepare::prepare()?;
                sim::up::run(args, sim::Binaries::beside(std::env::current_exe()?, true)?)
            })
            .await?
        }
        Command::Bench(BenchCommand::Failover(args)) => {
            tokio::task::spawn_blocking(move || {
                sim::prepare::prepare()?;
                sim::bench::run(args, sim::Binaries::beside(std::env::current_exe()?, true)?)
            })
            .await?
        }
        Command::Bench(BenchCommand::Soak(args)) => {
            tokio::task::spawn_blocking(move || {
                sim::prepare::prepare()?;
                sim::soak::run(args, sim::Binaries::beside(std::env::current_exe()?, true)?)
            })
            .await?
        }
    }
}
