//! `floatip-lab`: the stand-ins floatip is tested against, since no real kube-apiserver or EC2
//! can run here, and the simulated VPC that runs floatip end to end. Dev only: it never ships
//! in the image.

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
    /// controllers, three nodes), apply a FloatingIP, fail its holder and show the move.
    Up(sim::up::Args),
    /// Benchmarks (root).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Repeated failovers in the simulated VPC; prints the client-visible outage (p50, p95,
    /// max) and the mutating EC2 calls per failover, per scenario.
    Failover(sim::bench::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Kube(args) => kube::run(args).await,
        Command::Ec2(args) => ec2::run(args).await,
        Command::RenderChart(args) => chart::run(args).await,
        // The simulation runs its own runtime on a thread inside its namespace.
        Command::Up(args) => {
            let bins = sim::Binaries::beside(std::env::current_exe()?, true)?;
            tokio::task::spawn_blocking(move || sim::up::run(args, bins)).await?
        }
        Command::Bench(BenchCommand::Failover(args)) => {
            let bins = sim::Binaries::beside(std::env::current_exe()?, true)?;
            tokio::task::spawn_blocking(move || sim::bench::run(args, bins)).await?
        }
    }
}
