//! A lab that stays up, driven from outside as a person would: `floatip-lab up --no-demo` runs
//! as its own process, and this test reads the env file it writes and runs `floatip-lab ctl`:
//! kill the holder under client traffic (the JSON shows the outage and its end), revive it, cut
//! the controllers off for 3 s, restart the controllers and an agent; then SIGINT tears it all
//! down. Root only (network namespaces); skipped with a message otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use floatip_lab::sim::envfile;
use floatip_lab::sim::traffic::request_once;
use floatip_lab::sim::{http, net};
use serde_json::Value;

const LAB: &str = env!("CARGO_BIN_EXE_floatip-lab");

/// The `up` process; interrupted (and killed if that is not enough) if the test fails early.
struct Up {
    child: Child,
    env: PathBuf,
    logs: PathBuf,
}

impl Up {
    fn start(dir: &Path) -> Self {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let env = dir.join("lab.env");
        let out = std::fs::File::create(dir.join("up.log")).unwrap();
        let child = Command::new(LAB)
            .args(["up", "--no-demo", "--env-file"])
            .arg(&env)
            .arg("--log-dir")
            .arg(&logs)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("floatip-lab up");
        Self { child, env, logs }
    }

    /// The env file's variables once `up` wrote it.
    fn wait_ready(&mut self, timeout: Duration) -> BTreeMap<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(vars) = envfile::read(&self.env) {
                return vars;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "up exited ({status}) before the lab was ready; see {}",
                    self.logs.with_file_name("up.log").display()
                );
            }
            assert!(Instant::now() < deadline, "no env file within {timeout:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn interrupt(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None))
            && self.interrupt(Duration::from_secs(30)).is_none()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ctl(env: &Path, args: &[&str]) -> Output {
    Command::new(LAB)
        .arg("ctl")
        .arg("--env-file")
        .arg(env)
        .args(args)
        .output()
        .expect("floatip-lab ctl")
}

/// Runs `floatip-lab ctl`, which must succeed; its stdout.
fn ctl_ok(env: &Path, args: &[&str]) -> String {
    let out = ctl(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ctl {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kubectl in the infra namespace with the env file's KUBECONFIG, as the README shows.
fn kubectl(vars: &BTreeMap<String, String>, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &vars["FLOATIP_LAB_INFRA"], "kubectl"])
        .args(args)
        .env("KUBECONFIG", &vars["KUBECONFIG"])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One TCP request from namespace `ns` to `to`: the node that answered, or why none did.
fn request_from(ns: &str, to: &str) -> Result<String, String> {
    let (ns, to) = (
        PathBuf::from(format!("/run/netns/{ns}")),
        to.parse().unwrap(),
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(request_once(ns, to, Duration::from_millis(500)))
}

#[test]
fn a_lab_that_stays_up_is_driven_with_ctl() {
    if let Some(why) = net::unavailable() {
        eprintln!("SKIP: the simulated VPC {why}");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ctl");
    let _ = std::fs::remove_dir_all(&dir);
    let mut up = Up::start(&dir);
    let vars = up.wait_ready(Duration::from_secs(300));
    let env = up.env.clone();
    let pid = vars["FLOATIP_LAB_PID"].clone();
    assert_eq!(pid, up.child.id().to_string());
    let vip = format!(
        "{}:{}",
        vars["FLOATIP_LAB_VIP"], vars["FLOATIP_LAB_NODE_PORT"]
    );

    // The holder dies under client traffic: the outage shows, and so does its end.
    let holder = kubectl(
        &vars,
        &["get", "fip", "web", "-o", "jsonpath={.status.holder.node}"],
    );
    let n = holder.trim_start_matches("node-").to_string();
    let traffic = Command::new(LAB)
        .args(["ctl", "--env-file"])
        .arg(&env)
        .args(["traffic", &vip, "--seconds", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(ctl_ok(&env, &["kill-node", &n]).contains(&format!("{holder} is dead")));
    let out = traffic.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("traffic prints JSON");
    println!("{report:#}");
    for proto in ["tcp", "udp"] {
        let o = &report[proto];
        assert!(
            o["failed"].as_u64().unwrap() > 0,
            "{proto}: the client saw the holder die"
        );
        assert!(
            o["recovered"].is_string(),
            "{proto}: and the address answer again"
        );
        let ms = o["outage_ms"].as_u64().unwrap();
        assert!(ms > 0 && ms < 8000, "{proto}: outage {ms} ms");
    }
    let answered = report["answered_by"].as_object().unwrap();
    assert!(
        answered.contains_key(&holder) && answered.len() == 2,
        "{answered:?}"
    );

    // A node that is dead already is said so, in one line, with a failing exit.
    let again = ctl(&env, &["kill-node", &n]);
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert_eq!(why.trim(), format!("floatip-lab: {holder} is dead already"));

    assert!(ctl_ok(&env, &["revive-node", &n]).contains("is back"));

    // The controllers lose the nodes for 3 s; the client does not; then the routes are back.
    let infra = vars["FLOATIP_LAB_INFRA"].clone();
    let node_2 = format!(
        "{}:{}",
        vars["FLOATIP_LAB_NODE_2_IP"], vars["FLOATIP_LAB_NODE_PORT"]
    );
    assert_eq!(request_from(&infra, &node_2).as_deref(), Ok("node-2"));
    let started = Instant::now();
    let partition = Command::new(LAB)
        .args(["ctl", "--env-file"])
        .arg(&env)
        .args(["partition", "controllers", "--seconds", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        request_from(&infra, &node_2).is_err(),
        "the controllers still reach node-2"
    );
    assert!(
        request_from(&vars["FLOATIP_LAB_CLIENT"], &vip).is_ok(),
        "the client lost the address"
    );
    assert!(partition.wait_with_output().unwrap().status.success());
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(
        request_from(&infra, &node_2).as_deref(),
        Ok("node-2"),
        "routes restored"
    );

    // Restarts: the controllers come back on the admin ports the env file names; node-1's
    // agent gets a new pod.
    ctl_ok(&env, &["restart", "controllers"]);
    for i in [1, 2] {
        let admin = vars[&format!("FLOATIP_LAB_CONTROLLER_{i}_ADMIN")].clone();
        let metrics = in_namespace(&infra, move || http(&admin, "GET", "/metrics", ""));
        assert!(metrics.is_ok(), "controller {i}: {metrics:?}");
    }
    let agent_pod = |jsonpath: &str| {
        kubectl(
            &vars,
            &[
                "-n",
                "floatip-system",
                "get",
                "pod",
                "floatip-agent-node-1",
                "-o",
                &format!("jsonpath={jsonpath}"),
            ],
        )
    };
    let uid = || agent_pod("{.metadata.uid}");
    let before = uid();
    assert!(ctl_ok(&env, &["restart", "agent", "1"]).contains("node-1's agent restarted"));
    assert_ne!(uid(), before, "a new pod");
    let ready = || agent_pod(r#"{.status.conditions[?(@.type=="Ready")].status}"#);
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready() != "True" {
        assert!(
            Instant::now() < deadline,
            "the new agent pod never became Ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(up.logs.join("agent-node-1.log")).unwrap();
    let last_start = log.rfind("--- agent-node-1 started").unwrap();
    assert!(
        log[..last_start].contains("SIGTERM"),
        "the old agent was stopped with SIGTERM"
    );

    // Ctrl-C: everything goes, and ctl says there is no lab.
    let status = up
        .interrupt(Duration::from_secs(60))
        .expect("up stops on SIGINT");
    assert!(status.success(), "up exited with {status}");
    let left = net::run("ip", &["netns", "list"]).unwrap();
    let prefix = format!("fipl{pid}-");
    assert!(!left.contains(&prefix), "namespaces left behind: {left}");
    assert!(!env.exists() && !envfile::socket_path(&env).exists());
    let gone = ctl(&env, &["kill-node", "1"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).starts_with("floatip-lab: no lab is running"));
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from(format!("/run/netns/{ns}"));
    std::thread::spawn(move || {
        net::enter(&path).expect("entering the namespace");
        f()
    })
    .join()
    .expect("the thread")
}
