//! Whether a node may hold an address: what the Node object says, read once into a plain view
//! and judged by pure functions.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;

use crate::api::FloatingIPSpec;

/// What floatip needs to know about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The Ready condition's status: "True", "False" or "Unknown" (also when absent).
    pub ready: String,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub deleting: bool,
    /// From spec.providerID (`aws:///us-west-2-lax-1a/i-0123...`).
    pub instance_id: Option<String>,
    /// The node's InternalIP: where its own health check is sent.
    pub internal_ip: Option<std::net::IpAddr>,
}

/// The well-known label with the node's Availability Zone or Local Zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

impl NodeView {
    /// The node's zone, from its well-known label.
    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL).map(String::as_str)
    }

    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.clone().unwrap_or_default();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".to_string());
        Self {
            name: node.name_any(),
            labels: node.labels().clone(),
            ready,
            unschedulable: spec.unschedulable.unwrap_or(false),
            taints: spec.taints.unwrap_or_default(),
            deleting: node.metadata.deletion_timestamp.is_some(),
            instance_id: spec
                .provider_id
                .as_deref()
                .and_then(instance_id_from_provider_id),
            internal_ip: node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                .and_then(|a| a.address.parse().ok()),
        }
    }
}

/// `aws:///zone/i-0123456789abcdef0` -> `i-0123456789abcdef0`. Anything else is not an EC2 node.
pub fn instance_id_from_provider_id(provider_id: &str) -> Option<String> {
    let rest = provider_id.strip_prefix("aws://")?;
    let id = rest.rsplit('/').next()?;
    (id.starts_with("i-") && id.len() > 2).then(|| id.to_string())
}

/// Why a node may not hold an address. Ordered from the most to the least fundamental, which is
/// the order in which they are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// The node no longer exists.
    Gone,
    /// metadata.deletionTimestamp is set.
    Deleting,
    /// The FloatingIP's nodeSelector does not select it.
    NotSelected,
    /// spec.providerID names no EC2 instance.
    NoInstance,
    /// Ready is False or Unknown.
    NotReady(String),
    /// spec.unschedulable.
    Cordoned,
    /// A NoSchedule or NoExecute taint the FloatingIP does not tolerate.
    Tainted(String),
    /// The node's agent is shutting down and asked for its addresses to move (drain, rollout).
    AgentLeaving,
    /// No floatip agent is ready on the node.
    NoAgent,
    /// The node lacks what the FloatingIP's mode needs of it (for SecondaryIP: a suitable ENI
    /// in the subnet); the mode says what, in words a user can act on.
    NoInterface(String),
}

impl Unfit {
    /// The move reason when a holder becomes unfit this way.
    pub fn move_reason(&self) -> crate::api::MoveReason {
        use crate::api::MoveReason as R;
        match self {
            Unfit::Gone => R::NodeDeleted,
            Unfit::Deleting => R::NodeDeleted,
            Unfit::NotReady(_) => R::NodeNotReady,
            Unfit::Cordoned => R::NodeCordoned,
            Unfit::Tainted(_) => R::NodeTainted,
            Unfit::AgentLeaving => R::Handover,
            Unfit::NoAgent => R::AgentNotReady,
            Unfit::NotSelected | Unfit::NoInstance | Unfit::NoInterface(_) => R::NodeIneligible,
        }
    }
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Gone => f.write_str("the node no longer exists"),
            Unfit::Deleting => f.write_str("the node is being deleted"),
            Unfit::NotSelected => f.write_str("spec.nodeSelector does not select the node"),
            Unfit::NoInstance => f.write_str("spec.providerID names no EC2 instance"),
            Unfit::NotReady(s) => write!(f, "the node's Ready condition is {s}"),
            Unfit::Cordoned => f.write_str("the node is cordoned"),
            Unfit::Tainted(t) => write!(f, "the node has taint {t}, which is not tolerated"),
            Unfit::AgentLeaving => f.write_str(
                "the node's floatip agent is shutting down and handing its addresses over",
            ),
            Unfit::NoAgent => f.write_str("no floatip agent is ready on the node"),
            Unfit::NoInterface(why) => f.write_str(why),
        }
    }
}

/// Why no node can take an address, from each unfit node's reason, so that the user sees what
/// to change (a nodeSelector that matches nothing reads differently from cordoned nodes).
pub fn no_fit_node(unfit: &[(&str, Unfit)]) -> String {
    const LISTED: usize = 5;
    let base = "no node is fit to hold the address";
    if unfit.is_empty() {
        return format!("{base}: the cluster has no nodes");
    }
    let mut selected: Vec<&(&str, Unfit)> = unfit
        .iter()
        .filter(|(_, u)| *u != Unfit::NotSelected)
        .collect();
    // By name: the message must not change with the order the watch delivered the nodes in.
    selected.sort_by_key(|(name, _)| *name);
    if selected.is_empty() {
        return format!(
            "{base}: spec.nodeSelector selects none of the {} nodes",
            unfit.len()
        );
    }
    let listed: Vec<String> = selected
        .iter()
        .take(LISTED)
        .map(|(n, u)| format!("{n}: {u}"))
        .collect();
    let more = match selected.len().saturating_sub(LISTED) {
        0 => String::new(),
        n => format!("; {n} more"),
    };
    format!("{base} ({}{more})", listed.join("; "))
}

