//! Graceful handover end to end: real `floatip attach`, `floatip controller` and one
//! `floatip agent` per node, against the lab's API server and EC2, with nodes, a source/dest-
//! checking VPC router (following EC2 after a 300 ms convergence delay) and a client as network
//! namespaces. Client traffic runs throughout; no request may fail. Root only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use floatip_lab::cluster::vpc::{self, AgentProc, Vpc};
use floatip_lab::cluster::{holder_of, Cluster, NAMESPACE};
use floatip_lab::sim::net::can_netns;
use floatip_lab::sim::service::Responder;
use floatip_lab::sim::traffic::{failed_beside_switches, request_once, Proto, Traffic};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

const VIP: &str = "10.99.8.100";

/// How the agent is asked to stop.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// What Kubernetes does on drain or rollout: the pod gets a deletionTimestamp, then the
    /// kubelet sends SIGTERM.
    PodDeletion,
    /// SIGTERM alone (the agent's annotation is the only signal).
    SigtermOnly,
}

async fn handover(test: &str, stop: Stop) {
    if !can_netns(test) {
        return;
    }
    let mut c = Cluster::with_layout(2, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::from_millis(300));
    c.create_fip("web", json!({"address": VIP})).await;
    for i in 1..=2 {
        let (ok, out, err) = vpc::attach(&c, &format!("node-{i}"), net.node(i));
        assert!(ok, "attach node-{i}: {err}");
        println!("{}", out.trim());
    }
    let f = c.fips().get("web").await.unwrap();
    assert_eq!(
        holder_of(&f).as_deref(),
        Some("node-1"),
        "node-1 attached first and claimed"
    );

    c.start_controller("controller-a");
    let env = [("FLOATIP_GRACE_PERIOD", "15s")];
    let mut agent1 = AgentProc::start(&c.kube, "node-1", net.node(1), &env);
    let _agent2 = AgentProc::start(&c.kube, "node-2", net.node(2), &env);
    let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let _s1 = Responder::start(net.node(1).path(), any, "node-1\n".into()).unwrap();
    let _s2 = Responder::start(net.node(2).path(), any, "node-2\n".into()).unwrap();
    let to: SocketAddr = format!("{VIP}:8080").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match request_once(net.client.path(), to, Duration::from_secs(1)).await {
            Ok(r) if r == "node-1" => break,
            r => assert!(
                Instant::now() < deadline,
                "node-1 never answered on {VIP}: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = Instant::now() + Duration::from_secs(20);
    while !c.controllers[0].is_leader() {
        assert!(Instant::now() < leader, "the controller did not lead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let traffic = Traffic::start(
        net.client.path(),
        to,
        Duration::from_millis(10),
        Duration::from_secs(5),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    let pod = "floatip-agent-node-1";
    if stop == Stop::PodDeletion {
        // The finalizer keeps the pod (with its deletionTimestamp) around, as a pod is while
        // its containers stop.
        pods.patch(
            pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["test.floatip.io/hold"]}})),
        )
        .await
        .expect("finalizer");
        pods.delete(pod, &DeleteParams::default())
            .await
            .expect("delete pod");
    }
    let stopped = Instant::now();
    agent1.sigterm();

    let f = c
        .wait_fip("web", "the move to node-2", Duration::from_secs(30), |f| {
            holder_of(f).as_deref() == Some("node-2")
        })
        .await;
    let moved = stopped.elapsed();
    let reason = f
        .status
        .as_ref()
        .and_then(|s| s.last_move.as_ref())
        .map(|m| m.reason.as_str())
        .unwrap_or_default();
    let code = agent1.wait(Duration::from_secs(20));
    let exited = stopped.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The lab's traffic also sends UDP; these tests are about TCP connections.
    let results: Vec<_> = traffic
        .stop()
        .into_iter()
        .filter(|a| a.proto == Proto::Tcp)
        .collect();

    let annotations = pods
        .get(pod)
        .await
        .map(|p| p.annotations().clone())
        .unwrap_or_default();
    // A connection the old holder took just before the VPC switched is cut by the VPC (it
    // drops the old holder's replies from then on, as AWS does); any other failure is floatip's.
    let switches = net.switches(VIP.parse().unwrap());
    let (failed, cut) = failed_beside_switches(&results, &switches);
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for a in &results {
        *by.entry(a.result.clone().unwrap_or_else(|e| format!("error: {e}")))
            .or_default() += 1;
    }
    let slowest = results.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "SIGTERM -> status holder node-2: {} ms (reason {reason}); agent exited with {code:?} after {} ms",
        moved.as_millis(),
        exited.as_millis()
    );
    println!(
        "{} requests: {by:?}; slowest {} ms; cut by the VPC's switch {cut}; failed otherwise {}",
        results.len(),
        slowest.as_millis(),
        failed.len()
    );
    assert_eq!(
        annotations.get("floatip.io/handover").map(String::as_str),
        Some("requested"),
        "the agent asked for a handover"
    );
    assert_eq!(code, Some(0), "the agent exits 0 after the handover");
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(
        cut <= 2,
        "{cut} connections open across the VPC's switch were cut; a handful at most is the VPC's doing"
    );
    assert!(
        by.get("node-2").copied().unwrap_or(0) > 0,
        "node-2 answered after the move"
    );
    let left = net.node(1).ip("-o addr show").unwrap_or_default();
    assert!(
        !left.contains(&format!("{VIP}/32")),
        "node-1 removed the address: {left}"
    );
    assert!(
        !net.node(1).ip("rule show").unwrap().contains("lookup 200"),
        "node-1 removed its rules"
    );
    if stop == Stop::SigtermOnly {
        assert_eq!(reason, "Handover");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_on_pod_deletion_loses_no_request() {
    handover(
        "handover_on_pod_deletion_loses_no_request",
        Stop::PodDeletion,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_on_sigterm_alone_loses_no_request() {
    handover(
        "handover_on_sigterm_alone_loses_no_request",
        Stop::SigtermOnly,
    )
    .await;
}
