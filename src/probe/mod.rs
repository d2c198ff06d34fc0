//! The probe engine: health checks of VIPs and candidate nodes, fed to the controller as
//! transitions.
//!
//! - [`check`] does one TCP or UDP probe.
//! - [`Machine`] turns consecutive results into Up/Down/Unknown with the thresholds.
//! - [`ProbeEngine`] owns the target set: one scheduler task with a timer heap fires each
//!   target every interval (first at a random offset, so targets added together do not probe
//!   together), runs the probes as futures with bounded concurrency, and sends a
//!   [`Transition`] whenever a target's health changes.

pub mod check;
mod engine;
mod machine;

#[cfg(test)]
mod engine_tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;

use crate::api::{validate_health_check, HealthCheck, Protocol};

pub use check::Failure;
pub use engine::ProbeEngine;
pub use machine::{Health, Machine, Step};

/// What is probed. Two FloatingIPs that probe the same address and port with the same
/// protocol share one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

impl Target {
    pub fn new(protocol: Protocol, addr: SocketAddr) -> Self {
        Self { protocol, addr }
    }

    /// The target a health check means for `ip` (the VIP, or a candidate node's address).
    pub fn for_health_check(check: &HealthCheck, ip: IpAddr) -> Result<Self, String> {
        let port = u16::try_from(check.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                format!(
                    "spec.healthCheck.port {} is not a port (1-65535)",
                    check.port
                )
            })?;
        Ok(Self::new(check.protocol, SocketAddr::new(ip, port)))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}", self.protocol, self.addr)
    }
}

/// How one target is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// UDP only: the datagram sent.
    pub udp_payload: Bytes,
    /// UDP only: silence fails instead of passing.
    pub reply_required: bool,
    /// Probed at once when this target starts failing: an address and the node holding it
    /// confirm each other, so that a failure of one is checked on the other without waiting
    /// for its next interval. Sorted, no duplicates.
    pub linked: Vec<Target>,
}

impl ProbeSpec {
    /// The spec a FloatingIP's health check asks for, defaults applied. A check spec
    /// validation refuses ([`validate_health_check`], the one place its rules live) has none;
    /// the error is that validation's message.
    pub fn from_health_check(check: &HealthCheck) -> Result<Self, String> {
        validate_health_check(check).map_err(|e| e.to_string())?;
        // Validated: the timing and thresholds are at least 1, a base64 payload decodes.
        let millis = |v: i32| Duration::from_millis(v.unsigned_abs().into());
        let (udp_payload, reply_required) = match (&check.protocol, &check.udp) {
            (Protocol::UDP, Some(udp)) => {
                let payload = match (&udp.payload, &udp.payload_base64) {
                    (Some(text), _) => Bytes::from(text.clone().into_bytes()),
                    (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map(Bytes::from)
                        .unwrap_or_default(),
                    (None, None) => Bytes::new(),
                };
                (payload, udp.reply_required)
            }
            _ => (Bytes::new(), false),
        };
        Ok(Self {
            interval: millis(check.interval_ms),
            timeout: millis(check.effective_timeout_ms()),
            failure_threshold: check.failure_threshold.unsigned_abs(),
            success_threshold: check.success_threshold.unsigned_abs(),
            udp_payload,
            reply_required,
            linked: Vec::new(),
        })
    }

    /// This spec with `interval` instead of its own, the timeout capped at it.
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self.timeout = self.timeout.min(interval);
        self
    }
}

/// One spec for a target that two FloatingIPs probe differently: the stricter of each
/// setting (shorter interval and timeout, lower thresholds, a reply required if either
/// requires one). Commutative, so the result does not depend on the order FloatingIPs are
/// listed in. The payload is the one that needs a reply, else the smaller one.
pub fn merge(a: &ProbeSpec, b: &ProbeSpec) -> ProbeSpec {
    let udp_payload = match (a.reply_required, b.reply_required) {
        (true, false) => a.udp_payload.clone(),
        (false, true) => b.udp_payload.clone(),
        _ => a.udp_payload.clone().min(b.udp_payload.clone()),
    };
    ProbeSpec {
        interval: a.interval.min(b.interval),
        timeout: a.timeout.min(b.timeout),
        failure_threshold: a.failure_threshold.min(b.failure_threshold),
        success_threshold: a.success_threshold.min(b.success_threshold),
        udp_payload,
        reply_required: a.reply_required || b.reply_required,
        linked: {
            let mut l: Vec<Target> = a.linked.iter().chain(&b.linked).copied().collect();
            l.sort();
            l.dedup();
            l
        },
    }
}

