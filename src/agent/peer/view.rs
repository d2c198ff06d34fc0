//! The peer view as data: which nodes to probe and how, what their probes say about each node,
//! and when the view is due to be written. No I/O.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{FloatingIP, HealthCheck};
use crate::probe::{health_check_targets, merge_targets, Health, ProbeSpec, Target, TargetState};

/// The nodes other than `me` that hold a health-checked address, each with the checks of the
/// addresses it holds. The agent's own node is left out: the controller wants to know how the
/// others look from outside them, and this node's own checks from itself prove nothing.
pub fn holders<'a>(
    fips: &'a [Arc<FloatingIP>],
    me: &str,
) -> BTreeMap<String, Vec<&'a HealthCheck>> {
    let mut out: BTreeMap<String, Vec<&HealthCheck>> = BTreeMap::new();
    for fip in fips {
        let holder = fip.status.as_ref().and_then(|s| s.holder.as_ref());
        let (Some(check), Some(holder)) = (&fip.spec.health_check, holder) else {
            continue;
        };
        if holder.node != me {
            out.entry(holder.node.clone()).or_default().push(check);
        }
    }
    out
}

/// The peer probes: what to probe, and which targets speak for which node.
#[derive(Debug, Default, PartialEq)]
pub struct PeerTargets {
    /// For the probe engine: each target once, specs merged to the strictest.
    pub targets: HashMap<Target, ProbeSpec>,
    /// Every holder, with its targets; none when its InternalIP is not known.
    pub by_node: BTreeMap<String, Vec<Target>>,
}

/// Each holder's InternalIP (from `ips`; None or missing when not known) on each of its
/// addresses' checks.
pub fn peer_targets(
    holders: &BTreeMap<String, Vec<&HealthCheck>>,
    ips: &BTreeMap<String, Option<IpAddr>>,
) -> PeerTargets {
    let mut pairs = Vec::new();
    let mut by_node = BTreeMap::new();
    for (node, checks) in holders {
        let mut targets: Vec<Target> = Vec::new();
        for check in checks {
            for (t, spec) in health_check_targets(check, ips.get(node).copied().flatten()) {
                if !targets.contains(&t) {
                    targets.push(t);
                }
                pairs.push((t, spec));
            }
        }
        by_node.insert(node.clone(), targets);
    }
    PeerTargets {
        targets: merge_targets(pairs),
        by_node,
    }
}

/// Each node's health from its targets': Down when any is Down (it fails a check of an address
/// it holds), else Unknown when any is Unknown or it has none, else Up.
pub fn node_states(
    by_node: &BTreeMap<String, Vec<Target>>,
    snapshot: &HashMap<Target, TargetState>,
) -> BTreeMap<String, Health> {
    by_node
        .iter()
        .map(|(node, targets)| {
            let states: Vec<Health> = targets
                .iter()
                .map(|t| snapshot.get(t).map_or(Health::Unknown, |s| s.state))
                .collect();
            let health = if states.contains(&Health::Down) {
                Health::Down
            } else if states.is_empty() || states.contains(&Health::Unknown) {
                Health::Unknown
            } else {
                Health::Up
            };
            (node.clone(), health)
        })
        .collect()
}

/// The view last written to the Pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub nodes: BTreeMap<String, Health>,
    pub at: Instant,
}

/// Whether to write `nodes` now:
///
/// | last write              | nodes                     | due |
/// |-------------------------|---------------------------|-----|
/// | none (or all failed)    | any                       | yes |
/// | different nodes         | any                       | yes |
/// | same, `interval` ago    | some                      | yes (the reader sees it is live) |
/// | same, `interval` ago    | none, and none written    | no (nothing to vouch for) |
/// | same, less than `interval` ago | any                | no  |
pub fn write_due(
    last: Option<&Written>,
    nodes: &BTreeMap<String, Health>,
    now: Instant,
    interval: Duration,
) -> bool {
    match last {
        None => true,
        Some(w) if w.nodes != *nodes => true,
        Some(_) if nodes.is_empty() => false,
        Some(w) => now.duration_since(w.at) >= interval,
    }
}

