//! The messages of the CEL admission rules. The CRD and the Rust checks both use these, so a user
//! sees the same words whether kubectl refused the object or the controller set InvalidSpec.

pub const ADDRESS_SYNTAX: &str = "spec.address must be a plain IPv4 or IPv6 address such as 10.0.8.100 or 2600:1f14::10, without a prefix length or zone";
pub const ADDRESS_NOT_UNICAST: &str = "spec.address must be a unicast address a VPC can route: not loopback, link-local, multicast, broadcast or unspecified";
pub const ADDRESS_IMMUTABLE: &str =
    "spec.address is immutable: create a new FloatingIP for a different address";
pub const MODE_IMMUTABLE: &str =
    "spec.mode is immutable: create a new FloatingIP to change how the address is carried";
pub const SUBNET_REQUIRED_SECONDARY: &str = "spec.subnetId is required when mode is SecondaryIP: name the subnet whose ENIs may hold the address";
pub const SUBNET_REQUIRED_INTERFACE: &str = "spec.subnetId is required when mode is Interface: name the subnet the floating ENI is created in";
pub const ELASTIC_IP_REQUIRED: &str =
    "spec.elasticIP.allocationId is required when mode is ElasticIP";
pub const ROUTE_TABLES_REQUIRED: &str =
    "spec.routeTableIds needs at least one route table when mode is RouteTable";
pub const SUBNET_REQUIRED_ELASTIC: &str = "spec.subnetId is required when mode is ElasticIP with interface Dedicated (the default): name the subnet of the floating ENIs, or set interface: Primary to use the nodes' primary ENIs in any subnet";
pub const ELASTIC_IP_NOT_FOR_MODE: &str =
    "spec.elasticIP is only used when mode is ElasticIP or SecondaryIP; remove it or change the mode";
pub const ELASTIC_IP_IPV4_ONLY: &str =
    "spec.elasticIP needs an IPv4 spec.address: Elastic IPs map to IPv4 private addresses only";
pub const LOCAL_GATEWAY_ROUTE_TABLE: &str = "spec.routeTableIds lists an Outposts local gateway route table (lgw-rtb-...): local gateway route tables are not supported yet; list VPC route tables (rtb-...)";
pub const ROUTE_TABLES_NOT_FOR_MODE: &str =
    "spec.routeTableIds is only used when mode is RouteTable; remove it or change the mode";
pub const INTERFACE_NOT_FOR_MODE: &str =
    "spec.interface is only used when mode is SecondaryIP or ElasticIP; remove it or change the mode";
pub const NETWORK_INTERFACE_NOT_FOR_MODE: &str =
    "spec.networkInterfaceId is only used when mode is Interface; remove it or change the mode";
pub const IPV4_REQUIRED: &str = "spec.address must be IPv4 when mode is ElasticIP or Interface: Elastic IPs and ENI primary addresses are IPv4 only";
pub const TIMEOUT_ABOVE_INTERVAL: &str = "spec.healthCheck.timeoutMs must not exceed intervalMs: a probe must finish before the next one starts";
pub const IDLE_BELOW_INTERVAL: &str = "spec.healthCheck.idleIntervalMs must be at least intervalMs: idle candidates are probed less often than the holder, never more";
pub const UDP_NOT_FOR_PROTOCOL: &str = "spec.healthCheck.udp is only used when protocol is UDP";
pub const UDP_PAYLOAD_BOTH: &str = "spec.healthCheck.udp takes payload or payloadBase64, not both";
