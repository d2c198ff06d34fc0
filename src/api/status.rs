//! What floatip observed and did: who holds the address, since when, why it last moved.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a FloatingIP. Written only by the leading controller (and by `floatip
/// attach` when it claims an address nobody holds).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FloatingIPStatus {
    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Assigned, Healthy, NoCandidates, Conflict, InvalidSpec, CloudError, BackingOff,
    /// HeldInDoubt, AttachFailed: every one from the first status write, False or Unknown when
    /// it does not apply, never removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The node that holds the address, as EC2 last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<Holder>,

    /// A move the controller has claimed and not yet seen EC2 confirm. Written (with a
    /// resourceVersion check) before the EC2 call, so a controller that dies mid-move leaves
    /// its successor the intent to finish or drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_move: Option<PendingMove>,

    /// The most recent move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_move: Option<Move>,

    /// How many times the address has moved since the FloatingIP was created.
    #[serde(default)]
    pub move_count: i64,

    /// The Elastic IP (or customer-owned IP) of `spec.elasticIP`, as EC2 last described it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<PublicAddress>,

    /// Interface mode: where the FloatingIP's ENI is in its last move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<InterfaceAttachment>,
}

/// Interface mode: the ENI's move, phase by phase. A move claims the target (Detaching, or
/// Attaching when the ENI is on no instance), detaches the ENI and waits until EC2 shows it
/// free, attaches it (Attaching: EC2 shows the attachment `attaching`), and reads it back
/// until EC2 shows it `attached` (Attached).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceAttachment {
    pub phase: AttachmentPhase,
    /// When this phase began.
    pub since: Time,
    /// This move: from DetachNetworkInterface until EC2 showed the ENI on no instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detach_ms: Option<i64>,
    /// This move: from AttachNetworkInterface until EC2 showed the ENI attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_ms: Option<i64>,
}

/// A phase of an Interface-mode move.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum AttachmentPhase {
    /// Being taken off the instance that held it.
    Detaching,
    /// Attached to the new holder by EC2's word, not yet shown `attached`.
    Attaching,
    /// EC2 shows it attached to the holder.
    Attached,
}

/// The allocation that carries the address outside the VPC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicAddress {
    /// The public or customer-owned address clients use.
    pub address: String,
    /// ElasticIP for an Amazon public address, CustomerOwnedIP for an Outposts CoIP.
    pub kind: PublicAddressKind,
    pub allocation_id: String,
    /// Where the allocation can be used: the Region, or a Local Zone's group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_border_group: Option<String>,
    /// The private address it is associated with now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_with: Option<String>,
}

/// Which kind of address an allocation is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PublicAddressKind {
    /// An Amazon-owned (or BYOIP) public IPv4 address.
    ElasticIP,
    /// An Outposts customer-owned address from a CoIP pool, reachable from the on-premises
    /// network through the Outpost's local gateway.
    CustomerOwnedIP,
}

/// Where the address lives now.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// Kubernetes node name.
    pub node: String,
    /// EC2 instance ID of the node.
    pub instance_id: String,
    /// The ENI carrying the address (SecondaryIP, RouteTable and Interface modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_id: Option<String>,
    /// The ENI's MAC address: how the node's agent finds the interface to configure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// ElasticIP mode: the ENI's own private address the Elastic IP is associated with. The
    /// agent routes replies from it through that ENI; it neither adds nor removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_address: Option<String>,
    /// When the address arrived on this node.
    pub since: Time,
}

/// A move in flight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingMove {
    /// The node the address is leaving, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The node it is going to.
    pub to: String,
    /// Why it moves.
    pub reason: MoveReason,
    /// When the move was decided.
    pub since: Time,
}

/// One move of the address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    /// The node the address left; absent for the first assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The node the address went to.
    pub to: String,
    /// Why it moved.
    pub reason: MoveReason,
    /// When the move completed.
    pub at: Time,
    /// From the decision to EC2 confirming the new holder, in milliseconds.
    pub duration_ms: i64,
    /// IPv6 moves take two calls (UnassignIpv6Addresses, then AssignIpv6Addresses): how long,
    /// in milliseconds, EC2 had the address on no ENI between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unassigned_ms: Option<i64>,
}

