//! `floatip agent` as a real process configuring network namespaces the test creates, against
//! the lab's API server. Root only (skipped with a printed reason otherwise). Timings are
//! printed, never asserted beyond generous bounds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use floatip::api::FloatingIP;
use floatip_lab::cluster::vpc::{self, AgentProc, Vpc};
use floatip_lab::cluster::{condition, holder_of, Cluster, NAMESPACE};
use floatip_lab::process::KubeLab as Lab;
use floatip_lab::sim::kubelet::{self, Kubelet};
use floatip_lab::sim::net::{self, can_netns, veth, veth_with_mac, Netns};
use floatip_lab::sim::service::Responder;
use floatip_lab::sim::traffic::request_once;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use serde_json::json;

const VIP: &str = "10.99.8.100";
const ETH1_MAC: &str = "02:99:00:00:01:01";
const T: Duration = Duration::from_secs(20);

async fn lab_with_fip() -> (Lab, Api<FloatingIP>) {
    lab_with(json!({"address": VIP, "subnetId": "subnet-0a1b2c3d"})).await
}

/// The lab's API server with one FloatingIP `web` of `spec`.
async fn lab_with(spec: serde_json::Value) -> (Lab, Api<FloatingIP>) {
    let lab = Lab::start();
    let client = lab.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &FloatingIP::crd())
        .await
        .expect("CRD");
    let fips: Api<FloatingIP> = Api::all(client);
    let fip: FloatingIP = serde_json::from_value(json!({
        "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
        "metadata": {"name": "web"},
        "spec": spec,
    }))
    .unwrap();
    fips.create(&PostParams::default(), &fip)
        .await
        .expect("FloatingIP");
    (lab, fips)
}

