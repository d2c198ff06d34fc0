//! A simulated cluster in a simulated VPC, built from network namespaces, running the real
//! floatip binaries configured as in production (flags, environment, kubeconfig):
//!
//! ```text
//!   infra (10.99.200.2)           the lab's API server and EC2 on its loopback; the
//!     |                           controllers, `floatip attach` and the agents run here and
//!     |                           reach nodes through the router (agents configure their node
//!     |                           through FLOATIP_NETNS)
//!   router (VPC) ---- client (10.99.100.2, fd00:99:100::2)
//!     |       \------ internet (192.0.2.2): reaches nodes only through Elastic IPs
//!     |  follows EC2: which ENI owns which address, IPv4 and IPv6, and which private address
//!     |  each Elastic IP is associated with (after the convergence delay); source/dest check
//!     |  on every ENI wire
//!   node 1..n: eth0 primary ENI (10.99.8.11...), eth1 floating ENI (hot-plugged when EC2
//!     attaches it), an IPv6 default route on each, NodePort 30080 DNAT -> pod namespace
//!     (10.244.i.2 and fd00:244:i::2, port 8080), TCP and UDP
//! ```
//!
//! The VPC's IPv6 block is the one EC2 gives it; the node subnet has its /64 number 8.
//! Everything lives in namespaces this process creates, so no packet leaves them; they are
//! deleted when the simulation is dropped (and by the next lab run if this one was killed).

pub mod bench;
pub mod control;
pub mod ctl;
pub mod disrupt;
pub mod envfile;
pub mod flavor;
pub mod identity;
pub mod keepalived;
pub mod kubelet;
pub mod monitor;
pub mod net;
pub mod network;
pub mod prepare;
pub mod procs;
pub mod scale;
pub mod service;
pub mod soak;
pub mod timeline;
pub mod traffic;
pub mod up;
pub mod vpc;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::Filter;
use floatip::api::FloatingIP;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use serde_json::json;

use kubelet::Kubelet;
use monitor::{Change, Changes, Down, Monitor};
use net::Netns;
use procs::{spawn_ready, Proc};
use service::{Service, NODE_PORT};
use traffic::Traffic;
use vpc::Follower;

pub const CLUSTER: &str = "lab";
pub const NAMESPACE: &str = "floatip-system";
pub const VIP: &str = "10.99.8.100";
pub const FIP: &str = "web";
const VPC_CIDR: &str = "10.99.0.0/16";
/// The router's address on the infra network: the infra namespace's way into the VPC.
const ROUTER_ON_INFRA: &str = "10.99.200.1";
const REGION: &str = "us-west-2";

/// How a simulation is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    pub controllers: usize,
    /// How long the VPC takes to route a moved address to its new ENI (AWS: about 1.2 s).
    pub convergence: Duration,
    /// How long every EC2 call waits in the lab's fault proxy before it is carried out: the
    /// round trip to the Region that the lab's EC2, on this machine, lacks.
    pub ec2_latency: Duration,
    /// How long the lab's EC2 shows ENI attachments attaching and detaching.
    pub eni_delays: crate::ec2::EniDelays,
    /// The agents' --release-delay.
    pub release_delay: Duration,
    /// The FloatingIP's failover.minHoldSeconds.
    pub min_hold_seconds: u32,
    /// Copy every process's log lines to stderr as they come.
    pub echo: bool,
    /// Where process logs go; a temporary folder when None.
    pub log_dir: Option<PathBuf>,
    /// Print each setup step.
    pub progress: bool,
    /// The kinds of FloatingIP to run ([`flavor`]): "web" (SecondaryIp) always runs; each
    /// other flavor gets a FloatingIP of its own once "web" answers.
    pub flavors: Vec<flavor::Flavor>,
    /// Run floatip (the FloatingIP, `floatip attach`, agents, controllers). False for a
    /// baseline that stands in for it ([`keepalived`]): nodes, services and the VPC only.
    pub floatip: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 3,
            controllers: 2,
            convergence: Duration::from_millis(1200),
            ec2_latency: Duration::ZERO,
            eni_delays: crate::ec2::EniDelays::DEFAULT,
            release_delay: Duration::from_secs(2),
            min_hold_seconds: 3,
            echo: false,
            log_dir: None,
            progress: false,
            flavors: vec![flavor::Flavor::SecondaryIp],
            floatip: true,
        }
    }
}

