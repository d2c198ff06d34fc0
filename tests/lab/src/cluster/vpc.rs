//! A VPC made of network namespaces that follows EC2 (moto), for the agent, attach and
//! handover tests: the lab's router ([`crate::sim::vpc::Follower`]: hot-plugged ENI
//! interfaces, routes after a convergence delay, the source/dest check) with nodes and a
//! client built by these tests.
//!
//! Subnet 10.99.8.0/22 (gateway 10.99.8.1), client 10.99.100.2 behind the router.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Cluster, Layout, CLUSTER, NAMESPACE};
use crate::process::{beside_test_binary, KubeLab};
use crate::sim::net::{self, Netns};
use crate::sim::vpc::Follower;

pub const CLIENT: &str = "10.99.100.2";

pub fn layout() -> Layout {
    Layout {
        vpc_cidr: "10.99.0.0/16",
        subnet_cidr: "10.99.8.0/22",
        floating_enis: false,
        eni_delays: crate::ec2::EniDelays::NONE,
    }
}

pub struct Vpc {
    // The follower stops before the namespaces it wires go.
    follower: Follower,
    pub router: Netns,
    pub client: Netns,
    pub nodes: Vec<Option<Netns>>,
}

impl Vpc {
    /// Namespaces for every node of `cluster`, a router and a client; starts following EC2
    /// with `delay` between an ownership change in EC2 and the router acting on it.
    pub fn start(cluster: &Cluster, delay: Duration) -> Self {
        let router = Netns::new("router").unwrap();
        router.sysctl("net.ipv4.ip_forward", "1").unwrap();
        let client = Netns::new("client").unwrap();
        net::veth(&client, "c0", &router, "rc").unwrap();
        client.ip(&format!("addr add {CLIENT}/24 dev c0")).unwrap();
        client.ip("route add default via 10.99.100.1").unwrap();
        router.ip("addr add 10.99.100.1/24 dev rc").unwrap();
        let mut map = BTreeMap::new();
        let mut nodes = Vec::new();
        for (i, n) in cluster.nodes.iter().enumerate() {
            let ns = Netns::new(&format!("n{}", i + 1)).unwrap();
            map.insert(i + 1, (n.instance.clone(), ns.name.clone()));
            nodes.push(Some(ns));
        }
        let follower = Follower::start(
            cluster.ec2.direct_client(),
            &cluster.ec2.endpoint,
            cluster.subnet.clone(),
            router.name.clone(),
            map,
            // The client here is in no subnet of EC2's: these tests use no route tables.
            Vec::new(),
            delay,
        );
        Self {
            follower,
            router,
            client,
            nodes,
        }
    }

    /// When the router switched `address` to a node, in order.
    pub fn switches(&self, address: std::net::IpAddr) -> Vec<std::time::SystemTime> {
        self.follower.switches(address)
    }

    /// The namespace of node `i` (1-based).
    pub fn node(&self, i: usize) -> &Netns {
        self.nodes[i - 1].as_ref().expect("node namespace")
    }

    /// Deletes node `i`'s namespace and makes a fresh, empty one (a reboot): the follower
    /// plugs the still-attached ENIs in again.
    pub fn recreate_node(&mut self, i: usize) {
        self.nodes[i - 1] = None;
        let ns = Netns::new(&format!("n{i}r")).unwrap();
        if let Some(entry) = self.follower.seen.lock().unwrap().nodes.get_mut(&i) {
            entry.1 = ns.name.clone();
        }
        self.nodes[i - 1] = Some(ns);
    }

    /// Waits until node `i` has an interface named `dev`.
    pub fn wait_link(&self, i: usize, dev: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.node(i).ip(&format!("link show {dev}")).is_err() {
            assert!(Instant::now() < deadline, "node {i}: {dev} did not appear");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn floatip(cluster: &Cluster) -> Command {
    let mut c = Command::new(beside_test_binary("floatip"));
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
    attach_with(cluster, node, ns, &[])
}

/// `floatip attach` with extra environment (flags by their env names).
pub fn attach_with(
    cluster: &Cluster,
    node: &str,
    ns: &Netns,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let out = floatip(cluster)
        .arg("attach")
        .envs(env.iter().copied())
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
    /// Its admin server (/readyz, /livez, /metrics). The agent runs in the test's own network
    /// namespace, so each gets a free loopback port rather than the node-wide default.
    pub admin: SocketAddr,
}

impl AgentProc {
    pub fn start(kube: &KubeLab, node: &str, ns: &Netns, env: &[(&str, &str)]) -> Self {
        let admin = super::free_port();
        let child = Command::new(beside_test_binary("floatip"))
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
            .env("FLOATIP_ADMIN_ADDR", admin.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start floatip agent");
        Self { child, admin }
    }

    /// GET `path` on its admin server: (status code, body); None while it does not answer.
    pub async fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        crate::sim::kubelet::http_get(self.admin, path, Duration::from_secs(2))
            .await
            .ok()
    }

    pub fn sigterm(&self) {
        net::run("kill", &["-TERM", &self.child.id().to_string()]).expect("kill -TERM");
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
