//! A simulated cluster for controller tests: the lab's API server and EC2 endpoint, a VPC with
//! one subnet, instances with floating ENIs, Nodes and ready agent pods, and real
//! `floatip controller` processes configured as in production (flags, env, kubeconfig).

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use floatip::api::FloatingIP;
use floatip_lab::process::{spawn_ready, READY_TIMEOUT};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use serde_json::json;

use super::lab::{lab_binary, Lab};

pub const CLUSTER: &str = "lab";
pub const NAMESPACE: &str = "floatip-system";

/// `floatip-lab ec2`: moto behind the fault proxy.
pub struct Ec2Lab {
    child: Child,
    pub endpoint: String,
}

impl Ec2Lab {
    pub fn start() -> Self {
        let mut cmd = Command::new(lab_binary());
        cmd.args(["ec2", "--listen", "127.0.0.1:0"]);
        let (child, endpoint) =
            spawn_ready(cmd, "floatip-lab ec2", "AWS_ENDPOINT_URL", READY_TIMEOUT)
                .expect("the lab's EC2 endpoint");
        Self { child, endpoint }
    }

    /// An SDK client with retries off, so tests see EC2 as it is.
    pub fn client(&self) -> aws_sdk_ec2::Client {
        self.client_at(&self.endpoint)
    }

    fn client_at(&self, endpoint: &str) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-west-2"))
            .credentials_provider(Credentials::new("lab", "lab", None, None, "lab"))
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    /// A client that talks to moto directly, past the fault proxy: for watching EC2's state
    /// while faults are on.
    pub fn direct_client(&self) -> aws_sdk_ec2::Client {
        let info: serde_json::Value =
            serde_json::from_str(&self.control("GET", "/_lab/info", "")).expect("info JSON");
        let moto = info["moto_addr"].as_str().expect("moto_addr in /_lab/info");
        self.client_at(&format!("http://{moto}"))
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
        http(&self.endpoint, method, path, body)
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

/// One HTTP/1.1 request to a lab server; returns the body of a 2xx answer.
pub fn http(base: &str, method: &str, path: &str, body: &str) -> String {
    floatip_lab::sim::http(base.trim_start_matches("http://"), method, path, body)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A node of the simulated cluster.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub name: String,
    pub instance: String,
    pub eni: String,
}

/// A running `floatip controller`.
pub struct Controller {
    child: Child,
    pub identity: String,
    pub admin: SocketAddr,
}

impl Controller {
    pub fn metrics(&self) -> String {
        http(&format!("http://{}", self.admin), "GET", "/metrics", "")
    }

    pub fn try_metrics(&self) -> Option<String> {
        std::panic::catch_unwind(|| self.metrics()).ok()
    }

    pub fn is_leader(&self) -> bool {
        self.try_metrics()
            .is_some_and(|m| m.lines().any(|l| l == "floatip_leader 1"))
    }

    /// SIGKILL: no lease release, no cleanup.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    pub kube: Lab,
    pub ec2: Ec2Lab,
    pub client: kube::Client,
    pub aws: aws_sdk_ec2::Client,
    pub vpc: String,
    pub subnet: String,
    /// The security group every node's primary ENI has: not the VPC's default, as on EKS.
    pub node_security_group: String,
    pub nodes: Vec<SimNode>,
    pub controllers: Vec<Controller>,
    /// The next primary address handed to an instance or floating ENI. moto would pick random
    /// ones anywhere in the subnet, which can be a test's floating address.
    next_ip: u32,
}

/// How a simulated cluster is laid out.
#[derive(Debug, Clone)]
pub struct Layout {
    pub vpc_cidr: &'static str,
    pub subnet_cidr: &'static str,
    /// Give every node a floating ENI at device index 1 up front (else `floatip attach` does).
    pub floating_enis: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            vpc_cidr: "10.0.0.0/16",
            subnet_cidr: "10.0.8.0/22",
            floating_enis: true,
        }
    }
}