/// The binaries a simulation runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `floatip-lab` (for its `kube` and `ec2` servers).
    pub lab: PathBuf,
    pub floatip: PathBuf,
}

impl Binaries {
    /// `floatip` is looked for next to `lab` (both are built into `target/<profile>/`); when it
    /// is missing and `build` is set it is built with cargo first.
    pub fn beside(lab: PathBuf, build: bool) -> Result<Self> {
        let dir = lab
            .parent()
            .map(|d| {
                if d.ends_with("deps") {
                    d.parent().unwrap_or(d)
                } else {
                    d
                }
            })
            .context("floatip-lab has no folder")?
            .to_path_buf();
        let floatip = dir.join("floatip");
        if build {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            // --workspace: the same crate features as the build of floatip-lab itself and as
            // `cargo nextest run --workspace`, so no dependency is compiled a second time
            // (a `-p floatip` build once rebuilt aws-sdk-ec2 for a feature of bitflags).
            cmd.args(["build", "--workspace", "--bin", "floatip"]);
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().context("running cargo to build floatip")?;
            if !status.success() {
                bail!("building floatip failed");
            }
        }
        if !floatip.is_file() {
            bail!(
                "{} is missing: build it with `cargo build --workspace --bin floatip` (same profile as floatip-lab)",
                floatip.display()
            );
        }
        Ok(Self { lab, floatip })
    }
}

/// Runs `f` on a thread inside a fresh "infra" namespace with its own Tokio runtime, so that
/// everything it starts (servers, floatip processes, clients) lives in namespaces this process
/// created. The namespace is removed afterwards.
pub fn isolated<T, F, Fut>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Netns) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    prepare::prepare()?;
    net::remove_stale();
    let infra = Netns::new("infra")?;
    std::thread::spawn(move || {
        net::enter(&infra.path())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(f(infra))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the simulation panicked"))?
}

/// One node: its namespace, its service and its agent.
pub struct SimNode {
    pub name: String,
    pub index: usize,
    pub instance: String,
    pub primary_ip: String,
    pub agent: Option<Proc>,
    /// Where its agent serves /metrics, /readyz and /livez, once one was started.
    pub agent_admin: Option<SocketAddr>,
    pub service: Service,
    pub ns: Netns,
}

/// A controller replica.
pub struct Controller {
    pub proc: Proc,
    pub identity: String,
    pub admin: SocketAddr,
}

impl Controller {
    /// Whether its /metrics says it leads; None when it does not answer.
    pub fn leading(&self) -> Option<bool> {
        let m = http(&self.admin.to_string(), "GET", "/metrics", "").ok()?;
        Some(m.lines().any(|l| l == "floatip_leader 1"))
    }
}

/// A running simulation. Dropping it stops every process and removes every namespace.
pub struct Sim {
    pub opts: Options,
    // Drop order matters: processes first, then what they use, namespaces last.
    /// Turns each agent's /readyz into its pod's Ready condition.
    pub kubelet: Kubelet,
    pub controllers: Vec<Option<Controller>>,
    pub nodes: Vec<SimNode>,
    _monitors: Vec<Monitor>,
    pub follower: Follower,
    pub changes: Changes,
    pub downs: Vec<Down>,
    pub client_ns: Netns,
    /// The internet (or an Outpost's on-premises network): reaches nodes through Elastic IPs.
    pub internet_ns: Netns,
    pub router: Netns,
    kube_proc: Option<Proc>,
    _ec2_proc: Proc,
    bins: Binaries,
    pub kube_addr: String,
    pub kubeconfig: PathBuf,
    pub ec2_endpoint: String,
    pub client: kube::Client,
    /// Straight to moto, past the fault proxy: to see EC2 as it is while faults are on.
    pub direct: aws_sdk_ec2::Client,
    pub subnet: String,
    pub vpc: network::Vpc,
    /// The FloatingIPs of [`Options::flavors`] besides "web", as created.
    pub flavors: Vec<flavor::Fip>,
    /// FloatingIPs kept on web's node ([`scale`]).
    pub companions: Vec<scale::Companion>,
    pub log_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    infra: PathBuf,
}

fn ec2_client(endpoint: &str) -> aws_sdk_ec2::Client {
    ec2_client_with(endpoint, RetryConfig::disabled())
}

/// An SDK client for a lab EC2 endpoint (or moto itself) with the lab's region and credentials.
pub fn ec2_client_with(endpoint: &str, retry: RetryConfig) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("lab", "lab", None, None, "lab"))
        .retry_config(retry)
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

