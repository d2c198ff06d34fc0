//! The Elastic IP of a FloatingIP (`spec.elasticIP`), shared by the modes that carry one: the
//! checks made before any call (the allocation exists, it may be used in the address's zone,
//! nobody else has it), the association a SecondaryIP address is missing, and what status shows.
//!
//! In SecondaryIP mode the allocation is associated once with the floating private address;
//! EC2 moves it along whenever AssignPrivateIpAddresses moves that address. In ElasticIP mode
//! the association itself is what moves ([`super::ElasticIp`]).

use std::net::IpAddr;

use super::{Snapshot, Unusable};
use crate::api::{FloatingIPSpec, PublicAddress, PublicAddressKind};
use crate::cloud::{Allocation, Association};
use crate::status::Seat;

/// An AssociateAddress to make: the allocation onto `private_ip` of `eni`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Associate {
    pub allocation_id: String,
    pub eni: String,
    pub private_ip: IpAddr,
    /// Set only when the allocation is associated elsewhere and the spec allows taking it.
    pub allow_reassociation: bool,
}

/// The allocation the spec names, as EC2 described it: Ok(None) without `spec.elasticIP` or
/// while allocations are unread (the plan waits for them), an error when it does not exist.
pub fn allocation<'e>(
    spec: &FloatingIPSpec,
    ec2: &Snapshot<'e>,
) -> Result<Option<&'e Allocation>, Unusable> {
    let (Some(eip), Some(all)) = (&spec.elastic_ip, ec2.allocations) else {
        return Ok(None);
    };
    match all.get(&eip.allocation_id) {
        Some(a) => Ok(Some(a)),
        None => Err(Unusable::AllocationNotFound {
            allocation: eip.allocation_id.clone(),
        }),
    }
}

/// The network border group of `zone`, when EC2 listed the zone.
pub fn border_group<'e>(zone: &str, ec2: &Snapshot<'e>) -> Option<&'e str> {
    ec2.border_groups.get(zone).map(String::as_str)
}

/// Whether the allocation may be used in `zone`: its border group is the zone's. Unknown
/// groups (EC2 did not say) are not held against it.
pub fn check_border_group(a: &Allocation, zone: &str, ec2: &Snapshot<'_>) -> Result<(), Unusable> {
    let (Some(wanted), Some(has)) = (a.network_border_group.as_deref(), border_group(zone, ec2))
    else {
        return Ok(());
    };
    if wanted == has {
        return Ok(());
    }
    Err(Unusable::BorderGroupMismatch {
        allocation: a.allocation_id.clone(),
        allocation_group: wanted.to_string(),
        zone: zone.to_string(),
        zone_group: has.to_string(),
    })
}

/// The checks every mode makes of its allocation before any call: it exists, it is usable in
/// the subnet's zone (when the FloatingIP names a subnet), and it is not associated elsewhere
/// unless the spec allows taking it. `ours` says whether an association is floatip's own.
pub fn check(
    spec: &FloatingIPSpec,
    ec2: &Snapshot<'_>,
    ours: impl Fn(&Association) -> bool,
) -> Result<(), Unusable> {
    let Some(a) = allocation(spec, ec2)? else {
        return Ok(());
    };
    let zone = (spec.subnet_id.as_ref())
        .and_then(|s| ec2.subnets.get(s))
        .and_then(|s| s.zone.as_deref());
    if let Some(zone) = zone {
        check_border_group(a, zone, ec2)?;
    }
    let allow = spec
        .elastic_ip
        .as_ref()
        .is_some_and(|e| e.allow_reassociation);
    match &a.association {
        Some(assoc) if !ours(assoc) && !allow => Err(Unusable::AllocationInUse {
            allocation: a.allocation_id.clone(),
            target: describe(assoc),
        }),
        _ => Ok(()),
    }
}

/// An association in words: the private address, the ENI and the instance it names.
pub fn describe(a: &Association) -> String {
    let ip = a.private_ip.map(|i| i.to_string());
    let parts: Vec<String> = [ip, a.eni.clone(), a.instance_id.clone()]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        a.id.clone()
    } else {
        parts.join(" on ")
    }
}

/// SecondaryIP with an Elastic IP: the association to make when the allocation is not on the
/// floating address (never associated, disassociated by hand, or taken elsewhere when the
/// spec allows taking it back). An association that names the address on another ENI is EC2
/// still remapping it after a move: left alone.
pub fn missing_association(
    spec: &FloatingIPSpec,
    address: IpAddr,
    holder: &Seat,
    ec2: &Snapshot<'_>,
) -> Option<Associate> {
    let a = allocation(spec, ec2).ok()??;
    let allow = spec.elastic_ip.as_ref()?.allow_reassociation;
    let elsewhere = match &a.association {
        None => false,
        Some(assoc) if assoc.private_ip == Some(address) => return None,
        Some(_) if allow => true,
        Some(_) => return None,
    };
    Some(Associate {
        allocation_id: a.allocation_id.clone(),
        eni: holder.eni.clone(),
        private_ip: address,
        allow_reassociation: elsewhere,
    })
}

/// What status shows of the allocation, when the spec names one EC2 has described.
pub fn public_address(spec: &FloatingIPSpec, ec2: &Snapshot<'_>) -> Option<PublicAddress> {
    let a = allocation(spec, ec2).ok()??;
    Some(PublicAddress {
        address: a.address()?.to_string(),
        kind: if a.is_customer_owned() {
            PublicAddressKind::CustomerOwnedIP
        } else {
            PublicAddressKind::ElasticIP
        },
        allocation_id: a.allocation_id.clone(),
        network_border_group: a.network_border_group.clone(),
        associated_with: (a.association.as_ref())
            .and_then(|s| s.private_ip)
            .map(|i| i.to_string()),
    })
}
