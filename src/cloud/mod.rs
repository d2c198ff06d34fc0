//! The cloud port: what the controller asks of EC2, as a trait, so that decisions can be tested
//! with an in-memory cloud and the AWS adapter stays a thin translation.

pub mod attachment;
pub mod aws;
pub mod cidr;
mod eip;
#[cfg(test)]
pub mod fake;
mod orphans;
mod route;

pub use attachment::{Attachment, AttachmentStatus};
pub use eip::{Allocation, Association};
pub use orphans::{delete_orphaned_floating_enis, orphaned_floating_enis};
pub use route::{host_route, Route, RouteTable, RouteTarget};

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;

/// Tag on every ENI floatip creates, naming the cluster it belongs to.
pub const TAG_CLUSTER: &str = "floatip.io/cluster";
/// Tag on a floating ENI naming the node it serves.
pub const TAG_NODE: &str = "floatip.io/node";
/// Tag that keeps the VPC CNI from adopting an ENI's addresses.
pub const TAG_NO_MANAGE: &str = "node.k8s.amazonaws.com/no_manage";

/// An ENI as floatip sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    pub id: String,
    pub subnet_id: String,
    /// The instance it is attached to, if attached.
    pub instance_id: Option<String>,
    pub device_index: Option<i32>,
    pub mac: Option<String>,
    pub primary_ip: Option<IpAddr>,
    /// Secondary private IPv4 addresses and IPv6 addresses.
    pub secondary: Vec<IpAddr>,
    pub tags: BTreeMap<String, String>,
    /// IDs of the security groups that filter its traffic, as EC2 lists them.
    pub security_groups: Vec<String>,
}

impl Eni {
    pub fn holds(&self, address: IpAddr) -> bool {
        self.secondary.contains(&address)
    }

    /// The node a floating ENI was made for.
    pub fn node_tag(&self) -> Option<&str> {
        self.tags.get(TAG_NODE).map(String::as_str)
    }

    /// A dedicated floating ENI of this cluster, which only floatip puts addresses on.
    pub fn is_floating_for(&self, cluster: &str) -> bool {
        self.tags.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
            && self.tags.get(TAG_NO_MANAGE).map(String::as_str) == Some("true")
    }
}

/// An EC2 instance, as `floatip attach` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    /// Device indexes of the network interfaces attached now (network card 0).
    pub device_indexes: Vec<i32>,
    /// Security groups of its primary network interface (device index 0, network card 0).
    pub primary_security_groups: Vec<String>,
}

/// A subnet: where floating ENIs are created and what prefix their addresses carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub cidr_v4: Option<String>,
    /// The IPv6 blocks associated with it, if any.
    pub cidrs_v6: Vec<String>,
    /// Its Availability Zone (or Local Zone): which network border group its ENIs are in.
    pub zone: Option<String>,
}

impl Subnet {
    /// The blocks of the address's family.
    pub fn blocks_for(&self, address: IpAddr) -> Vec<cidr::Cidr> {
        let texts: Vec<&String> = if address.is_ipv4() {
            self.cidr_v4.iter().collect()
        } else {
            self.cidrs_v6.iter().collect()
        };
        texts.into_iter().filter_map(|t| t.parse().ok()).collect()
    }
}

/// How an EC2 error should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// RequestLimitExceeded and friends: back off and retry.
    Throttled,
    /// 5xx, timeouts, connection failures: back off and retry.
    Transient,
    /// Anything else (missing IAM permission, bad parameter): retrying will not help; tell
    /// the user through a condition.
    Permanent,
}

/// The code of a call the SDK could not sign for want of AWS credentials (not an AWS error
/// code: no request was sent).
pub const NO_CREDENTIALS: &str = "NoCredentials";

/// A failed EC2 call, naming the action and AWS's error code so a user can act on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("EC2 {action} failed: {code}: {message}")]
pub struct CloudError {
    pub action: &'static str,
    pub code: String,
    pub message: String,
    pub kind: ErrorKind,
}

impl CloudError {
    pub fn retryable(&self) -> bool {
        self.kind != ErrorKind::Permanent
    }

    /// AWS's error code as a condition reason (CamelCase letters and digits only).
    pub fn code_reason(&self) -> String {
        let reason: String = self
            .code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        if reason.is_empty() {
            "CloudError".to_string()
        } else {
            reason
        }
    }

