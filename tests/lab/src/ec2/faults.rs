//! Which faults are armed and what each request gets: pure decisions, no I/O, so they are tested
//! with a fake clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a fault does to a request it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Waits `ms` before forwarding; stacks with every other fault.
    Latency,
    /// HTTP 503 RequestLimitExceeded, EC2's throttling answer.
    Throttle,
    /// HTTP 500 InternalError.
    InternalError,
    /// HTTP 503 Unavailable.
    Unavailable,
    /// HTTP 403 UnauthorizedOperation: what a missing IAM permission looks like.
    Unauthorized,
    /// HTTP 400 InvalidParameterValue: EC2 refusing an address it will not take (with
    /// `address`, only requests naming it), which no retry fixes.
    InvalidParameter,
    /// No answer: the connection is closed once the request is read, so the client sees a
    /// connection error. Control requests under /_lab/ still work, so an outage can be ended.
    Outage,
}

/// The JSON body of `POST /_lab/faults`. Without `count` or `seconds` a fault lasts until
/// `DELETE /_lab/faults`; with both it ends at whichever comes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub kind: Kind,
    /// Latency only: milliseconds added to each matching request.
    #[serde(default)]
    pub ms: Option<u64>,
    /// Only the next `count` matching requests.
    #[serde(default)]
    pub count: Option<u32>,
    /// Only for this many seconds from now.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Only requests for this EC2 Action (e.g. AssignPrivateIpAddresses).
    #[serde(default)]
    pub action: Option<String>,
    /// Only requests with this value among their parameters (e.g. an address): a call that
    /// names it, batched or not, fails whole, as EC2 fails it.
    #[serde(default)]
    pub address: Option<String>,
}

/// An armed fault, as `GET /_lab/faults` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: u64,
    pub kind: Kind,
    pub ms: Option<u64>,
    pub action: Option<String>,
    pub address: Option<String>,
    /// Requests it will still affect, if limited by count.
    pub remaining: Option<u32>,
    /// Requests it has affected so far.
    pub hits: u64,
    #[serde(skip)]
    until: Option<Instant>,
}

impl Fault {
    fn live(&self, now: Instant) -> bool {
        self.remaining != Some(0) && self.until.is_none_or(|until| now < until)
    }

    fn matches(&self, action: Option<&str>, values: &[String]) -> bool {
        (self.action.is_none() || self.action.as_deref() == action)
            && self
                .address
                .as_ref()
                .is_none_or(|a| values.iter().any(|v| v == a))
    }

    fn hit(&mut self) {
        self.hits += 1;
        if let Some(left) = self.remaining.as_mut() {
            *left -= 1;
        }
    }
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forward,
    Error(Kind),
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub delay: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
pub struct Faults {
    next_id: u64,
    armed: Vec<Fault>,
    /// Added to every request: the round trip to the Region that an EC2 on the same machine
    /// lacks (`floatip-lab ec2 --latency-ms`). Not a fault, so clearing faults keeps it.
    round_trip: Duration,
}

impl Faults {
    /// No fault armed; every request waits `round_trip` before it is answered.
    pub fn with_round_trip(round_trip: Duration) -> Self {
        Self {
            round_trip,
            ..Self::default()
        }
    }

    pub fn round_trip(&self) -> Duration {
        self.round_trip
    }

    pub fn add(&mut self, spec: Spec, now: Instant) -> Result<Fault, String> {
        match (spec.kind, spec.ms) {
            (Kind::Latency, None) => return Err("latency needs \"ms\"".into()),
            (Kind::Latency, Some(_)) | (_, None) => {}
            (kind, Some(_)) => return Err(format!("\"ms\" applies to latency, not {kind:?}")),
        }
        let until = match spec.seconds {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(now + Duration::from_secs_f64(s)),
            Some(s) => return Err(format!("\"seconds\" must be positive, got {s}")),
        };
        if spec.count == Some(0) {
            return Err("\"count\" must be at least 1".into());
        }
        self.next_id += 1;
        let fault = Fault {
            id: self.next_id,
            kind: spec.kind,
            ms: spec.ms,
            action: spec.action,
            address: spec.address,
            remaining: spec.count,
            hits: 0,
            until,
        };
        self.armed.push(fault.clone());
        Ok(fault)
    }