impl Sim {
    /// Builds the cluster: API server, EC2, VPC, nodes, services, a FloatingIP, `floatip
    /// attach` on every node, agents and controllers; returns once the address answers from
    /// its first holder. Must run inside [`isolated`]; `infra` is its namespace.
    /// When it fails, its log folder is kept (a temporary one too) and the error names it.
    pub async fn start(infra: &Netns, bins: Binaries, opts: Options) -> Result<Self> {
        let (tmp, log_dir) = match &opts.log_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        match Self::start_logging_to(infra, bins, opts, log_dir.clone()).await {
            Ok(mut sim) => {
                sim._tmp = tmp;
                Ok(sim)
            }
            Err(e) => {
                if let Some(t) = tmp {
                    let _ = t.keep();
                }
                Err(e.context(format!(
                    "starting the simulated VPC (logs kept in {})",
                    log_dir.display()
                )))
            }
        }
    }

    /// Keeps the log folder after the simulation ends (a temporary one is otherwise removed);
    /// for a run that failed. Returns the folder.
    pub fn keep_logs(&mut self) -> &Path {
        if let Some(t) = self._tmp.take() {
            let _ = t.keep();
        }
        &self.log_dir
    }

    async fn start_logging_to(
        infra: &Netns,
        bins: Binaries,
        opts: Options,
        log_dir: PathBuf,
    ) -> Result<Self> {
        let progress = opts.progress;
        let say = |msg: &str| {
            if progress {
                eprintln!("==> {msg}");
            }
        };
        say("starting the Kubernetes API stand-in and EC2 (moto)");
        let kubeconfig = log_dir.join("kubeconfig");
        let kube_proc = Self::kube_server(&bins, &log_dir, "127.0.0.1:0", opts.echo)?;
        let kube_addr = kube_proc.1.trim_start_matches("http://").to_string();
        identity::write_kubeconfigs(&log_dir, &kube_proc.1, NAMESPACE)?;
        let mut ec2 = Command::new(&bins.lab);
        // The virtualenv [`prepare::prepare`] built outside the namespaces: nothing can be
        // downloaded from in here.
        ec2.args(["ec2", "--listen", "127.0.0.1:0", "--venv"])
            .arg(crate::ec2::venv_root()?)
            .arg("--latency-ms")
            .arg(opts.ec2_latency.as_millis().to_string())
            .args(opts.eni_delays.flags());
        let (ec2_proc, ec2_endpoint) = spawn_ready(
            "ec2",
            ec2,
            "AWS_ENDPOINT_URL",
            &log_dir,
            opts.echo,
            Duration::from_secs(900),
        )?;
        let info: serde_json::Value = serde_json::from_str(&http(
            &ec2_endpoint.replace("http://", ""),
            "GET",
            "/_lab/info",
            "",
        )?)?;
        let moto = info["moto_addr"].as_str().context("moto_addr")?;
        let direct = ec2_client(&format!("http://{moto}"));
        let client =
            kube::Client::try_from(kube::Config::new(format!("http://{kube_addr}").parse()?))?;

        say("creating the VPC, subnet and instances in EC2, and the Nodes in Kubernetes");
        let aws = ec2_client(&ec2_endpoint);
        let vpc = network::create_vpc(&aws).await?;
        let (subnet, node_group) = (vpc.subnet.clone(), vpc.node_group.clone());
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        crds.create(&PostParams::default(), &FloatingIP::crd())
            .await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
            )
            .await?;

