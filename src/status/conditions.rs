//! Setting status conditions so that a status write only happens, and lastTransitionTime only
//! moves, when something really changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The desired state of one condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    /// "True", "False" or "Unknown".
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: status_str(status),
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    /// A condition whose state floatip cannot tell yet.
    pub fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "Unknown",
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Applies `desired` to `conditions`: lastTransitionTime changes only when the status does;
/// reason, message and observedGeneration are refreshed. Returns whether anything changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    desired: &Desired,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = desired.status;
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(c) => {
            let before = c.clone();
            if c.status != status {
                c.status = status.to_string();
                c.last_transition_time = now.clone();
            }
            c.reason = desired.reason.clone();
            c.message = desired.message.clone();
            c.observed_generation = generation;
            *c != before
        }
        None => {
            conditions.push(Condition {
                type_: desired.type_.to_string(),
                status: status.to_string(),
                reason: desired.reason.clone(),
                message: desired.message.clone(),
                observed_generation: generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// Removes a condition type; returns whether it was there.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + s).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut cs = Vec::new();
        assert!(set(
            &mut cs,
            &Desired::new("Ready", false, "Pending", "waiting"),
            Some(1),
            &t(0)
        ));
        assert_eq!(cs[0].last_transition_time, t(0));
        // Same status, new message: changed, but the transition time stays.
        assert!(set(
            &mut cs,
            &Desired::new("Ready", false, "NoCandidates", "no node"),
            Some(1),
            &t(5)
        ));
        assert_eq!(
            (cs[0].reason.as_str(), cs[0].last_transition_time.clone()),
            ("NoCandidates", t(0))
        );
        // Nothing new: no change, so no status write.
        assert!(!set(
            &mut cs,
            &Desired::new("Ready", false, "NoCandidates", "no node"),
            Some(1),
            &t(9)
        ));
        assert!(set(
            &mut cs,
            &Desired::new("Ready", true, "Assigned", "held by n1"),
            Some(1),
            &t(10)
        ));
        assert_eq!(
            (cs[0].status.as_str(), cs[0].last_transition_time.clone()),
            ("True", t(10))
        );
        assert!(is_true(&cs, "Ready"));
        assert!(
            set(
                &mut cs,
                &Desired::new("Ready", true, "Assigned", "held by n1"),
                Some(2),
                &t(11)
            ),
            "generation is news"
        );
        assert!(remove(&mut cs, "Ready"));
        assert!(!remove(&mut cs, "Ready"));
    }
}
