//! The cloud port: what the controller asks of EC2, as a trait, so that decisions can be tested
//! with an in-memory cloud and the AWS adapter stays a thin translation.

pub mod aws;
#[cfg(test)]
pub mod fake;

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
}

impl Eni {
    pub fn holds(&self, address: IpAddr) -> bool {
        self.secondary.contains(&address)
    }

    /// A dedicated floating ENI of this cluster, which only floatip puts addresses on.
    pub fn is_floating_for(&self, cluster: &str) -> bool {
        self.tags.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
            && self.tags.get(TAG_NO_MANAGE).map(String::as_str) == Some("true")
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
}

/// What floatip asks of EC2 in SecondaryIP mode.
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
}
