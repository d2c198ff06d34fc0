//! Kubernetes Events for what the controller did. One Event per move: kube's Recorder folds
//! repeats into a series that keeps the first note, and every move's from/to must stay visible.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use crate::api::{condition as cond, FloatingIP, FloatingIPStatus};

/// Where the Events of the (cluster-scoped) FloatingIPs go, for a controller running in
/// `controller_namespace`: `kube-system` when it runs there, `default` otherwise.
///
/// Not simply the controller's own namespace: the API server refuses an Event that has an
/// eventTime (every events.k8s.io/v1 Event) and is about an object without a namespace unless
/// the Event is in `default` or `kube-system` (legacyValidateEvent in
/// pkg/apis/core/validation/events.go: "does not match event.namespace"). `kubectl describe
/// fip` and `kubectl events` look for them in `default` either way, as for Nodes.
pub fn namespace_for(controller_namespace: &str) -> &'static str {
    if controller_namespace == "kube-system" {
        "kube-system"
    } else {
        "default"
    }
}

pub struct Events {
    api: Api<Event>,
    namespace: &'static str,
    instance: String,
}

impl Events {
    /// Events reported by `instance` (the pod name) of a controller in `controller_namespace`.
    pub fn new(client: kube::Client, instance: &str, controller_namespace: &str) -> Self {
        let namespace = namespace_for(controller_namespace);
        Self {
            api: Api::namespaced(client, namespace),
            namespace,
            instance: instance.to_string(),
        }
    }

    /// Publishes a Normal event about `fip`.
    pub async fn normal(
        &self,
        fip: &FloatingIP,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        self.publish(fip, "Normal", reason, action, note).await
    }

    /// Publishes a Warning event about `fip`: something a person should look at.
    pub async fn warning(
        &self,
        fip: &FloatingIP,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        self.publish(fip, "Warning", reason, action, note).await
    }

    /// Publishes the Warning Events [`warnings`] finds between the status a FloatingIP had and
    /// the one just written. Best effort, as every Event: the status says it either way.
    pub async fn warn_on_change(
        &self,
        fip: &FloatingIP,
        old: &FloatingIPStatus,
        new: &FloatingIPStatus,
    ) {
        for w in warnings(&fip.spec.address, old, new) {
            tracing::warn!(floatingip = %fip.name_any(), reason = w.reason, "{}", w.note);
            if let Err(e) = self.warning(fip, w.reason, w.action, w.note).await {
                tracing::warn!(error = %e, reason = w.reason, "could not publish the Warning event");
            }
        }
    }

    async fn publish(
        &self,
        fip: &FloatingIP,
        type_: &str,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", fip.name_any())),
                namespace: Some(self.namespace.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(jiff::Timestamp::now())),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note),
            regarding: Some(fip.object_ref(&())),
            reporting_controller: Some("floatip.io/controller".into()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        self.api
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}

/// A Warning Event a status change calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The condition type: CloudError, NoCandidates or Conflict.
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// The most an events.k8s.io/v1 note may hold (the API server refuses longer ones).
const NOTE_LIMIT: usize = 1024;

/// The Warning Events between two statuses of the FloatingIP of `address`: one when
/// CloudError, NoCandidates or Conflict turns True, and again while it stays True only when
/// its reason changes (another AWS error code, another kind of conflict) or, for NoCandidates
/// and Conflict, its message does (the nodes' reasons, the other claimant). Nothing for a pass
/// that only repeats what status says, so a stuck address is one Event, not one per pass. A
/// CloudError's message alone is no news: AWS messages can carry per-request detail (an
/// UnauthorizedOperation's encoded authorization message), which would make every failed
/// pass an Event.
///
/// Derived from status, so a new leader does not repeat its predecessor's Events, and a status
/// write that failed (409) is warned about by the pass that writes it.
pub fn warnings(address: &str, old: &FloatingIPStatus, new: &FloatingIPStatus) -> Vec<Warning> {
    let watched = [
        (cond::CLOUD_ERROR, "CallEC2", false),
        (cond::NO_CANDIDATES, "Place", true),
        (cond::CONFLICT, "Place", true),
    ];
    fn find<'a>(s: &'a FloatingIPStatus, t: &str) -> Option<&'a Condition> {
        (s.conditions.iter()).find(|c| c.type_ == t && c.status == "True")
    }
    let mut out = Vec::new();
    for (reason, action, message_is_news) in watched {
        let Some(now) = find(new, reason) else {
            continue;
        };
        let news = match find(old, reason) {
            None => true,
            Some(was) => {
                was.reason != now.reason || (message_is_news && was.message != now.message)
            }
        };
        if !news {
            continue;
        }
        let note = match reason {
            cond::NO_CANDIDATES => {
                let stays = match &new.holder {
                    Some(h) => format!("stays on {}", h.node),
                    None => "stays unassigned".to_string(),
                };
                format!("{}; {address} {stays} until a node qualifies", now.message)
            }
            _ => now.message.clone(),
        };
        out.push(Warning {
            reason,
            action,
            note: truncate(note, NOTE_LIMIT),
        });
    }
    out
}

/// `s` cut to at most `limit` bytes, on a character boundary, marked as cut.
fn truncate(mut s: String, limit: usize) -> String {
    if s.len() <= limit {
        return s;
    }
    let mark = "…";
    let mut end = limit - mark.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(mark);
    s
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
