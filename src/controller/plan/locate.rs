//! Everything that settles a FloatingIP before placement, and where EC2 has its address.

use std::collections::HashMap;
use std::net::IpAddr;

use kube::ResourceExt;

use super::{has_finalizer, Picture, Plan, Seat};
use crate::api::{validate_spec, FloatingIP};
use crate::mode::{AddressMode, Held};

/// A valid, unique, live FloatingIP of a mode carried out, and where EC2 has its address.
pub(super) struct Located<'a> {
    pub fip: &'a FloatingIP,
    pub mode: &'static dyn AddressMode,
    pub name: String,
    pub address: IpAddr,
    /// A managed ENI holding the address.
    pub holder: Option<Seat>,
    /// An ENI floatip does not manage holding the address.
    pub foreign: Option<String>,
}

/// Everything that settles a FloatingIP before placement: invalid, conflicting, unsupported,
/// EC2 unread, an address EC2 would refuse, being deleted. Otherwise where its address is.
pub(super) fn locate<'a>(
    picture: &Picture<'_>,
    fip: &'a FloatingIP,
    winners: &HashMap<IpAddr, String>,
) -> Result<Located<'a>, Plan> {
    let name = fip.name_any();
    if let Err(errors) = validate_spec(&fip.spec) {
        return Err(release_or(fip, Plan::Invalid { name, errors }));
    }
    let address = crate::api::parse_address(&fip.spec.address).expect("validated");
    let winner = &winners[&address];
    if *winner != name {
        let winner = winner.clone();
        return Err(release_or(fip, Plan::Conflict { name, winner }));
    }
    let Some(mode) = crate::mode::port(fip.spec.mode) else {
        let why = fip.spec.mode.not_supported().unwrap_or_default();
        return Err(release_or(fip, Plan::Unsupported { name, why }));
    };
    let ec2 = picture.ec2();
    if !ec2.has_read(mode, &fip.spec) {
        return Err(Plan::Unknown { name });
    }
    if let Err(problem) = mode.usable(&fip.spec, address, &ec2) {
        return Err(release_or(fip, Plan::Unusable { name, problem }));
    }
    let holding = mode.holding(&fip.spec, address, &ec2);
    if fip.metadata.deletion_timestamp.is_some() {
        return Err(release(fip, name, address, &holding));
    }
    let first = holding.first();
    let holder = first
        .filter(|h| h.managed)
        .and_then(|h| holder_on(picture, fip, h));
    // A managed ENI without an instance (left detached) holds the address for nobody: the
    // address is free to place. Only an ENI floatip does not manage makes it foreign.
    let foreign = first.filter(|h| !h.managed).map(|h| h.eni.id.clone());
    Ok(Located {
        fip,
        mode,
        name,
        address,
        holder,
        foreign,
    })
}

/// Being deleted: the address comes off every ENI of floatip's holding it, unless floatip never
/// acted on the FloatingIP (no finalizer). An ENI floatip does not manage is never touched,
/// whoever put the address there.
fn release(fip: &FloatingIP, name: String, address: IpAddr, holding: &[Held<'_>]) -> Plan {
    let from = if has_finalizer(fip) {
        holding
            .iter()
            .filter(|h| h.managed)
            .map(|h| h.eni.id.clone())
            .collect()
    } else {
        Vec::new()
    };
    Plan::Release {
        name,
        address,
        from,
    }
}

/// The holder a managed ENI makes, if it is attached. An ENI of ours whose instance no node
/// claims any more still holds the address: its node is gone (named as status last recorded
/// it, else by the instance).
fn holder_on(picture: &Picture<'_>, fip: &FloatingIP, held: &Held<'_>) -> Option<Seat> {
    let e = &held.eni;
    let instance = e.instance_id.as_deref()?;
    let node = match picture
        .nodes
        .iter()
        .find(|n| n.instance_id.as_deref() == Some(instance))
    {
        Some(n) => n.name.clone(),
        None => fip
            .status
            .as_ref()
            .and_then(|s| s.holder.as_ref())
            .filter(|h| h.instance_id == instance)
            .map(|h| h.node.clone())
            .unwrap_or_else(|| format!("instance {instance}")),
    };
    Some(Seat {
        node,
        instance_id: instance.to_string(),
        eni: e.id.clone(),
        mac: e.mac.clone(),
        private_ip: held.private_ip,
    })
}

/// A FloatingIP being deleted that floatip never acted on only needs its finalizer (if any)
/// released; it must not touch the address, which may belong to another FloatingIP.
fn release_or(fip: &FloatingIP, plan: Plan) -> Plan {
    if fip.metadata.deletion_timestamp.is_some() {
        Plan::Release {
            name: fip.name_any(),
            address: crate::api::parse_address(&fip.spec.address)
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            from: Vec::new(),
        }
    } else {
        plan
    }
}
