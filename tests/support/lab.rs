//! Starts the lab's Kubernetes API stand-in (`floatip-lab kube`) on a free loopback port for one
//! test, and kills it on drop.
//!
//! The binary belongs to another package of the workspace, so Cargo does not build it for these
//! tests: it is looked up next to the test binary (`target/<profile>/floatip-lab`) and must have
//! been built first with `cargo build -p floatip-lab`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command};

use floatip_lab::process::{spawn_ready, READY_TIMEOUT};

pub struct Lab {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Lab {
    pub fn start() -> Self {
        let bin = lab_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(&bin);
        cmd.args(["kube", "--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(dir.path().join("kubeconfig"));
        let (child, url) = spawn_ready(cmd, "floatip-lab kube", "KUBE_URL", READY_TIMEOUT)
            .expect("the lab's API server");
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    /// The kubeconfig the lab wrote for itself.
    pub fn kubeconfig(&self) -> PathBuf {
        self._dir.path().join("kubeconfig")
    }

    /// A kube-rs client for this server. Needs a Tokio runtime.
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

    /// One HTTP/1.1 request to the lab's control endpoint; returns the body.
    fn control(&self, method: &str, path: &str, body: &str) -> String {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect to the lab");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send to the lab");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read from the lab");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{method} {path}: {head}");
        body.to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/floatip-lab`: the test binary lives in `target/<profile>/deps/`.
pub fn lab_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary sits in target/<profile>/deps");
    let bin = profile_dir.join(format!("floatip-lab{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p floatip-lab` first (same profile and target dir as \
         the tests)",
        bin.display()
    );
    bin
}
