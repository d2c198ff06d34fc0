//! The processes of a simulated cluster: each one's stderr is kept (with when each line
//! arrived, for timelines and assertions) and written to `<log dir>/<name>.log`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

/// One line a process wrote, stamped when the lab read it.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: SystemTime,
    pub text: String,
}

pub type Log = Arc<Mutex<Vec<Line>>>;

/// A child process, killed (SIGKILL) on drop unless it already exited.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: Log,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stderr captured; stdout goes to the same log. A
    /// process started again under the same name (a restart) adds to the log rather than
    /// replacing what the one before it wrote.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path, echo: bool) -> Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{name}.log")))
            .with_context(|| format!("log file for {name}"))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        writeln!(
            file,
            "--- {name} started (pid {}) at {}",
            child.id(),
            super::timeline::clock(SystemTime::now())
        )?;
        let log: Log = Arc::default();
        let file = Arc::new(Mutex::new(file));
        let stderr = child.stderr.take().context("stderr")?;
        let stdout = child.stdout.take().context("stdout")?;
        for reader in [
            Box::new(stderr) as Box<dyn std::io::Read + Send>,
            Box::new(stdout),
        ] {
            let (log, file, name) = (log.clone(), file.clone(), name.to_string());
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(text) = line else { break };
                    if echo {
                        eprintln!("[{name}] {text}");
                    }
                    let _ = writeln!(file.lock().unwrap(), "{text}");
                    log.lock().unwrap().push(Line {
                        at: SystemTime::now(),
                        text,
                    });
                }
            });
        }
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }

    /// SIGKILL: no cleanup, no lease release.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; its exit code, or None if it did not within `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Lines containing `needle`, in order.
    pub fn lines_with(&self, needle: &str) -> Vec<Line> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.text.contains(needle))
            .cloned()
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a lab server (`floatip-lab kube` or `ec2`) and returns it with the value of the
/// `KEY=value` line it prints first when ready.
pub fn spawn_ready(
    name: &str,
    cmd: Command,
    key: &str,
    log_dir: &Path,
    echo: bool,
    timeout: Duration,
) -> Result<(Proc, String)> {
    let mut proc = Proc::spawn(name, cmd, log_dir, echo)?;
    let prefix = format!("{key}=");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = proc.lines_with(&prefix).first() {
            let value = line.text.trim().trim_start_matches(&prefix).to_string();
            return Ok((proc, value));
        }
        if !proc.running() {
            anyhow::bail!(
                "{name} exited before it was ready; see {}",
                log_dir.join(format!("{name}.log")).display()
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!("{name} was not ready within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
