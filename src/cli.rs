//! The `floatip` command line: one binary, one subcommand per component.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Print the FloatingIP CustomResourceDefinition as YAML (the source of crds/floatingip.yaml).
    Crd,
    /// Print the version of floatip and of the API it serves.
    Version,
}

impl Cli {
    /// Runs the chosen subcommand and returns the process exit code.
    pub fn run(self) -> ExitCode {
        let out = match self.command {
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
