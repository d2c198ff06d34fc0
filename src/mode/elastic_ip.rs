//! ElasticIP: no floating private address. The Elastic IP (or customer-owned IP) of
//! `spec.elasticIP` is associated with the holder's own private address: the primary address of
//! its floating ENI in `spec.subnetId` (default), or of its primary ENI (`interface: Primary`,
//! in any subnet unless `spec.subnetId` names one). A move is one AssociateAddress with
//! AllowReassociation per address: EC2 has no batch call for it, and the VPC remaps the public
//! address to the new private one. Nothing is configured on the node but reply routing.

use std::borrow::Cow;
use std::net::IpAddr;

use futures::future::BoxFuture;

use super::{public, AddressMode, Carrier, Held, Moved, Snapshot, Unusable};
use crate::api::{FloatingIPSpec, InterfaceChoice};
use crate::cloud::{AddressMove, Association, Cloud, CloudError, Eni, ErrorKind};
use crate::nodes::{NodeView, Unfit};
use crate::status::Seat;

/// The ElasticIP mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct ElasticIp;

/// The ENIs the allocation may be associated with: the subnet's, or every node's.
fn enis<'e>(spec: &FloatingIPSpec, ec2: &Snapshot<'e>) -> &'e [Eni] {
    match &spec.subnet_id {
        Some(subnet) => ec2.enis.get(subnet).map(Vec::as_slice).unwrap_or_default(),
        None => ec2.node_enis.unwrap_or_default(),
    }
}

/// Whether floatip may associate the allocation with this ENI's primary address.
fn manages(eni: &Eni, spec: &FloatingIPSpec, ec2: &Snapshot<'_>) -> bool {
    match spec.interface.unwrap_or_default() {
        InterfaceChoice::Dedicated => eni.is_floating_for(ec2.cluster),
        InterfaceChoice::Primary => {
            eni.device_index == Some(0)
                && (eni.instance_id.as_ref()).is_some_and(|i| ec2.node_instances.contains(i))
        }
    }
}

/// Whether an association is one floatip makes: a managed ENI's primary address.
fn ours(assoc: &Association, spec: &FloatingIPSpec, ec2: &Snapshot<'_>) -> bool {
    enis(spec, ec2).iter().any(|e| {
        Some(&e.id) == assoc.eni.as_ref()
            && e.primary_ip.is_some()
            && e.primary_ip == assoc.private_ip
            && manages(e, spec, ec2)
    })
}

fn no_interface(spec: &FloatingIPSpec, cluster: &str) -> String {
    let subnet = spec.subnet_id.as_deref();
    match (spec.interface.unwrap_or_default(), subnet) {
        (InterfaceChoice::Dedicated, subnet) => format!(
            "the node has no floating ENI of cluster {cluster} in {} (floatip attach creates it)",
            subnet.unwrap_or("the subnet")
        ),
        (InterfaceChoice::Primary, Some(subnet)) => {
            format!("the node's primary ENI is not in {subnet}")
        }
        (InterfaceChoice::Primary, None) => {
            "EC2 shows no primary ENI with a private address for the node's instance".to_string()
        }
    }
}

impl AddressMode for ElasticIp {
    fn subnets(&self, spec: &FloatingIPSpec) -> Vec<String> {
        spec.subnet_id.iter().cloned().collect()
    }

    fn needs_node_enis(&self, spec: &FloatingIPSpec) -> bool {
        spec.subnet_id.is_none()
    }

    fn usable(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'_>,
    ) -> Result<(), Unusable> {
        if let Some(a) = public::allocation(spec, ec2)? {
            if a.address() != Some(address) {
                return Err(Unusable::AllocationAddressMismatch {
                    allocation: a.allocation_id.clone(),
                    has: a.address().map_or("none".into(), |a| a.to_string()),
                    address,
                });
            }
        }
        public::check(spec, ec2, |assoc| ours(assoc, spec, ec2))
    }