    /// Label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
        }
    }
}

/// One address to put on the target ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressMove {
    pub address: IpAddr,
    /// The ENI holding it now, if any. IPv6 addresses cannot be reassigned in one call, so
    /// they are taken off here first.
    pub from_eni: Option<String>,
    /// The Elastic IP allocation that carries the address (ElasticIP mode).
    pub allocation_id: Option<String>,
    /// The route tables whose host route of the address leads to the target (RouteTable mode).
    pub route_tables: Vec<String>,
}

/// What floatip asks of EC2, for every mode: the calls each mode makes are listed with it below.
pub trait Cloud: Send + Sync + 'static {
    /// Every ENI in the subnet: one paginated DescribeNetworkInterfaces.
    fn subnet_enis(
        &self,
        subnet: &str,
    ) -> impl Future<Output = Result<Vec<Eni>, CloudError>> + Send;

    /// The named ENIs, fresh: to verify a move.
    fn enis(&self, ids: &[String]) -> impl Future<Output = Result<Vec<Eni>, CloudError>> + Send;

    /// Puts every address on `eni`, taking each off whichever ENI holds it. IPv4 addresses go
    /// in ONE AssignPrivateIpAddresses with AllowReassignment; IPv6 ones are unassigned from
    /// their old ENI and assigned in one AssignIpv6Addresses.
    fn assign(
        &self,
        eni: &str,
        moves: &[AddressMove],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Takes the addresses off `eni`. An address the ENI no longer has is not an error.
    fn unassign(
        &self,
        eni: &str,
        addresses: &[IpAddr],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Puts addresses nobody holds on `eni`, WITHOUT reassignment: fails if any is in use
    /// elsewhere. Used by `floatip attach` for a first claim, which must never steal.
    fn assign_unused(
        &self,
        eni: &str,
        addresses: &[IpAddr],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Every ENI attached to one of `instances`, in any subnet: one paginated
    /// DescribeNetworkInterfaces per 200 instances (attachment.instance-id filter).
    fn instance_enis(
        &self,
        instances: &[String],
    ) -> impl Future<Output = Result<Vec<Eni>, CloudError>> + Send;

    /// Every ENI carrying `floatip.io/cluster=<cluster>`, in any subnet.
    fn cluster_enis(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<Eni>, CloudError>> + Send;

    /// The instance and the device indexes in use on it.
    fn instance(&self, id: &str) -> impl Future<Output = Result<Instance, CloudError>> + Send;

    /// How many network interfaces the instance type allows; None when EC2 does not say.
    fn max_interfaces(
        &self,
        instance_type: &str,
    ) -> impl Future<Output = Result<Option<u32>, CloudError>> + Send;

    fn subnet(&self, id: &str) -> impl Future<Output = Result<Subnet, CloudError>> + Send;

    /// Creates an ENI in `subnet` with `tags`, filtered by `security_groups` (never empty: EC2
    /// would give it the VPC's default group instead).
    fn create_eni(
        &self,
        subnet: &str,
        description: &str,
        security_groups: &[String],
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<Eni, CloudError>> + Send;

    /// Replaces the security groups of `eni` with `security_groups` (not empty).
    fn set_security_groups(
        &self,
        eni: &str,
        security_groups: &[String],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Attaches `eni` to `instance` at `device_index`. DeleteOnTermination stays off: a floating
    /// ENI outlives its instance, and the controller deletes those of nodes that are gone.
    fn attach_eni(
        &self,
        eni: &str,
        instance: &str,
        device_index: i32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Deletes a detached ENI.
    fn delete_eni(&self, eni: &str) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// The allocations among `ids` that exist: DescribeAddresses with an allocation-id filter,
    /// so a missing one is left out rather than failing the call.
    fn allocations(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Allocation>, CloudError>> + Send;

    /// AssociateAddress(AllocationId, NetworkInterfaceId, PrivateIpAddress, AllowReassociation).
    /// Without reassociation EC2 refuses (Resource.AlreadyAssociated) an allocation bound
    /// elsewhere; it always refuses an ENI outside the allocation's network border group.
    fn associate(
        &self,
        allocation_id: &str,
        eni: &str,
        private_ip: IpAddr,
        allow_reassociation: bool,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// DisassociateAddress(AssociationId). An association already gone is not an error.
    fn disassociate(
        &self,
        association_id: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Zone name -> network border group for every zone of the Region, Local Zones included
    /// (DescribeAvailabilityZones AllAvailabilityZones=true).
    fn border_groups(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, CloudError>> + Send;

    /// The route tables among `ids` that exist: DescribeRouteTables with a route-table-id
    /// filter, so a missing one is left out rather than failing the call.
    fn route_tables(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<RouteTable>, CloudError>> + Send;

    /// Points the table's host route of `address` (/32 or /128) at `eni`: ReplaceRoute, or
    /// CreateRoute when the table has no such route yet. One table per call: EC2 has no batch.
    fn route_to(
        &self,
        table: &str,
        address: IpAddr,
        eni: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// DeleteRoute of the table's host route of `address`. A route already gone is not an error.
    fn delete_route(
        &self,
        table: &str,
        address: IpAddr,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Turns the ENI's source/dest check off, so that it takes traffic for addresses that are
    /// not its own (a route's). Reads the attribute first: Ok(false) when it was already off
    /// and no mutating call was made.
    fn source_dest_check_off(
        &self,
        eni: &str,
    ) -> impl Future<Output = Result<bool, CloudError>> + Send;

    // Interface mode: one ENI per address, moved whole ([`attachment`]).

    /// The attachment of `eni` now, if it has one: DescribeNetworkInterfaces by ID. An ENI
    /// that does not exist is an error (InvalidNetworkInterfaceID.NotFound).
    fn attachment(
        &self,
        eni: &str,
    ) -> impl Future<Output = Result<Option<Attachment>, CloudError>> + Send;

    /// DetachNetworkInterface(AttachmentId, Force). EC2 answers at once and shows the
    /// attachment `detaching` until the instance lets go.
    fn detach_eni(
        &self,
        attachment_id: &str,
        force: bool,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// CreateNetworkInterface in `subnet` whose primary private address is `address`, with
    /// `tags` and `security_groups` (never empty), as [`Cloud::create_eni`].
    fn create_address_eni(
        &self,
        subnet: &str,
        address: IpAddr,
        description: &str,
        security_groups: &[String],
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<Eni, CloudError>> + Send;

    /// The instance's state name (`running`, `stopped`...); None when EC2 does not know the
    /// instance (gone for good).
    fn instance_state(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<String>, CloudError>> + Send;
}

/// Whether two lists name the same security groups: EC2 keeps them as a set.
pub fn same_security_groups(a: &[String], b: &[String]) -> bool {
    let set = |l: &[String]| l.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    set(a) == set(b)
}

/// A security group ID as EC2 writes it (`sg-` and lowercase hexadecimal digits), for a flag's
/// value parser: a mistyped ID is refused before any EC2 call.
pub fn parse_security_group_id(s: &str) -> Result<String, String> {
    let s = s.trim();
    let digits = s.strip_prefix("sg-").unwrap_or_default();
    if !digits.is_empty()
        && digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a security group ID: expected sg- and lowercase hexadecimal digits, e.g. sg-0123456789abcdef0"
        ))
    }
}

/// The tags of the floating ENI of `node` in `cluster`.
pub fn floating_tags(cluster: &str, node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_CLUSTER.to_string(), cluster.to_string()),
        (TAG_NODE.to_string(), node.to_string()),
        (TAG_NO_MANAGE.to_string(), "true".to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_group_ids_are_checked_before_any_call() {
        assert_eq!(
            parse_security_group_id(" sg-0123456789abcdef0"),
            Ok("sg-0123456789abcdef0".to_string())
        );
        assert_eq!(
            parse_security_group_id("sg-1a2b3c4d").as_deref(),
            Ok("sg-1a2b3c4d")
        );
        for bad in [
            "",
            "sg-",
            "0123abcd",
            "sg-0123ABCD",
            "sg-12 34",
            "web-nodes",
            "eni-0a1b2c",
        ] {
            let err = parse_security_group_id(bad).expect_err(bad);
            assert!(err.contains("is not a security group ID"), "{err}");
        }
    }

    #[test]
    fn security_groups_compare_as_sets() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_security_groups(
            &l(&["sg-1", "sg-2"]),
            &l(&["sg-2", "sg-1"])
        ));
        assert!(!same_security_groups(&l(&["sg-1"]), &l(&["sg-1", "sg-2"])));
        assert!(!same_security_groups(&l(&["sg-default"]), &l(&["sg-1"])));
    }
}
