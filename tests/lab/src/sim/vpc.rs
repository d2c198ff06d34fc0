//! The VPC: a router namespace that follows EC2 (moto). When an ENI is attached to a node's
//! instance, an interface with its MAC appears in the node's namespace (as a hot-plugged ENI
//! does), wired to the router. The router routes every address EC2 says an ENI owns to that
//! ENI's wire once EC2 has said so for the convergence delay, drops what is sent to an address
//! EC2 has shown on no ENI for that long (as AWS does), and enforces the source/dest check: a
//! packet whose source the sending ENI does not own is dropped.
//!
//! The follower also checks, at every read, that no address is held by two ENIs in EC2.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ec2::types::Filter;

use routes::{Plan, Routes};

mod routes;

/// The subnet's gateway, on every router-side wire.
pub const GATEWAY: &str = "10.99.8.1";
/// How often EC2 is read.
pub const POLL: Duration = Duration::from_millis(100);

/// A change the router made: `address` now goes to node `node` (1-based).
#[derive(Debug, Clone)]
pub struct Switch {
    pub at: SystemTime,
    pub address: Ipv4Addr,
    pub node: usize,
}

/// What the follower saw; shared with the simulation.
#[derive(Debug, Default)]
pub struct Seen {
    /// Node index (1-based) -> (instance id, namespace name).
    pub nodes: BTreeMap<usize, (String, String)>,
    pub switches: Vec<Switch>,
    /// Addresses EC2 showed on two ENIs at once: (when, address, ENIs).
    pub double_holders: Vec<(SystemTime, Ipv4Addr, Vec<String>)>,
    /// Completed reads of EC2.
    pub reads: u64,
}

