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

/// Everything to probe for `fip`, with how to probe each (built on
/// [`crate::probe::health_check_targets`], as the agents' peer view is):
/// - its address and the node holding it (`nodes` names each node's InternalIP) every
///   `intervalMs`, each linked to the other so that a failure of one is checked on the other
///   at once;
/// - every other node every `idleIntervalMs`: a candidate only has to be known to answer by
///   the time the holder fails.
///
/// None without a check, an address or a check the prober can use.
pub fn checks_of(fip: &FloatingIP, nodes: &[(String, IpAddr)]) -> Vec<(Target, ProbeSpec)> {
    let (Some(hc), Some(address), Some(mode)) = (
        fip.spec.health_check.as_ref(),
        crate::api::parse_address(&fip.spec.address),
        crate::mode::port(fip.spec.mode),
    ) else {
        return Vec::new();
    };
    let holder = fip.status.as_ref().and_then(|s| s.holder.as_ref());
    let holder_private = holder
        .and_then(|h| h.private_address.as_deref())
        .and_then(|a| a.parse().ok());
    let probed = mode.probed_address(&fip.spec, address, holder_private);
    let holder_ip =
        holder.and_then(|h| nodes.iter().find(|(n, _)| *n == h.node).map(|(_, ip)| *ip));
    let watched: Vec<IpAddr> = probed.into_iter().chain(holder_ip).collect();
    let mut close = crate::probe::health_check_targets(hc, watched);
    let linked: Vec<Target> = close.iter().map(|(t, _)| *t).collect();
    for (target, spec) in &mut close {
        spec.linked = linked.iter().copied().filter(|t| t != target).collect();
    }
    let idle = std::time::Duration::from_millis(hc.effective_idle_interval_ms().max(0) as u64);
    let others = (nodes.iter())
        .filter(|(n, _)| holder.is_none_or(|h| h.node != *n))
        .map(|(_, ip)| *ip);
    let idle = crate::probe::health_check_targets(hc, others)
        .into_iter()
        .map(|(t, spec)| (t, spec.every(idle)));
    close.into_iter().chain(idle).collect()
}
