//! What the simulated VPC needs from the machine, made ready before anything enters a network
//! namespace: the namespaces have no route out, so nothing can be downloaded from inside them
//! (a first run once failed because pip ran in the infra namespace). Missing Debian packages are
//! installed with apt-get, as `.ci/run` does, when this runs as root; otherwise it stops in one
//! line naming the command to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{ec2, venv};

/// A program the simulated VPC runs, and the Debian package that ships it.
struct Tool {
    program: &'static str,
    /// Arguments that make it print its version and exit 0.
    version_args: &'static [&'static str],
    package: &'static str,
    what_for: &'static str,
}

const TOOLS: &[Tool] = &[
    Tool {
        program: "ip",
        version_args: &["-V"],
        package: "iproute2",
        what_for: "network namespaces, links and routes",
    },
    Tool {
        program: "nft",
        version_args: &["-v"],
        package: "nftables",
        what_for: "the nodes' NodePort rules and the agent's reply routing",
    },
];

/// Makes the machine ready for the simulated VPC (root, `ip`, `nft`, kubectl, Python with venv,
/// moto's virtualenv); returns the virtualenv folder the EC2 stand-in must use. Cheap when
/// everything is there already. Prints a `==>` line for each thing it installs.
pub fn prepare() -> Result<PathBuf> {
    if !is_root() {
        bail!("the simulated VPC needs root (it creates network namespaces): run it as root");
    }
    let missing: Vec<&Tool> = TOOLS
        .iter()
        .filter(|t| !runs(t.program, t.version_args))
        .collect();
    if !missing.is_empty() {
        let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
        let why: Vec<String> = missing
            .iter()
            .map(|t| format!("`{}` ({})", t.program, t.what_for))
            .collect();
        apt_install(
            &packages,
            &format!("the simulated VPC needs {}", why.join(" and ")),
        )?;
    }
    if !runs("kubectl", &["version", "--client"]) {
        bail!("kubectl is not installed: the lab applies and reads FloatingIPs with it (it is no Debian package; install the kubectl release matching Kubernetes 1.31 or newer)");
    }
    let python = ec2::python();
    if !runs(&python, &["-c", "import venv, ensurepip"]) {
        apt_install(
            &["python3-venv"],
            &format!(
                "{} cannot create virtualenvs (moto runs in one)",
                python.display()
            ),
        )?;
        if !runs(&python, &["-c", "import venv, ensurepip"]) {
            bail!(
                "{} still cannot create virtualenvs: point LAB_PYTHON at a Python 3.9+ with the venv module",
                python.display()
            );
        }
    }
    let root = ec2::venv_root()?;
    ensure_venv(&root, &python)?;
    Ok(root)
}

/// Builds moto's virtualenv under `root` if it is not there, on a thread of its own (callers
/// may be on a Tokio thread, where blocking on another runtime is refused).
fn ensure_venv(root: &Path, python: &Path) -> Result<()> {
    if venv::is_ready(root, python, &ec2::VENV)? {
        return Ok(());
    }
    // venv::ensure says what it installs, and where.
    let (root, python) = (root.to_path_buf(), python.to_path_buf());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(venv::ensure(&root, &python, &ec2::VENV))
            .map(drop)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("installing moto panicked"))?
}

pub(super) fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    let command = format!("apt-get install -y {}", packages.join(" "));
    if !runs("apt-get", &["--version"]) {
        bail!(
            "{why}: install {} first (Debian: `{command}`)",
            packages.join(" ")
        );
    }
    eprintln!("==> {why}: installing {} with apt-get", packages.join(" "));
    let quiet = |args: &[&str]| -> Result<bool> {
        Ok(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .context("running apt-get")?
            .success())
    };
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    if !(quiet(&["update", "-qq"])? && quiet(&install)?) {
        bail!("{why}, and apt-get could not install it: run `apt-get update && {command}` as root");
    }
    Ok(())
}

/// Whether `program args` runs and exits 0.
fn runs(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
