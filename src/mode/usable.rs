//! Whether EC2 can carry an address as a secondary address in its subnet, checked before any
//! call: EC2 refuses a whole AssignPrivateIpAddresses for one bad address, so one FloatingIP it
//! would refuse must never ride in a batch with the others.

use std::net::IpAddr;

use crate::cloud::{Eni, Subnet};

/// Why the address cannot be carried; each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("{address} is not in subnet {subnet} ({blocks}): choose a free address inside it")]
    OutsideSubnet {
        address: IpAddr,
        subnet: String,
        blocks: String,
    },
    #[error("{address} is one of the five addresses AWS reserves in every subnet (the first four and the last of {block}, subnet {subnet}): choose another")]
    Reserved {
        address: IpAddr,
        subnet: String,
        block: String,
    },
    #[error("{address} is the primary address of {eni}{owner}; a primary address never moves: choose a free address")]
    PrimaryAddress {
        address: IpAddr,
        eni: String,
        /// ", attached to i-..." when attached.
        owner: String,
    },
    #[error("Elastic IP allocation {allocation} does not exist in this account and Region: check spec.elasticIP.allocationId (aws ec2 describe-addresses --allocation-ids {allocation})")]
    AllocationNotFound { allocation: String },
    #[error("Elastic IP allocation {allocation} belongs to network border group {allocation_group}, but zone {zone} is in group {zone_group}; EC2 associates an address only within its group: allocate one in {zone_group} (AllocateAddress --network-border-group {zone_group}) or use nodes in {allocation_group}")]
    BorderGroupMismatch {
        allocation: String,
        allocation_group: String,
        zone: String,
        zone_group: String,
    },
    #[error("Elastic IP allocation {allocation} is associated with {target}, which floatip did not do; it is left there: disassociate it, or set spec.elasticIP.allowReassociation to let floatip take it")]
    AllocationInUse { allocation: String, target: String },
    #[error("Elastic IP allocation {allocation} has address {has}, not {address}: set spec.address to the allocation's address, or name the allocation of {address}")]
    AllocationAddressMismatch {
        allocation: String,
        has: String,
        address: IpAddr,
    },
    #[error("{address} lies inside the VPC's block {block} (route table {table}): a route more specific than the VPC's local route takes effect only for a whole subnet's CIDR, so RouteTable mode needs an address outside every CIDR of the VPC: choose one (from 100.64.0.0/10 or a private range the VPC does not use), or use SecondaryIP mode")]
    AddressInsideVpc {
        address: IpAddr,
        table: String,
        block: String,
    },
    #[error("route table {table} does not exist in this account and Region: check spec.routeTableIds (aws ec2 describe-route-tables --route-table-ids {table})")]
    RouteTableNotFound { table: String },
    #[error("route table {table} belongs to {vpc}, but the floating ENI {eni} of the cluster's nodes is not in it; EC2 routes only to ENIs of the table's own VPC: list the route tables of the nodes' VPC")]
    RouteTableOtherVpc {
        table: String,
        vpc: String,
        /// The ENI and its address, e.g. "eni-1 (10.0.8.11)".
        eni: String,
    },
    #[error("network interface {eni} is not in subnet {subnet}: it is in another subnet or VPC, or does not exist; spec.networkInterfaceId must name an ENI of spec.subnetId")]
    InterfaceNotInSubnet { eni: String, subnet: String },
    #[error("network interface {eni} has primary address {has}, not {address}: an ENI moves with its primary address, so set spec.address to {has} or name the ENI of {address}")]
    InterfaceAddressMismatch {
        eni: String,
        has: String,
        address: IpAddr,
    },
    #[error("network interface {eni} is not tagged floatip.io/cluster={cluster}: floatip modifies nothing untagged, and its IAM policy allows nothing else; tag it (aws ec2 create-tags --resources {eni} --tags Key=floatip.io/cluster,Value={cluster})")]
    InterfaceUntagged { eni: String, cluster: String },
    #[error("network interface {eni} is attached to {instance}, which is no node of this cluster; floatip does not take it from there: detach it, or make that instance a node")]
    InterfaceOnForeignInstance { eni: String, instance: String },
    #[error("{address} is the primary address of {eni}{owner}, which floatip did not create: name it in spec.networkInterfaceId to let floatip move it, or choose a free address")]
    InterfaceNotOurs {
        address: IpAddr,
        eni: String,
        /// ", attached to i-..." when attached.
        owner: String,
    },
}

