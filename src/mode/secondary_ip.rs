//! SecondaryIP: the address is a secondary private address of an ENI in `spec.subnetId`, on the
//! node's dedicated floating ENI (default) or on its primary ENI (`interface: Primary`, for
//! clusters without the VPC CNI). A batch of moves onto one ENI is ONE
//! AssignPrivateIpAddresses with AllowReassignment: EC2 takes each address off its old ENI in
//! the same call.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use futures::future::BoxFuture;

use super::{public, usable, AddressMode, Carrier, Held, Moved, Snapshot, Unusable};
use crate::api::{FloatingIPSpec, InterfaceChoice};
use crate::cloud::{AddressMove, Cloud, CloudError, Eni, ErrorKind};
use crate::nodes::{NodeView, Unfit};
use crate::status::Seat;

/// The SecondaryIP mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecondaryIp;

fn subnet(spec: &FloatingIPSpec) -> &str {
    spec.subnet_id.as_deref().unwrap_or_default()
}

/// The ENIs of the FloatingIP's subnet; none while it is unread.
fn enis<'e>(spec: &FloatingIPSpec, ec2: &Snapshot<'e>) -> &'e [Eni] {
    ec2.enis
        .get(subnet(spec))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Whether floatip may put this FloatingIP's address on (or take it off) the ENI.
fn manages(eni: &Eni, spec: &FloatingIPSpec, cluster: &str) -> bool {
    match spec.interface.unwrap_or_default() {
        InterfaceChoice::Dedicated => eni.is_floating_for(cluster),
        InterfaceChoice::Primary => eni.device_index == Some(0),
    }
}

/// What a node lacks when none of its ENIs in the subnet can carry the address.
fn no_interface(spec: &FloatingIPSpec, cluster: &str) -> String {
    let subnet = subnet(spec);
    match spec.interface.unwrap_or_default() {
        InterfaceChoice::Dedicated => format!(
            "the node has no floating ENI of cluster {cluster} in {subnet} (floatip attach creates it)"
        ),
        InterfaceChoice::Primary => format!("the node's primary ENI is not in {subnet}"),
    }
}

impl AddressMode for SecondaryIp {
    fn subnets(&self, spec: &FloatingIPSpec) -> Vec<String> {
        spec.subnet_id.iter().cloned().collect()
    }

    fn usable(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'_>,
    ) -> Result<(), Unusable> {
        if let Some(s) = ec2.subnets.get(subnet(spec)) {
            usable::check(address, s, enis(spec, ec2))?;
        }
        // The Elastic IP is floatip's where it is associated with the floating address, on
        // whichever ENI: EC2 moves it along with the address.
        public::check(spec, ec2, |assoc| assoc.private_ip == Some(address))
    }

    fn holding<'e>(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'e>,
    ) -> Vec<Held<'e>> {
        enis(spec, ec2)
            .iter()
            .filter(|e| e.holds(address))
            .map(|eni| Held {
                eni: Cow::Borrowed(eni),
                managed: manages(eni, spec, ec2.cluster),
                private_ip: None,
            })
            .collect()
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
                e.instance_id.as_deref() == Some(instance.as_str()) && manages(e, spec, ec2.cluster)
            })
            .ok_or_else(|| Unfit::NoInterface(no_interface(spec, ec2.cluster)))?;
        Ok(Seat {
            node: node.name.clone(),
            instance_id: instance,
            eni: eni.id.clone(),
            mac: eni.mac.clone(),
            private_ip: None,
        })
    }
}

impl<C: Cloud> Carrier<C> for SecondaryIp {
    fn move_to<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<Moved, CloudError>> {
        Box::pin(move_to(cloud, &to.eni, moves))
    }

    fn verify<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(verify(cloud, &to.eni, moves))
    }

    fn release<'a>(
        &'a self,
        cloud: &'a C,
        spec: &'a FloatingIPSpec,
        eni: &'a str,
        address: IpAddr,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move {
            // The Elastic IP first, explicitly: the allocation is left unassociated and whole,
            // whatever EC2 does to it when its private address goes.
            if let Some(eip) = &spec.elastic_ip {
                let found = cloud.allocations(std::slice::from_ref(&eip.allocation_id));
                let on_it = (found.await?.into_iter())
                    .filter_map(|a| a.association)
                    .find(|s| s.eni.as_deref() == Some(eni) && s.private_ip == Some(address));
                if let Some(s) = on_it {
                    cloud.disassociate(&s.id).await?;
                }
            }
            cloud.unassign(eni, &[address]).await
        })
    }
}

/// IPv4 addresses in ONE AssignPrivateIpAddresses with AllowReassignment. IPv6 has no
/// reassignment: UnassignIpv6Addresses on each ENI they leave (one call per ENI), then ONE
/// AssignIpv6Addresses on the target; the time between is reported, as the address answers
/// nowhere in it.
async fn move_to<C: Cloud>(
    cloud: &C,
    eni: &str,
    moves: &[AddressMove],
) -> Result<Moved, CloudError> {
    let (v6, v4): (Vec<&AddressMove>, Vec<&AddressMove>) =
        moves.iter().partition(|m| m.address.is_ipv6());
    if !v4.is_empty() {
        let v4: Vec<AddressMove> = v4.into_iter().cloned().collect();
        cloud.assign(eni, &v4).await?;
    }
    if v6.is_empty() {
        return Ok(Moved::default());
    }
    let mut sources: std::collections::BTreeMap<&str, Vec<IpAddr>> = Default::default();
    for m in v6
        .iter()
        .filter(|m| m.from_eni.as_deref().is_some_and(|f| f != eni))
    {
        let from = m.from_eni.as_deref().unwrap_or_default();
        sources.entry(from).or_default().push(m.address);
    }
    let mut first_off: Option<Instant> = None;
    for (from, addresses) in &sources {
        cloud.unassign(from, addresses).await?;
        first_off.get_or_insert_with(Instant::now);
    }
    let on: Vec<AddressMove> = (v6.iter())
        .map(|m| AddressMove {
            from_eni: None,
            ..(*m).clone()
        })
        .collect();
    cloud.assign(eni, &on).await?;
    Ok(Moved {
        unassigned_for: first_off.map(|t| t.elapsed()),
        ..Moved::default()
    })
}

/// Reads the target and source ENIs back: every address on the target and on no source.
async fn verify<C: Cloud>(cloud: &C, eni: &str, moves: &[AddressMove]) -> Result<(), CloudError> {
    let mut ids = vec![eni.to_string()];
    ids.extend(
        moves
            .iter()
            .filter_map(|m| m.from_eni.clone())
            .filter(|f| f != eni),
    );
    ids.dedup();
    let enis = cloud.enis(&ids).await?;
    for m in moves {
        let on_target = enis.iter().any(|e| e.id == eni && e.holds(m.address));
        let elsewhere: Vec<&str> = enis
            .iter()
            .filter(|e| e.id != eni && e.holds(m.address))
            .map(|e| e.id.as_str())
            .collect();
        if !on_target || !elsewhere.is_empty() {
            return Err(CloudError {
                action: "DescribeNetworkInterfaces",
                code: "MoveNotVisible".into(),
                message: format!("after assigning {} to {eni}, EC2 shows it on {eni}: {on_target}, elsewhere: {elsewhere:?}", m.address),
                kind: ErrorKind::Transient,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "secondary_ip_tests.rs"]
pub(crate) mod tests;
