//! What attach reports: why it failed (one line naming what to check) and what it did.

use std::net::IpAddr;
use std::time::Duration;

use crate::cloud::CloudError;

/// Why attach failed, each naming what to check.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("Kubernetes API: {0}; check the agent's RBAC (get nodes, list FloatingIPs, update floatingips/status)")]
    Kube(#[from] kube::Error),
    #[error("node {0} has no aws:/// spec.providerID; floatip attach runs only on EC2 nodes")]
    NoInstance(String),
    #[error("{0}; {hint}", hint = hint(.0))]
    Cloud(#[from] CloudError),
    #[error("no free ENI slot on {instance} ({instance_type} allows {max} network interfaces, all in use); use a larger instance type or free a device index")]
    NoFreeSlot {
        instance: String,
        instance_type: String,
        max: u32,
    },
    #[error("floating ENI {eni} of node {node} is attached to {other}, not to this node's {instance}; delete or detach it")]
    AttachedElsewhere {
        eni: String,
        node: String,
        other: String,
        instance: String,
    },
    #[error("the primary ENI of {instance} has no security groups for its floating ENI to copy; set --security-group-ids (chart value agent.securityGroupIds)")]
    NoSecurityGroups { instance: String },
    #[error("EC2 gave each of the {tries} floating ENIs attach created in {subnet} a FloatingIP's address as its primary; reserve the FloatingIPs' addresses in the subnet (an explicit subnet CIDR reservation) so that EC2 does not hand them out")]
    FloatingPrimary { subnet: String, tries: usize },
    #[error("floating ENI {eni} was not attached within {timeout:?}; check its attachment in EC2")]
    NotAttached { eni: String, timeout: Duration },
    #[error("floating ENI {eni}: {error}; check that the instance hot-plugs ENIs and the pod has hostNetwork")]
    Interface { eni: String, error: std::io::Error },
    #[error("configuring the node's network: {0} (needs hostNetwork and CAP_NET_ADMIN)")]
    Network(#[from] std::io::Error),
    #[error("the node holds addresses it cannot configure: {0}")]
    Unconfigured(String),
}

pub(super) fn hint(e: &CloudError) -> String {
    if e.code.contains("Unauthorized") || e.code.contains("AccessDenied") {
        format!("allow ec2:{} to the agent's IAM role", e.action)
    } else if e.code.starts_with("InvalidSubnetID") {
        "check spec.subnetId of the FloatingIPs".into()
    } else if e.code.starts_with("InvalidGroup") || e.code.starts_with("InvalidSecurityGroup") {
        "check --security-group-ids (chart value agent.securityGroupIds): each group must exist in the VPC of the FloatingIPs' subnet".into()
    } else if e.code == crate::cloud::NO_CREDENTIALS {
        "the agent has no AWS credentials: give its service account an IAM role (chart value agent.iamRoleArn for IRSA) or an EKS Pod Identity association".into()
    } else if e.code == "AttachmentLimitExceeded" {
        "no free ENI slot on the instance: use a larger instance type or free a device index".into()
    } else if e.retryable() {
        "EC2 is throttling or unavailable; the init container is retried".into()
    } else {
        "see the AWS error code".into()
    }
}

/// Whether EC2 refused something about one subnet for good (it does not exist, has no free
/// address, IAM does not allow it there), so that only that subnet's FloatingIPs are skipped.
/// Throttling and outages are retried by failing the init container; security groups come
/// from the node's flags and concern every subnet.
pub(super) fn about_the_subnet(e: &CloudError) -> bool {
    !e.retryable()
        && !e.code.starts_with("InvalidGroup")
        && !e.code.starts_with("InvalidSecurityGroup")
}

/// What attach did, printed as its last line.
#[derive(Debug, Default)]
pub struct Summary {
    /// (subnet, ENI, interface name)
    pub enis: Vec<(String, String, String)>,
    pub created: Vec<String>,
    pub claimed: Vec<String>,
    pub configured: Vec<IpAddr>,
    /// Subnets it could not prepare, with why: their FloatingIPs were skipped.
    pub skipped: Vec<(String, CloudError)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let enis: Vec<String> = self
            .enis
            .iter()
            .map(|(s, e, i)| format!("{e} ({i}, {s})"))
            .collect();
        write!(
            f,
            "floating ENIs: [{}]; created: [{}]; claimed: [{}]; configured: [{}]",
            enis.join(", "),
            self.created.join(", "),
            self.claimed.join(", "),
            self.configured
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        for (subnet, e) in &self.skipped {
            write!(f, "; skipped subnet {subnet}: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::ErrorKind;

    /// The attach line's hint for each failure: no credentials names the service account's
    /// role, not a policy nor an EC2 outage.
    #[test]
    fn the_hint_names_the_fix() {
        let failed = |code: &str, kind| CloudError {
            action: "CreateNetworkInterface",
            code: code.into(),
            message: String::new(),
            kind,
        };
        assert_eq!(
            hint(&failed("UnauthorizedOperation", ErrorKind::Permanent)),
            "allow ec2:CreateNetworkInterface to the agent's IAM role"
        );
        assert!(
            hint(&failed(crate::cloud::NO_CREDENTIALS, ErrorKind::Transient))
                .starts_with("the agent has no AWS credentials")
        );
        assert!(hint(&failed("ConnectionError", ErrorKind::Transient))
            .starts_with("EC2 is throttling or unavailable"));
    }
}
