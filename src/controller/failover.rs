//! How long failovers take, as far as the controller can know: from the first failed probe of
//! the address or of its holder (whichever came first) to the controller's first passing probe
//! of the address after the move (floatip_failover_duration_seconds). Planned moves (drain,
//! cordon, taints, handover, failback) are not failovers; move_duration_seconds covers them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::api::{FloatingIP, MoveReason};
use crate::metrics::Metrics;
use crate::placement::Decision;
use crate::probe::Target;

use super::plan::{node_check, Plan};

/// A failover whose address has not answered since its move is forgotten after this long
/// (its FloatingIP lost its check, or the address never came back): it is not measured, and
/// the loop stops looking every quarter second. Past the histogram's last bucket (51.2 s), a
/// longer wait would only tell "+Inf" apart from "never".
const GIVE_UP: Duration = Duration::from_secs(120);

/// An unplanned move the plan decided, before it is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The first failed probe of the address or its holder.
    pub first_failure: Instant,
    /// The address's own check.
    pub address: Target,
}

#[derive(Debug)]
struct Pending {
    decided: Decided,
    /// When EC2 accepted the move.
    moved_at: Instant,
}

/// The failovers carried out whose address has not been seen answering since.
#[derive(Debug, Default)]
pub struct Failovers {
    pending: HashMap<String, Pending>,
}

/// Whether a move for `reason` happens because something failed, not because someone asked.
fn unplanned(reason: MoveReason) -> bool {
    use MoveReason::*;
    match reason {
        HolderUnhealthy | NodeNotReady | NodeDeleted | AgentNotReady => true,
        Initial | NodeCordoned | NodeTainted | Handover | Failback | Drift | NodeIneligible => {
            false
        }
    }
}

/// The unplanned moves among `plans` whose address or holder has failed a probe, by
/// FloatingIP. `failing_from` says when a target's current run of failed probes began (None
/// while it passes); `node_ip` gives a node's InternalIP.
pub fn decided(
    plans: &[Plan],
    fips: &[std::sync::Arc<FloatingIP>],
    node_ip: impl Fn(&str) -> Option<std::net::IpAddr>,
    failing_from: impl Fn(&Target) -> Option<Instant>,
) -> HashMap<String, Decided> {
    let mut out = HashMap::new();
    for p in plans {
        let Plan::Place(a) = p else { continue };
        let (Decision::Move { reason, .. }, Some(vip)) = (&a.decision, &a.vip) else {
            continue;
        };
        if !unplanned(*reason) {
            continue;
        }
        let check = (fips.iter())
            .find(|f| kube::ResourceExt::name_any(f.as_ref()) == a.name)
            .and_then(|f| f.spec.health_check.clone());
        let holder = (a.holder.as_ref())
            .zip(check.as_ref())
            .and_then(|(h, hc)| node_check(hc, node_ip(&h.node)?));
        let first = [Some(vip.target), holder]
            .into_iter()
            .flatten()
            .filter_map(|t| failing_from(&t))
            .min();
        if let Some(first_failure) = first {
            let address = vip.target;
            out.insert(
                a.name.clone(),
                Decided {
                    first_failure,
                    address,
                },
            );
        }
    }
    out
}

impl Failovers {
    /// The moves that were carried out (`arrived`: FloatingIP and when EC2 accepted) among
    /// those `decided` become failovers waiting for their address to answer.
    pub fn moved(&mut self, mut decided: HashMap<String, Decided>, arrived: &[(String, Instant)]) {
        for (name, moved_at) in arrived {
            if let Some(d) = decided.remove(name) {
                let pending = Pending {
                    decided: d,
                    moved_at: *moved_at,
                };
                self.pending.insert(name.clone(), pending);
            }
        }
    }

    /// Observes each failover whose address passed a probe started after its move
    /// (`passed_after`: when the first such probe finished); forgets those of FloatingIPs
    /// no longer `live` and those waiting longer than [`GIVE_UP`].
    pub fn finish(
        &mut self,
        metrics: &Metrics,
        passed_after: impl Fn(&Target, Instant) -> Option<Instant>,
        live: impl Fn(&str) -> bool,
    ) {
        self.pending.retain(|name, p| {
            if let Some(answered) = passed_after(&p.decided.address, p.moved_at) {
                let took = answered.saturating_duration_since(p.decided.first_failure);
                tracing::debug!(floatingip = %name, failover_ms = took.as_millis() as u64,
                    "the address answers after its failover");
                metrics.failover(took.as_secs_f64());
                return false;
            }
            live(name) && p.moved_at.elapsed() < GIVE_UP
        });
    }

    /// Some failover waits for its address to answer: look again soon.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Leadership lost: the next leader measures its own.
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::{Placement, VipHealth};
    use crate::probe::Health;
    use crate::status::Seat;
    use std::net::IpAddr;
    use std::sync::Arc;

    const VIP: &str = "10.0.8.100:80";
    const N1: &str = "10.0.1.11";

    fn fip() -> Arc<FloatingIP> {
        let f = serde_json::from_value(serde_json::json!({
            "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
            "metadata": {"name": "a"},
            "spec": {"address": "10.0.8.100", "subnetId": "subnet-a",
                     "healthCheck": {"protocol": "TCP", "port": 80}},
        }));
        Arc::new(f.unwrap())
    }