impl Cluster {
    /// Node primary addresses come from the bottom of the subnet, from its 10th address up;
    /// tests pick floating addresses near its top.
    fn take_ip(&mut self) -> String {
        let ip = std::net::Ipv4Addr::from(self.next_ip);
        self.next_ip += 1;
        ip.to_string()
    }

    /// A VPC, one subnet (10.0.8.0/22), `n` instances each with a floating ENI at device index
    /// 1, a Node per instance and a ready agent pod per node.
    pub async fn new(n: usize) -> Self {
        Self::with_layout(n, Layout::default()).await
    }

    pub async fn with_layout(n: usize, layout: Layout) -> Self {
        let kube = Lab::start();
        let ec2 = Ec2Lab::start();
        let client = kube.client();
        let aws = ec2.client();
        let vpc = aws
            .create_vpc()
            .cidr_block(layout.vpc_cidr)
            .send()
            .await
            .expect("vpc");
        let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = aws
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(layout.subnet_cidr)
            .availability_zone("us-west-2a")
            .send()
            .await
            .expect("subnet");
        let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
        let node_security_group = security_group(&aws, &vpc, "nodes").await;

        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        crds.create(&PostParams::default(), &FloatingIP::crd())
            .await
            .expect("CRD");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap(),
            )
            .await
            .expect("namespace");