        say("wiring the router, the client and the nodes (network namespaces)");
        let edges = network::wire(infra)?;
        let (router, client_ns) = (edges.router, edges.client);
        let mut pending = Vec::new();
        let mut map = std::collections::BTreeMap::new();
        for index in 1..=opts.nodes {
            let name = format!("node-{index}");
            let primary_ip = format!("10.99.8.{}", 10 + index);
            let run = aws
                .run_instances()
                .private_ip_address(&primary_ip)
                .image_id("ami-0123456789abcdef0")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnet)
                .security_group_ids(&node_group)
                .send()
                .await?;
            let instance = run.instances()[0]
                .instance_id()
                .context("instance id")?
                .to_string();
            let ns = network::node_ns(index)?;
            map.insert(index, (instance.clone(), ns.name.clone()));
            create_node(&client, &name, &instance, &primary_ip).await?;
            pending.push((index, name, instance, primary_ip, ns));
        }
        let follower = Follower::start(
            direct.clone(),
            &ec2_endpoint,
            subnet.clone(),
            router.name.clone(),
            map,
            vpc.edge_subnets(),
            opts.convergence,
        );
        let changes: Changes = Default::default();
        let mut nodes = Vec::new();
        let mut monitors = Vec::new();
        for (index, name, instance, primary_ip, ns) in pending {
            wait_until(Duration::from_secs(20), &format!("{name}'s eth0"), || {
                ns.ip("link show eth0").is_ok()
            })
            .await?;
            let service = Service::start(&ns, index, &name)?;
            monitors.push(Monitor::start(&ns.name, index, VIP, changes.clone())?);
            nodes.push(SimNode {
                name,
                index,
                instance,
                primary_ip,
                agent: None,
                agent_admin: None,
                service,
                ns,
            });
        }
        let mut sim = Self {
            kubelet: Kubelet::new(client.clone(), NAMESPACE, kubelet::AGENT_READINESS),
            controllers: Vec::new(),
            nodes,
            _monitors: monitors,
            follower,
            changes,
            downs: Vec::new(),
            client_ns,
            internet_ns: edges.internet,
            router,
            kube_proc: Some(kube_proc.0),
            _ec2_proc: ec2_proc,
            bins,
            kube_addr,
            kubeconfig,
            ec2_endpoint,
            client,
            direct,
            subnet,
            vpc,
            flavors: Vec::new(),
            companions: Vec::new(),
            log_dir,
            _tmp: None,
            infra: infra.path(),
            opts,
        };
        if !sim.opts.floatip {
            return Ok(sim);
        }
        say(&format!(
            "kubectl apply -f - (FloatingIP {FIP}, address {VIP})"
        ));
        let out = sim.kubectl(&["apply", "-f", "-"], Some(&sim.example_fip()))?;
        if !out.status.success() {
            bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
        }
        for i in 0..sim.nodes.len() {
            let name = sim.nodes[i].name.clone();
            say(&format!(
                "floatip attach on {name} (the agent's init container)"
            ));
            sim.attach(&name)?;
        }
        for i in 0..sim.nodes.len() {
            let name = sim.nodes[i].name.clone();
            say(&format!("floatip agent on {name}"));
            sim.start_agent(&name)?;
        }
        // Agents first, as a DaemonSet's pods usually are: a controller that saw the holder's
        // agent not ready yet would move the address off it.
        say("waiting for every agent pod to be Ready (the kubelet stand-in probes /readyz)");
        let agents: Vec<String> = sim
            .nodes
            .iter()
            .map(|n| format!("floatip-agent-{}", n.name))
            .collect();
        sim.kubelet
            .wait_ready(&agents, Duration::from_secs(30))
            .await?;
        for i in 0..sim.opts.controllers {
            let identity = format!("floatip-controller-{}", (b'a' + i as u8) as char);
            say(&format!("floatip controller {identity}"));
            sim.start_controller(&identity)?;
        }
        say("waiting for a leader and for the address to answer");
        wait_until(Duration::from_secs(30), "a leader", || {
            sim.leader().is_some()
        })
        .await?;
        sim.settle(Duration::from_secs(30)).await?;
        for f in sim.opts.flavors.clone() {
            if f != flavor::Flavor::SecondaryIp {
                say(&format!("FloatingIP {} ({f:?})", f.name()));
                sim.add_flavor(f).await?;
            }
        }
        Ok(sim)
    }

    fn kube_server(
        bins: &Binaries,
        log_dir: &Path,
        listen: &str,
        echo: bool,
    ) -> Result<(Proc, String)> {
        let mut kube = Command::new(&bins.lab);
        kube.args(["kube", "--listen", listen, "--kubeconfig"])
            .arg(log_dir.join("kubeconfig"))
            .arg("--state")
            .arg(log_dir.join("kube-state.json"));
        spawn_ready(
            "kube",
            kube,
            "KUBE_URL",
            log_dir,
            echo,
            Duration::from_secs(30),
        )
    }

    /// The example FloatingIP every simulation starts with.
    pub fn example_fip(&self) -> String {
        format!(
            "apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata:\n  name: {FIP}\nspec:\n  address: {VIP}\n  subnetId: {}\n  healthCheck:\n    protocol: TCP\n    port: {NODE_PORT}\n  failover:\n    minHoldSeconds: {}\n",
            self.subnet, self.opts.min_hold_seconds
        )
    }

    fn floatip(&self, sub: &str) -> Command {
        // Each process as the chart's ServiceAccount and IAM role for it (sim::identity).
        let sa = identity::service_account(sub);
        let mut c = Command::new(&self.bins.floatip);
        c.arg(sub)
            .env("KUBECONFIG", identity::kubeconfig(&self.log_dir, sa))
            .env("AWS_ENDPOINT_URL", &self.ec2_endpoint)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", sa)
            .env("AWS_SECRET_ACCESS_KEY", "lab")
            // There is no instance metadata service, and no traffic may leave the namespaces.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("FLOATIP_CLUSTER_NAME", CLUSTER)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("FLOATIP_LAB_LOG").unwrap_or_else(|_| "info".into()),
            );
        c
    }

    pub fn node(&self, name: &str) -> Result<&SimNode> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no node {name}"))
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut SimNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .with_context(|| format!("no node {name}"))
    }

    /// `floatip attach` for `name`, as its init container runs it.
    pub fn attach(&self, name: &str) -> Result<String> {
        let node = self.node(name)?;
        let out = self
            .floatip("attach")
            .env("NODE_NAME", name)
            .env("FLOATIP_NETNS", node.ns.path())
            .env("FLOATIP_ATTACH_TIMEOUT", "30s")
            .output()
            .context("running floatip attach")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        std::fs::write(self.log_dir.join(format!("attach-{name}.log")), &text)?;
        if !out.status.success() {
            bail!("floatip attach on {name} failed: {}", text.trim());
        }
        network::advertise6(&node.ns);
        Ok(text)
    }

    pub fn start_agent(&mut self, name: &str) -> Result<()> {
        let node = self.node(name)?;
        // Every agent runs in the infra namespace, so each needs its own port.
        let admin = free_port()?;
        let pod = format!("floatip-agent-{name}");
        let mut cmd = self.floatip("agent");
        cmd.env("NODE_NAME", name)
            .env("POD_NAME", &pod)
            .env("FLOATIP_NETNS", node.ns.path())
            .env("FLOATIP_ADMIN_ADDR", admin.to_string())
            .env(
                "FLOATIP_RELEASE_DELAY",
                format!("{}ms", self.opts.release_delay.as_millis()),
            );
        let proc = Proc::spawn(&format!("agent-{name}"), cmd, &self.log_dir, self.opts.echo)?;
        let node = self.node_mut(name)?;
        node.agent = Some(proc);
        node.agent_admin = Some(admin);
        self.kubelet.container_started(&pod, admin);
        Ok(())
    }

    pub fn start_controller(&mut self, identity: &str) -> Result<usize> {
        let controller = self.spawn_controller(identity, free_port()?)?;
        self.controllers.push(Some(controller));
        Ok(self.controllers.len() - 1)
    }

    /// A controller process named `identity` (its pod name) serving /metrics on `admin`.
    fn spawn_controller(&self, identity: &str, admin: SocketAddr) -> Result<Controller> {
        let mut cmd = self.floatip("controller");
        cmd.env("POD_NAME", identity)
            .env("FLOATIP_AGENT_NAMESPACE", NAMESPACE)
            .env("FLOATIP_ADMIN_ADDR", admin.to_string());
        let proc = Proc::spawn(identity, cmd, &self.log_dir, self.opts.echo)?;
        Ok(Controller {
            proc,
            identity: identity.to_string(),
            admin,
        })
    }

    /// The /metrics of the leading controller.
    pub fn leader_metrics(&self) -> Result<String> {
        let i = self.leader().context("no controller says it leads")?;
        let c = self.controllers[i].as_ref().context("the leader is gone")?;
        http(&c.admin.to_string(), "GET", "/metrics", "")
    }

    /// The /metrics of the agent on node `name`.
    pub fn agent_metrics(&self, name: &str) -> Result<String> {
        let admin = self.node(name)?.agent_admin;
        let admin = admin.with_context(|| format!("no agent was started on {name}"))?;
        http(&admin.to_string(), "GET", "/metrics", "")
    }

    /// The index of the leading controller, if one says it leads.
    pub fn leader(&self) -> Option<usize> {
        self.controllers
            .iter()
            .position(|c| c.as_ref().and_then(Controller::leading) == Some(true))
    }

    /// SIGKILL for the leader; returns its index.
    pub fn kill9_leader(&mut self) -> Result<usize> {
        let i = self.leader().context("no leader to kill")?;
        if let Some(c) = self.controllers[i].as_mut() {
            c.proc.kill9();
        }
        self.controllers[i] = None;
        Ok(i)
    }

    pub async fn fip(&self) -> Result<FloatingIP> {
        self.fip_named(FIP).await
    }

    /// The FloatingIP `name` (a flavor's: [`flavor::Flavor::name`]).
    pub async fn fip_named(&self, name: &str) -> Result<FloatingIP> {
        Ok(Api::<FloatingIP>::all(self.client.clone())
            .get(name)
            .await?)
    }

    pub async fn holder(&self) -> Option<String> {
        let f = self.fip().await.ok()?;
        f.status?.holder.map(|h| h.node)
    }

    /// Polls the FloatingIP until `check` accepts it.
    pub async fn wait_fip(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&FloatingIP) -> bool,
    ) -> Result<FloatingIP> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(f) = self.fip().await {
                if check(&f) {
                    return Ok(f);
                }
                last = Some(f);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!(
            "{what} did not happen within {timeout:?}; status: {:?}",
            last.and_then(|f| f.status)
        )
    }

    /// The ENIs holding the address in EC2 (as a secondary address), straight from moto.
    pub async fn ec2_holders(&self) -> Result<Vec<String>> {
        let out = self
            .direct
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("addresses.private-ip-address")
                    .values(VIP)
                    .build(),
            )
            .send()
            .await?;
        Ok(out
            .network_interfaces()
            .iter()
            .filter(|n| {
                n.private_ip_addresses()
                    .iter()
                    .any(|a| a.primary() != Some(true) && a.private_ip_address() == Some(VIP))
            })
            .filter_map(|n| n.network_interface_id().map(String::from))
            .collect())
    }

    /// Nodes the address is configured on now (from the monitors), live or not.
    pub fn configured_on(&self) -> Vec<usize> {
        let mut on = std::collections::BTreeMap::new();
        for c in self.changes.lock().unwrap().iter() {
            on.insert(c.node, c.present);
        }
        on.into_iter().filter(|(_, p)| *p).map(|(n, _)| n).collect()
    }

    /// Waits until everything agrees: no move pending, status names the one ENI EC2 has the
    /// address on, the holder node has it configured, and the client gets answers from the
    /// holder. Fails (the "status matches EC2 after each settle" invariant) otherwise.
    pub async fn settle(&self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut why = String::new();
        while Instant::now() < deadline {
            match self.agreement().await {
                Ok(holder) => return Ok(holder),
                Err(e) => why = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("did not settle within {timeout:?}: {why}")
    }

    async fn agreement(&self) -> Result<String> {
        let f = self.fip().await?;
        let status = f.status.context("no status")?;
        if status.pending_move.is_some() {
            bail!("a move is pending");
        }
        let holder = status.holder.context("no holder")?;
        let in_ec2 = self.ec2_holders().await?;
        let eni = holder.network_interface_id.clone().unwrap_or_default();
        if in_ec2 != [eni.clone()] {
            bail!(
                "status says {} ({eni}), EC2 has it on {in_ec2:?}",
                holder.node
            );
        }
        let index = self.node(&holder.node)?.index;
        if !self.configured_on().contains(&index) {
            bail!("{} does not have the address configured", holder.node);
        }
        let answer = self.request_once().await;
        if answer.as_deref().ok() != Some(holder.node.as_str()) {
            bail!(
                "the client got {answer:?}, not an answer from {}",
                holder.node
            );
        }
        Ok(holder.node)
    }

    /// One TCP request from the client to the address.
    pub async fn request_once(&self) -> Result<String, String> {
        let to: SocketAddr = format!("{VIP}:{NODE_PORT}").parse().expect("address");
        traffic::request_once(self.client_ns.path(), to, Duration::from_millis(500)).await
    }

    /// Client traffic to the address: TCP and UDP every 10 ms, each with a 1 s timeout.
    pub fn traffic(&self) -> Traffic {
        self.traffic_to(format!("{VIP}:{NODE_PORT}").parse().expect("address"))
    }

    /// Client traffic to `to`, as [`Sim::traffic`] sends it to the address.
    pub fn traffic_to(&self, to: SocketAddr) -> Traffic {
        Traffic::start(
            self.client_ns.path(),
            to,
            Duration::from_millis(10),
            Duration::from_secs(1),
        )
    }

    /// The invariants that must hold through every scenario: no address on two ENIs in EC2,
    /// and never on two live nodes for longer than the release delay plus one second.
    pub fn check_invariants(&self) -> Result<InvariantReport> {
        let doubles = self.follower.seen.lock().unwrap().double_holders.clone();
        if let Some((at, ip, enis)) = doubles.first() {
            bail!(
                "EC2 had {ip} on {enis:?} at once (at {})",
                timeline::clock(*at)
            );
        }
        let changes: Vec<Change> = self.changes.lock().unwrap().clone();
        let overlap = monitor::longest_overlap(&changes, &self.downs, SystemTime::now());
        let bound = self.overlap_bound();
        if let Some((at, d)) = overlap {
            if d > bound {
                bail!(
                    "{VIP} was configured on two live nodes for {} ms from {} (bound {} ms)",
                    d.as_millis(),
                    timeline::clock(at),
                    bound.as_millis()
                );
            }
        }
        Ok(InvariantReport {
            ec2_reads: self.follower.seen.lock().unwrap().reads,
            longest_overlap: overlap.map(|(_, d)| d).unwrap_or_default(),
            bound,
        })
    }

    /// How long the address may be on two live nodes: the old holder keeps it for the
    /// release delay after the new one has it, plus a second for the agent to notice.
    pub fn overlap_bound(&self) -> Duration {
        self.opts.release_delay + Duration::from_secs(1)
    }

    /// Stops (false) or starts (true) the service's pod on `name`.
    pub fn set_service(&mut self, name: &str, up: bool) -> Result<()> {
        self.node_mut(name)?.service.set_up(up)
    }

    /// The node dies: its agent is killed and its links go down.
    pub fn kill_node(&mut self, name: &str) -> Result<()> {
        if self.is_down(name)? {
            bail!("{name} is dead already");
        }
        let at = SystemTime::now();
        self.kubelet.node_died(&format!("floatip-agent-{name}"));
        let node = self.node_mut(name)?;
        if let Some(mut a) = node.agent.take() {
            a.kill9();
        }
        // Every ENI's link: eth0, the floating ENI's eth1, and a whole ENI's (Interface mode).
        let links = node.ns.ip("-o link show").unwrap_or_default();
        let devs = (links.lines())
            .filter_map(|l| l.split(": ").nth(1))
            .map(|d| d.split('@').next().unwrap_or(d))
            .filter(|d| d.starts_with("eth"))
            .map(String::from)
            .collect::<Vec<_>>();
        for dev in devs {
            let _ = node.ns.ip(&format!("link set {dev} down"));
        }
        let index = node.index;
        self.downs.push(Down {
            node: index,
            from: at,
            to: None,
        });
        Ok(())
    }

    /// The node comes back (a reboot): links up, `floatip attach` again, a new agent.
    pub fn revive_node(&mut self, name: &str) -> Result<()> {
        if !self.is_down(name)? {
            bail!("{name} is not dead: there is nothing to revive");
        }
        let node = self.node(name)?;
        let index = node.index;
        node.ns.ip("link set eth0 up")?;
        let _ = node.ns.ip("link set eth1 up");
        // Links going down took the default route with them.
        node.ns.ip(&format!(
            "route replace default via {} dev eth0",
            vpc::GATEWAY
        ))?;
        network::advertise6(&node.ns);
        if let Some(d) = self
            .downs
            .iter_mut()
            .rev()
            .find(|d| d.node == index && d.to.is_none())
        {
            d.to = Some(SystemTime::now());
        }
        if !self.opts.floatip {
            return Ok(());
        }
        self.attach(name)?;
        self.start_agent(name)
    }

    /// Whether `name` was killed ([`Sim::kill_node`]) and not revived since.
    pub fn is_down(&self, name: &str) -> Result<bool> {
        let index = self.node(name)?.index;
        Ok(self.downs.iter().any(|d| d.node == index && d.to.is_none()))
    }

    /// Restarts the API server process: SIGTERM (it saves its objects, as etcd keeps them),
    /// `down` without any server, then a new process on the same address.
    pub async fn restart_kube(&mut self, down: Duration) -> Result<()> {
        if let Some(mut p) = self.kube_proc.take() {
            p.signal("TERM");
            if p.wait(Duration::from_secs(10)).is_none() {
                bail!("the API server did not stop on SIGTERM");
            }
        }
        tokio::time::sleep(down).await;
        let (proc, _) =
            Self::kube_server(&self.bins, &self.log_dir, &self.kube_addr, self.opts.echo)?;
        self.kube_proc = Some(proc);
        Ok(())
    }

    /// Arms an EC2 fault (`floatip-lab ec2`'s /_lab/faults), e.g. `{"kind": "outage", "seconds": 10}`.
    pub fn ec2_fault(&self, spec: serde_json::Value) -> Result<()> {
        http(&self.ec2_addr(), "POST", "/_lab/faults", &spec.to_string()).map(drop)
    }

    pub fn ec2_clear_faults(&self) -> Result<()> {
        http(&self.ec2_addr(), "DELETE", "/_lab/faults", "").map(drop)
    }

    /// `/_lab/calls`: counts per EC2 action and the recent mutating calls.
    pub fn ec2_calls(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&http(
            &self.ec2_addr(),
            "GET",
            "/_lab/calls",
            "",
        )?)?)
    }

    pub fn ec2_mutating(&self) -> Result<u64> {
        Ok(self.ec2_calls()?["mutating"].as_u64().unwrap_or(0))
    }

    fn ec2_addr(&self) -> String {
        self.ec2_endpoint.trim_start_matches("http://").to_string()
    }

    /// kubectl against the simulated cluster, with `stdin` if given.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.log_dir.join("kubectl-cache"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().context("running kubectl (is it installed?)")?;
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .context("stdin")?
                .write_all(input.as_bytes())?;
        }
        drop(child.stdin.take());
        Ok(child.wait_with_output()?)
    }

    pub async fn patch_node(&self, name: &str, patch: serde_json::Value) -> Result<()> {
        Api::<Node>::all(self.client.clone())
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// The infra namespace's path (where the servers and floatip processes run).
    pub fn infra_path(&self) -> &Path {
        &self.infra
    }

    /// The infra namespace's name (for `ip netns exec`).
    pub fn infra_name(&self) -> &str {
        self.infra
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }
}

