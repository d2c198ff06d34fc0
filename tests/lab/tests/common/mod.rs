//! Starts `floatip-lab ec2` on a free loopback port for one test and stops it on drop, checking
//! that neither the lab nor its moto process is left running.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use floatip_lab::process::{spawn_ready, READY_TIMEOUT};

const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Lab {
    child: Child,
    /// `http://127.0.0.1:PORT`: what AWS_ENDPOINT_URL would be set to.
    pub endpoint: String,
    pub moto_pid: u32,
}

impl Lab {
    pub fn start() -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_floatip-lab"));
        cmd.args(["ec2", "--listen", "127.0.0.1:0"]);
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

    /// An EC2 client for the lab, with retries off so every fault reaches the caller.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        self.ec2_with(RetryConfig::disabled())
    }

    pub fn ec2_with(&self, retry: RetryConfig) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .credentials_provider(Credentials::new("lab", "lab", None, None, "lab"))
            .endpoint_url(&self.endpoint)
            .retry_config(retry)
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    /// Calls the control endpoint; returns the status code and body.
    pub fn control(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let authority = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(authority).expect("connecting to the lab");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .expect("reading the lab's reply");
        let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
        (status.expect("a status code"), body.to_owned())
    }

    /// Like [`Lab::control`] but expects success and parses the JSON body.
    pub fn control_json(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let (status, reply) = self.control(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {reply}"
        );
        serde_json::from_str(&reply).expect("JSON from the control endpoint")
    }

    pub fn arm(&self, fault: serde_json::Value) -> serde_json::Value {
        self.control_json("POST", "/_lab/faults", &fault.to_string())
    }
}

impl Drop for Lab {
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
        let moto_gone = wait_until_gone(self.moto_pid, STOP_TIMEOUT);
        if !std::thread::panicking() {
            assert!(moto_gone, "moto (pid {}) outlived the lab", self.moto_pid);
        }
    }
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
