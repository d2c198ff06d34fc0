//! The `floatip` command line: one binary, one subcommand per component.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Runs a long-lived component on a multi-threaded runtime, with logs on stderr; on failure
/// one line saying why (a plain `floatip: ...` line as text, an error record as JSON) and a
/// non-zero exit.
fn run_async(
    format: LogFormat,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    init_logging(format);
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
            match format {
                LogFormat::Json => tracing::error!(error = %said_once(&e), "stopping"),
                LogFormat::Text => eprintln!("floatip: {}", said_once(&e)),
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: a cause whose text an earlier
/// message already includes (kube's configuration errors quote their sources) is left out.
fn said_once(e: &anyhow::Error) -> String {
    crate::causes::causes(e.as_ref())
}

/// How log records are written on stderr: `Text`, one line a record for people, coloured only
/// when stderr is a terminal (and `NO_COLOR` is not set); `Json`, one object a record
/// (`timestamp`, `level`, `target`, `fields`) for log pipelines. (The variants have no doc
/// comments of their own: clap would list them with their help, and lay out every flag's help
/// on a line of its own.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs on stderr in `format`; RUST_LOG filters (default info).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).try_init()
        }
    };
}

/// Keeps a floating IP address on one healthy EKS node at a time, moving it through the EC2 API
/// within seconds when the node or its service stops answering.
#[derive(Debug, Parser)]
#[command(name = "floatip", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How logs are written on stderr.
    #[arg(
        long,
        global = true,
        env = "FLOATIP_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
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
            Command::Controller(args) => {
                return run_async(self.log_format, crate::controller::run(*args))
            }
            Command::Agent(args) => return run_async(self.log_format, crate::agent::run(*args)),
            Command::Attach(args) => return run_async(self.log_format, crate::attach::run(*args)),
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

/// What a duration flag takes, for its error message.
const DURATION_FORM: &str = "a duration such as 500ms, 4s, 1.5s, 2m or 1h30m";

/// Parses every duration flag: jiff's friendly format (`500ms`, `4s`, `1.5s`, `2m`, `1m30s`,
/// `2 minutes`), ISO 8601 (`PT4S`), or a plain number of seconds (`1.5`), as the chart and
/// older manifests pass them. Negative durations are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let plain_seconds = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let parsed = if plain_seconds {
        s.parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
    } else {
        s.parse::<jiff::SignedDuration>()
            .ok()
            .and_then(|d| Duration::try_from(d).ok())
    };
    parsed.ok_or_else(|| format!("{s:?} is not {DURATION_FORM} (or plain seconds)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message quotes its source, as kube's configuration errors do.
    #[derive(Debug)]
    struct Quoting(std::io::Error);

    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed to read kubeconfig: {}", self.0)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_fatal_error_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Quoting(io)).context("cannot reach the API server");
        assert_eq!(
            said_once(&e),
            "cannot reach the API server: failed to read kubeconfig: no such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(said_once(&plain), "outer: inner");
    }

    #[test]
    fn durations_the_chart_and_the_docs_pass_are_accepted() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("500ms", ms(500)),
            ("4s", ms(4_000)),
            ("2m", ms(120_000)),
            ("1.5s", ms(1_500)),
            ("0.5m", ms(30_000)),
            ("1.5", ms(1_500)),
            ("20", ms(20_000)),
            ("0s", ms(0)),
            (" 10s ", ms(10_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn friendly_and_iso_forms_are_accepted_too() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("2 minutes"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("PT4S"), Ok(Duration::from_secs(4)));
    }

    #[test]
    fn refusals_name_the_expected_form_on_one_line() {
        for bad in [
            "soon",
            "",
            "-2s",
            "2s ago",
            "4x",
            "1e3",
            "1.2.3",
            "5 parsecs",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("a duration such as 500ms, 4s") && !err.contains('\n'),
                "{bad:?}: {err}"
            );
        }
    }
}