/// Writes status.holder as the controller does.
async fn set_holder(fips: &Api<FloatingIP>, node: &str, mac: &str) {
    let status = json!({"status": {"holder": {
        "node": node, "instanceId": "i-0123456789abcdef0", "networkInterfaceId": "eni-0123456789abcdef0",
        "macAddress": mac, "since": jiff::Timestamp::now().to_string(),
    }}});
    fips.patch_status("web", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("status");
}

/// Polls `check` every 2 ms; returns how long it took.
fn wait_for(what: &str, timeout: Duration, check: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "{what} did not happen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

/// A node namespace with eth1 standing in for the floating ENI (a veth whose other end is in
/// a second namespace): its own address, no prefix route (as `floatip attach` leaves it).
fn node_ns() -> (Netns, Netns) {
    let n = Netns::new("node").unwrap();
    let wire = Netns::new("wire").unwrap();
    veth_with_mac(&n, "eth1", ETH1_MAC, &wire, "w1").unwrap();
    n.ip("addr add 10.99.8.21/22 dev eth1 noprefixroute")
        .unwrap();
    (n, wire)
}

fn has_vip(n: &Netns) -> bool {
    n.addresses("eth1").contains(&format!("{VIP}/32"))
}

fn ifindex(n: &Netns, dev: &str) -> u32 {
    let out = n.ip(&format!("-o link show {dev}")).unwrap();
    out.split(':').next().unwrap().trim().parse().unwrap()
}

fn nft_table(n: &Netns) -> Option<String> {
    n.exec(&["nft", "list", "table", "ip", "floatip"]).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_adds_and_removes_the_address_and_routing() {
    if !can_netns("agent_adds_and_removes_the_address_and_routing") {
        return;
    }
    let (lab, fips) = lab_with_fip().await;
    let (n, _wire) = node_ns();
    // Not floatip's: must survive everything below.
    n.ip("addr add 10.99.8.50/32 dev eth1").unwrap();
    let table = 20000 + ifindex(&n, "eth1");
    let env = [("FLOATIP_RELEASE_DELAY", "300ms")];
    let mut agent = AgentProc::start(&lab, "node-1", &n, &env);
    tokio::time::sleep(Duration::from_millis(500)).await;

    set_holder(&fips, "node-1", ETH1_MAC).await;
    let took = wait_for("address added", T, || has_vip(&n));
    println!("status write -> address present: {} ms", took.as_millis());
    let shown = n.ip("-d -o addr show dev eth1").unwrap();
    assert!(shown.contains("eth1:fip"), "marked as floatip's: {shown}");
    let rules = n.ip("rule show").unwrap();
    assert!(
        rules.contains(&format!("from {VIP} lookup {table}")),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("lookup {table}")) && rules.contains("fwmark"),
        "{rules}"
    );
    let routes = n.ip(&format!("route show table {table}")).unwrap();
    assert!(
        routes.contains("default via 10.99.8.1 dev eth1"),
        "{routes}"
    );
    assert!(routes.contains("10.99.8.0/22 dev eth1"), "{routes}");
    if let Some(t) = nft_table(&n) {
        println!("{t}");
        assert!(t.contains("ct mark"), "{t}");
    }

    // Moved to another node: kept for the release delay, then everything floatip added goes.
    let moved = Instant::now();
    set_holder(&fips, "node-2", "02:99:00:00:02:01").await;
    let gone = wait_for("address removed", T, || !has_vip(&n));
    println!(
        "holder moved away -> address removed: {} ms (release delay 300 ms)",
        gone.as_millis()
    );
    assert!(moved.elapsed() >= Duration::from_millis(250));
    wait_for("routing removed", T, || {
        !n.ip("rule show")
            .unwrap()
            .contains(&format!("lookup {table}"))
            && n.ip(&format!("route show table {table}"))
                .unwrap_or_default()
                .is_empty()
    });
    assert!(nft_table(&n).is_none(), "the netfilter table is gone");
    assert!(n.addresses("eth1").contains("10.99.8.50/32"));

    // A restart reconciles: an address floatip added while this node held it, left behind by a
    // killed agent, is removed once status says another node holds it; the others stay.
    set_holder(&fips, "node-1", ETH1_MAC).await;
    wait_for("address added again", T, || has_vip(&n));
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    set_holder(&fips, "node-2", "02:99:00:00:02:01").await;
    n.ip("addr add 10.99.8.51/32 dev eth1").unwrap();
    assert!(has_vip(&n), "SIGKILL left the address behind");
    let _agent = AgentProc::start(&lab, "node-1", &n, &env);
    let took = wait_for("stale address removed after restart", T, || !has_vip(&n));
    println!("restart -> stale address removed: {} ms", took.as_millis());
    wait_for("stale routing removed after restart", T, || {
        !n.ip("rule show")
            .unwrap()
            .contains(&format!("lookup {table}"))
    });
    let left = n.addresses("eth1");
    assert!(
        left.contains("10.99.8.50/32") && left.contains("10.99.8.51/32"),
        "{left}"
    );
    assert!(left.contains("10.99.8.21/22"), "{left}");
}

/// A VPC in miniature: client -> router -> node (eth0 primary ENI, eth1 floating ENI) -> pod.
/// The router routes the VIP to eth1's wire and drops anything whose source the sending ENI
/// does not own, like AWS's source/dest check.
struct Topology {
    router: Netns,
    client: Netns,
    node: Netns,
    pod: Netns,
}

fn topology() -> Topology {
    let router = Netns::new("router").unwrap();
    router.sysctl("net.ipv4.ip_forward", "1").unwrap();
    let client = Netns::new("client").unwrap();
    let node = Netns::new("node").unwrap();
    node.sysctl("net.ipv4.ip_forward", "1").unwrap();
    let pod = Netns::new("pod").unwrap();

    veth(&client, "c0", &router, "rc").unwrap();
    client.ip("addr add 10.99.100.2/24 dev c0").unwrap();
    client.ip("route add default via 10.99.100.1").unwrap();
    router.ip("addr add 10.99.100.1/24 dev rc").unwrap();

    veth_with_mac(&node, "eth0", "02:99:00:00:01:00", &router, "r1e0").unwrap();
    veth_with_mac(&node, "eth1", ETH1_MAC, &router, "r1e1").unwrap();
    node.ip("addr add 10.99.8.11/22 dev eth0").unwrap();
    node.ip("addr add 10.99.8.21/22 dev eth1 noprefixroute")
        .unwrap();
    node.ip("route add default via 10.99.8.1 dev eth0").unwrap();
    for (dev, owned) in [
        ("r1e0", vec!["10.99.8.11"]),
        ("r1e1", vec!["10.99.8.21", VIP]),
    ] {
        router
            .ip(&format!("addr add 10.99.8.1/32 dev {dev}"))
            .unwrap();
        for a in owned {
            router.ip(&format!("route add {a}/32 dev {dev}")).unwrap();
            router
                .ip(&format!(
                    "rule add iif {dev} from {a} lookup main pref 1000"
                ))
                .unwrap();
        }
        router
            .ip(&format!("rule add iif {dev} blackhole pref 30000"))
            .unwrap();
    }

    veth(&pod, "p0", &node, "vp1").unwrap();
    pod.ip("addr add 10.99.200.2/24 dev p0").unwrap();
    pod.ip("route add default via 10.99.200.1").unwrap();
    node.ip("addr add 10.99.200.1/24 dev vp1").unwrap();
    // kube-proxy's NodePort, in miniature: VIP:30080 -> pod:8080, no SNAT (externalTrafficPolicy Local).
    node.exec(&["nft", "add table ip kp"])
        .expect("nft (package nftables)");
    node.exec(&[
        "nft",
        "add chain ip kp pre { type nat hook prerouting priority -100; }",
    ])
    .unwrap();
    node.exec(&[
        "nft",
        &format!("add rule ip kp pre ip daddr {VIP} tcp dport 30080 dnat to 10.99.200.2:8080"),
    ])
    .unwrap();
    Topology {
        router,
        client,
        node,
        pod,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_leave_through_the_eni_that_owns_the_vip() {
    if !can_netns("replies_leave_through_the_eni_that_owns_the_vip") {
        return;
    }
    if net::run("nft", &["--version"]).is_err() {
        eprintln!("SKIP replies_leave_through_the_eni_that_owns_the_vip: needs `nft` (package nftables) to stand in for kube-proxy");
        return;
    }
    let (lab, fips) = lab_with_fip().await;
    let t = topology();
    let _local = Responder::start(
        t.node.path(),
        "0.0.0.0:8080".parse().unwrap(),
        "node-local\n".into(),
    )
    .unwrap();
    let _pod = Responder::start(
        t.pod.path(),
        "0.0.0.0:8080".parse().unwrap(),
        "pod\n".into(),
    )
    .unwrap();
    let local: SocketAddr = format!("{VIP}:8080").parse().unwrap();
    let nodeport: SocketAddr = format!("{VIP}:30080").parse().unwrap();
    let short = Duration::from_millis(1500);

    // The address alone is not enough: replies leave through eth0, whose ENI does not own it.
    t.node.ip(&format!("addr add {VIP}/32 dev eth1")).unwrap();
    let l = request_once(t.client.path(), local, short).await;
    let f = request_once(t.client.path(), nodeport, short).await;
    println!("without floatip's routing: local {l:?}, forwarded {f:?}");
    assert!(
        l.is_err(),
        "the router must drop the local reply leaving eth0: {l:?}"
    );
    assert!(
        f.is_err(),
        "the router must drop the forwarded reply leaving eth0: {f:?}"
    );
    t.node.ip(&format!("addr del {VIP}/32 dev eth1")).unwrap();

    set_holder(&fips, "node-1", ETH1_MAC).await;
    let _agent = AgentProc::start(&lab, "node-1", &t.node, &[]);
    wait_for("address added", T, || has_vip(&t.node));
    let l = request_once(t.client.path(), local, Duration::from_secs(5)).await;
    let f = request_once(t.client.path(), nodeport, Duration::from_secs(5)).await;
    println!("with the agent: local {l:?}, forwarded {f:?}");
    assert_eq!(l.as_deref(), Ok("node-local"));
    assert_eq!(f.as_deref(), Ok("pod"));
    // Many connections, both paths: none is lost.
    for i in 0..50 {
        let to = if i % 2 == 0 { local } else { nodeport };
        request_once(t.client.path(), to, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("request {i} to {to}: {e}"));
    }
    let _ = &t.router;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garp_announces_an_added_address_when_asked() {
    if !can_netns("garp_announces_an_added_address_when_asked") {
        return;
    }
    let (lab, fips) = lab_with_fip().await;
    let (n, wire) = node_ns();
    // The other end learns neighbours from gratuitous ARP (arp_accept), as a switch would.
    wire.sysctl("net.ipv4.conf.all.arp_accept", "1").unwrap();
    wire.sysctl("net.ipv4.conf.w1.arp_accept", "1").unwrap();
    wire.ip("addr add 10.99.8.1/22 dev w1").unwrap();
    let _agent = AgentProc::start(&lab, "node-1", &n, &[("FLOATIP_GARP", "true")]);
    set_holder(&fips, "node-1", ETH1_MAC).await;
    wait_for("address added", T, || has_vip(&n));
    let learned = wait_for("the wire learned the VIP's MAC", T, || {
        wire.ip(&format!("neigh show {VIP} dev w1"))
            .unwrap()
            .contains(ETH1_MAC)
    });
    println!(
        "gratuitous ARP seen {} ms after the address: {}",
        learned.as_millis(),
        wire.ip(&format!("neigh show {VIP} dev w1")).unwrap().trim()
    );
}

/// Polls `check` every 50 ms; returns how long it took.
async fn until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "{what} did not happen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// The agent pod's Ready condition, as the kubelet stand-in wrote it.
async fn pod_ready(pods: &Api<Pod>, node: &str) -> bool {
    let pod = pods
        .get(&format!("floatip-agent-{node}"))
        .await
        .expect("pod");
    pod.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// One line of the agent's /metrics, e.g. `floatip_agent_addresses 1`.
async fn agent_metric(agent: &AgentProc, name: &str) -> Option<f64> {
    let (_, text) = agent.admin_get("/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
}

/// The controller trusts the agent pod's Ready condition (`--require-agent`): an agent whose
/// netlink work fails (its floating interface vanished) must go not ready, lose its address and
/// not be given one that has to move; once its node is prepared again it is eligible again.
/// Two nodes, real `floatip attach`, agents and controller; the lab's kubelet stand-in probes
/// each agent's /readyz as the chart's readinessProbe does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_configure_its_node_is_not_ready_and_not_chosen() {
    let test = "an_agent_that_cannot_configure_its_node_is_not_ready_and_not_chosen";
    if !can_netns(test) {
        return;
    }
    let mut c = Cluster::with_layout(2, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::from_millis(300));
    c.create_fip("web", json!({"address": VIP})).await;
    for i in 1..=2 {
        let (ok, _, err) = vpc::attach(&c, &format!("node-{i}"), net.node(i));
        assert!(ok, "attach node-{i}: {err}");
    }
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    // The harness creates agent pods Ready; here they start not ready, as while their attach
    // init containers ran, and the kubelet stand-in alone decides.
    for node in ["node-1", "node-2"] {
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        pods.patch_status(
            &format!("floatip-agent-{node}"),
            &PatchParams::default(),
            &Patch::Merge(not_ready),
        )
        .await
        .expect("pod status");
    }
    let kubelet = Kubelet::new(c.client.clone(), NAMESPACE, kubelet::AGENT_READINESS);
    // A short resync: the agent notices an interface change at its next round.
    let env = [("FLOATIP_RESYNC", "1s")];
    let agent1 = AgentProc::start(&c.kube, "node-1", net.node(1), &env);
    let agent2 = AgentProc::start(&c.kube, "node-2", net.node(2), &env);
    kubelet.container_started("floatip-agent-node-1", agent1.admin);
    kubelet.container_started("floatip-agent-node-2", agent2.admin);
    for node in ["node-1", "node-2"] {
        let took = until(&format!("{node}'s agent Ready"), T, async || {
            pod_ready(&pods, node).await
        })
        .await;
        println!("{node}: agent pod Ready after {} ms", took.as_millis());
    }
    c.start_controller("controller-a");
    c.wait_fip("web", "held by node-1", T, |f| {
        holder_of(f).as_deref() == Some("node-1")
            && condition(f, "Ready").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    wait_for("the address on node-1", T, || has_vip(net.node(1)));
    assert_eq!(
        agent_metric(&agent1, "floatip_agent_addresses").await,
        Some(1.0)
    );
    assert_eq!(
        agent_metric(&agent1, "floatip_agent_reconcile_errors_total").await,
        Some(0.0)
    );

    // node-1's floating interface goes (its ENI detached and hot-plugged back bare).
    let broke = Instant::now();
    net.node(1).ip("link del eth1").unwrap();
    until("node-1's /readyz failing", T, async || {
        agent1
            .admin_get("/readyz")
            .await
            .is_some_and(|(code, _)| code == 503)
    })
    .await;
    let (_, why) = agent1.admin_get("/readyz").await.unwrap();
    println!(
        "eth1 deleted -> /readyz 503 after {} ms: {}",
        broke.elapsed().as_millis(),
        why.trim()
    );
    assert!(why.contains("last reconcile of the node failed"), "{why}");
    until("node-1's agent pod not Ready", T, async || {
        !pod_ready(&pods, "node-1").await
    })
    .await;
    println!(
        "eth1 deleted -> pod not Ready after {} ms",
        broke.elapsed().as_millis()
    );
    let f = c
        .wait_fip("web", "the move to node-2", T, |f| {
            holder_of(f).as_deref() == Some("node-2")
        })
        .await;
    println!(
        "eth1 deleted -> status holder node-2 after {} ms (reason {:?})",
        broke.elapsed().as_millis(),
        f.status.and_then(|s| s.last_move).map(|m| m.reason)
    );
    wait_for("the address on node-2", T, || has_vip(net.node(2)));
    assert!(
        agent_metric(&agent1, "floatip_agent_reconcile_errors_total")
            .await
            .is_some_and(|n| n > 0.0),
        "the failed reconciles are counted"
    );

    // The address must move again (node-2 is cordoned) but node-1 stays not ready, with
    // nothing left to configure: it is not chosen and the address stays where it is.
    c.patch_node("node-2", json!({"spec": {"unschedulable": true}}))
        .await;
    let f = c
        .wait_fip("web", "NoCandidates", T, |f| {
            condition(f, "NoCandidates").is_some_and(|(s, _, _)| s == "True")
        })
        .await;
    println!(
        "node-2 cordoned, node-1 not ready: {:?}",
        condition(&f, "NoCandidates").map(|(_, _, m)| m)
    );
    // Longer than a recovered agent would take to be seen ready: its release delay (2 s), a
    // resync (1 s) and a probe period (2 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let f = c.fips().get("web").await.unwrap();
    assert_eq!(
        holder_of(&f).as_deref(),
        Some("node-2"),
        "not moved to node-1"
    );
    assert!(!has_vip(net.node(1)) && has_vip(net.node(2)));
    assert!(!pod_ready(&pods, "node-1").await);
    let (code, why) = agent1.admin_get("/readyz").await.unwrap();
    assert_eq!(code, 503, "still not ready with nothing held: {why}");
    assert!(why.contains("restart this agent pod"), "{why}");

    // node-1 is prepared again (its attach init container runs): ready, and the address that
    // has to leave cordoned node-2 goes there.
    net.wait_link(1, "eth1", T);
    let (ok, _, err) = vpc::attach(&c, "node-1", net.node(1));
    assert!(ok, "attach node-1 again: {err}");
    let fixed = Instant::now();
    until("node-1's agent pod Ready again", T, async || {
        pod_ready(&pods, "node-1").await
    })
    .await;
    println!(
        "attach again -> pod Ready after {} ms",
        fixed.elapsed().as_millis()
    );
    c.wait_fip("web", "the move back to node-1", T, |f| {
        holder_of(f).as_deref() == Some("node-1")
    })
    .await;
    wait_for("the address on node-1 again", T, || has_vip(net.node(1)));
    println!(
        "attach again -> address on node-1 after {} ms",
        fixed.elapsed().as_millis()
    );
    assert_eq!(agent1.admin_get("/livez").await.map(|(c, _)| c), Some(200));
}

/// A hot-plugged interface whose link comes up a moment after it appears: attach waits for
/// the carrier before anything is routed through it (a gateway route through a link without
/// carrier is refused with EINVAL, which once failed attach in the lab), and says so when the
/// carrier never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_waits_for_the_carrier_of_a_new_interface() {
    if !can_netns("prepare_waits_for_the_carrier_of_a_new_interface") {
        return;
    }
    use floatip::agent::host::{Host, HostConfig};
    let n = Netns::new("node").unwrap();
    let wire = Netns::new("wire").unwrap();
    veth_with_mac(&n, "eth1", ETH1_MAC, &wire, "w1").unwrap();
    wire.ip("link set w1 down").unwrap();
    let host = Host::spawn(HostConfig {
        netns: Some(n.path()),
        tuning: floatip::agent::want::RoutingTuning {
            table_base: 20000,
            rule_priority: 100,
            mark_mask: 0x00ff_0000,
        },
        garp: false,
    })
    .unwrap();
    let address = Some(("10.99.8.21".parse().unwrap(), 22));
    let wire_name = wire.name.clone();
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        net::run("ip", &["-n", &wire_name, "link", "set", "w1", "up"]).unwrap();
    });
    let start = Instant::now();
    let link = host
        .prepare(ETH1_MAC, address, Duration::from_secs(10))
        .await
        .expect("prepared once the carrier came");
    later.join().unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(link.name, "eth1");
    assert!(n.ip("-o link show eth1").unwrap().contains("LOWER_UP"));
    assert!(n.addresses("eth1").contains("10.99.8.21/22"));

    wire.ip("link set w1 down").unwrap();
    let err = host
        .prepare(ETH1_MAC, address, Duration::from_millis(500))
        .await
        .expect_err("no carrier");
    assert!(err.to_string().contains("got no carrier"), "{err}");
}

/// Interface mode: the ENI whose primary address is the VIP is hot-plugged into the node with
/// no address and down (no DHCP runs for it). The agent sets it up, puts the address on it and
/// routes replies from it through it (the router drops them anywhere else); while it is not
/// there yet the agent stays ready; once it is gone and another node holds the address,
/// floatip's rules go and the node's own addresses stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_eni_is_set_up_addressed_and_routed_when_it_appears() {
    let test = "a_whole_eni_is_set_up_addressed_and_routed_when_it_appears";
    if !can_netns(test) {
        return;
    }
    const ETH2_MAC: &str = "02:99:00:00:01:02";
    let (lab, fips) =
        lab_with(json!({"address": VIP, "mode": "Interface", "subnetId": "subnet-0a1b2c3d"})).await;
    let router = Netns::new("router").unwrap();
    router.sysctl("net.ipv4.ip_forward", "1").unwrap();
    let client = Netns::new("client").unwrap();
    let node = Netns::new("node").unwrap();
    veth(&client, "c0", &router, "rc").unwrap();
    client.ip("addr add 10.99.100.2/24 dev c0").unwrap();
    client.ip("route add default via 10.99.100.1").unwrap();
    router.ip("addr add 10.99.100.1/24 dev rc").unwrap();
    veth_with_mac(&node, "eth0", "02:99:00:00:01:00", &router, "r1e0").unwrap();
    node.ip("addr add 10.99.8.11/22 dev eth0").unwrap();
    node.ip("route add default via 10.99.8.1 dev eth0").unwrap();
    // The router, as the VPC: each ENI's wire takes only the sources that ENI owns.
    let wire = |dev: &str, owned: &str| {
        router
            .ip(&format!("addr add 10.99.8.1/32 dev {dev}"))
            .unwrap();
        router
            .ip(&format!("route add {owned}/32 dev {dev}"))
            .unwrap();
        let rule = format!("rule add iif {dev} from {owned} lookup main pref 1000");
        router.ip(&rule).unwrap();
        router
            .ip(&format!("rule add iif {dev} blackhole pref 30000"))
            .unwrap();
    };
    wire("r1e0", "10.99.8.11");
    let _local = Responder::start(
        node.path(),
        "0.0.0.0:8080".parse().unwrap(),
        "node-local\n".into(),
    )
    .unwrap();

    // Status names the holder before EC2 has attached the ENI: nothing to do yet, and no
    // problem, so the agent is ready (a node whose agent is not ready gets no address).
    set_holder(&fips, "node-1", ETH2_MAC).await;
    // A resync longer than the wait below: the agent must notice the interface by itself.
    let agent = AgentProc::start(&lab, "node-1", &node, &[("FLOATIP_RESYNC", "60s")]);
    until("agent ready", T, async || ready(&agent).await == 200).await;
    let rules = node.ip("rule show").unwrap();
    assert!(!rules.contains(VIP), "{rules}");

    // EC2 attaches it: the interface appears, down and without an address.
    let plug = format!(
        "link add eth2 address {ETH2_MAC} type veth peer name r1e2 netns {}",
        router.name
    );
    node.ip(&plug).unwrap();
    router.ip("link set r1e2 up").unwrap();
    wire("r1e2", VIP);
    let has = || node.addresses("eth2").contains(&format!("{VIP}/32"));
    let took = wait_for("address on the whole ENI", T, has);
    println!(
        "interface appeared -> address on it: {} ms",
        took.as_millis()
    );
    let link = node.ip("-o link show eth2").unwrap();
    assert!(link.contains(",UP"), "set up: {link}");
    let table = 20000 + ifindex(&node, "eth2");
    let routes = node.ip(&format!("route show table {table}")).unwrap();
    assert!(
        routes.contains("default via 10.99.8.1 dev eth2"),
        "{routes}"
    );
    let to: SocketAddr = format!("{VIP}:8080").parse().unwrap();
    let answer = request_once(client.path(), to, Duration::from_secs(5)).await;
    assert_eq!(answer.as_deref(), Ok("node-local"));
    assert_eq!(ready(&agent).await, 200);

    // Moved away: EC2 detaches it (the interface goes) and another node holds the address.
    node.ip("link del eth2").unwrap();
    set_holder(&fips, "node-2", "02:99:00:00:02:02").await;
    wait_for("floatip's rules removed", T, || {
        !node.ip("rule show").unwrap().contains(VIP)
    });
    assert!(node.addresses("eth0").contains("10.99.8.11/22"));
    assert_eq!(
        ready(&agent).await,
        200,
        "the interface leaving is no problem"
    );
}

/// The agent's /readyz status code; 0 when it does not answer.
async fn ready(agent: &AgentProc) -> u16 {
    agent.admin_get("/readyz").await.map_or(0, |(code, _)| code)
}