    fn holding<'e>(
        &self,
        spec: &FloatingIPSpec,
        _address: IpAddr,
        ec2: &Snapshot<'e>,
    ) -> Vec<Held<'e>> {
        let Ok(Some(a)) = public::allocation(spec, ec2) else {
            return Vec::new();
        };
        let Some(assoc) = &a.association else {
            return Vec::new();
        };
        let Some(eni_id) = &assoc.eni else {
            return Vec::new();
        };
        let allow = spec
            .elastic_ip
            .as_ref()
            .is_some_and(|e| e.allow_reassociation);
        let held = match enis(spec, ec2).iter().find(|e| &e.id == eni_id) {
            Some(e) => Held {
                eni: Cow::Borrowed(e),
                managed: ours(assoc, spec, ec2) || allow,
                private_ip: assoc.private_ip,
            },
            // Not an ENI floatip reads: someone else's, taken only when the spec allows.
            None => Held {
                eni: Cow::Owned(Eni {
                    id: eni_id.clone(),
                    subnet_id: String::new(),
                    instance_id: assoc.instance_id.clone(),
                    device_index: None,
                    mac: None,
                    primary_ip: None,
                    secondary: Vec::new(),
                    tags: Default::default(),
                    security_groups: Vec::new(),
                }),
                managed: allow,
                private_ip: assoc.private_ip,
            },
        };
        vec![held]
    }

    fn seat(
        &self,
        spec: &FloatingIPSpec,
        node: &NodeView,
        ec2: &Snapshot<'_>,
    ) -> Result<Seat, Unfit> {
        let instance = node.instance_id.clone().ok_or(Unfit::NoInstance)?;
        let eni = enis(spec, ec2)
            .iter()
            .find(|e| {
                e.instance_id.as_deref() == Some(instance.as_str())
                    && e.primary_ip.is_some()
                    && manages(e, spec, ec2)
            })
            .ok_or_else(|| Unfit::NoInterface(no_interface(spec, ec2.cluster)))?;
        if let (Ok(Some(a)), Some(zone)) = (public::allocation(spec, ec2), node.zone()) {
            public::check_border_group(a, zone, ec2)
                .map_err(|e| Unfit::NoInterface(e.to_string()))?;
        }
        Ok(Seat {
            node: node.name.clone(),
            instance_id: instance,
            eni: eni.id.clone(),
            mac: eni.mac.clone(),
            private_ip: eni.primary_ip,
        })
    }

    fn probed_address(
        &self,
        _spec: &FloatingIPSpec,
        _address: IpAddr,
        holder_private_ip: Option<IpAddr>,
    ) -> Option<IpAddr> {
        // The public or customer-owned address may not be routable from inside the VPC (a
        // CoIP is reached from on premises); its private address is what the VPC NATs it to.
        holder_private_ip
    }

    fn associate(
        &self,
        _spec: &FloatingIPSpec,
        _address: IpAddr,
        _holder: &Seat,
        _ec2: &Snapshot<'_>,
    ) -> Option<public::Associate> {
        None
    }
}

fn no_allocation(m: &AddressMove) -> CloudError {
    CloudError {
        action: "AssociateAddress",
        code: "MissingAllocation".into(),
        message: format!("no Elastic IP allocation was given for {}", m.address),
        kind: ErrorKind::Permanent,
    }
}

fn no_private_address(to: &Seat) -> CloudError {
    CloudError {
        action: "AssociateAddress",
        code: "MissingPrivateAddress".into(),
        message: format!(
            "{} has no primary private address to associate with",
            to.eni
        ),
        kind: ErrorKind::Permanent,
    }
}

impl<C: Cloud> Carrier<C> for ElasticIp {
    fn move_to<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<Moved, CloudError>> {
        Box::pin(async move {
            let private = to.private_ip.ok_or_else(|| no_private_address(to))?;
            for m in moves {
                let id = m.allocation_id.as_deref().ok_or_else(|| no_allocation(m))?;
                // floatip decided to take the allocation from where it is (its own old holder,
                // or elsewhere with the spec's consent): reassociation is the move itself.
                cloud.associate(id, &to.eni, private, true).await?;
            }
            Ok(Moved::default())
        })
    }

    fn verify<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(verify(cloud, to, moves))
    }

    fn release<'a>(
        &'a self,
        cloud: &'a C,
        spec: &'a FloatingIPSpec,
        eni: &'a str,
        _address: IpAddr,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move {
            let Some(eip) = &spec.elastic_ip else {
                return Ok(());
            };
            let found = cloud
                .allocations(std::slice::from_ref(&eip.allocation_id))
                .await?;
            let assoc = (found.iter())
                .filter_map(|a| a.association.as_ref())
                .find(|s| s.eni.as_deref() == Some(eni));
            match assoc {
                Some(s) => cloud.disassociate(&s.id).await,
                None => Ok(()),
            }
        })
    }
}

/// Reads the allocations back: each associated with the seat's ENI and private address.
async fn verify<C: Cloud>(cloud: &C, to: &Seat, moves: &[AddressMove]) -> Result<(), CloudError> {
    let ids: Vec<String> = moves
        .iter()
        .filter_map(|m| m.allocation_id.clone())
        .collect();
    let found = cloud.allocations(&ids).await?;
    for id in &ids {
        let assoc = (found.iter())
            .find(|a| &a.allocation_id == id)
            .and_then(|a| a.association.as_ref());
        let there = assoc.is_some_and(|s| {
            s.eni.as_deref() == Some(to.eni.as_str()) && s.private_ip == to.private_ip
        });
        if !there {
            return Err(CloudError {
                action: "DescribeAddresses",
                code: "MoveNotVisible".into(),
                message: format!(
                    "after associating {id} with {}, EC2 shows it associated with {}",
                    to.eni,
                    assoc.map_or("nothing".into(), public::describe)
                ),
                kind: ErrorKind::Transient,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "elastic_ip_tests.rs"]
mod tests;