/// The targets a health check means for `ips` (a VIP, nodes' InternalIPs), each with the spec
/// it asks for; none when the check is not valid (the controller reports that as InvalidSpec).
/// The controller and the agent's peer probes both build their targets with this.
pub fn health_check_targets(
    check: &HealthCheck,
    ips: impl IntoIterator<Item = IpAddr>,
) -> Vec<(Target, ProbeSpec)> {
    let Ok(spec) = ProbeSpec::from_health_check(check) else {
        return Vec::new();
    };
    ips.into_iter()
        .filter_map(|ip| Target::for_health_check(check, ip).ok())
        .map(|t| (t, spec.clone()))
        .collect()
}

/// Collects (target, spec) pairs into the map [`ProbeEngine::set_targets`] takes, merging
/// the specs of a target named more than once.
pub fn merge_targets(
    pairs: impl IntoIterator<Item = (Target, ProbeSpec)>,
) -> HashMap<Target, ProbeSpec> {
    let mut map: HashMap<Target, ProbeSpec> = HashMap::new();
    for (target, spec) in pairs {
        match map.get_mut(&target) {
            Some(existing) => *existing = merge(existing, &spec),
            None => {
                map.insert(target, spec);
            }
        }
    }
    map
}

/// The engine's view of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetState {
    pub state: Health,
    /// The reason of the most recent failed probe, kept after the target recovers.
    pub last_failure: Option<String>,
    /// When the target entered `state` (for Unknown: when it was added).
    pub since: Instant,
    /// When the latest run of failed probes began, while its latest probe failed; an Up
    /// target with this set is suspect.
    pub failing_since: Option<Instant>,
}

impl TargetState {
    /// Down, but its latest probe passed: it answers again and waits for enough passes to be
    /// Up. Its Down is no longer evidence that it fails now (after a partition heals, targets
    /// come back out of phase, and the last one probed still shows Down for an interval).
    pub fn recovering(&self) -> bool {
        self.state == Health::Down && self.failing_since.is_none()
    }
}

/// A change of a target's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub target: Target,
    pub from: Health,
    pub to: Health,
    /// When the probe that caused it finished.
    pub at: Instant,
    /// For a change to Down: the failure reason of that probe.
    pub reason: Option<String>,
    /// For a change to Down: when the first failed probe of the run that led to it started.
    /// `at - first_failure_at` is the detection time.
    pub first_failure_at: Option<Instant>,
}

