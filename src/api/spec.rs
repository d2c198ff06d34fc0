//! The desired state of a FloatingIP, with the admission rules the API server enforces.
//!
//! Every `x_kube(validation = ...)` rule below has a twin in `validate.rs`; the tests there run
//! each case through both so the two cannot drift apart.

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::messages as msg;
use super::FloatingIPStatus;

/// A floating IP address that floatip keeps on one healthy node at a time.
// clippy reads the repeated `type_ = "string"` of the printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "floatip.io",
    version = "v1alpha1",
    kind = "FloatingIP",
    plural = "floatingips",
    singular = "floatingip",
    shortname = "fip",
    category = "floatip",
    status = "FloatingIPStatus",
    derive = "PartialEq",
    doc = "A floating IP address kept on one healthy node at a time.",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Holder", type_ = "string", json_path = ".status.holder.node"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    // -o wide: why Ready is what it is, whether the address itself answers, and when it
    // last moved.
    printcolumn(
        name = "Healthy",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Healthy\")].status",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Last Move",
        type_ = "date",
        json_path = ".status.lastMove.at",
        priority = 1
    ),
    printcolumn(
        name = "Public",
        type_ = "string",
        json_path = ".status.publicAddress.address",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.mode != 'SecondaryIP' || has(self.subnetId)")
        .message(msg::SUBNET_REQUIRED_SECONDARY),
    validation = Rule::new("self.mode != 'Interface' || has(self.subnetId)")
        .message(msg::SUBNET_REQUIRED_INTERFACE),
    validation = Rule::new("self.mode != 'ElasticIP' || has(self.elasticIP)")
        .message(msg::ELASTIC_IP_REQUIRED),
    validation = Rule::new("self.mode != 'ElasticIP' || has(self.subnetId) || (has(self.interface) && self.interface == 'Primary')")
        .message(msg::SUBNET_REQUIRED_ELASTIC),
    validation = Rule::new("self.mode != 'RouteTable' || (has(self.routeTableIds) && size(self.routeTableIds) > 0)")
        .message(msg::ROUTE_TABLES_REQUIRED),
    validation = Rule::new("self.mode == 'ElasticIP' || self.mode == 'SecondaryIP' || !has(self.elasticIP)")
        .message(msg::ELASTIC_IP_NOT_FOR_MODE),
    validation = Rule::new("self.mode != 'SecondaryIP' || !has(self.elasticIP) || !isIP(self.address) || ip(self.address).family() == 4")
        .message(msg::ELASTIC_IP_IPV4_ONLY),
    validation = Rule::new("self.mode == 'RouteTable' || !has(self.routeTableIds) || size(self.routeTableIds) == 0")
        .message(msg::ROUTE_TABLES_NOT_FOR_MODE),
    validation = Rule::new("self.mode == 'SecondaryIP' || self.mode == 'ElasticIP' || !has(self.interface)")
        .message(msg::INTERFACE_NOT_FOR_MODE),
    validation = Rule::new("!(self.mode == 'ElasticIP' || self.mode == 'Interface') || !isIP(self.address) || ip(self.address).family() == 4")
        .message(msg::IPV4_REQUIRED),
    validation = Rule::new("self.mode == 'Interface' || !has(self.networkInterfaceId)")
        .message(msg::NETWORK_INTERFACE_NOT_FOR_MODE)
)]
#[serde(rename_all = "camelCase")]
pub struct FloatingIPSpec {
    /// The floating address, IPv4 or IPv6, e.g. 10.0.8.100. In SecondaryIP mode it must lie in
    /// spec.subnetId; in ElasticIP mode it is the allocation's Elastic IP (or customer-owned
    /// IP) itself; in RouteTable mode it lies outside the VPC CIDR. Immutable.
    #[schemars(length(max = bounds::ADDRESS_MAX_LEN))]
    #[x_kube(
        validation = Rule::new("isIP(self)")
            .message(msg::ADDRESS_SYNTAX),
        validation = Rule::new("!isIP(self) || ip(self).isGlobalUnicast()")
            .message(msg::ADDRESS_NOT_UNICAST),
        validation = Rule::new("self == oldSelf")
            .message(msg::ADDRESS_IMMUTABLE)
    )]
    pub address: String,

    /// How the address is carried in AWS. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message(msg::MODE_IMMUTABLE))]
    pub mode: Mode,

    /// The subnet that holds the address (SecondaryIP), the floating ENI (Interface), or the
    /// ENIs the Elastic IP is associated with (ElasticIP; optional with interface Primary, where
    /// it limits candidates to nodes whose primary ENI is in it), e.g. subnet-0a1b2c3d4e5f67890.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$"))]
    pub subnet_id: Option<String>,

    /// SecondaryIP and ElasticIP: which ENI of the node carries the address (SecondaryIP) or
    /// whose primary private address the Elastic IP is associated with (ElasticIP). Defaults
    /// to Dedicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<InterfaceChoice>,

    /// Interface only: an existing ENI in spec.subnetId whose primary private address is
    /// spec.address, to move whole instead of one floatip creates, e.g.
    /// eni-0a1b2c3d4e5f67890. It must be detached or attached to a node of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^eni-([0-9a-f]{8}|[0-9a-f]{17})$"))]
    pub network_interface_id: Option<String>,

    /// The Elastic IP (or Outposts customer-owned IP) allocation that carries the address to
    /// clients outside the VPC. Required in ElasticIP mode, where the allocation is associated
    /// with the holder's own private address at every move. Optional in SecondaryIP mode
    /// (IPv4): associated once with the floating private address, whose moves EC2 makes the
    /// Elastic IP follow.
    #[serde(default, rename = "elasticIP", skip_serializing_if = "Option::is_none")]
    pub elastic_ip: Option<ElasticIpSource>,

    /// RouteTable only: the route tables whose route for the address points at the holder's ENI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::ROUTE_TABLES_MAX), inner(regex(pattern = r"^rtb-([0-9a-f]{8}|[0-9a-f]{17})$")))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(t, !t.startsWith('lgw-rtb-'))")
            .message(msg::LOCAL_GATEWAY_ROUTE_TABLE)
    )]
    pub route_table_ids: Vec<String>,

    /// Which nodes may hold the address. Empty or absent selects every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// Taints of nodes that may still hold the address. A node with a NoSchedule or NoExecute
    /// taint not tolerated here is not a candidate: termination handlers and autoscalers taint
    /// nodes before removing them, so the address leaves first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::TOLERATIONS_MAX))]
    pub tolerations: Vec<Toleration>,

    /// Node names to prefer, most preferred first. Nodes not listed are used after these,
    /// spreading addresses across nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::PREFERRED_NODES_MAX), inner(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub preferred_nodes: Vec<String>,

    /// Whether the address goes back to a more preferred node once that node is healthy again.
    #[serde(default)]
    pub failback: Failback,

    /// How the address and the candidate nodes are health-checked. Without it only node signals
    /// (NotReady, cordon, termination taints, deletion, agent handover) move the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,

    /// Limits on how often the address moves.
    #[serde(default)]
    pub failover: Failover,
}

