//! The status table: one row per kind of observation, from an old status written at t(0) to
//! the status at t(10).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::{condition as cond, FloatingIPStatus, MoveReason, PendingMove};
use crate::cloud::{CloudError, ErrorKind};
use crate::status::{record_arrival, Attaching};

fn t(s: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_800_000_000 + s).unwrap())
}

fn seat(node: &str) -> Seat {
    Seat {
        node: node.into(),
        instance_id: format!("i-{node}"),
        eni: format!("eni-{node}"),
        mac: None,
        private_ip: None,
    }
}

/// Held by n1 since t(0), Ready and Assigned True, a claim to n2 pending, generation 1.
fn held_by_n1() -> FloatingIPStatus {
    let mut s = FloatingIPStatus::default();
    let steady = Observed::Steady(Box::new(steady(Some("n1"))));
    s = next(&s, Some(1), &steady, &t(0)).unwrap();
    s.pending_move = Some(pending("n2", t(0)));
    s
}

fn pending(to: &str, since: Time) -> PendingMove {
    PendingMove {
        from: Some("n1".into()),
        to: to.into(),
        reason: MoveReason::HolderUnhealthy,
        since,
    }
}

fn steady(node: Option<&str>) -> Steady {
    let ready = match node {
        Some(n) => Desired::new(cond::READY, true, "Assigned", format!("held by {n}")),
        None => Desired::new(cond::READY, false, "NoCandidates", "no node is fit"),
    };
    Steady {
        address: "10.0.8.100".parse().unwrap(),
        holder: node.map(seat),
        ready,
        no_candidates: node.is_none().then(|| "no node is fit".to_string()),
        healthy: None,
        held_in_doubt: None,
        keep_claim: false,
        public: None,
    }
}

fn error(action: &'static str) -> CloudError {
    CloudError {
        action,
        code: "UnauthorizedOperation".into(),
        message: "no".into(),
        kind: ErrorKind::Permanent,
    }
}