    fn vip_target() -> Target {
        Target::new(crate::api::Protocol::TCP, VIP.parse().unwrap())
    }

    fn holder_target() -> Target {
        Target::new(
            crate::api::Protocol::TCP,
            format!("{N1}:80").parse().unwrap(),
        )
    }

    fn moving(reason: MoveReason) -> Plan {
        let seat = |n: &str| Seat {
            node: n.into(),
            instance_id: format!("i-{n}"),
            eni: format!("eni-{n}"),
            mac: None,
            private_ip: None,
        };
        Plan::Place(Box::new(Placement {
            name: "a".into(),
            address: "10.0.8.100".parse().unwrap(),
            holder: Some(seat("n1")),
            foreign: None,
            decision: Decision::Move {
                to: "n2".into(),
                reason,
            },
            target: Some(seat("n2")),
            confirm_target: None,
            holder_fit: Some(Ok(())),
            holder_health: Health::Down,
            doubt: None,
            verdict_pending: false,
            candidates: 1,
            vip: Some(VipHealth {
                target: vip_target(),
                health: Health::Down,
                last_failure: None,
                failing_for: Duration::ZERO,
                suspect: false,
                recovering: false,
            }),
            associate: None,
            public: None,
        }))
    }

    fn node_ip(n: &str) -> Option<IpAddr> {
        (n == "n1").then(|| N1.parse().unwrap())
    }

    fn count(m: &Metrics) -> String {
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("floatip_failover_duration_seconds_count"));
        line.unwrap_or_default().to_string()
    }

    #[test]
    fn a_failover_runs_from_the_first_failure_of_address_or_holder_to_the_first_pass_after_it() {
        let t0 = Instant::now();
        let holder_failed = t0 + Duration::from_millis(100);
        let vip_failed = t0 + Duration::from_millis(300);
        let failing = |t: &Target| {
            if *t == vip_target() {
                Some(vip_failed)
            } else if *t == holder_target() {
                Some(holder_failed)
            } else {
                None
            }
        };
        let decided = decided(
            &[moving(MoveReason::HolderUnhealthy)],
            &[fip()],
            node_ip,
            failing,
        );
        assert_eq!(
            decided.get("a"),
            Some(&Decided {
                first_failure: holder_failed,
                address: vip_target()
            }),
            "the holder failed first"
        );
        let m = Metrics::new();
        let mut f = Failovers::default();
        let moved_at = t0 + Duration::from_millis(1500);
        f.moved(decided, &[("a".into(), moved_at)]);
        assert!(f.waiting());
        // A pass that started before the move does not count; none after it yet.
        f.finish(&m, |_, _| None, |_| true);
        assert!(f.waiting());
        assert!(count(&m).ends_with(" 0"), "{}", count(&m));
        let answered = t0 + Duration::from_millis(2100);
        let asked = std::sync::Mutex::new(None);
        let passed_after = |t: &Target, after: Instant| {
            *asked.lock().unwrap() = Some((*t, after));
            Some(answered)
        };
        f.finish(&m, passed_after, |_| true);
        assert_eq!(*asked.lock().unwrap(), Some((vip_target(), moved_at)));
        assert!(!f.waiting());
        let text = m.encode();
        assert!(
            text.contains("floatip_failover_duration_seconds_count 1"),
            "{text}"
        );
        // 2.0 s from the holder's first failure: in the 3.2 s bucket, not the 1.6 s one.
        assert!(
            text.contains("floatip_failover_duration_seconds_sum 2.0"),
            "{text}"
        );
    }

    #[test]
    fn planned_moves_and_moves_without_a_failed_probe_are_not_failovers() {
        let failing = |_: &Target| Some(Instant::now());
        for planned in [
            MoveReason::NodeCordoned,
            MoveReason::Handover,
            MoveReason::Failback,
            MoveReason::NodeTainted,
        ] {
            let d = decided(&[moving(planned)], &[fip()], node_ip, failing);
            assert!(d.is_empty(), "{planned:?}");
        }
        let nothing_failed = |_: &Target| None;
        let d = decided(
            &[moving(MoveReason::NodeNotReady)],
            &[fip()],
            node_ip,
            nothing_failed,
        );
        assert!(d.is_empty(), "no failed probe to time it from");
        let d = decided(
            &[moving(MoveReason::NodeNotReady)],
            &[fip()],
            node_ip,
            failing,
        );
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_move_not_carried_out_or_a_floatingip_gone_is_not_measured() {
        let failing = |_: &Target| Some(Instant::now());
        let d = decided(
            &[moving(MoveReason::HolderUnhealthy)],
            &[fip()],
            node_ip,
            failing,
        );
        let mut f = Failovers::default();
        f.moved(d.clone(), &[]);
        assert!(!f.waiting(), "the claim lost, EC2 refused: no move");
        f.moved(d, &[("a".into(), Instant::now())]);
        f.finish(&Metrics::new(), |_, _| None, |_| false);
        assert!(!f.waiting(), "deleted");
    }
}
