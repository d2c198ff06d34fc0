//! The moto server process: started from the virtualenv, tied to the lab's lifetime.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::venv::Venv;

/// Importing moto's EC2 takes seconds, more while nextest runs several labs on two cores.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A running moto. Dropping it kills the process (kill_on_drop); if the lab dies without
/// dropping it (SIGKILL), moto sees its stdin close and exits by itself.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    addr: SocketAddr,
    // Held only so moto's stdin stays open while the lab lives.
    _stdin: ChildStdin,
}

impl Moto {
    pub async fn start(venv: &Venv) -> Result<Self> {
        let mut child = Command::new(&venv.python)
            .arg("-u")
            .arg(venv.scripts.join("launch.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting moto with {}", venv.python.display()))?;
        let stdin = child.stdin.take().context("moto's stdin")?;
        let stdout = child.stdout.take().context("moto's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .context("moto did not report its port in time")??;
        let Some(port) = first.as_deref().and_then(|l| l.strip_prefix("MOTO_PORT=")) else {
            let status = child.wait().await?;
            bail!("moto did not start ({status}); first line of its output: {first:?}");
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("moto's port {port:?}"))?;
        // Keep reading so moto never blocks on a full pipe when it prints.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "moto", "{line}");
            }
        });
        Ok(Self {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            _stdin: stdin,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resolves if moto exits while the lab still needs it.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kills moto and reaps it, so no zombie or orphan is left.
    pub async fn stop(mut self) {
        if let Err(err) = self.child.start_kill() {
            tracing::debug!(%err, "moto already gone");
        }
        if let Err(err) = self.child.wait().await {
            tracing::warn!(%err, "waiting for moto to exit");
        }
    }
}
