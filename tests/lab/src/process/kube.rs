//! `floatip-lab kube`, the Kubernetes API stand-in, for one test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::{beside_test_binary, spawn_ready, READY_TIMEOUT};

/// `floatip-lab kube` on a free loopback port with a kubeconfig of its own in a temporary
/// folder; killed on drop.
pub struct KubeLab {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl KubeLab {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra flags, e.g. `--bookmark-interval-ms 200`.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(beside_test_binary("floatip-lab"));
        cmd.args(["kube", "--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(dir.path().join("kubeconfig"))
            .args(extra);
        let (child, url) = spawn_ready(cmd, "floatip-lab kube", "KUBE_URL", READY_TIMEOUT)
            .expect("the lab's API server");
        Self { child, url, dir }
    }

    /// The kubeconfig the server wrote for itself.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The server's temporary folder (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A kube-rs client for this server. Call it inside a Tokio runtime.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("lab URL"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Installs faults (`POST /_lab/faults`), e.g. `{"outageSeconds": 3}`.
    pub fn faults(&self, body: &str) {
        self.control("POST", "/_lab/faults", body);
    }

    /// Clears every fault (`DELETE /_lab/faults`).
    pub fn clear_faults(&self) {
        self.control("DELETE", "/_lab/faults", "");
    }

    /// One request to the control endpoint (`/_lab/...`), which must answer 2xx; its body.
    pub fn control(&self, method: &str, path: &str, body: &str) -> String {
        crate::sim::http(self.url.trim_start_matches("http://"), method, path, body)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs kubectl against this server with its own discovery cache.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl finishes")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

impl Drop for KubeLab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
