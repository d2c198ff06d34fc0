//! An EC2 endpoint for tests: moto's server, patched where it differs from AWS in ways floatip
//! relies on (tests/lab/moto/), behind a proxy that injects latency, throttling, 5xx and outages
//! and gives ENI attachments EC2's delays and refusals ([`attachments`]).
//!
//! Prints `AWS_ENDPOINT_URL=http://ADDR` as its first stdout line once it serves, then serves
//! until SIGINT or SIGTERM. moto never outlives it.

mod attachments;
mod control;
mod faults;
mod moto;
mod primaries;
mod proxy;
mod routes;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::venv;

/// moto and its dependencies, the launcher and the patch (tests/lab/moto/).
pub const VENV: venv::Spec = venv::Spec {
    what: "moto",
    requirements: include_str!("../../moto/requirements.txt"),
    scripts: &[
        (
            "floatip_moto_patch.py",
            include_str!("../../moto/floatip_moto_patch.py"),
        ),
        ("launch.py", include_str!("../../moto/launch.py")),
    ],
};

/// `floatip-lab ec2` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve EC2 (and the /_lab/ control paths) on; port 0 picks a free port.
    #[arg(long, env = "LAB_EC2_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Folder for the Python virtualenv moto is installed into (reused while its requirements
    /// stay the same). Default: lab-venv in the cargo target folder holding this binary.
    #[arg(long, env = "LAB_VENV")]
    pub venv: Option<PathBuf>,
    /// Python used to create the virtualenv.
    #[arg(long, env = "LAB_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// Milliseconds every EC2 request waits before it is forwarded (or faulted): the round
    /// trip to the Region that a local EC2 lacks. The /_lab/ control paths never wait.
    #[arg(long = "latency-ms", env = "LAB_EC2_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    #[command(flatten)]
    pub eni: EniDelays,
}

/// How long EC2 shows an ENI attachment `attaching` / `detaching` (the README's lab section
/// gives the figures behind the defaults).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct EniDelays {
    /// Milliseconds an attachment shows `attaching` after AttachNetworkInterface, before it is
    /// `attached` and the interface appears on the node.
    #[arg(long = "eni-attach-ms", env = "LAB_ENI_ATTACH_MS", default_value_t = ENI_ATTACH_MS)]
    pub attach_ms: u64,
    /// Milliseconds an attachment shows `detaching` after DetachNetworkInterface (Force or
    /// not), before the ENI is `available` and the interface leaves the node.
    #[arg(long = "eni-detach-ms", env = "LAB_ENI_DETACH_MS", default_value_t = ENI_DETACH_MS)]
    pub detach_ms: u64,
}

/// Default attach delay: a choice, as no published figure for EC2's attach time was found.
pub const ENI_ATTACH_MS: u64 = 5_000;
/// Default detach delay: a choice, as no published figure for EC2's detach time was found.
pub const ENI_DETACH_MS: u64 = 10_000;

impl EniDelays {
    /// Attaches and detaches that take effect at once, as moto's do.
    pub const NONE: Self = Self {
        attach_ms: 0,
        detach_ms: 0,
    };

    /// The defaults of `floatip-lab ec2`.
    pub const DEFAULT: Self = Self {
        attach_ms: ENI_ATTACH_MS,
        detach_ms: ENI_DETACH_MS,
    };

    /// The `floatip-lab ec2` flags that pass these delays on.
    pub fn flags(&self) -> [String; 4] {
        [
            "--eni-attach-ms".into(),
            self.attach_ms.to_string(),
            "--eni-detach-ms".into(),
            self.detach_ms.to_string(),
        ]
    }
}

/// The virtualenv folder `floatip-lab ec2` uses when given no --venv: `LAB_VENV`, else
/// lab-venv in the cargo target folder.
pub fn venv_root() -> anyhow::Result<PathBuf> {
    match std::env::var_os("LAB_VENV") {
        Some(root) if !root.is_empty() => Ok(root.into()),
        _ => venv::default_root(),
    }
}

/// The Python `floatip-lab ec2` builds moto's virtualenv with when given no --python.
pub fn python() -> PathBuf {
    std::env::var_os("LAB_PYTHON")
        .filter(|p| !p.is_empty())
        .map_or_else(|| "python3".into(), PathBuf::from)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let root = match args.venv {
        Some(root) => root,
        None => venv_root()?,
    };
    let venv = venv::ensure(&root, &args.python, &VENV).await?;
    let mut moto = moto::Moto::start(&venv).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let round_trip = std::time::Duration::from_millis(args.latency_ms);
    let state = Arc::new(proxy::State::new(
        moto.addr(),
        moto.pid(),
        round_trip,
        args.eni,
    ));
    tokio::spawn(attachments::settle(state.clone()));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "AWS_ENDPOINT_URL=http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(
        %addr,
        moto = %moto.addr(),
        latency_ms = args.latency_ms,
        eni_attach_ms = args.eni.attach_ms,
        eni_detach_ms = args.eni.detach_ms,
        "EC2 lab serving"
    );
    let mut term = signal(SignalKind::terminate())?;
    let result = tokio::select! {
        served = proxy::serve(listener, state) => served,
        status = moto.exited() => Err(anyhow::anyhow!("moto exited unexpectedly: {status:?}")),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    };
    moto.stop().await;
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn requirements_pin_moto_exactly() {
        crate::venv::tests::assert_pinned(super::VENV.requirements, "moto==5.2.5");
    }
}
