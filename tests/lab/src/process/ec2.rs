//! `floatip-lab ec2`, moto behind the lab's fault proxy, for one test.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::retry::RetryConfig;

use super::{beside_test_binary, spawn_ready, READY_TIMEOUT};

/// How long the lab and its moto get to exit once stopped.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// `floatip-lab ec2` on a free loopback port. Stopped on drop, which checks the lab's promise
/// that its moto process does not outlive it.
pub struct Ec2Lab {
    child: Child,
    /// `http://127.0.0.1:PORT`: what AWS_ENDPOINT_URL would be set to.
    pub endpoint: String,
    pub moto_pid: u32,
}

impl Ec2Lab {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Ec2Lab::start`] with more `floatip-lab ec2` flags, e.g. `["--latency-ms", "150"]`.
    pub fn start_with(flags: &[&str]) -> Self {
        let mut cmd = Command::new(beside_test_binary("floatip-lab"));
        cmd.args(["ec2", "--listen", "127.0.0.1:0"]).args(flags);
        let (child, endpoint) =
            spawn_ready(cmd, "floatip-lab ec2", "AWS_ENDPOINT_URL", READY_TIMEOUT)
                .expect("the lab's EC2 endpoint");
        let mut lab = Self {
            child,
            endpoint,
            moto_pid: 0,
        };
        let info = lab.control_json("GET", "/_lab/info", "");
        lab.moto_pid = info["moto_pid"].as_u64().expect("moto_pid") as u32;
        lab
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An SDK client with retries off, so tests see every fault as EC2 answers it.
    pub fn client(&self) -> aws_sdk_ec2::Client {
        self.client_with(RetryConfig::disabled())
    }

    pub fn client_with(&self, retry: RetryConfig) -> aws_sdk_ec2::Client {
        crate::sim::ec2_client_with(&self.endpoint, retry)
    }

    /// A client that talks to moto directly, past the fault proxy: for watching EC2's state
    /// while faults are on.
    pub fn direct_client(&self) -> aws_sdk_ec2::Client {
        let info = self.control_json("GET", "/_lab/info", "");
        let moto = info["moto_addr"].as_str().expect("moto_addr in /_lab/info");
        crate::sim::ec2_client_with(&format!("http://{moto}"), RetryConfig::disabled())
    }

    /// Arms a fault (`POST /_lab/faults`), e.g. `{"kind": "throttle", "count": 2}`; returns it
    /// as the lab armed it.
    pub fn faults(&self, fault: &str) -> serde_json::Value {
        self.control_json("POST", "/_lab/faults", fault)
    }

    pub fn clear_faults(&self) {
        self.control_json("DELETE", "/_lab/faults", "");
    }

    /// `{"total", "mutating", "actions": {Action: {"calls", "faulted", "mutating"}}}`
    pub fn calls(&self) -> serde_json::Value {
        self.control_json("GET", "/_lab/calls", "")
    }

    /// Makes `address` the primary address EC2 gives the next new ENI that names none
    /// (`POST /_lab/primaries`), as EC2 may pick any free address of the subnet.
    pub fn give_next_eni(&self, address: &str) {
        let body = serde_json::json!({ "address": address }).to_string();
        self.control_json("POST", "/_lab/primaries", &body);
    }

    pub fn reset_calls(&self) {
        self.control_json("DELETE", "/_lab/calls", "");
    }

    /// One request to the control endpoint (`/_lab/...`); its status code and body, whatever
    /// they are.
    pub fn control(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        crate::sim::http_status(
            self.endpoint.trim_start_matches("http://"),
            method,
            path,
            body,
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Like [`Ec2Lab::control`] but expects success and parses the JSON body.
    pub fn control_json(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let (status, reply) = self.control(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {reply}"
        );
        serde_json::from_str(&reply).expect("JSON from the control endpoint")
    }
}

impl Drop for Ec2Lab {
    fn drop(&mut self) {
        // SIGTERM lets the lab stop moto itself; SIGKILL only if it does not exit in time.
        let termed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while termed && matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let moto_gone = super::wait_until_gone(self.moto_pid, STOP_TIMEOUT);
        if !std::thread::panicking() {
            assert!(moto_gone, "moto (pid {}) outlived the lab", self.moto_pid);
        }
    }
}
