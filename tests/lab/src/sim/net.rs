//! Network namespaces and the commands that wire them (`ip`, `nft` from iproute2 and nftables).
//! Every namespace is named `fipl<pid>-<n>-<role>` and deleted on drop; namespaces left by a
//! lab process that no longer runs (killed with SIGKILL) are removed by [`remove_stale`].

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};

const PREFIX: &str = "fipl";

/// Why this machine can never run the simulated VPC, if it cannot: it is not root. (Missing
/// packages are installed by [`super::prepare::prepare`].)
pub fn unavailable() -> Option<String> {
    (!super::prepare::is_root()).then(|| "needs root, for network namespaces".into())
}

/// Whether a test that builds namespaces can run here (root, and `ip` from iproute2, which the
/// tests of the floatip package do not install); prints `SKIP <test>: <why>` when it cannot.
pub fn can_netns(test: &str) -> bool {
    let why = unavailable().or_else(|| {
        Command::new("ip")
            .arg("-V")
            .output()
            .is_err()
            .then(|| "`ip` (iproute2) is not installed".to_string())
    });
    if let Some(why) = &why {
        eprintln!("SKIP {test}: {why}");
    }
    why.is_none()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip("link set lo up")?;
        for key in ["all", "default"] {
            ns.sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
            // Every lab address is unique by construction; detection would hold each new
            // IPv6 address back for a second.
            ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
        }
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &str) -> Result<String> {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    /// A command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Result<String> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(cmd);
        run("ip", &all)
    }

    /// `nft -f -` inside the namespace.
    pub fn nft(&self, ruleset: &str) -> Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running nft (package nftables)")?;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(ruleset.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The addresses on `dev`, as `ip -o addr` prints them; empty when there is no `dev`.
    pub fn addresses(&self, dev: &str) -> String {
        self.ip(&format!("-o addr show dev {dev}"))
            .unwrap_or_default()
    }

    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
            .with_context(|| format!("sysctl {key} in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Deletes the namespaces of lab processes that are gone (a lab killed with SIGKILL cannot
/// clean up after itself). Returns how many were removed.
pub fn remove_stale() -> usize {
    let Ok(out) = run("ip", &["netns", "list"]) else {
        return 0;
    };
    let mut removed = 0;
    for name in out.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists()
            && run("ip", &["netns", "del", name]).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Moves the calling thread into the namespace at `path`. Sockets the thread opens afterwards,
/// threads it spawns and processes it starts live in that namespace.
pub fn enter(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns(2) on an open namespace file descriptor; it changes only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Moves the calling thread into the namespace at `path` and builds it a single-threaded Tokio
/// runtime: whatever that runtime opens stays in the namespace. For a thread of its own, never
/// a pooled one.
pub fn runtime_in(path: &Path) -> Result<tokio::runtime::Runtime> {
    enter(path)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a runtime")
}

pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

/// A veth pair: `a_name` in `a`, `b_name` in `b`; both up.
pub fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> Result<()> {
    veth_pair(a, a_name, "", b, b_name)
}

/// A veth pair whose end in `a` has the MAC address `a_mac` (an ENI's, for tests that check
/// which interface a packet left through); both up.
pub fn veth_with_mac(a: &Netns, a_name: &str, a_mac: &str, b: &Netns, b_name: &str) -> Result<()> {
    veth_pair(a, a_name, &format!("address {a_mac} "), b, b_name)
}

fn veth_pair(a: &Netns, a_name: &str, a_options: &str, b: &Netns, b_name: &str) -> Result<()> {
    a.ip(&format!(
        "link add {a_name} {a_options}type veth peer name {b_name} netns {}",
        b.name
    ))?;
    a.ip(&format!("link set {a_name} up"))?;
    b.ip(&format!("link set {b_name} up"))?;
    Ok(())
}
