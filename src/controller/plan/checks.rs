//! What a FloatingIP's health check probes, derived in one place: the probe engine is given what
//! [`checks_of`] lists, and the plan reads the results of the targets [`vip_check`] and
//! [`node_check`] name, so the two cannot drift apart.

use std::net::IpAddr;

use crate::api::{FloatingIP, HealthCheck};
use crate::probe::{ProbeSpec, Target};

/// The check on the address itself: the path clients use.
pub fn vip_check(hc: &HealthCheck, address: IpAddr) -> Option<Target> {
    Target::for_health_check(hc, address).ok()
}

/// The same check on a node's own address (its InternalIP): whether the node could take the
/// address over, or whether the holder itself still answers.
pub fn node_check(hc: &HealthCheck, ip: IpAddr) -> Option<Target> {
    Target::for_health_check(hc, ip).ok()
}

/// Everything to probe for `fip`: its address and each node's address on its check, with how
/// to probe them (through [`crate::probe::health_check_targets`], as the agents' peer view
/// does). None without a check, an address or a check the prober can use.
pub fn checks_of(fip: &FloatingIP, node_ips: &[IpAddr]) -> Vec<(Target, ProbeSpec)> {
    let (Some(hc), Some(address), Some(mode)) = (
        fip.spec.health_check.as_ref(),
        crate::api::parse_address(&fip.spec.address),
        crate::mode::port(fip.spec.mode),
    ) else {
        return Vec::new();
    };
    let holder_private = (fip.status.as_ref())
        .and_then(|s| s.holder.as_ref())
        .and_then(|h| h.private_address.as_deref())
        .and_then(|a| a.parse().ok());
    let probed = mode.probed_address(&fip.spec, address, holder_private);
    let ips = probed.into_iter().chain(node_ips.iter().copied());
    crate::probe::health_check_targets(hc, ips)
}