/// How a floating address is carried in AWS.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
)]
pub enum Mode {
    /// A secondary private IP on an ENI of the holder, moved with AssignPrivateIpAddresses.
    #[default]
    SecondaryIP,
    /// An Elastic IP (or customer-owned IP) associated with the holder's private IP.
    ElasticIP,
    /// An overlay address outside the VPC CIDR, routed to the holder's ENI by route tables.
    RouteTable,
    /// A dedicated ENI whose primary IP is the address, detached and attached whole. Slow.
    Interface,
}

impl Mode {
    /// The modes the controller carries out today, for messages: those `crate::mode::port` has
    /// an implementation for (that lookup decides; a test beside it proves this list agrees).
    /// The CRD accepts every mode so that objects written for a later release are stored; the
    /// others get Ready=False, ModeNotSupported.
    pub const CARRIED_OUT: &'static [Mode] = &[
        Mode::SecondaryIP,
        Mode::ElasticIP,
        Mode::RouteTable,
        Mode::Interface,
    ];

    /// Why the controller leaves a FloatingIP of this mode alone, or None when it carries it out.
    pub fn not_supported(self) -> Option<String> {
        if crate::mode::port(self).is_some() {
            return None;
        }
        let working: Vec<String> = Self::CARRIED_OUT.iter().map(Mode::to_string).collect();
        Some(format!(
            "mode {self} is not carried out by this version of floatip, which moves addresses in mode {} only; nothing is done for this FloatingIP (recreate it with a supported mode, or keep it until an upgrade adds {self})",
            working.join(", ")
        ))
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Which ENI carries a SecondaryIP address.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum InterfaceChoice {
    /// A floating ENI per node, tagged so the VPC CNI leaves its addresses alone.
    #[default]
    Dedicated,
    /// The node's primary ENI; only for clusters that do not run the VPC CNI.
    Primary,
}

/// The Elastic IP allocation that carries the address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElasticIpSource {
    /// The allocation ID, e.g. eipalloc-0a1b2c3d4e5f67890.
    #[schemars(regex(pattern = r"^eipalloc-([0-9a-f]{8}|[0-9a-f]{17})$"))]
    pub allocation_id: String,

    /// Whether floatip may take the allocation from an association it did not make (another
    /// instance, ENI or private address). Without it, an allocation associated elsewhere gets
    /// the Conflict condition and is left where it is.
    #[serde(default)]
    pub allow_reassociation: bool,
}

