//! `floatip agent`'s peer view, end to end: an agent on node-2, configuring node-2's network
//! namespace, probes node-1 (which holds an address) from that namespace and keeps what it
//! sees on its Pod, read back through the lab's API server. Root only (skipped with a printed
//! reason otherwise). Timings are printed, never asserted beyond generous bounds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use floatip::api::{FloatingIP, PeerView, PEER_VIEW_ANNOTATION};
use floatip::probe::Health;
use floatip_lab::cluster::vpc::AgentProc;
use floatip_lab::cluster::NAMESPACE;
use floatip_lab::process::KubeLab as Lab;
use floatip_lab::sim::net::{can_netns, veth, Netns};
use floatip_lab::sim::service::Responder;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use serde_json::json;

const NODE_1_IP: &str = "10.99.8.11";
const NODE_2_IP: &str = "10.99.8.12";
const PORT: u16 = 30080;
const T: Duration = Duration::from_secs(15);

/// `value` as the body of an object of the lab's API.
fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

/// The CRD, the agents' namespace, both Nodes with their InternalIP, node-2's agent Pod, and
/// FloatingIP `web` (TCP 30080 every 200 ms, Down after 3 failures) held by node-1.
async fn cluster(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &FloatingIP::crd())
        .await
        .expect("CRD");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = object(json!({"metadata": {"name": NAMESPACE}}));
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, ip) in [("node-1", NODE_1_IP), ("node-2", NODE_2_IP)] {
        let node = object(json!({
            "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
        }));
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node");
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod = object(json!({
        "metadata": {"name": "floatip-agent-node-2"},
        "spec": {"nodeName": "node-2", "containers": [{"name": "agent", "image": "floatip"}]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("agent pod");
    let fips: Api<FloatingIP> = Api::all(client.clone());
    let fip = object(json!({
        "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
        "metadata": {"name": "web"},
        "spec": {"address": "10.99.8.100", "subnetId": "subnet-0a1b2c3d",
                 "healthCheck": {"port": PORT, "intervalMs": 200, "failureThreshold": 3}},
    }));
    fips.create(&PostParams::default(), &fip)
        .await
        .expect("FloatingIP");
    let status = json!({"status": {"holder": {
        "node": "node-1", "instanceId": "i-0123456789abcdef0", "macAddress": "02:99:00:00:01:01",
        "since": jiff::Timestamp::now().to_string(),
    }}});
    fips.patch_status("web", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("status");
}

/// The peer view on node-2's agent Pod, if it has one.
async fn view(pods: &Api<Pod>) -> Option<PeerView> {
    let pod = pods.get("floatip-agent-node-2").await.expect("pod");
    let value = pod.metadata.annotations?.remove(PEER_VIEW_ANNOTATION)?;
    Some(PeerView::parse(&value).expect("a peer view"))
}

/// Polls the view every 20 ms until node-1 has `health` in it; returns how long it took.
async fn until_node_1(pods: &Api<Pod>, health: Health) -> Duration {
    let start = Instant::now();
    loop {
        let seen = view(pods).await;
        if seen.as_ref().and_then(|v| v.nodes.get("node-1")) == Some(&health) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < T,
            "node-1 was not {health:?} in the peer view within {T:?}; last seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_publishes_what_it_sees_of_the_holder_from_its_own_node() {
    if !can_netns("an_agent_publishes_what_it_sees_of_the_holder_from_its_own_node") {
        return;
    }
    let lab = Lab::start();
    let client = lab.client();
    cluster(&client).await;
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    // The two nodes on one wire; node-1 is reachable only from node-2's namespace, not from
    // the test's (where the agent process itself runs).
    let n1 = Netns::new("n1").unwrap();
    let n2 = Netns::new("n2").unwrap();
    veth(&n1, "eth0", &n2, "eth0").unwrap();
    n1.ip(&format!("addr add {NODE_1_IP}/22 dev eth0")).unwrap();
    n2.ip(&format!("addr add {NODE_2_IP}/22 dev eth0")).unwrap();
    let service = format!("{NODE_1_IP}:{PORT}").parse().unwrap();
    let server = Responder::start(n1.path(), service, "ok\n".into()).unwrap();

    let interval = Duration::from_secs(1);
    let started = Instant::now();
    let _agent = AgentProc::start(&lab, "node-2", &n2, &[("FLOATIP_PEER_VIEW_INTERVAL", "1s")]);
    until_node_1(&pods, Health::Up).await;
    println!(
        "agent started -> node-1 Up: {} ms",
        started.elapsed().as_millis()
    );
    let v = view(&pods).await.unwrap();
    assert_eq!(
        v.nodes.keys().collect::<Vec<_>>(),
        ["node-1"],
        "only the other holder"
    );

    // Nothing changes: the view is refreshed about every interval, and not more often.
    let watched = Instant::now();
    let mut times = BTreeSet::new();
    while watched.elapsed() < Duration::from_millis(3500) {
        times.insert(view(&pods).await.unwrap().at);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "refreshes seen in 3.5 s with interval {interval:?}: {}",
        times.len() - 1
    );
    assert!((2..=5).contains(&(times.len() - 1)), "{times:?}");
    let age = jiff::Timestamp::now() - *times.last().unwrap();
    assert!(
        age.total(jiff::Unit::Second).unwrap() < 2.0,
        "stale view: {age:?}"
    );

    drop(server);
    let down = until_node_1(&pods, Health::Down).await;
    println!(
        "node-1's service stopped -> Down in the view: {} ms (3 failures 200 ms apart)",
        down.as_millis()
    );
    let _server = Responder::start(n1.path(), service, "ok\n".into()).unwrap();
    let up = until_node_1(&pods, Health::Up).await;
    println!(
        "node-1's service back -> Up in the view: {} ms",
        up.as_millis()
    );
}