/// When to look again if nothing changes: after a failed write, the `retry` backoff (at most
/// an interval); else when the refresh of the last view is due; never for an empty view, which
/// is not refreshed (a FloatingIP change wakes the loop when a node begins holding).
pub fn next_wake(
    last: Option<&Written>,
    retry: Option<Duration>,
    now: Instant,
    interval: Duration,
) -> Option<Instant> {
    match (retry, last) {
        (Some(r), _) => Some(now + r.min(interval)),
        (None, Some(w)) if w.nodes.is_empty() => None,
        (None, Some(w)) => Some(w.at + interval),
        (None, None) => Some(now + interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "node-2";

    fn fip(name: &str, holder: Option<&str>, port: Option<u16>) -> Arc<FloatingIP> {
        let mut spec = json!({"address": "10.0.8.100", "subnetId": "subnet-0a1b2c3d"});
        if let Some(port) = port {
            spec["healthCheck"] = json!({"protocol": "TCP", "port": port, "intervalMs": 200});
        }
        let status = holder.map_or(json!({}), |n| {
            json!({"holder": {"node": n, "instanceId": "i-1", "macAddress": "02:aa:00:00:00:01",
                              "since": "2026-01-01T00:00:00Z"}})
        });
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
                "metadata": {"name": name}, "spec": spec, "status": status,
            }))
            .unwrap(),
        )
    }

    fn ips() -> BTreeMap<String, Option<IpAddr>> {
        BTreeMap::from([
            ("node-1".to_string(), Some("10.0.8.11".parse().unwrap())),
            ("node-2".to_string(), Some("10.0.8.12".parse().unwrap())),
            ("node-3".to_string(), Some("10.0.8.13".parse().unwrap())),
            ("node-5".to_string(), None),
        ])
    }

    fn targets(p: &PeerTargets) -> Vec<String> {
        let mut v: Vec<String> = p.targets.keys().map(Target::to_string).collect();
        v.sort();
        v
    }

    #[test]
    fn only_other_nodes_holding_health_checked_addresses_are_probed_once_per_check() {
        let fips = [
            fip("a", Some("node-1"), Some(30080)),
            // Same node, same check: one target.
            fip("b", Some("node-1"), Some(30080)),
            // Same node, another port: a second target for node-1.
            fip("c", Some("node-1"), Some(30443)),
            // This agent's own node: not probed.
            fip("d", Some(ME), Some(30080)),
            // No health check: nothing to probe it with.
            fip("e", Some("node-3"), None),
            // No holder yet.
            fip("f", None, Some(30080)),
        ];
        let holders = holders(&fips, ME);
        assert_eq!(holders.keys().collect::<Vec<_>>(), ["node-1"]);
        let p = peer_targets(&holders, &ips());
        assert_eq!(targets(&p), ["TCP 10.0.8.11:30080", "TCP 10.0.8.11:30443"]);
        assert_eq!(p.by_node["node-1"].len(), 2);
        assert_eq!(
            p.targets.values().next().unwrap().interval,
            Duration::from_millis(200)
        );
    }

    #[test]
    fn a_holder_whose_address_is_unknown_is_listed_without_targets() {
        // node-4: not read (yet); node-5: its Node has no InternalIP.
        let fips = [
            fip("a", Some("node-4"), Some(30080)),
            fip("b", Some("node-5"), Some(30080)),
        ];
        let p = peer_targets(&holders(&fips, ME), &ips());
        assert!(p.targets.is_empty());
        let none = BTreeMap::from([
            ("node-4".to_string(), vec![]),
            ("node-5".to_string(), vec![]),
        ]);
        assert_eq!(p.by_node, none);
        let states = node_states(&p.by_node, &HashMap::new());
        assert_eq!(states["node-4"], Health::Unknown);
        assert_eq!(states["node-5"], Health::Unknown);
    }

    fn state(health: Health) -> TargetState {
        TargetState {
            state: health,
            last_failure: None,
            since: Instant::now(),
            failing_since: None,
        }
    }

    #[test]
    fn a_node_is_up_only_when_every_check_of_its_addresses_passes() {
        let t = |port: u16| {
            Target::new(
                crate::api::Protocol::TCP,
                format!("10.0.8.11:{port}").parse().unwrap(),
            )
        };
        let by_node = BTreeMap::from([("node-1".to_string(), vec![t(1), t(2)])]);
        let cases = [
            ([Health::Up, Health::Up], Health::Up),
            ([Health::Up, Health::Down], Health::Down),
            ([Health::Unknown, Health::Down], Health::Down),
            ([Health::Up, Health::Unknown], Health::Unknown),
        ];
        for ([a, b], want) in cases {
            let snapshot = HashMap::from([(t(1), state(a)), (t(2), state(b))]);
            assert_eq!(
                node_states(&by_node, &snapshot)["node-1"],
                want,
                "{a:?} {b:?}"
            );
        }
        // A target the engine does not know (yet) is Unknown.
        let only_one = HashMap::from([(t(1), state(Health::Up))]);
        assert_eq!(node_states(&by_node, &only_one)["node-1"], Health::Unknown);
    }

    fn nodes(pairs: &[(&str, Health)]) -> BTreeMap<String, Health> {
        pairs.iter().map(|(n, h)| (n.to_string(), *h)).collect()
    }

    #[test]
    fn a_write_is_due_on_a_change_or_when_the_refresh_is_due_and_never_otherwise() {
        let t0 = Instant::now();
        let i = Duration::from_secs(5);
        let up = nodes(&[("node-1", Health::Up)]);
        let down = nodes(&[("node-1", Health::Down)]);
        assert!(write_due(None, &up, t0, i), "nothing written yet");
        let last = Written {
            nodes: up.clone(),
            at: t0,
        };
        let soon = t0 + Duration::from_millis(4999);
        assert!(
            !write_due(Some(&last), &up, soon, i),
            "unchanged, refresh not due"
        );
        assert!(
            write_due(Some(&last), &down, soon, i),
            "a node's health changed"
        );
        let more = nodes(&[("node-1", Health::Up), ("node-3", Health::Unknown)]);
        assert!(
            write_due(Some(&last), &more, soon, i),
            "a node began holding"
        );
        assert!(
            write_due(Some(&last), &BTreeMap::new(), soon, i),
            "no node holds any more"
        );
        assert!(write_due(Some(&last), &up, t0 + i, i), "refresh");
        let empty = Written {
            nodes: BTreeMap::new(),
            at: t0,
        };
        assert!(
            !write_due(Some(&empty), &BTreeMap::new(), t0 + 10 * i, i),
            "an empty view is not refreshed"
        );
    }

    #[test]
    fn the_next_look_is_the_refresh_or_a_retry_and_never_a_busy_loop() {
        let t0 = Instant::now();
        let i = Duration::from_secs(5);
        let up = nodes(&[("node-1", Health::Up)]);
        let last = Written { nodes: up, at: t0 };
        let now = t0 + Duration::from_secs(2);
        assert_eq!(next_wake(Some(&last), None, now, i), Some(t0 + i));
        assert_eq!(next_wake(None, None, now, i), Some(now + i));
        let retry = Some(Duration::from_millis(200));
        let later = now + Duration::from_millis(200);
        assert_eq!(next_wake(Some(&last), retry, now, i), Some(later));
        // Failing past the refresh: still the backoff from now, not at once.
        let late = t0 + 3 * i;
        assert_eq!(
            next_wake(Some(&last), retry, late, i),
            Some(late + Duration::from_millis(200))
        );
        assert_eq!(
            next_wake(Some(&last), Some(Duration::from_secs(30)), now, i),
            Some(now + i)
        );
        let empty = Written {
            nodes: BTreeMap::new(),
            at: t0,
        };
        assert_eq!(next_wake(Some(&empty), None, late, i), None);
    }
}