/// The label a protocol has in metrics.
pub(crate) fn protocol_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::TCP => "TCP",
        Protocol::UDP => "UDP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::UdpCheck;

    fn check(protocol: Protocol, udp: Option<UdpCheck>) -> HealthCheck {
        HealthCheck {
            protocol,
            port: 30080,
            interval_ms: 500,
            timeout_ms: None,
            idle_interval_ms: None,
            failure_threshold: 3,
            success_threshold: 2,
            udp,
        }
    }

    fn spec(interval_ms: u64, timeout_ms: u64, fail: u32, succ: u32) -> ProbeSpec {
        ProbeSpec {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            failure_threshold: fail,
            success_threshold: succ,
            udp_payload: Bytes::new(),
            reply_required: false,
            linked: Vec::new(),
        }
    }

    #[test]
    fn defaults_come_from_the_health_check() {
        let s = ProbeSpec::from_health_check(&check(Protocol::TCP, None)).unwrap();
        assert_eq!(s, spec(500, 250, 3, 2));
    }

    #[test]
    fn timeout_defaults_to_the_interval_when_that_is_shorter() {
        let mut c = check(Protocol::TCP, None);
        c.interval_ms = 150;
        let s = ProbeSpec::from_health_check(&c).unwrap();
        assert_eq!(s.timeout, Duration::from_millis(150));
    }

    #[test]
    fn udp_payload_as_text_and_as_base64() {
        let text = check(
            Protocol::UDP,
            Some(UdpCheck {
                payload: Some("ping".into()),
                payload_base64: None,
                reply_required: true,
            }),
        );
        let s = ProbeSpec::from_health_check(&text).unwrap();
        assert_eq!(&s.udp_payload[..], b"ping");
        assert!(s.reply_required);

        let b64 = check(
            Protocol::UDP,
            Some(UdpCheck {
                payload: None,
                payload_base64: Some("AAEC/w==".into()),
                reply_required: false,
            }),
        );
        let s = ProbeSpec::from_health_check(&b64).unwrap();
        assert_eq!(&s.udp_payload[..], &[0, 1, 2, 255]);
        assert!(!s.reply_required);
    }

    #[test]
    fn bad_health_checks_are_errors_naming_the_field() {
        let bad_b64 = check(
            Protocol::UDP,
            Some(UdpCheck {
                payload: None,
                payload_base64: Some("not base64!".into()),
                reply_required: false,
            }),
        );
        let err = ProbeSpec::from_health_check(&bad_b64).unwrap_err();
        assert!(err.contains("payloadBase64"), "{err}");

        let both = check(
            Protocol::UDP,
            Some(UdpCheck {
                payload: Some("a".into()),
                payload_base64: Some("YQ==".into()),
                reply_required: false,
            }),
        );
        assert!(ProbeSpec::from_health_check(&both).is_err());

        let mut zero = check(Protocol::TCP, None);
        zero.failure_threshold = 0;
        let err = ProbeSpec::from_health_check(&zero).unwrap_err();
        assert!(err.contains("failureThreshold"), "{err}");
    }

    #[test]
    fn a_check_spec_validation_refuses_has_no_probe_spec_and_the_same_message() {
        let mut fast = check(Protocol::TCP, None);
        fast.interval_ms = 50;
        let mut udp_on_tcp = check(Protocol::TCP, None);
        udp_on_tcp.udp = Some(UdpCheck {
            payload: Some("ping".into()),
            payload_base64: None,
            reply_required: false,
        });
        for bad in [fast, udp_on_tcp] {
            let refused = validate_health_check(&bad).unwrap_err().to_string();
            assert_eq!(ProbeSpec::from_health_check(&bad), Err(refused));
        }
    }

    #[test]
    fn target_for_a_health_check_uses_its_port_and_protocol() {
        let c = check(Protocol::UDP, None);
        let t = Target::for_health_check(&c, "10.0.8.100".parse().unwrap()).unwrap();
        assert_eq!(t.protocol, Protocol::UDP);
        assert_eq!(t.addr, "10.0.8.100:30080".parse().unwrap());
        assert_eq!(t.to_string(), "UDP 10.0.8.100:30080");
        let mut bad = c;
        bad.port = 70_000;
        assert!(Target::for_health_check(&bad, "10.0.8.100".parse().unwrap()).is_err());
    }

    #[test]
    fn a_health_check_means_one_target_per_address_and_none_when_invalid() {
        let c = check(Protocol::TCP, None);
        let ips: Vec<IpAddr> = vec!["10.0.8.100".parse().unwrap(), "10.0.8.11".parse().unwrap()];
        let pairs = health_check_targets(&c, ips.clone());
        let addrs: Vec<String> = pairs.iter().map(|(t, _)| t.to_string()).collect();
        assert_eq!(addrs, ["TCP 10.0.8.100:30080", "TCP 10.0.8.11:30080"]);
        assert!(pairs.iter().all(|(_, s)| *s == spec(500, 250, 3, 2)));
        let mut bad = c;
        bad.failure_threshold = 0;
        assert!(health_check_targets(&bad, ips).is_empty());
    }

    #[test]
    fn merge_takes_the_stricter_of_each_setting_in_either_order() {
        let mut a = spec(1000, 200, 2, 5);
        a.udp_payload = Bytes::from_static(b"a");
        let mut b = spec(300, 250, 4, 1);
        b.udp_payload = Bytes::from_static(b"b");
        b.reply_required = true;
        let m = merge(&a, &b);
        assert_eq!(m.interval, Duration::from_millis(300));
        assert_eq!(m.timeout, Duration::from_millis(200));
        assert_eq!(m.failure_threshold, 2);
        assert_eq!(m.success_threshold, 1);
        assert!(m.reply_required);
        assert_eq!(&m.udp_payload[..], b"b", "the payload that expects a reply");
        assert_eq!(merge(&b, &a), m);

        b.reply_required = false;
        assert_eq!(&merge(&a, &b).udp_payload[..], b"a");
        assert_eq!(merge(&a, &b), merge(&b, &a));
    }

    #[test]
    fn merge_targets_dedups_by_protocol_address_and_port() {
        let addr: SocketAddr = "10.0.8.100:80".parse().unwrap();
        let tcp = Target::new(Protocol::TCP, addr);
        let udp = Target::new(Protocol::UDP, addr);
        let map = merge_targets([
            (tcp, spec(500, 250, 3, 2)),
            (udp, spec(500, 250, 3, 2)),
            (tcp, spec(200, 100, 5, 2)),
        ]);
        assert_eq!(map.len(), 2);
        assert_eq!(map[&tcp], spec(200, 100, 3, 2));
        assert_eq!(map[&udp], spec(500, 250, 3, 2));
    }
}
