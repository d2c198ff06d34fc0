//! An in-memory Kubernetes API server with the semantics floatip and kubectl rely on.

pub mod printer;
pub mod schema;

use std::net::SocketAddr;
use std::path::PathBuf;

/// `floatip-lab kube` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve on; port 0 picks a free port.
    #[arg(long, env = "LAB_KUBE_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig that points at this server.
    #[arg(long, env = "LAB_KUBECONFIG")]
    pub kubeconfig: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    Ok(())
}