    /// Disarms every fault; returns how many were armed.
    pub fn clear(&mut self) -> usize {
        std::mem::take(&mut self.armed).len()
    }

    pub fn list(&mut self, now: Instant) -> Vec<Fault> {
        self.armed.retain(|f| f.live(now));
        self.armed.clone()
    }

    /// Decides one request. It waits the round trip, and every matching latency adds its
    /// delay; the oldest matching error or outage decides the answer. Only the faults that acted use up their count.
    #[cfg(test)]
    pub fn decide(&mut self, action: Option<&str>, now: Instant) -> Decision {
        self.decide_request(action, &[], now)
    }

    /// [`Faults::decide`] for a request with these parameter values.
    pub fn decide_request(
        &mut self,
        action: Option<&str>,
        values: &[String],
        now: Instant,
    ) -> Decision {
        self.armed.retain(|f| f.live(now));
        let mut delay = self.round_trip;
        let mut outcome = Outcome::Forward;
        for fault in self.armed.iter_mut().filter(|f| f.matches(action, values)) {
            match fault.kind {
                Kind::Latency => delay += Duration::from_millis(fault.ms.unwrap_or(0)),
                _ if outcome != Outcome::Forward => continue,
                Kind::Outage => outcome = Outcome::Drop,
                kind => outcome = Outcome::Error(kind),
            }
            fault.hit();
        }
        self.armed.retain(|f| f.live(now));
        Decision { delay, outcome }
    }
}

/// Requests seen per EC2 Action, for tests that count what a failover costs.
#[derive(Debug, Default, Serialize)]
pub struct Calls {
    pub total: u64,
    pub mutating: u64,
    pub actions: BTreeMap<String, ActionCalls>,
    /// Requests per caller (the access key ID the request was signed with) and Action: what
    /// each IAM principal would have needed.
    pub callers: BTreeMap<String, BTreeMap<String, u64>>,
    /// The latest mutating calls with when they came and were answered (a timeline's EC2
    /// steps), oldest first, at most [`Calls::RECENT`].
    pub recent: std::collections::VecDeque<CallRecord>,
}

/// One mutating call and when it was served, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub action: String,
    pub started_ms: f64,
    pub finished_ms: f64,
    pub faulted: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct ActionCalls {
    /// Requests received, faulted ones included.
    pub calls: u64,
    /// Of those, how many a fault answered or dropped instead of moto.
    pub faulted: u64,
    pub mutating: bool,
}

impl Calls {
    pub const RECENT: usize = 1000;

    /// Remembers a mutating call once it was answered.
    pub fn finished(&mut self, record: CallRecord) {
        if is_mutating(&record.action) {
            self.recent.push_back(record);
            while self.recent.len() > Self::RECENT {
                self.recent.pop_front();
            }
        }
    }

    pub fn record(&mut self, action: Option<&str>, caller: Option<&str>, faulted: bool) {
        let action = action.unwrap_or("(none)");
        self.authorized(caller, action);
        let mutating = is_mutating(action);
        let entry = self.actions.entry(action.to_owned()).or_default();
        entry.calls += 1;
        entry.faulted += u64::from(faulted);
        entry.mutating = mutating;
        self.total += 1;
        self.mutating += u64::from(mutating);
    }
}

impl Calls {
    /// Counts an action IAM authorizes for `caller`: the request's own, or one it implies.
    pub fn authorized(&mut self, caller: Option<&str>, action: &str) {
        *self
            .callers
            .entry(caller.unwrap_or("(unsigned)").to_owned())
            .or_default()
            .entry(action.to_owned())
            .or_default() += 1;
    }
}

/// EC2's read-only actions are the Describe*, Get* and List* ones; everything else changes state.
pub fn is_mutating(action: &str) -> bool {
    !["Describe", "Get", "List"]
        .iter()
        .any(|prefix| action.starts_with(prefix))
        && action != "(none)"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind) -> Spec {
        Spec {
            kind,
            ms: None,
            count: None,
            seconds: None,
            action: None,
            address: None,
        }
    }