/// What a row expects of the new status; None in `after` means no write is due.
struct Want {
    /// (type, status, reason) of every condition, in order.
    conditions: Vec<(&'static str, &'static str, &'static str)>,
    holder: Option<&'static str>,
    /// The holder's `since` is t(10) rather than t(0).
    holder_since_now: bool,
    pending_to: Option<&'static str>,
    last_move_to: Option<&'static str>,
    move_count: i64,
    /// Condition types whose lastTransitionTime is t(10).
    moved: Vec<&'static str>,
    generation: Option<i64>,
}

fn check(row: &str, old: &FloatingIPStatus, observed: Observed<'_>, g: i64, want: Option<Want>) {
    let after = next(old, Some(g), &observed, &t(10));
    let Some(want) = want else {
        assert_eq!(after, None, "{row}: no write expected");
        return;
    };
    let s = after.unwrap_or_else(|| panic!("{row}: a write expected"));
    let got: Vec<_> = s
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(got, want.conditions, "{row}: conditions");
    assert_eq!(
        s.holder.as_ref().map(|h| h.node.as_str()),
        want.holder,
        "{row}: holder"
    );
    let since_now = s.holder.as_ref().is_some_and(|h| h.since == t(10));
    assert_eq!(since_now, want.holder_since_now, "{row}: holder.since");
    let pending = s.pending_move.as_ref().map(|p| p.to.as_str());
    assert_eq!(pending, want.pending_to, "{row}: pendingMove");
    let last = s.last_move.as_ref().map(|m| m.to.as_str());
    assert_eq!(last, want.last_move_to, "{row}: lastMove");
    assert_eq!(s.move_count, want.move_count, "{row}: moveCount");
    let moved: Vec<_> = s
        .conditions
        .iter()
        .filter(|c| c.last_transition_time == t(10))
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(moved, want.moved, "{row}: lastTransitionTime");
    assert_eq!(
        s.observed_generation, want.generation,
        "{row}: observedGeneration"
    );
}

const ASSIGNED: (&str, &str, &str) = (cond::ASSIGNED, "True", "Assigned");
const READY: (&str, &str, &str) = (cond::READY, "True", "Assigned");

/// Every type a first status write carries, as nothing has set it yet.
const FIRST: [(&str, &str, &str); 10] = [
    (cond::READY, "Unknown", "Pending"),
    (cond::ASSIGNED, "Unknown", "Pending"),
    (cond::HEALTHY, "Unknown", "NotChecked"),
    (cond::NO_CANDIDATES, "False", "NotStuck"),
    (cond::CONFLICT, "False", "NoConflict"),
    (cond::INVALID_SPEC, "False", "SpecValid"),
    (cond::CLOUD_ERROR, "False", "NoError"),
    (cond::BACKING_OFF, "False", "NotBackingOff"),
    (cond::HELD_IN_DOUBT, "False", "NotInDoubt"),
    (cond::ATTACH_FAILED, "False", "NoAttachFailure"),
];

/// Every condition type, in status order: `set` where it names the type, [`FIRST`] elsewhere.
/// Nothing is ever left out: a condition that no longer applies reads False or Unknown.
fn all(
    set: &[(&'static str, &'static str, &'static str)],
) -> Vec<(&'static str, &'static str, &'static str)> {
    FIRST
        .iter()
        .map(|f| *set.iter().find(|c| c.0 == f.0).unwrap_or(f))
        .collect()
}

/// What the rows start from: [`held_by_n1`] unchanged.
fn base() -> Want {
    Want {
        conditions: all(&[ASSIGNED, READY]),
        holder: Some("n1"),
        holder_since_now: false,
        pending_to: Some("n2"),
        last_move_to: None,
        move_count: 0,
        moved: vec![],
        generation: Some(1),
    }
}

/// Steady: EC2 mirrored, the claim kept only while a move waits.
#[test]
fn table_steady() {
    let old = held_by_n1();
    // Steady, nothing new but the claim: the claim goes, nothing else moves.
    let same = Want {
        pending_to: None,
        ..base()
    };
    check(
        "steady, claim dropped",
        &old,
        Observed::Steady(Box::new(steady(Some("n1")))),
        1,
        Some(same),
    );
    // Steady while a held move waits: the claim stays and nothing is written.
    let held = Steady {
        keep_claim: true,
        ..steady(Some("n1"))
    };
    check(
        "steady, claim kept",
        &old,
        Observed::Steady(Box::new(held.clone())),
        1,
        None,
    );
    // ...unless the spec changed: observedGeneration is news.
    let newer = Want {
        generation: Some(2),
        ..base()
    };
    check(
        "steady, new generation",
        &old,
        Observed::Steady(Box::new(held)),
        2,
        Some(newer),
    );
    // EC2 shows another holder: a new holder since now, Ready and Assigned keep their time.
    let moved_out = Want {
        holder: Some("n2"),
        holder_since_now: true,
        pending_to: None,
        ..base()
    };
    let mut on_n2 = steady(Some("n2"));
    on_n2.ready.message = "held by n2".into();
    check(
        "steady, holder changed outside",
        &old,
        Observed::Steady(Box::new(on_n2)),
        1,
        Some(moved_out),
    );
}

/// Steady with nothing to move to, or a move held in doubt: the conditions that say why.
#[test]
fn table_steady_why_nothing_moved() {
    let old = held_by_n1();
    // Nobody holds it and no node is fit: Assigned, Ready flip; NoCandidates appears.
    let stuck = Want {
        conditions: all(&[
            (cond::ASSIGNED, "False", "NotAssigned"),
            (cond::READY, "False", "NoCandidates"),
            (cond::NO_CANDIDATES, "True", "NoCandidates"),
        ]),
        holder: None,
        pending_to: None,
        moved: vec![cond::READY, cond::ASSIGNED, cond::NO_CANDIDATES],
        ..base()
    };
    check(
        "steady, no candidates",
        &old,
        Observed::Steady(Box::new(steady(None))),
        1,
        Some(stuck),
    );
    // Held in doubt, with a health check: both conditions appear.
    let doubt = Steady {
        held_in_doubt: Some(crate::status::HeldBack {
            reason: "ControllerInDoubt",
            message: "most targets fail".into(),
        }),
        healthy: Some(Desired::new(cond::HEALTHY, false, "ProbeFailing", "fails")),
        ..steady(Some("n1"))
    };
    let in_doubt = Want {
        conditions: all(&[
            ASSIGNED,
            READY,
            (cond::HEALTHY, "False", "ProbeFailing"),
            (cond::HELD_IN_DOUBT, "True", "ControllerInDoubt"),
        ]),
        pending_to: None,
        moved: vec![cond::HEALTHY, cond::HELD_IN_DOUBT],
        ..base()
    };
    check(
        "steady, held in doubt",
        &old,
        Observed::Steady(Box::new(doubt)),
        1,
        Some(in_doubt),
    );
}

/// Arrived: holder, lastMove, moveCount; the claim settled.
#[test]
fn table_arrived() {
    let old = held_by_n1();
    let n2 = seat("n2");
    // Arrived on n2: holder, lastMove, moveCount; the claim goes; Ready stays True.
    let arrival = Arrival {
        address: "10.0.8.100",
        from: Some("n1".into()),
        to: &n2,
        reason: MoveReason::HolderUnhealthy,
        took: Duration::from_millis(80),
        unassigned_for: None,
        attaching: None,
    };
    let arrived = Want {
        holder: Some("n2"),
        holder_since_now: true,
        pending_to: None,
        last_move_to: Some("n2"),
        move_count: 1,
        ..base()
    };
    check(
        "arrived",
        &old,
        Observed::Arrived(arrival.clone()),
        1,
        Some(arrived),
    );
}

/// Not acted on: only the given conditions.
#[test]
fn table_not_acted_on() {
    let old = held_by_n1();
    // Not acted on: the given conditions, nothing else touched.
    let why = vec![
        Desired::new(cond::CONFLICT, true, "DuplicateAddress", "older one"),
        Desired::new(cond::READY, false, "Conflict", "another owns it"),
    ];
    let conflict = Want {
        conditions: all(&[
            ASSIGNED,
            (cond::READY, "False", "Conflict"),
            (cond::CONFLICT, "True", "DuplicateAddress"),
        ]),
        moved: vec![cond::READY, cond::CONFLICT],
        ..base()
    };
    check(
        "not acted on",
        &old,
        Observed::NotActedOn(why.clone()),
        1,
        Some(conflict),
    );
}

/// An EC2 call failed: CloudError, and what it makes unknown or not ready.
#[test]
fn table_cloud_failed() {
    let old = held_by_n1();
    let denied = error("AssignPrivateIpAddresses");
    let unread = error("DescribeNetworkInterfaces");
    // A refused assign while held: CloudError and the extra BackingOff; Ready stays (a holder).
    let backing = Desired::new(cond::BACKING_OFF, true, "UnauthorizedOperation", "later");
    let refused = Want {
        conditions: all(&[
            ASSIGNED,
            READY,
            (cond::BACKING_OFF, "True", "UnauthorizedOperation"),
            (cond::CLOUD_ERROR, "True", "UnauthorizedOperation"),
        ]),
        moved: vec![cond::CLOUD_ERROR, cond::BACKING_OFF],
        ..base()
    };
    let failed = Observed::CloudFailed {
        error: &denied,
        extra: vec![backing],
    };
    check("cloud failed, held", &old, failed, 1, Some(refused));
    // A failed read: Assigned becomes Unknown, naming where the address was last seen.
    let unknown = Want {
        conditions: all(&[
            (cond::ASSIGNED, "Unknown", "EC2Unreadable"),
            READY,
            (cond::CLOUD_ERROR, "True", "UnauthorizedOperation"),
        ]),
        moved: vec![cond::ASSIGNED, cond::CLOUD_ERROR],
        ..base()
    };
    let unreadable = Observed::CloudFailed {
        error: &unread,
        extra: vec![],
    };
    check(
        "cloud failed, unreadable",
        &old,
        unreadable,
        1,
        Some(unknown),
    );
    // Nobody holds the address: the error is why it is not Ready.
    let empty = FloatingIPStatus::default();
    let unheld = Want {
        conditions: all(&[
            (cond::CLOUD_ERROR, "True", "UnauthorizedOperation"),
            (cond::READY, "False", "CloudError"),
        ]),
        holder: None,
        pending_to: None,
        // A first write: every condition is new.
        moved: FIRST.iter().map(|c| c.0).collect(),
        ..base()
    };
    let failed = Observed::CloudFailed {
        error: &denied,
        extra: vec![],
    };
    check("cloud failed, unheld", &empty, failed, 1, Some(unheld));
}

/// A claim: pendingMove only.
#[test]
fn table_claimed() {
    let old = held_by_n1();
    // A claim to a new target is written without touching observedGeneration...
    let to_n3 = Want {
        pending_to: Some("n3"),
        generation: Some(1),
        ..base()
    };
    check(
        "claimed",
        &old,
        Observed::Claimed(pending("n3", t(10))),
        2,
        Some(to_n3),
    );
    // ...and the same claim again is no write.
    check(
        "claimed again",
        &old,
        Observed::Claimed(pending("n2", t(10))),
        1,
        None,
    );
}

/// `record_arrival` (used by `floatip attach`) is the Arrived row.
#[test]
fn record_arrival_is_the_arrived_row() {
    let old = held_by_n1();
    let n2 = seat("n2");
    let arrival = Arrival {
        address: "10.0.8.100",
        from: None,
        to: &n2,
        reason: MoveReason::Initial,
        took: Duration::ZERO,
        unassigned_for: None,
        attaching: None,
    };
    let mut recorded = old.clone();
    record_arrival(&mut recorded, &arrival, Some(3), &t(10));
    assert_eq!(
        Some(recorded),
        next(&old, Some(3), &Observed::Arrived(arrival), &t(10))
    );
}

/// The API conventions: trouble that is over turns False (its lastTransitionTime moving once)
/// rather than disappearing, and a status that already says so is not written again.
#[test]
fn resolved_conditions_turn_false_and_stay() {
    let mut old = held_by_n1();
    let troubled = Observed::CloudFailed {
        error: &error("AssignPrivateIpAddresses"),
        extra: vec![Desired::new(
            cond::HELD_IN_DOUBT,
            true,
            "AgentsDisagree",
            "n3 sees n1",
        )],
    };
    old = next(&old, Some(1), &troubled, &t(0)).unwrap();
    let calm = Want {
        pending_to: None,
        moved: vec![cond::CLOUD_ERROR, cond::HELD_IN_DOUBT],
        ..base()
    };
    check(
        "steady after trouble",
        &old,
        Observed::Steady(Box::new(steady(Some("n1")))),
        1,
        Some(calm),
    );
    let after = next(
        &old,
        Some(1),
        &Observed::Steady(Box::new(steady(Some("n1")))),
        &t(10),
    );
    let again = next(
        &after.unwrap(),
        Some(1),
        &Observed::Steady(Box::new(steady(Some("n1")))),
        &t(20),
    );
    assert_eq!(again, None, "nothing new: no write");
}

/// Whatever the first status write is (a claim, a refusal, an invalid spec), it carries every
/// condition type, each with the generation it was written for.
#[test]
fn the_first_status_write_carries_every_condition() {
    let empty = FloatingIPStatus::default();
    let denied = error("AssignPrivateIpAddresses");
    let invalid = vec![
        Desired::new(cond::INVALID_SPEC, true, "InvalidSpec", "bad"),
        Desired::new(cond::READY, false, "InvalidSpec", "see InvalidSpec"),
    ];
    let firsts = [
        ("claim", Observed::Claimed(pending("n2", t(10)))),
        (
            "cloud failed",
            Observed::CloudFailed {
                error: &denied,
                extra: vec![],
            },
        ),
        ("not acted on", Observed::NotActedOn(invalid)),
        ("steady", Observed::Steady(Box::new(steady(None)))),
    ];
    for (row, observed) in firsts {
        let s = next(&empty, Some(4), &observed, &t(10)).expect("a first write");
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, cond::ALL, "{row}");
        for c in &s.conditions {
            assert_eq!(c.observed_generation, Some(4), "{row}: {}", c.type_);
            assert_eq!(c.last_transition_time, t(10), "{row}: {}", c.type_);
            assert!(
                !c.reason.is_empty() && !c.message.is_empty(),
                "{row}: {}",
                c.type_
            );
        }
    }
}

/// A status from before every type was written gets the missing ones, and only once.
#[test]
fn an_older_status_is_completed_once() {
    let mut old = held_by_n1();
    old.conditions
        .retain(|c| c.type_ == cond::READY || c.type_ == cond::ASSIGNED);
    old.conditions.reverse();
    let held = Steady {
        keep_claim: true,
        ..steady(Some("n1"))
    };
    let s = next(
        &old,
        Some(1),
        &Observed::Steady(Box::new(held.clone())),
        &t(10),
    )
    .expect("the missing types are news");
    let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, cond::ALL);
    let ready = &s.conditions[0];
    assert_eq!(ready.last_transition_time, t(0), "Ready's own time is kept");
    assert_eq!(
        next(&s, Some(1), &Observed::Steady(Box::new(held)), &t(20)),
        None
    );
}

/// Each kind of EC2 failure says what a person can do about it; no credentials at all is not
/// an IAM policy problem nor an EC2 outage.
#[test]
fn what_to_do_names_the_fix_for_each_kind_of_failure() {
    let failed = |code: &str, kind| CloudError {
        action: "AssignPrivateIpAddresses",
        code: code.into(),
        message: String::new(),
        kind,
    };
    let said = |code, kind| what_to_do(&failed(code, kind));
    assert!(said("UnauthorizedOperation", ErrorKind::Permanent)
        .starts_with("allow ec2:AssignPrivateIpAddresses to the controller's IAM role"));
    assert!(said(crate::cloud::NO_CREDENTIALS, ErrorKind::Transient)
        .starts_with("the controller has no AWS credentials"));
    assert!(said("RequestLimitExceeded", ErrorKind::Throttled).starts_with("EC2 throttles"));
    assert!(said("ConnectionError", ErrorKind::Transient).starts_with("EC2 did not answer"));
}

/// Interface mode's phases, through one move and the next: the first placement attaches
/// (Attaching, then Attached once the read-back sees it); the next claim detaches
/// (Detaching), its arrival attaches with the detach's time, and the read-back ends it with
/// the attach's. A read-back of a FloatingIP that never attached an ENI changes nothing.
#[test]
fn interface_phases_follow_the_move_with_their_times() {
    use crate::api::AttachmentPhase as P;
    let phase = |s: &FloatingIPStatus| {
        let i = s.interface.as_ref().expect("interface status");
        (i.phase, i.since.clone(), i.detach_ms, i.attach_ms)
    };
    let n1 = seat("n1");
    let first = Arrival {
        address: "10.0.8.100",
        from: None,
        to: &n1,
        reason: MoveReason::Initial,
        took: Duration::from_millis(5),
        unassigned_for: None,
        attaching: Some(Attaching { detach_took: None }),
    };
    let s = FloatingIPStatus::default();
    let s = next(&s, Some(1), &Observed::Arrived(first), &t(1)).unwrap();
    assert_eq!(phase(&s), (P::Attaching, t(1), None, None));
    let took = |ms| Observed::Attached {
        attach_took: Duration::from_millis(ms),
    };
    let s = next(&s, Some(1), &took(4200), &t(6)).unwrap();
    assert_eq!(phase(&s), (P::Attached, t(6), None, Some(4200)));
    // Read back again: already Attached, nothing to write.
    assert_eq!(next(&s, Some(1), &took(10), &t(7)), None);

    let claim = Observed::Claimed(pending("n2", t(20)));
    let s = next(&s, Some(1), &claim, &t(20)).unwrap();
    assert_eq!(phase(&s), (P::Detaching, t(20), None, None));
    let n2 = seat("n2");
    let second = Arrival {
        address: "10.0.8.100",
        from: Some("n1".into()),
        to: &n2,
        reason: MoveReason::HolderUnhealthy,
        took: Duration::from_millis(9000),
        unassigned_for: None,
        attaching: Some(Attaching {
            detach_took: Some(Duration::from_millis(8500)),
        }),
    };
    let s = next(&s, Some(1), &Observed::Arrived(second), &t(29)).unwrap();
    assert_eq!(phase(&s), (P::Attaching, t(29), Some(8500), None));
    let s = next(&s, Some(1), &took(5100), &t(34)).unwrap();
    assert_eq!(phase(&s), (P::Attached, t(34), Some(8500), Some(5100)));

    // Another mode: no interface status, before or after.
    let other = held_by_n1();
    assert_eq!(next(&other, Some(1), &took(10), &t(40)), None);
    let claimed = next(
        &other,
        Some(1),
        &Observed::Claimed(pending("n3", t(41))),
        &t(41),
    );
    assert_eq!(claimed.unwrap().interface, None);
}
