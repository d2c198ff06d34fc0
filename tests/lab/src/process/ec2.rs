//! `floatip-lab ec2`, moto behind the lab's fault proxy, for one test.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{beside_test_binary, spawn_ready, READY_TIMEOUT};
use crate::sim::ec2_client as client_at;

/// `floatip-lab ec2` on a free loopback port; stopped on drop.
pub struct Ec2Lab {
    child: Child,
    /// `http://127.0.0.1:PORT`: what AWS_ENDPOINT_URL would be set to.
    pub endpoint: String,
}

impl Ec2Lab {
    pub fn start() -> Self {
        let mut cmd = Command::new(beside_test_binary("floatip-lab"));
        cmd.args(["ec2", "--listen", "127.0.0.1:0"]);
        let (child, endpoint) =
            spawn_ready(cmd, "floatip-lab ec2", "AWS_ENDPOINT_URL", READY_TIMEOUT)
                .expect("the lab's EC2 endpoint");
        Self { child, endpoint }
    }

    /// An SDK client with retries off, so tests see EC2 as it is.
    pub fn client(&self) -> aws_sdk_ec2::Client {
        client_at(&self.endpoint)
    }

    /// A client that talks to moto directly, past the fault proxy: for watching EC2's state
    /// while faults are on.
    pub fn direct_client(&self) -> aws_sdk_ec2::Client {
        let info: serde_json::Value =
            serde_json::from_str(&self.control("GET", "/_lab/info", "")).expect("info JSON");
        let moto = info["moto_addr"].as_str().expect("moto_addr in /_lab/info");
        client_at(&format!("http://{moto}"))
    }

    pub fn faults(&self, body: &str) {
        self.control("POST", "/_lab/faults", body);
    }

    pub fn clear_faults(&self) {
        self.control("DELETE", "/_lab/faults", "");
    }

    /// `{"total", "mutating", "actions": {Action: {"calls", "faulted", "mutating"}}}`
    pub fn calls(&self) -> serde_json::Value {
        serde_json::from_str(&self.control("GET", "/_lab/calls", "")).expect("calls JSON")
    }

    pub fn reset_calls(&self) {
        self.control("DELETE", "/_lab/calls", "");
    }

    fn control(&self, method: &str, path: &str, body: &str) -> String {
        crate::sim::http(
            self.endpoint.trim_start_matches("http://"),
            method,
            path,
            body,
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

impl Drop for Ec2Lab {
    fn drop(&mut self) {
        // SIGTERM lets the lab stop moto; moto also exits when its stdin closes.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