    #[test]
    fn counted_throttle_answers_exactly_n_requests() {
        let now = Instant::now();
        let mut faults = Faults::default();
        faults
            .add(
                Spec {
                    count: Some(2),
                    ..spec(Kind::Throttle)
                },
                now,
            )
            .unwrap();
        let throttled = Outcome::Error(Kind::Throttle);
        assert_eq!(faults.decide(Some("DescribeVpcs"), now).outcome, throttled);
        assert_eq!(faults.decide(Some("DescribeVpcs"), now).outcome, throttled);
        assert_eq!(
            faults.decide(Some("DescribeVpcs"), now).outcome,
            Outcome::Forward
        );
        assert!(faults.list(now).is_empty());
    }

    #[test]
    fn timed_outage_drops_requests_until_it_ends() {
        let now = Instant::now();
        let mut faults = Faults::default();
        let outage = Spec {
            seconds: Some(2.0),
            ..spec(Kind::Outage)
        };
        faults.add(outage, now).unwrap();
        assert_eq!(faults.decide(None, now).outcome, Outcome::Drop);
        assert_eq!(faults.decide(None, now).outcome, Outcome::Drop);
        let later = now + Duration::from_secs(3);
        assert_eq!(faults.decide(None, later).outcome, Outcome::Forward);
    }

    #[test]
    fn action_filter_spares_other_actions_and_their_count() {
        let now = Instant::now();
        let mut faults = Faults::default();
        let only_assign = Spec {
            count: Some(1),
            action: Some("AssignPrivateIpAddresses".into()),
            ..spec(Kind::InternalError)
        };
        faults.add(only_assign, now).unwrap();
        assert_eq!(
            faults.decide(Some("DescribeInstances"), now).outcome,
            Outcome::Forward
        );
        let assign = faults.decide(Some("AssignPrivateIpAddresses"), now);
        assert_eq!(assign.outcome, Outcome::Error(Kind::InternalError));
        let again = faults.decide(Some("AssignPrivateIpAddresses"), now);
        assert_eq!(again.outcome, Outcome::Forward);
    }

    #[test]
    fn latencies_stack_and_oldest_error_wins_without_spending_the_other() {
        let now = Instant::now();
        let mut faults = Faults::default();
        for ms in [100, 50] {
            let latency = Spec {
                ms: Some(ms),
                ..spec(Kind::Latency)
            };
            faults.add(latency, now).unwrap();
        }
        let one = |kind| Spec {
            count: Some(1),
            ..spec(kind)
        };
        faults.add(one(Kind::Unavailable), now).unwrap();
        faults.add(one(Kind::Throttle), now).unwrap();
        let first = faults.decide(Some("DescribeVpcs"), now);
        assert_eq!(first.delay, Duration::from_millis(150));
        assert_eq!(first.outcome, Outcome::Error(Kind::Unavailable));
        let second = faults.decide(Some("DescribeVpcs"), now);
        assert_eq!(second.outcome, Outcome::Error(Kind::Throttle));
        assert_eq!(faults.clear(), 2, "the two latencies are still armed");
    }

    #[test]
    fn the_round_trip_delays_every_request_and_outlives_clearing_faults() {
        let now = Instant::now();
        let mut faults = Faults::with_round_trip(Duration::from_millis(150));
        for action in [Some("AssignPrivateIpAddresses"), Some("DescribeVpcs"), None] {
            assert_eq!(faults.decide(action, now).delay, Duration::from_millis(150));
        }
        let latency = Spec {
            ms: Some(40),
            ..spec(Kind::Latency)
        };
        faults.add(latency, now).unwrap();
        faults.add(spec(Kind::Throttle), now).unwrap();
        let both = faults.decide(Some("DescribeVpcs"), now);
        assert_eq!(both.delay, Duration::from_millis(190));
        assert_eq!(both.outcome, Outcome::Error(Kind::Throttle));
        assert_eq!(faults.clear(), 2);
        let after = faults.decide(Some("DescribeVpcs"), now);
        assert_eq!(after.delay, Duration::from_millis(150));
        assert_eq!(after.outcome, Outcome::Forward);
        assert_eq!(Faults::default().decide(None, now).delay, Duration::ZERO);
    }

