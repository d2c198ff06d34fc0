//! The `floatip` command line: one binary, one subcommand per component.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Runs a long-lived component on a multi-threaded runtime, with logs on stderr; one clear line
/// and a non-zero exit on failure.
fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floatip: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("floatip: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs as text on stderr; RUST_LOG filters (default info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = builder.try_init();
}

/// Keeps a floating IP address on one healthy EKS node at a time, moving it through the EC2 API
/// within seconds when the node or its service stops answering.
#[derive(Debug, Parser)]
#[command(name = "floatip", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: elect a leader, watch FloatingIPs and Nodes, move addresses through
    /// EC2, write status. Runs as a Deployment with two or more replicas.
    Controller(Box<crate::controller::ControllerArgs>),
    /// Run the node agent: put the addresses this node holds on the right interface and route
    /// their replies out through it. Runs as a DaemonSet with hostNetwork and NET_ADMIN.
    Agent(Box<crate::agent::AgentArgs>),
    /// Prepare this node once (the agent pod's init container): floating ENI, interface,
    /// routing, the addresses it holds, and a race-free claim of unheld ones.
    Attach(Box<crate::attach::AttachArgs>),
    /// Print the FloatingIP CustomResourceDefinition as YAML (the source of crds/floatingip.yaml).
    Crd,
    /// Print the version of floatip and of the API it serves.
    Version,
}

impl Cli {
    /// Runs the chosen subcommand and returns the process exit code.
    pub fn run(self) -> ExitCode {
        let out = match self.command {
            Command::Controller(args) => return run_async(crate::controller::run(*args)),
            Command::Agent(args) => return run_async(crate::agent::run(*args)),
            Command::Attach(args) => return run_async(crate::attach::run(*args)),
            Command::Crd => crate::api::crd_yaml(),
            Command::Version => format!(
                "floatip {} (API {}/{})\n",
                env!("CARGO_PKG_VERSION"),
                crate::api::GROUP,
                crate::api::VERSION
            ),
        };
        // A closed pipe (`floatip crd | head`) is not worth a panic; report it and fail.
        match std::io::stdout().lock().write_all(out.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("floatip: writing to stdout failed: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// `500ms`, `4s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 4s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("4h").unwrap_err().contains("ms, s or m"));
        assert!(parse_duration("soon").is_err());
    }
}
