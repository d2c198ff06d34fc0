//! Setting status conditions so that a status write only happens, and lastTransitionTime only
//! moves, when something really changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::condition as cond;

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

/// The False state of a condition that says something is wrong (NoCandidates, Conflict,
/// InvalidSpec, CloudError, BackingOff, HeldInDoubt, AttachFailed): what it reads once the
/// trouble is over, or before there was any. Conditions are set to this, never removed.
pub fn resolved(type_: &'static str) -> Desired {
    let (reason, message) = match type_ {
        cond::NO_CANDIDATES => ("NotStuck", "no placement waits for a fit node"),
        cond::CONFLICT => (
            "NoConflict",
            "no older FloatingIP and no foreign association claims what this one names",
        ),
        cond::INVALID_SPEC => ("SpecValid", "the spec passed validation"),
        cond::CLOUD_ERROR => ("NoError", "no EC2 call for this FloatingIP is failing"),
        cond::BACKING_OFF => ("NotBackingOff", "no EC2 refusal holds this FloatingIP back"),
        cond::HELD_IN_DOUBT => (
            "NotInDoubt",
            "the controller is not holding the address against its checks",
        ),
        cond::ATTACH_FAILED => (
            "NoAttachFailure",
            "no floatip attach reports a subnet it could not prepare for this FloatingIP",
        ),
        _ => return initial(type_),
    };
    Desired::new(type_, false, reason, message)
}

/// A condition nothing has been said about yet, as the first status write carries it:
/// Unknown for Ready, Assigned and Healthy (floatip cannot tell yet), [`resolved`] for the
/// others.
pub fn initial(type_: &'static str) -> Desired {
    match type_ {
        cond::READY => Desired::unknown(type_, "Pending", "the address is not placed yet"),
        cond::ASSIGNED => Desired::unknown(
            type_,
            "Pending",
            "EC2 has not been read for this address yet",
        ),
        cond::HEALTHY => not_checked(),
        t if cond::ALL.contains(&t) => resolved(t),
        t => Desired::unknown(t, "Pending", ""),
    }
}

/// Healthy when the address itself is not probed.
pub fn not_checked() -> Desired {
    Desired::unknown(
        cond::HEALTHY,
        "NotChecked",
        "the address itself is not probed: the FloatingIP has no spec.healthCheck, or no holder to probe it through",
    )
}

/// Adds every condition type floatip uses that `conditions` lacks ([`initial`]) and puts them
/// in [`cond::ALL`]'s order (types of a newer version after them, as they were). Returns
/// whether anything changed.
pub fn complete(conditions: &mut Vec<Condition>, generation: Option<i64>, now: &Time) -> bool {
    let mut changed = false;
    for type_ in cond::ALL {
        if !conditions.iter().any(|c| c.type_ == type_) {
            changed |= set(conditions, &initial(type_), generation, now);
        }
    }
    let rank = |c: &Condition| {
        (cond::ALL.iter())
            .position(|t| *t == c.type_)
            .unwrap_or(cond::ALL.len())
    };
    if !conditions.is_sorted_by_key(rank) {
        conditions.sort_by_key(rank);
        changed = true;
    }
    changed
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
    }

    #[test]
    fn complete_adds_every_type_once_in_order_and_keeps_what_is_there() {
        let mut cs = Vec::new();
        let stuck = Desired::new(cond::NO_CANDIDATES, true, "NoCandidates", "no node");
        set(&mut cs, &stuck, Some(1), &t(0));
        let foreign = Desired::new("Zoned", true, "FromANewerVersion", "");
        set(&mut cs, &foreign, Some(1), &t(0));
        assert!(complete(&mut cs, Some(2), &t(5)));
        let got: Vec<(&str, &str, &str)> = (cs.iter())
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("Ready", "Unknown", "Pending"),
                ("Assigned", "Unknown", "Pending"),
                ("Healthy", "Unknown", "NotChecked"),
                ("NoCandidates", "True", "NoCandidates"),
                ("Conflict", "False", "NoConflict"),
                ("InvalidSpec", "False", "SpecValid"),
                ("CloudError", "False", "NoError"),
                ("BackingOff", "False", "NotBackingOff"),
                ("HeldInDoubt", "False", "NotInDoubt"),
                ("AttachFailed", "False", "NoAttachFailure"),
                ("Zoned", "True", "FromANewerVersion"),
            ]
        );
        // What was there keeps its time and generation; what was added is new.
        let stuck = &cs[3];
        assert_eq!(
            (
                stuck.last_transition_time.clone(),
                stuck.observed_generation
            ),
            (t(0), Some(1))
        );
        assert!(cs
            .iter()
            .all(|c| !c.reason.is_empty() && c.observed_generation.is_some()));
        assert!(!complete(&mut cs, Some(2), &t(9)), "complete already");
    }

    #[test]
    fn resolving_is_a_transition_to_false_not_a_removal() {
        let mut cs = Vec::new();
        let error = Desired::new(cond::CLOUD_ERROR, true, "RequestLimitExceeded", "slow down");
        set(&mut cs, &error, Some(1), &t(0));
        assert!(set(&mut cs, &resolved(cond::CLOUD_ERROR), Some(1), &t(7)));
        assert_eq!(
            (
                cs[0].status.as_str(),
                cs[0].reason.as_str(),
                cs[0].last_transition_time.clone()
            ),
            ("False", "NoError", t(7))
        );
        assert!(!set(&mut cs, &resolved(cond::CLOUD_ERROR), Some(1), &t(9)));
        assert_eq!(cs[0].last_transition_time, t(7));
        for type_ in cond::ALL {
            let r = resolved(type_);
            let positive = [cond::READY, cond::ASSIGNED, cond::HEALTHY].contains(&type_);
            assert_eq!(
                r.status,
                if positive { "Unknown" } else { "False" },
                "{type_}"
            );
        }
    }
}
