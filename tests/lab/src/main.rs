//! `floatip-lab`: the stand-ins floatip is tested against, since no real kube-apiserver or EC2
//! can run here. Dev only: it never ships in the image.

use clap::{Parser, Subcommand};

mod ec2;
mod kube;

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
    }
}
