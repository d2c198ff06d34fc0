//! The plan's tests, by step: what is settled before placement ([`settled`]), placement
//! ([`placing`]) and the probe results reaching it ([`with_health_checks`]). Shared builders here.

use super::*;
use crate::api::MoveReason;
use crate::cloud::TAG_CLUSTER;
use serde_json::json;

const SUBNET: &str = "subnet-0a1b2c3d";
const CLUSTER: &str = "lab";

fn subnets() -> HashMap<String, Subnet> {
    HashMap::from([(
        SUBNET.to_string(),
        Subnet {
            id: SUBNET.into(),
            cidr_v4: Some("10.0.8.0/22".into()),
            cidrs_v6: vec!["2600:1f14:abc:de00::/64".into()],
            zone: None,
        },
    )])
}

fn node(name: &str, i: u8, extra: serde_json::Value) -> NodeView {
    let mut n = json!({
        "metadata": {"name": name},
        "spec": {"providerID": format!("aws:///zone/i-{i:017x}")},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    });
    if let Some(spec) = extra.get("spec") {
        for (k, v) in spec.as_object().unwrap() {
            n["spec"][k] = v.clone();
        }
    }
    NodeView::from_node(&serde_json::from_value(n).unwrap())
}

/// n`i`'s floating ENI of cluster lab.
fn eni(i: u8, holds: &[&str]) -> Eni {
    crate::mode::fixtures::floating_eni(i, SUBNET, CLUSTER, holds)
}

/// n`i`'s primary ENI.
fn primary_eni(i: u8, holds: &[&str]) -> Eni {
    crate::mode::fixtures::primary_eni(i, SUBNET, holds)
}

fn fip(name: &str, address: &str, created: i64, status: serde_json::Value) -> Arc<FloatingIP> {
    let mut f: FloatingIP = serde_json::from_value(json!({
        "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
        "metadata": {"name": name, "creationTimestamp": Timestamp::from_second(1_800_000_000 + created).unwrap().to_string(),
                     "finalizers": [FINALIZER]},
        "spec": {"address": address, "subnetId": SUBNET},
    }))
    .unwrap();
    if !status.is_null() {
        f.status = Some(serde_json::from_value(status).unwrap());
    }
    Arc::new(f)
}

fn run(fips: &[Arc<FloatingIP>], nodes: &[NodeView], enis: Vec<Eni>) -> Vec<Plan> {
    let enis = HashMap::from([(SUBNET.to_string(), enis)]);
    plan(&Picture {
        fips,
        nodes,
        agents_ready: None,
        agents_leaving: &HashSet::new(),
        enis: &enis,
        subnets: &subnets(),
        reads: &Reads::default(),
        cluster: CLUSTER,
        now: Timestamp::from_second(1_800_001_000).unwrap(),
        health: &HashMap::new(),
        reensured: &HashMap::new(),
        peers: &HashMap::new(),
    })
}

fn three_nodes() -> Vec<NodeView> {
    vec![
        node("n1", 1, json!({})),
        node("n2", 2, json!({})),
        node("n3", 3, json!({})),
    ]
}

fn act(p: &Plan) -> &Placement {
    match p {
        Plan::Place(a) => a,
        other => panic!("expected Placement, got {other:?}"),
    }
}

fn holder_status(node: &str) -> serde_json::Value {
    json!({"holder": {"node": node, "instanceId": "i-x", "since": "2026-01-01T00:00:00Z"}})
}

mod families;
mod placing;
mod route_tables;
mod settled;
mod with_health_checks;
