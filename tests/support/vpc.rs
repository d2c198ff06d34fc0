//! A VPC made of network namespaces that follows EC2 (moto): when an ENI is attached to a
//! node's instance, an interface with its MAC appears in the node's namespace (like a
//! hot-plugged ENI), wired to a router namespace. The router routes every address EC2 says an
//! ENI owns to that ENI's wire, after a convergence delay, and enforces the source/dest check:
//! a packet whose source the ENI does not own is dropped (`ip rule ... blackhole`).
//!
//! Subnet 10.99.8.0/22 (gateway 10.99.8.1), client 10.99.100.2 behind the router.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use super::cluster::{Cluster, Layout, CLUSTER, NAMESPACE};
use super::lab::Lab;
use super::net::Netns;

pub const GATEWAY: &str = "10.99.8.1";
pub const CLIENT: &str = "10.99.100.2";

pub fn layout() -> Layout {
    Layout {
        vpc_cidr: "10.99.0.0/16",
        subnet_cidr: "10.99.8.0/22",
        floating_enis: false,
    }
}

/// Shared with the follower thread: node index -> (instance, namespace name).
type Nodes = Arc<Mutex<BTreeMap<usize, (String, String)>>>;

pub struct Vpc {
    pub router: Netns,
    pub client: Netns,
    pub nodes: Vec<Option<Netns>>,
    shared: Nodes,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Vpc {
    /// Namespaces for every node of `cluster`, a router and a client; starts following EC2
    /// with `delay` between an ownership change in EC2 and the router acting on it.
    pub fn start(cluster: &Cluster, delay: Duration) -> Self {
        let router = Netns::new("router");
        router.sysctl("net.ipv4.ip_forward", "1");
        let client = Netns::new("client");
        super::net::veth(&client, "c0", None, &router, "rc");
        client.ip(&format!("addr add {CLIENT}/24 dev c0"));
        client.ip("route add default via 10.99.100.1");
        router.ip("addr add 10.99.100.1/24 dev rc");
        let shared: Nodes = Arc::default();
        let mut nodes = Vec::new();
        for (i, n) in cluster.nodes.iter().enumerate() {
            let ns = Netns::new(&format!("n{}", i + 1));
            shared
                .lock()
                .unwrap()
                .insert(i + 1, (n.instance.clone(), ns.name.clone()));
            nodes.push(Some(ns));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let follower = Follower {
            aws: cluster.ec2.direct_client(),
            subnet: cluster.subnet.clone(),
            router: router.name.clone(),
            nodes: shared.clone(),
            delay,
            seen: BTreeMap::new(),
            effective: BTreeMap::new(),
        };
        let s = stop.clone();
        let thread = std::thread::spawn(move || follower.run(&s));
        Self {
            router,
            client,
            nodes,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// The namespace of node `i` (1-based).
    pub fn node(&self, i: usize) -> &Netns {
        self.nodes[i - 1].as_ref().expect("node namespace")
    }

    /// Deletes node `i`'s namespace and makes a fresh, empty one (a reboot): the follower
    /// plugs the still-attached ENIs in again.
    pub fn recreate_node(&mut self, i: usize) {
        self.nodes[i - 1] = None;
        let ns = Netns::new(&format!("n{i}r"));
        if let Some(entry) = self.shared.lock().unwrap().get_mut(&i) {
            entry.1 = ns.name.clone();
        }
        self.nodes[i - 1] = Some(ns);
    }

    /// Waits until node `i` has an interface named `dev`.
    pub fn wait_link(&self, i: usize, dev: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.node(i).try_ip(&format!("link show {dev}")).is_err() {
            assert!(Instant::now() < deadline, "node {i}: {dev} did not appear");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vpc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Follower {
    aws: aws_sdk_ec2::Client,
    subnet: String,
    router: String,
    nodes: Nodes,
    delay: Duration,
    /// address -> (router interface EC2 says owns it, when first seen so).
    seen: BTreeMap<Ipv4Addr, (String, Instant)>,
    /// address -> router interface the router uses now.
    effective: BTreeMap<Ipv4Addr, String>,
}

fn ip(ns: &str, args: &str) -> Result<String, String> {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    super::net::try_run("ip", &all)
}

impl Follower {
    fn run(mut self, stop: &AtomicBool) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            if let Some(owned) = rt.block_on(self.read()) {
                self.converge(owned);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Plugs in interfaces for attached ENIs; returns address -> router interface per EC2.
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
        let nodes = self.nodes.lock().unwrap().clone();
        let router_links = ip(&self.router, "-o link").unwrap_or_default();
        let mut owned = BTreeMap::new();
        for ni in out.network_interfaces() {
            let Some(att) = ni.attachment() else { continue };
            let Some((idx, (_, ns))) = nodes
                .iter()
                .find(|(_, (inst, _))| att.instance_id() == Some(inst.as_str()))
            else {
                continue;
            };
            let dev = att.device_index().unwrap_or(0);
            let rdev = format!("r{idx}e{dev}");
            if !router_links.contains(&format!(" {rdev}@")) {
                self.plug(
                    ns,
                    dev,
                    ni.mac_address().unwrap_or_default(),
                    &rdev,
                    ni.private_ip_address(),
                );
                // A new wire: whatever the router had for the old one is gone with it.
                self.effective.retain(|_, d| *d != rdev);
            }
            for a in ni.private_ip_addresses() {
                if let Some(ip) = a.private_ip_address().and_then(|s| s.parse().ok()) {
                    owned.insert(ip, rdev.clone());
                }
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

    /// Moves the router to what EC2 has said for at least `delay`.
    fn converge(&mut self, owned: BTreeMap<Ipv4Addr, String>) {
        let now = Instant::now();
        self.seen.retain(|a, (d, _)| owned.get(a) == Some(d));
        for (a, d) in &owned {
            self.seen.entry(*a).or_insert((d.clone(), now));
        }
        let target: BTreeMap<Ipv4Addr, String> = self
            .seen
            .iter()
            .filter(|(_, (_, t))| now.duration_since(*t) >= self.delay)
            .map(|(a, (d, _))| (*a, d.clone()))
            .collect();
        // An address EC2 stopped showing anywhere keeps its old route until it shows up again.
        // A change is made before it is broken, in one `ip -batch`: the new route and the new
        // owner's allowed source first, then the old owner's allowed source goes. The VPC
        // switches in one step too; a half-switched router would drop replies for no reason.
        let mut cmds = Vec::new();
        let mut changed = Vec::new();
        for (a, d) in &target {
            let old = self.effective.get(a);
            if old == Some(d) {
                continue;
            }
            cmds.push(format!("route replace {a}/32 dev {d}"));
            cmds.push(format!("rule add iif {d} from {a} lookup main pref 1000"));
            if let Some(old) = old {
                cmds.push(format!("rule del iif {old} from {a} lookup main pref 1000"));
            }
            changed.push((*a, d.clone()));
        }
        if cmds.is_empty() {
            return;
        }
        // -force: a rule that already exists (it outlives an unplugged wire) is not an error.
        if batch(&self.router, &cmds) {
            self.effective.extend(changed);
        }
    }
}

/// Runs `ip -n <ns> -force -batch -` with `cmds`; true when `ip` could run them all.
fn batch(ns: &str, cmds: &[String]) -> bool {
    use std::io::Write;
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
    // Errors such as "File exists" for a rule that survived its wire are expected; the
    // routes and rules that matter are in place either way.
    let _ = child.wait();
    wrote
}

fn floatip(cluster: &Cluster) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floatip"));
    c.env("KUBECONFIG", cluster.kube.kubeconfig())
        .env("AWS_ENDPOINT_URL", &cluster.ec2.endpoint)
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ACCESS_KEY_ID", "lab")
        .env("AWS_SECRET_ACCESS_KEY", "lab")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("FLOATIP_CLUSTER_NAME", CLUSTER)
        .env("POD_NAMESPACE", NAMESPACE)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null());
    c
}

/// `floatip attach` for `node`, configuring `ns`; returns (success, stdout, stderr).
pub fn attach(cluster: &Cluster, node: &str, ns: &Netns) -> (bool, String, String) {
    let out = floatip(cluster)
        .arg("attach")
        .env("NODE_NAME", node)
        .env("FLOATIP_NETNS", ns.path())
        .env("FLOATIP_ATTACH_TIMEOUT", "20s")
        .output()
        .expect("run floatip attach");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `floatip agent` for `node`, configuring `ns`; killed on drop.
pub struct AgentProc {
    pub child: Child,
}

impl AgentProc {
    pub fn start(kube: &Lab, node: &str, ns: &Netns, env: &[(&str, &str)]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_floatip"))
            .arg("agent")
            .env("KUBECONFIG", kube.kubeconfig())
            .env("POD_NAMESPACE", NAMESPACE)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .env("NODE_NAME", node)
            .env("POD_NAME", format!("floatip-agent-{node}"))
            .env("FLOATIP_NETNS", ns.path())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start floatip agent");
        Self { child }
    }

    pub fn sigterm(&self) {
        super::net::run("kill", &["-TERM", &self.child.id().to_string()]);
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