/// What the invariant checks saw.
#[derive(Debug, Clone)]
pub struct InvariantReport {
    pub ec2_reads: u64,
    pub longest_overlap: Duration,
    pub bound: Duration,
}

async fn create_node(client: &kube::Client, name: &str, instance: &str, ip: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                     "topology.kubernetes.io/zone": format!("{REGION}a")}},
        "spec": {"providerID": format!("aws:///{REGION}a/{instance}")},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                   "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    create_agent_pod(client, name).await
}

/// The agent DaemonSet's pod on node `name`: not ready until the kubelet stand-in sees its
/// agent's /readyz pass.
async fn create_agent_pod(client: &kube::Client, name: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("floatip-agent-{name}"),
                     "labels": {"app.kubernetes.io/name": "floatip", "app.kubernetes.io/component": "agent"}},
        "spec": {"nodeName": name, "containers": [{"name": "agent", "image": "floatip"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    Ok(())
}

/// Overlay addresses of RouteTable mode: outside the VPC, reached through route tables.
pub const OVERLAY_CIDR: &str = "10.200.0.0/16";

/// The infra namespace's routes through the router (`ip` arguments): into the VPC, and to the
/// overlay addresses, which the controllers probe as any in-VPC client reaches them.
fn infra_routes() -> [String; 2] {
    [VPC_CIDR, OVERLAY_CIDR].map(|to| format!("route replace {to} via {ROUTER_ON_INFRA} dev vpc0"))
}

/// Polls `check` every 50 ms until it holds.
pub async fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn free_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// One HTTP/1.1 request to a lab server; the body of a 2xx answer.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> Result<String> {
    let (status, body, reason) = http_exchange(addr, method, path, body)?;
    if !(200..300).contains(&status) {
        bail!("{method} {path}: {reason}");
    }
    Ok(body)
}

/// One HTTP/1.1 request to a lab server; the status code and body, whatever the status.
pub fn http_status(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let (status, body, _) = http_exchange(addr, method, path, body)?;
    Ok((status, body))
}

/// The status code, the body and the status line of one request.
fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    let status_line = head.lines().next().unwrap_or_default().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {path}: no status code in {status_line:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        return Ok((status, out, status_line));
    }
    Ok((status, body.to_string(), status_line))
}