    #[test]
    fn invalid_specs_are_refused() {
        let now = Instant::now();
        let mut faults = Faults::default();
        assert!(faults.add(spec(Kind::Latency), now).is_err());
        let ms_on_throttle = Spec {
            ms: Some(5),
            ..spec(Kind::Throttle)
        };
        assert!(faults.add(ms_on_throttle, now).is_err());
        let zero = Spec {
            count: Some(0),
            ..spec(Kind::Throttle)
        };
        assert!(faults.add(zero, now).is_err());
        let negative = Spec {
            seconds: Some(-1.0),
            ..spec(Kind::Outage)
        };
        assert!(faults.add(negative, now).is_err());
    }

    #[test]
    fn route_table_and_eni_attribute_changes_are_mutating() {
        // The router hears of these through the generation count, and the bench counts them.
        for action in [
            "CreateRoute",
            "ReplaceRoute",
            "DeleteRoute",
            "ModifyNetworkInterfaceAttribute",
            "AssociateRouteTable",
        ] {
            assert!(is_mutating(action), "{action}");
        }
        for action in ["DescribeRouteTables", "DescribeNetworkInterfaceAttribute"] {
            assert!(!is_mutating(action), "{action}");
        }
    }

    #[test]
    fn calls_split_mutating_from_read_only() {
        let mut calls = Calls::default();
        calls.record(Some("DescribeNetworkInterfaces"), Some("agent"), false);
        calls.record(Some("AssignPrivateIpAddresses"), Some("controller"), true);
        calls.record(Some("AssignPrivateIpAddresses"), Some("agent"), false);
        calls.record(None, None, false);
        assert_eq!((calls.total, calls.mutating), (4, 2));
        let assign = &calls.actions["AssignPrivateIpAddresses"];
        assert_eq!(
            (assign.calls, assign.faulted, assign.mutating),
            (2, 1, true)
        );
        assert!(!calls.actions["DescribeNetworkInterfaces"].mutating);
        assert!(!calls.actions["(none)"].mutating);
        assert_eq!(calls.callers["agent"]["DescribeNetworkInterfaces"], 1);
        assert_eq!(calls.callers["agent"]["AssignPrivateIpAddresses"], 1);
        assert_eq!(calls.callers["controller"].len(), 1);
        assert_eq!(calls.callers["(unsigned)"]["(none)"], 1);
    }

    #[test]
    fn an_address_fault_refuses_only_requests_naming_it() {
        let now = Instant::now();
        let mut faults = Faults::default();
        faults
            .add(
                serde_json::from_str(r#"{"kind": "invalid_parameter", "action": "AssignPrivateIpAddresses", "address": "10.0.8.9"}"#).unwrap(),
                now,
            )
            .unwrap();
        let values = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let refused = Outcome::Error(Kind::InvalidParameter);
        let both = values(&["eni-1", "10.0.8.5", "10.0.8.9"]);
        assert_eq!(
            faults
                .decide_request(Some("AssignPrivateIpAddresses"), &both, now)
                .outcome,
            refused
        );
        let good = values(&["eni-1", "10.0.8.5"]);
        assert_eq!(
            faults
                .decide_request(Some("AssignPrivateIpAddresses"), &good, now)
                .outcome,
            Outcome::Forward
        );
        let other = values(&["10.0.8.9"]);
        assert_eq!(
            faults
                .decide_request(Some("UnassignPrivateIpAddresses"), &other, now)
                .outcome,
            Outcome::Forward
        );
    }
}