/// Whether an address returns to a more preferred node.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Failback {
    /// Stay on the current healthy holder: every move costs a brief interruption.
    #[default]
    Never,
    /// Move back to the most preferred healthy node once failover.minHoldSeconds have passed.
    Always,
}

/// Probe protocol.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
pub enum Protocol {
    /// A TCP connect: healthy when the handshake completes within the timeout.
    #[default]
    TCP,
    /// A UDP datagram: unhealthy on ICMP port unreachable, or on silence when a reply is required.
    UDP,
}

/// Default probe interval of the holder and its address. A failed probe is confirmed at once
/// rather than an interval later, so with the default threshold a dead holder is noticed
/// within this interval plus three probe timeouts (about 350 ms on average when it stops
/// answering, a few milliseconds when it refuses).
pub const DEFAULT_INTERVAL_MS: i32 = 100;
/// Default probe interval of a candidate that does not hold the address: it only has to be
/// known to answer by the time the holder fails.
pub const DEFAULT_IDLE_INTERVAL_MS: i32 = 1_000;
/// Default probe timeout; never above the interval.
pub const DEFAULT_TIMEOUT_MS: i32 = 250;
/// Default consecutive failures before a target counts as down.
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;
/// Default consecutive successes before a target counts as up again.
pub const DEFAULT_SUCCESS_THRESHOLD: i32 = 2;
/// Default minimum time an address stays on a node after moving there.
pub const DEFAULT_MIN_HOLD_SECONDS: i32 = 30;

/// Bounds shared by the CRD schema and the Rust checks.
pub mod bounds {
    /// Longest address text (a fully written-out IPv6 address with an embedded IPv4 part).
    pub const ADDRESS_MAX_LEN: u32 = 45;
    /// Shortest probe interval, milliseconds.
    pub const INTERVAL_MS_MIN: i32 = 100;
    /// Longest probe interval, milliseconds.
    pub const INTERVAL_MS_MAX: i32 = 60_000;
    /// Shortest probe timeout, milliseconds.
    pub const TIMEOUT_MS_MIN: i32 = 10;
    /// Longest probe timeout, milliseconds.
    pub const TIMEOUT_MS_MAX: i32 = 30_000;
    /// Lowest failure or success threshold.
    pub const THRESHOLD_MIN: i32 = 1;
    /// Highest failure or success threshold.
    pub const THRESHOLD_MAX: i32 = 20;
    /// Longest failover.minHoldSeconds.
    pub const MIN_HOLD_SECONDS_MAX: i32 = 3_600;
    /// Longest UDP payload as text, in bytes; fits one unfragmented datagram on any VPC path.
    pub const UDP_PAYLOAD_MAX: u32 = 1_024;
    /// Longest UDP payload as base64 (1,024 bytes encoded, rounded up to whole groups).
    pub const UDP_PAYLOAD_BASE64_MAX: u32 = 1_368;
    /// Most route tables one RouteTable address may be routed in.
    pub const ROUTE_TABLES_MAX: u32 = 20;
    /// Most preferred nodes.
    pub const PREFERRED_NODES_MAX: u32 = 32;
    /// Most tolerations.
    pub const TOLERATIONS_MAX: u32 = 32;
}

