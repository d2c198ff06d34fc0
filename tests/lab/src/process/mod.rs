//! The lab's servers as child processes of a test (`floatip-lab kube` and `floatip-lab ec2`, each
//! on a free loopback port and stopped on drop), and the one way the tests of both packages start
//! such a process and wait until it is ready.

mod ec2;
mod kube;

pub use ec2::Ec2Lab;
pub use kube::KubeLab;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a lab server may take to print its ready line. The first `floatip-lab ec2` on a
/// fresh machine installs moto into a virtualenv first (about a minute, longer while other
/// tests wait on the same install); the API server is ready in milliseconds.
pub const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// How many of the child's last stderr lines an error quotes.
const STDERR_TAIL: usize = 40;

/// `target/<profile>/<name>`, a binary of the workspace built beside the running test (which
/// sits in `target/<profile>/deps/`). Cargo builds a package's own binaries before its
/// integration tests, but not another package's: the floatip package's tests need
/// `cargo build --workspace --bins` first for `floatip-lab`, and this panics saying so.
pub fn beside_test_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary sits in target/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (same profile and target dir \
         as the tests)",
        bin.display()
    );
    bin
}

/// Starts `cmd` and waits for the first line of its stdout, which must be `<key>=<value>` (the
/// lab servers print `KUBE_URL=...` and `AWS_ENDPOINT_URL=...` once they listen); returns the
/// child and the value. `what` names the server in errors.
///
/// The child's stdin is closed. Its stderr is passed on to this process's stderr line by line as
/// it comes, and the rest of its stdout is read and dropped, so it never blocks on a full pipe.
/// When the child exits, prints another first line, or is not ready within `timeout` (it is
/// then killed), the error quotes the last lines of its stderr.
pub fn spawn_ready(
    mut cmd: Command,
    what: &str,
    key: &str,
    timeout: Duration,
) -> Result<(Child, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what} ({:?})", cmd.get_program()))?;
    let stderr = pass_on_stderr(&mut child)?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let (first, first_line) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let got = matches!(reader.read_line(&mut line), Ok(n) if n > 0);
        let _ = first.send(got.then_some(line));
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });

    let failure = match first_line.recv_timeout(timeout) {
        Ok(Some(line)) => match line.trim().strip_prefix(&format!("{key}=")) {
            Some(value) => return Ok((child, value.to_string())),
            None => {
                let _ = child.kill();
                format!("printed {:?} first, not {key}=...", line.trim())
            }
        },
        Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => "closed its stdout".to_string(),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            format!("printed no {key}= line within {timeout:?}")
        }
    };
    let status = child
        .wait()
        .map(|s| s.to_string())
        .unwrap_or_else(|e| format!("unknown exit ({e})"));
    bail!(
        "{what} {failure} and ended ({status}); the end of its stderr:\n{}",
        stderr.wait_and_show()
    )
}

/// The last lines a child wrote to stderr, and a signal for when its stderr closed.
struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    closed: mpsc::Receiver<()>,
}

impl StderrTail {
    /// The lines kept, once the child's stderr closed (or after a second: a grandchild such as
    /// moto may hold it open).
    fn wait_and_show(self) -> String {
        let _ = self.closed.recv_timeout(Duration::from_secs(1));
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            return "(nothing)".to_string();
        }
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Copies the child's stderr to ours line by line, keeping the last [`STDERR_TAIL`] lines.
fn pass_on_stderr(child: &mut Child) -> Result<StderrTail> {
    let stderr = child.stderr.take().context("the child's stderr")?;
    let lines = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
    let (closed_tx, closed) = mpsc::channel();
    let kept = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(std::io::stderr(), "{line}");
            let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() == STDERR_TAIL {
                kept.pop_front();
            }
            kept.push_back(line);
        }
        let _ = closed_tx.send(());
    });
    Ok(StderrTail { lines, closed })
}

/// Whether `pid` runs (a zombie has exited: only its parent has yet to reap it).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the ")" closing the command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Waits until `pid` no longer runs; whether it stopped within `timeout`.
pub fn wait_until_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn returns_the_value_of_the_ready_line() {
        let (mut child, value) = spawn_ready(
            sh("echo KUBE_URL=http://127.0.0.1:1; echo more; sleep 5"),
            "server",
            "KUBE_URL",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(value, "http://127.0.0.1:1");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn an_early_exit_quotes_stderr() {
        let err = spawn_ready(
            sh("echo 'error: port in use' >&2; exit 3"),
            "server",
            "KUBE_URL",
            Duration::from_secs(10),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("server closed its stdout"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("error: port in use"), "{err}");
    }

    #[test]
    fn another_first_line_is_an_error() {
        let err = spawn_ready(
            // stderr first: the child is killed as soon as its first stdout line is read, so
            // what it writes to stderr after that line may never be written.
            sh("echo why >&2; echo hello; sleep 5"),
            "server",
            "KUBE_URL",
            Duration::from_secs(10),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("printed \"hello\" first"), "{err}");
        assert!(err.contains("why"), "{err}");
    }

    #[test]
    fn a_silent_server_times_out_and_is_killed() {
        let err = spawn_ready(
            sh("echo starting >&2; sleep 30"),
            "server",
            "KUBE_URL",
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no KUBE_URL= line within 300ms"), "{err}");
        assert!(err.contains("signal: 9"), "{err}");
        assert!(err.contains("starting"), "{err}");
    }
}
