//! A simulated cluster for the floatip package's integration tests: the lab's API server and EC2
//! endpoint, a VPC with one subnet, instances with floating ENIs, Nodes and ready agent pods, and
//! real `floatip controller` processes configured as in production (flags, env, kubeconfig),
//! which each test starts and stops itself. It runs in the test's own network namespace; [`vpc`]
//! adds namespaces for the data-plane tests. (The [`crate::sim`] cluster instead runs a whole
//! failover scenario inside namespaces of its own.)

pub mod vpc;

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use floatip::api::FloatingIP;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use serde_json::json;

use crate::process::{beside_test_binary, Ec2Lab, KubeLab};

pub const CLUSTER: &str = "lab";
pub const NAMESPACE: &str = "floatip-system";

/// A node of the simulated cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub name: String,
    pub instance: String,
    pub eni: String,
}

/// A running `floatip controller`.
pub struct ControllerProc {
    child: Child,
    pub identity: String,
    pub admin: SocketAddr,
}

impl ControllerProc {
    pub fn metrics(&self) -> String {
        crate::sim::http(&self.admin.to_string(), "GET", "/metrics", "")
            .unwrap_or_else(|e| panic!("{e:#}"))
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

impl Drop for ControllerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    pub kube: KubeLab,
    pub ec2: Ec2Lab,
    pub client: kube::Client,
    pub aws: aws_sdk_ec2::Client,
    pub vpc: String,
    pub subnet: String,
    /// The security group every node's primary ENI has: not the VPC's default, as on EKS.
    pub node_security_group: String,
    pub nodes: Vec<ClusterNode>,
    pub controllers: Vec<ControllerProc>,
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
    /// How long EC2 shows attachments attaching and detaching: none by default, as these
    /// tests were written against attaches that take effect at once.
    pub eni_delays: crate::ec2::EniDelays,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            vpc_cidr: "10.0.0.0/16",
            subnet_cidr: "10.0.8.0/22",
            floating_enis: true,
            eni_delays: crate::ec2::EniDelays::NONE,
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
        let kube = KubeLab::start();
        let ec2 = Ec2Lab::start_with(&layout.eni_delays.flags().each_ref().map(String::as_str));
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

    pub async fn add_node(&mut self, name: &str) -> ClusterNode {
        self.add_node_with(name, true).await
    }

    /// A node; with `floating`, its floating ENI is created and attached at device index 1
    /// (`eni` is then that ENI, else empty).
    pub async fn add_node_with(&mut self, name: &str, floating: bool) -> ClusterNode {
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
        let sim = ClusterNode {
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
        let child = Command::new(beside_test_binary("floatip"))
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
        self.controllers.push(ControllerProc {
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

    pub fn node(&self, name: &str) -> &ClusterNode {
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