impl Unusable {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Unusable::OutsideSubnet { .. } => "AddressOutsideSubnet",
            Unusable::Reserved { .. } => "AddressReserved",
            Unusable::PrimaryAddress { .. } => "AddressIsPrimary",
            Unusable::AllocationNotFound { .. } => "AllocationNotFound",
            Unusable::BorderGroupMismatch { .. } => "BorderGroupMismatch",
            Unusable::AllocationInUse { .. } => "AllocationInUse",
            Unusable::AllocationAddressMismatch { .. } => "AllocationAddressMismatch",
            Unusable::AddressInsideVpc { .. } => "AddressInsideVpc",
            Unusable::RouteTableNotFound { .. } => "RouteTableNotFound",
            Unusable::RouteTableOtherVpc { .. } => "RouteTableInOtherVpc",
            Unusable::InterfaceNotInSubnet { .. } => "InterfaceNotInSubnet",
            Unusable::InterfaceUntagged { .. } => "InterfaceUntagged",
            Unusable::InterfaceAddressMismatch { .. } => "InterfaceAddressMismatch",
            Unusable::InterfaceOnForeignInstance { .. } => "InterfaceOnForeignInstance",
            Unusable::InterfaceNotOurs { .. } => "InterfaceNotOurs",
        }
    }

    /// The condition set True for it: Conflict when something else holds what the FloatingIP
    /// names, InvalidSpec when the spec names something EC2 cannot carry.
    pub fn condition(&self) -> &'static str {
        match self {
            Unusable::AllocationInUse { .. }
            | Unusable::InterfaceOnForeignInstance { .. }
            | Unusable::InterfaceNotOurs { .. } => crate::api::condition::CONFLICT,
            _ => crate::api::condition::INVALID_SPEC,
        }
    }
}

/// Checks `address` against its subnet and the ENIs in it.
pub fn check(address: IpAddr, subnet: &Subnet, enis: &[Eni]) -> Result<(), Unusable> {
    let blocks = subnet.blocks_for(address);
    let Some(block) = blocks.iter().find(|b| b.contains(address)) else {
        let listed: Vec<String> = blocks.iter().map(ToString::to_string).collect();
        return Err(Unusable::OutsideSubnet {
            address,
            subnet: subnet.id.clone(),
            blocks: if listed.is_empty() {
                format!("no IPv{} block", if address.is_ipv4() { 4 } else { 6 })
            } else {
                listed.join(", ")
            },
        });
    };
    if block.aws_reserved(address) {
        return Err(Unusable::Reserved {
            address,
            subnet: subnet.id.clone(),
            block: block.to_string(),
        });
    }
    if let Some(eni) = enis.iter().find(|e| e.primary_ip == Some(address)) {
        return Err(Unusable::PrimaryAddress {
            address,
            eni: eni.id.clone(),
            owner: eni
                .instance_id
                .as_ref()
                .map(|i| format!(", attached to {i}"))
                .unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> Subnet {
        Subnet {
            id: "subnet-0a".into(),
            cidr_v4: Some("10.0.8.0/22".into()),
            cidrs_v6: vec!["2600:1f14::/64".into()],
            zone: None,
        }
    }

    fn eni(primary: &str) -> Eni {
        Eni {
            id: "eni-1".into(),
            subnet_id: "subnet-0a".into(),
            instance_id: Some("i-1".into()),
            device_index: Some(0),
            mac: None,
            primary_ip: Some(primary.parse().unwrap()),
            secondary: vec![],
            security_groups: vec![],
            tags: Default::default(),
        }
    }

    fn check_str(address: &str) -> Result<(), Unusable> {
        check(address.parse().unwrap(), &subnet(), &[eni("10.0.8.11")])
    }

    #[test]
    fn a_free_address_in_the_subnet_is_usable() {
        assert_eq!(check_str("10.0.8.100"), Ok(()));
        assert_eq!(check_str("2600:1f14::100"), Ok(()));
    }

    #[test]
    fn each_problem_is_named_with_what_to_change() {
        let outside = check_str("10.0.12.5").unwrap_err();
        assert_eq!(outside.reason(), "AddressOutsideSubnet");
        assert_eq!(
            outside.to_string(),
            "10.0.12.5 is not in subnet subnet-0a (10.0.8.0/22): choose a free address inside it"
        );
        for reserved in [
            "10.0.8.0",
            "10.0.8.1",
            "10.0.8.3",
            "10.0.11.255",
            "2600:1f14::2",
        ] {
            assert_eq!(check_str(reserved).unwrap_err().reason(), "AddressReserved");
        }
        let primary = check_str("10.0.8.11").unwrap_err();
        assert_eq!(primary.reason(), "AddressIsPrimary");
        assert!(primary
            .to_string()
            .contains("primary address of eni-1, attached to i-1"));
        let no_v6 = Subnet {
            cidrs_v6: vec![],
            ..subnet()
        };
        let err = check("2600:1f14::100".parse().unwrap(), &no_v6, &[]).unwrap_err();
        assert!(err.to_string().contains("(no IPv6 block)"), "{err}");
    }
}