pub struct Follower {
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    pub fn start(
        aws: aws_sdk_ec2::Client,
        subnet: String,
        router: String,
        nodes: BTreeMap<usize, (String, String)>,
        delay: Duration,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen {
            nodes,
            ..Seen::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let state = State {
            aws,
            subnet,
            router,
            seen: seen.clone(),
            routes: Routes::new(delay),
        };
        let s = stop.clone();
        let thread = std::thread::spawn(move || state.run(&s));
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for `n` more reads of EC2 (so the router has seen what EC2 says now).
    pub fn wait_reads(&self, n: u64, timeout: Duration) -> bool {
        let start = self.seen.lock().unwrap().reads;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.seen.lock().unwrap().reads >= start + n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    aws: aws_sdk_ec2::Client,
    subnet: String,
    router: String,
    seen: Arc<Mutex<Seen>>,
    routes: Routes,
}

fn ip(ns: &str, args: &str) -> Result<String, String> {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    super::net::run("ip", &all).map_err(|e| e.to_string())
}

/// The router's wire for device `dev` of node `node`.
fn wire(node: usize, dev: i32) -> String {
    format!("r{node}e{dev}")
}

fn node_of_wire(w: &str) -> Option<usize> {
    w.strip_prefix('r')?.split('e').next()?.parse().ok()
}

impl State {
    fn run(mut self, stop: &AtomicBool) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        while !stop.load(Ordering::Relaxed) {
            if let Some(owned) = rt.block_on(self.read()) {
                self.converge(owned);
                self.seen.lock().unwrap().reads += 1;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Plugs in interfaces for attached ENIs; returns address -> router wire, as EC2 says.
    async fn read(&mut self) -> Option<BTreeMap<Ipv4Addr, String>> {
        let out = self
            .aws
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("subnet-id")
                    .values(&self.subnet)
                    .build(),
            )
            .send()
            .await
            .ok()?;
        let nodes = self.seen.lock().unwrap().nodes.clone();
        let router_links = ip(&self.router, "-o link").unwrap_or_default();
        let mut owned = BTreeMap::new();
        let mut holders: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
        for ni in out.network_interfaces() {
            for a in ni
                .private_ip_addresses()
                .iter()
                .filter(|a| a.primary() != Some(true))
            {
                if let Some(ip) = a.private_ip_address().and_then(|s| s.parse().ok()) {
                    holders
                        .entry(ip)
                        .or_default()
                        .push(ni.network_interface_id().unwrap_or_default().to_string());
                }
            }
            let Some(att) = ni.attachment() else { continue };
            let Some((idx, (_, ns))) = nodes
                .iter()
                .find(|(_, (inst, _))| att.instance_id() == Some(inst.as_str()))
            else {
                continue;
            };
            let dev = att.device_index().unwrap_or(0);
            let rdev = wire(*idx, dev);
            if !router_links.contains(&format!(" {rdev}@")) {
                self.plug(
                    ns,
                    dev,
                    ni.mac_address().unwrap_or_default(),
                    &rdev,
                    ni.private_ip_address(),
                );
                self.routes.forget_wire(&rdev);
            }
            for a in ni.private_ip_addresses() {
                if let Some(ip) = a.private_ip_address().and_then(|s| s.parse().ok()) {
                    owned.insert(ip, rdev.clone());
                }
            }
        }
        let doubles: Vec<_> = holders.into_iter().filter(|(_, h)| h.len() > 1).collect();
        if !doubles.is_empty() {
            let now = SystemTime::now();
            let mut seen = self.seen.lock().unwrap();
            for (ip, enis) in doubles {
                seen.double_holders.push((now, ip, enis));
            }
        }
        Some(owned)
    }

    fn plug(&self, ns: &str, dev: i32, mac: &str, rdev: &str, primary: Option<&str>) {
        let name = format!("eth{dev}");
        let r = &self.router;
        if ip(
            ns,
            &format!("link add {name} address {mac} type veth peer name {rdev} netns {r}"),
        )
        .is_err()
        {
            return;
        }
        let _ = ip(r, &format!("link set {rdev} up"));
        let _ = ip(r, &format!("addr add {GATEWAY}/32 dev {rdev}"));
        let _ = ip(r, &format!("rule add iif {rdev} blackhole pref 30000"));
        if dev == 0 {
            // The primary ENI is configured by the OS at boot.
            let _ = ip(ns, &format!("link set {name} up"));
            if let Some(p) = primary {
                let _ = ip(ns, &format!("addr add {p}/22 dev {name}"));
            }
            let _ = ip(ns, &format!("route add default via {GATEWAY} dev {name}"));
        }
    }

    /// Moves the router to what EC2 has said for at least the convergence delay.
    fn converge(&mut self, owned: BTreeMap<Ipv4Addr, String>) {
        let plan = self.routes.plan(&owned, Instant::now());
        if plan.cmds.is_empty() || !batch(&self.router, &plan.cmds) {
            return;
        }
        self.routes.applied(&plan);
        self.record(&plan);
    }

    fn record(&self, plan: &Plan) {
        let at = SystemTime::now();
        let mut seen = self.seen.lock().unwrap();
        for (address, d) in &plan.routed {
            if let Some(node) = d.as_deref().and_then(node_of_wire) {
                seen.switches.push(Switch {
                    at,
                    address: *address,
                    node,
                });
            }
        }
    }
}

/// Runs `ip -n <ns> -force -batch -` with `cmds`; true when `ip` could be fed them all.
fn batch(ns: &str, cmds: &[String]) -> bool {
    let Ok(mut child) = Command::new("ip")
        .args(["-n", ns, "-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let input = cmds.join("\n") + "\n";
    let wrote = child
        .stdin
        .take()
        .is_some_and(|mut s| s.write_all(input.as_bytes()).is_ok());
    // "File exists" for a rule that outlived its wire is expected; -force goes on past it.
    let _ = child.wait();
    wrote
}

#[cfg(test)]
mod tests {
    #[test]
    fn wires_name_their_node() {
        assert_eq!(super::wire(3, 1), "r3e1");
        assert_eq!(super::node_of_wire("r3e1"), Some(3));
        assert_eq!(super::node_of_wire("rc"), None);
    }
}