/// Why an address moved. Kept as a plain string in the schema so a newer controller can add
/// reasons without a CRD upgrade.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[schemars(with = "String")]
pub enum MoveReason {
    /// First placement of an address nobody held.
    Initial,
    /// The holder failed its health check.
    HolderUnhealthy,
    /// The holder's Ready condition is False or Unknown.
    NodeNotReady,
    /// The holder was cordoned.
    NodeCordoned,
    /// The holder carries a NoSchedule or NoExecute taint the address does not tolerate.
    NodeTainted,
    /// The holder was deleted.
    NodeDeleted,
    /// The holder's agent asked to hand the address over (drain, rollout).
    Handover,
    /// Back to a more preferred node (failback: Always).
    Failback,
    /// EC2 had the address somewhere floatip did not put it; floatip put it back.
    Drift,
    /// The holder's floatip agent stopped being ready (the Node itself may be Ready).
    AgentNotReady,
    /// The holder no longer meets the FloatingIP's needs: its nodeSelector stopped selecting
    /// it, or it lost its instance or its ENI in the subnet.
    NodeIneligible,
}

impl MoveReason {
    /// The reason as written to status, Events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "Initial",
            Self::HolderUnhealthy => "HolderUnhealthy",
            Self::NodeNotReady => "NodeNotReady",
            Self::NodeCordoned => "NodeCordoned",
            Self::NodeTainted => "NodeTainted",
            Self::NodeDeleted => "NodeDeleted",
            Self::Handover => "Handover",
            Self::Failback => "Failback",
            Self::Drift => "Drift",
            Self::AgentNotReady => "AgentNotReady",
            Self::NodeIneligible => "NodeIneligible",
        }
    }
}

/// Condition types set on a FloatingIP.
pub mod condition {
    /// The address is assigned to a healthy holder and, when health-checked, answers.
    pub const READY: &str = "Ready";
    /// EC2 has the address on the holder recorded in status.
    pub const ASSIGNED: &str = "Assigned";
    /// The address answers its health check.
    pub const HEALTHY: &str = "Healthy";
    /// No node is fit to hold the address; nothing was moved.
    pub const NO_CANDIDATES: &str = "NoCandidates";
    /// Another, older FloatingIP has the same address; this one is never acted on.
    pub const CONFLICT: &str = "Conflict";
    /// The spec failed validation; this FloatingIP is not acted on until fixed.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The last EC2 call failed; the message names the action and the AWS error code.
    pub const CLOUD_ERROR: &str = "CloudError";
    /// EC2 refused this FloatingIP's move in a way no retry fixes; it is tried again after a
    /// jittered exponential wait (the message says when), or at once when the spec changes.
    pub const BACKING_OFF: &str = "BackingOff";
    /// The holder fails the controller's checks, but so do most nodes at once and no agent
    /// confirms the holder is down: the controller doubts its own network and keeps the
    /// address where it is (the message says what each side sees).
    pub const HELD_IN_DOUBT: &str = "HeldInDoubt";
    /// `floatip attach` could not prepare a node for this FloatingIP's subnet (the message
    /// names the node and EC2's error); other FloatingIPs are unaffected. False again once an
    /// attach prepares the subnet.
    pub const ATTACH_FAILED: &str = "AttachFailed";

    /// Every condition type, in the order status lists them. Each is on every FloatingIP from
    /// its first status write, False or Unknown when it does not apply, never removed (the
    /// API conventions: a client can tell "not true" from "not looked at by this version").
    pub const ALL: [&str; 10] = [
        READY,
        ASSIGNED,
        HEALTHY,
        NO_CANDIDATES,
        CONFLICT,
        INVALID_SPEC,
        CLOUD_ERROR,
        BACKING_OFF,
        HELD_IN_DOUBT,
        ATTACH_FAILED,
    ];
}