/// Everything about a node's fitness that does not need EC2 or the agent pods.
pub fn node_fitness(node: &NodeView, spec: &FloatingIPSpec) -> Result<(), Unfit> {
    if node.deleting {
        return Err(Unfit::Deleting);
    }
    if !selects(spec, node) {
        return Err(Unfit::NotSelected);
    }
    if node.instance_id.is_none() {
        return Err(Unfit::NoInstance);
    }
    if node.ready != "True" {
        return Err(Unfit::NotReady(node.ready.clone()));
    }
    if node.unschedulable {
        return Err(Unfit::Cordoned);
    }
    if let Some(t) = node.taints.iter().find(|t| {
        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(t, &spec.tolerations)
    }) {
        return Err(Unfit::Tainted(format!("{}:{}", t.key, t.effect)));
    }
    Ok(())
}

/// Whether the FloatingIP's nodeSelector selects the node (every node without one).
pub fn selects(spec: &FloatingIPSpec, node: &NodeView) -> bool {
    match &spec.node_selector {
        None => true,
        // An invalid selector never reaches here: the spec is validated first.
        Some(sel) => Selector::try_from(sel.clone()).is_ok_and(|s| s.matches(&node.labels)),
    }
}

/// Kubernetes toleration matching: empty key with Exists tolerates everything; empty effect
/// matches every effect.
pub fn tolerated(taint: &Taint, tolerations: &[Toleration]) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key = t.key.as_deref().unwrap_or_default();
        let key_ok = key.is_empty() || key == taint.key;
        let value_ok = match t.operator.as_deref().unwrap_or("Equal") {
            "Exists" => true,
            _ => {
                !key.is_empty()
                    && t.value.as_deref().unwrap_or_default()
                        == taint.value.as_deref().unwrap_or_default()
            }
        };
        effect_ok && key_ok && value_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(patch: serde_json::Value) -> NodeView {
        let mut base = json!({
            "metadata": {"name": "n1", "labels": {"floatip.io/edge": "true"}},
            "spec": {"providerID": "aws:///us-west-2-lax-1a/i-0123456789abcdef0"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        json_patch_merge(&mut base, &patch);
        NodeView::from_node(&serde_json::from_value(base).unwrap())
    }

    fn json_patch_merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                if v.is_object() && t.get(k).is_some_and(|x| x.is_object()) {
                    json_patch_merge(t.get_mut(k).unwrap(), v);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
    }

    fn spec(extra: serde_json::Value) -> FloatingIPSpec {
        let mut base = json!({"address": "10.0.8.100", "subnetId": "subnet-0a1b2c3d"});
        json_patch_merge(&mut base, &extra);
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn provider_ids() {
        assert_eq!(
            instance_id_from_provider_id("aws:///us-west-2a/i-0abc").as_deref(),
            Some("i-0abc")
        );
        assert_eq!(instance_id_from_provider_id("gce://p/z/n"), None);
        assert_eq!(instance_id_from_provider_id("aws:///us-west-2a/"), None);
    }

    #[test]
    fn internal_ip_comes_from_status_addresses() {
        let n = node(
            json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.8.11"}]}}),
        );
        assert_eq!(n.internal_ip, Some("10.0.8.11".parse().unwrap()));
        assert_eq!(node(json!({})).internal_ip, None);
    }

    #[test]
    fn a_ready_selected_node_is_fit() {
        assert_eq!(node_fitness(&node(json!({})), &spec(json!({}))), Ok(()));
    }

    #[test]
    fn each_unfit_reason() {
        let s = spec(json!({}));
        let cases = [
            (
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
                Unfit::Deleting,
            ),
            (
                json!({"spec": {"providerID": "kind://x"}}),
                Unfit::NoInstance,
            ),
            (
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                Unfit::NotReady("False".into()),
            ),
            (
                json!({"status": {"conditions": []}}),
                Unfit::NotReady("Unknown".into()),
            ),
            (json!({"spec": {"unschedulable": true}}), Unfit::Cordoned),
            (
                json!({"spec": {"taints": [{"key": "aws-node-termination-handler/spot-itn", "effect": "NoExecute"}]}}),
                Unfit::Tainted("aws-node-termination-handler/spot-itn:NoExecute".into()),
            ),
            (
                json!({"spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"}]}}),
                Unfit::Tainted("ToBeDeletedByClusterAutoscaler:NoSchedule".into()),
            ),
        ];
        for (patch, want) in cases {
            assert_eq!(node_fitness(&node(patch.clone()), &s), Err(want), "{patch}");
        }
        let soft = node(json!({"spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}));
        assert_eq!(
            node_fitness(&soft, &s),
            Ok(()),
            "PreferNoSchedule does not exclude"
        );
    }

    #[test]
    fn node_selector_and_tolerations() {
        let n = node(
            json!({"spec": {"taints": [{"key": "edge", "value": "true", "effect": "NoSchedule"}]}}),
        );
        let selecting = json!({"nodeSelector": {"matchLabels": {"floatip.io/edge": "true"}}});
        assert_eq!(
            node_fitness(&n, &spec(selecting.clone())),
            Err(Unfit::Tainted("edge:NoSchedule".into()))
        );
        let mut tolerating = selecting.clone();
        tolerating["tolerations"] =
            json!([{"key": "edge", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]);
        assert_eq!(node_fitness(&n, &spec(tolerating)), Ok(()));
        let mut wrong_value = selecting.clone();
        wrong_value["tolerations"] = json!([{"key": "edge", "value": "false"}]);
        assert!(node_fitness(&n, &spec(wrong_value)).is_err());
        let mut exists_all = selecting;
        exists_all["tolerations"] = json!([{"operator": "Exists"}]);
        assert_eq!(node_fitness(&n, &spec(exists_all)), Ok(()));
        let other = json!({"nodeSelector": {"matchExpressions": [{"key": "floatip.io/edge", "operator": "DoesNotExist"}]}});
        assert_eq!(
            node_fitness(&node(json!({})), &spec(other)),
            Err(Unfit::NotSelected)
        );
    }
}