/// How the address and its candidate nodes are health-checked.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.timeoutMs) || self.timeoutMs <= self.intervalMs")
        .message(msg::TIMEOUT_ABOVE_INTERVAL),
    validation = Rule::new("!has(self.idleIntervalMs) || self.idleIntervalMs >= self.intervalMs")
        .message(msg::IDLE_BELOW_INTERVAL),
    validation = Rule::new("self.protocol == 'UDP' || !has(self.udp)")
        .message(msg::UDP_NOT_FOR_PROTOCOL)
)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// TCP or UDP.
    #[serde(default)]
    pub protocol: Protocol,

    /// The port probed on the address and on each candidate node, e.g. a NodePort.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Time between probes of the address and of the node holding it, in milliseconds. A
    /// probe that fails is followed at once by the next, until failureThreshold probes in a
    /// row have failed or one passes, so detection does not wait whole intervals.
    #[serde(default = "default_interval_ms")]
    #[schemars(range(min = bounds::INTERVAL_MS_MIN, max = bounds::INTERVAL_MS_MAX))]
    pub interval_ms: i32,

    /// Time between probes of a candidate node that does not hold the address, in
    /// milliseconds; at least intervalMs. Defaults to 1000 or intervalMs, whichever is
    /// longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::INTERVAL_MS_MIN, max = bounds::INTERVAL_MS_MAX))]
    pub idle_interval_ms: Option<i32>,

    /// How long one probe may take, in milliseconds. Defaults to 250 or the interval,
    /// whichever is smaller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::TIMEOUT_MS_MIN, max = bounds::TIMEOUT_MS_MAX))]
    pub timeout_ms: Option<i32>,

    /// Consecutive failed probes before a target counts as down.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = bounds::THRESHOLD_MIN, max = bounds::THRESHOLD_MAX))]
    pub failure_threshold: i32,

    /// Consecutive good probes before a down target counts as up again.
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = bounds::THRESHOLD_MIN, max = bounds::THRESHOLD_MAX))]
    pub success_threshold: i32,

    /// UDP only: what to send and whether to wait for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<UdpCheck>,
}

impl HealthCheck {
    /// The timeout in force: the one set, else the default capped at the interval.
    pub fn effective_timeout_ms(&self) -> i32 {
        self.timeout_ms
            .unwrap_or_else(|| DEFAULT_TIMEOUT_MS.min(self.interval_ms))
    }

    /// The idle interval in force: the one set, else the default or the interval, whichever
    /// is longer.
    pub fn effective_idle_interval_ms(&self) -> i32 {
        self.idle_interval_ms
            .unwrap_or_else(|| DEFAULT_IDLE_INTERVAL_MS.max(self.interval_ms))
    }
}

/// The datagram a UDP probe sends.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!(has(self.payload) && has(self.payloadBase64))")
    .message(msg::UDP_PAYLOAD_BOTH))]
#[serde(rename_all = "camelCase")]
pub struct UdpCheck {
    /// The payload as text (UTF-8). Empty or absent sends an empty datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::UDP_PAYLOAD_MAX))]
    pub payload: Option<String>,

    /// The payload as base64, for binary protocols such as DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::UDP_PAYLOAD_BASE64_MAX), extend("format" = "byte"))]
    pub payload_base64: Option<String>,

    /// Count the target healthy only when it answers. Without it, silence is healthy and only an
    /// ICMP port unreachable is a failure.
    #[serde(default)]
    pub reply_required: bool,
}

/// Limits on how often an address moves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// After a move, the address stays on its new node at least this long, unless that node is
    /// gone or unfit. Stops ping-pong between two flapping nodes.
    #[serde(default = "default_min_hold_seconds")]
    #[schemars(range(min = 0, max = bounds::MIN_HOLD_SECONDS_MAX))]
    pub min_hold_seconds: i32,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            min_hold_seconds: DEFAULT_MIN_HOLD_SECONDS,
        }
    }
}

fn default_interval_ms() -> i32 {
    DEFAULT_INTERVAL_MS
}
fn default_failure_threshold() -> i32 {
    DEFAULT_FAILURE_THRESHOLD
}
fn default_success_threshold() -> i32 {
    DEFAULT_SUCCESS_THRESHOLD
}
fn default_min_hold_seconds() -> i32 {
    DEFAULT_MIN_HOLD_SECONDS
}
