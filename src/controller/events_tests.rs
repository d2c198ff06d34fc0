//! Which status changes are Warning Events: transitions, not passes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::Holder;
use crate::status::conditions::{self, Desired};

fn t(s: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_800_000_000 + s).unwrap())
}

/// A status with `set` applied over a complete set of conditions, held by `holder`.
fn status(holder: Option<&str>, set: &[Desired]) -> FloatingIPStatus {
    let mut s = FloatingIPStatus::default();
    conditions::complete(&mut s.conditions, Some(1), &t(0));
    for d in set {
        conditions::set(&mut s.conditions, d, Some(1), &t(1));
    }
    s.holder = holder.map(|node| Holder {
        node: node.into(),
        instance_id: format!("i-{node}"),
        network_interface_id: None,
        mac_address: None,
        private_address: None,
        since: t(0),
    });
    s
}

fn cloud_error(code: &str, message: &str) -> Desired {
    Desired::new(cond::CLOUD_ERROR, true, code, message)
}

fn stuck(why: &str) -> Desired {
    Desired::new(cond::NO_CANDIDATES, true, "NoCandidates", why)
}

fn reasons(w: &[Warning]) -> Vec<&str> {
    w.iter().map(|w| w.reason).collect()
}

const DENIED: &str = "EC2 AssignPrivateIpAddresses failed: UnauthorizedOperation: You are not authorized to perform this operation. Encoded authorization failure message: AbC1; allow ec2:AssignPrivateIpAddresses to the controller's IAM role (deploy/iam-policy-controller.json)";

#[test]
fn a_cloud_error_is_one_event_per_transition_not_per_pass() {
    let calm = status(Some("n1"), &[]);
    let denied = status(Some("n1"), &[cloud_error("UnauthorizedOperation", DENIED)]);
    let w = warnings("10.0.8.100", &calm, &denied);
    assert_eq!(
        w,
        [Warning {
            reason: "CloudError",
            action: "CallEC2",
            note: DENIED.into()
        }]
    );
    // The next pass fails the same way: no Event, even when AWS words it differently.
    assert_eq!(warnings("10.0.8.100", &denied, &denied), []);
    let reworded = DENIED.replace("AbC1", "XyZ2");
    let again = status(
        Some("n1"),
        &[cloud_error("UnauthorizedOperation", &reworded)],
    );
    assert_eq!(warnings("10.0.8.100", &denied, &again), []);
    // Another error code is news.
    let throttled = status(
        Some("n1"),
        &[cloud_error("RequestLimitExceeded", "slow down")],
    );
    assert_eq!(
        reasons(&warnings("10.0.8.100", &again, &throttled)),
        ["CloudError"]
    );
    // Resolved, then failing again: a new transition, a new Event.
    let resolved = conditions::resolved(cond::CLOUD_ERROR);
    let ok = status(Some("n1"), &[resolved]);
    assert_eq!(warnings("10.0.8.100", &throttled, &ok), []);
    assert_eq!(
        reasons(&warnings("10.0.8.100", &ok, &throttled)),
        ["CloudError"]
    );
}

#[test]
fn no_candidates_says_why_and_where_the_address_stays() {
    let why = "no node is fit to hold the address (n2: the node is cordoned; n3: no floatip agent is ready on the node)";
    let before = status(Some("n1"), &[]);
    let after = status(Some("n1"), &[stuck(why)]);
    let w = warnings("10.0.8.100", &before, &after);
    assert_eq!(reasons(&w), ["NoCandidates"]);
    assert_eq!(w[0].action, "Place");
    assert_eq!(
        w[0].note,
        format!("{why}; 10.0.8.100 stays on n1 until a node qualifies")
    );
    assert_eq!(warnings("10.0.8.100", &after, &after), []);
    // Another reason no node qualifies is worth a new Event.
    let other = "no node is fit to hold the address: spec.nodeSelector selects none of the 3 nodes";
    let unheld = status(None, &[stuck(other)]);
    let w = warnings("10.0.8.100", &after, &unheld);
    assert_eq!(
        w[0].note,
        format!("{other}; 10.0.8.100 stays unassigned until a node qualifies")
    );
}

#[test]
fn a_conflict_names_the_other_claimant_once() {
    let msg = "FloatingIP web is older and claims the same address 10.0.8.100; this one is not acted on until web is deleted or this one's spec.address changes";
    let conflict = Desired::new(cond::CONFLICT, true, "DuplicateAddress", msg);
    let before = status(None, &[]);
    let after = status(None, &[conflict]);
    let w = warnings("10.0.8.100", &before, &after);
    assert_eq!(
        w,
        [Warning {
            reason: "Conflict",
            action: "Place",
            note: msg.into()
        }]
    );
    assert_eq!(warnings("10.0.8.100", &after, &after), []);
    // A status written before the conflict existed (no conditions at all) is a transition too.
    assert_eq!(
        reasons(&warnings(
            "10.0.8.100",
            &FloatingIPStatus::default(),
            &after
        )),
        ["Conflict"]
    );
}

#[test]
fn other_conditions_and_false_ones_are_no_warning() {
    let before = FloatingIPStatus::default();
    let after = status(
        Some("n1"),
        &[
            Desired::new(cond::READY, false, "HolderUnhealthy", "n1 fails"),
            Desired::new(cond::HELD_IN_DOUBT, true, "ControllerInDoubt", "most fail"),
        ],
    );
    assert_eq!(warnings("10.0.8.100", &before, &after), []);
}

#[test]
fn a_long_note_is_cut_to_what_the_api_server_accepts() {
    let long = "é".repeat(700);
    let before = status(None, &[]);
    let after = status(None, &[cloud_error("InvalidParameterValue", &long)]);
    let note = &warnings("10.0.8.100", &before, &after)[0].note;
    assert!(note.len() <= NOTE_LIMIT, "{}", note.len());
    assert!(note.ends_with('…'));
}

/// The API server takes Events about cluster-scoped objects only in default or kube-system.
#[test]
fn events_go_to_kube_system_only_from_kube_system() {
    assert_eq!(namespace_for("kube-system"), "kube-system");
    assert_eq!(namespace_for("floatip-system"), "default");
    assert_eq!(namespace_for("default"), "default");
}