        let mut cluster = Self {
            kube,
            ec2,
            client,
            aws,
            vpc,
            subnet,
            node_security_group,
            nodes: Vec::new(),
            controllers: Vec::new(),
            next_ip: {
                let (net, _) = layout.subnet_cidr.split_once('/').expect("a CIDR");
                u32::from(net.parse::<std::net::Ipv4Addr>().expect("an IPv4 subnet")) + 10
            },
        };
        for i in 1..=n {
            cluster
                .add_node_with(&format!("node-{i}"), layout.floating_enis)
                .await;
        }
        cluster
    }

    pub async fn add_node(&mut self, name: &str) -> SimNode {
        self.add_node_with(name, true).await
    }

    /// A node; with `floating`, its floating ENI is created and attached at device index 1
    /// (`eni` is then that ENI, else empty).
    pub async fn add_node_with(&mut self, name: &str, floating: bool) -> SimNode {
        let run = self
            .aws
            .run_instances()
            .private_ip_address(self.take_ip())
            .image_id("ami-0123456789abcdef0")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
            .min_count(1)
            .max_count(1)
            .subnet_id(&self.subnet)
            .security_group_ids(&self.node_security_group)
            .send()
            .await
            .expect("run instance");
        let instance = run.instances()[0].instance_id().unwrap().to_string();
        let eni = if floating {
            let tags = TagSpecification::builder()
                .resource_type(ResourceType::NetworkInterface)
                .tags(
                    Tag::builder()
                        .key("floatip.io/cluster")
                        .value(CLUSTER)
                        .build(),
                )
                .tags(Tag::builder().key("floatip.io/node").value(name).build())
                .tags(
                    Tag::builder()
                        .key("node.k8s.amazonaws.com/no_manage")
                        .value("true")
                        .build(),
                )
                .build();
            let eni = self
                .aws
                .create_network_interface()
                .private_ip_address(self.take_ip())
                .subnet_id(&self.subnet)
                .groups(&self.node_security_group)
                .tag_specifications(tags)
                .send()
                .await
                .expect("floating ENI");
            let eni = eni
                .network_interface()
                .unwrap()
                .network_interface_id()
                .unwrap()
                .to_string();
            self.aws
                .attach_network_interface()
                .network_interface_id(&eni)
                .instance_id(&instance)
                .device_index(1)
                .send()
                .await
                .expect("attach");
            eni
        } else {
            String::new()
        };

        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"providerID": format!("aws:///us-west-2a/{instance}")},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}
        }))
        .unwrap();
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("floatip-agent-{name}"),
                         "labels": {"app.kubernetes.io/name": "floatip", "app.kubernetes.io/component": "agent"}},
            "spec": {"nodeName": name, "containers": [{"name": "agent", "image": "floatip"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("agent pod");
        let sim = SimNode {
            name: name.to_string(),
            instance,
            eni,
        };
        self.nodes.push(sim.clone());
        sim
    }

    /// Starts a controller process named `identity`.
    pub fn start_controller(&mut self, identity: &str) -> usize {
        self.start_controller_with(identity, &[])
    }

    /// Starts a controller with extra environment (flags by their env names).
    pub fn start_controller_with(&mut self, identity: &str, env: &[(&str, &str)]) -> usize {
        let admin = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_floatip"))
            .arg("controller")
            .envs(env.iter().copied())
            .env("KUBECONFIG", self.kube.kubeconfig())
            .env("AWS_ENDPOINT_URL", &self.ec2.endpoint)
            .env("AWS_REGION", "us-west-2")
            .env("AWS_ACCESS_KEY_ID", "lab")
            .env("AWS_SECRET_ACCESS_KEY", "lab")
            // Never ask an instance metadata service: there is none, and no traffic may leave.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("FLOATIP_AGENT_NAMESPACE", NAMESPACE)
            .env("FLOATIP_CLUSTER_NAME", CLUSTER)
            .env("FLOATIP_ADMIN_ADDR", admin.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting floatip controller");
        self.controllers.push(Controller {
            child,
            identity: identity.to_string(),
            admin,
        });
        self.controllers.len() - 1
    }

    pub fn fips(&self) -> Api<FloatingIP> {
        Api::all(self.client.clone())
    }

    pub fn node_api(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    pub async fn create_fip(&self, name: &str, spec: serde_json::Value) -> FloatingIP {
        let mut spec = spec;
        if spec.get("subnetId").is_none() {
            spec["subnetId"] = json!(self.subnet);
        }
        let fip: FloatingIP = serde_json::from_value(json!({
            "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        self.fips()
            .create(&PostParams::default(), &fip)
            .await
            .expect("create FloatingIP")
    }

    /// Polls until `check` accepts the FloatingIP (or panics after `timeout`, naming `what`).
    pub async fn wait_fip(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&FloatingIP) -> bool,
    ) -> FloatingIP {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(f) = self.fips().get(name).await {
                if check(&f) {
                    return f;
                }
                last = Some(f);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "FloatingIP {name}: {what} did not happen within {timeout:?}; last seen: {:#?}",
            last.map(|f| f.status)
        );
    }

    /// The ENIs holding `address`, as EC2 says (through moto directly, past any fault).
    pub async fn holders(&self, address: &str) -> Vec<String> {
        let out = self
            .ec2
            .direct_client()
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("addresses.private-ip-address")
                    .values(address)
                    .build(),
            )
            .send()
            .await
            .expect("describe");
        let ip: IpAddr = address.parse().unwrap();
        out.network_interfaces()
            .iter()
            .filter(|n| {
                n.private_ip_addresses().iter().any(|a| {
                    a.primary() != Some(true)
                        && a.private_ip_address()
                            .and_then(|s| s.parse::<IpAddr>().ok())
                            == Some(ip)
                })
            })
            .filter_map(|n| n.network_interface_id().map(String::from))
            .collect()
    }

    pub fn node(&self, name: &str) -> &SimNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("known node")
    }

    pub async fn patch_node(&self, name: &str, patch: serde_json::Value) {
        self.node_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch node");
    }

    pub async fn patch_node_status(&self, name: &str, patch: serde_json::Value) {
        self.node_api()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch node status");
    }
}

/// A new security group in `vpc`; returns its ID.
pub async fn security_group(aws: &aws_sdk_ec2::Client, vpc: &str, name: &str) -> String {
    let out = aws
        .create_security_group()
        .vpc_id(vpc)
        .group_name(name)
        .description(format!("lab {name}"))
        .send()
        .await
        .expect("security group");
    out.group_id().expect("group id").to_string()
}

pub fn holder_of(f: &FloatingIP) -> Option<String> {
    f.status.as_ref()?.holder.as_ref().map(|h| h.node.clone())
}

pub fn condition(f: &FloatingIP, type_: &str) -> Option<(String, String, String)> {
    let c = f
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn is_ready(f: &FloatingIP) -> bool {
    condition(f, "Ready").is_some_and(|(s, _, _)| s == "True")
}

pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
