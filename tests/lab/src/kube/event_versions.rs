//! core/v1 Events and events.k8s.io/v1 Events are one resource, as in the API server: one
//! store, holding the core/v1 form, and each version a view converted on the way in and out
//! (Convert_v1_Event_To_core_Event and back, pkg/apis/events/v1/conversion.go). An Event the
//! controller writes as events.k8s.io/v1 is what `kubectl describe` and `kubectl get events`
//! list as core/v1.

use serde_json::{json, Value};

use super::resources::ResourceType;

/// The fields the two versions name differently: (core/v1, events.k8s.io/v1). The rest
/// (eventTime, series, action, reason, type, related, reportingInstance) are the same.
const RENAMED: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Whether `rt` is the events.k8s.io view of the stored core/v1 Events.
pub fn is_events_k8s_io(rt: &ResourceType) -> bool {
    !rt.custom && rt.group == "events.k8s.io" && rt.kind == "Event"
}

/// Whether `rt` is either version of Event.
pub fn is_event(rt: &ResourceType) -> bool {
    !rt.custom && rt.kind == "Event" && (rt.group.is_empty() || is_events_k8s_io(rt))
}

/// A body written at `rt`'s version, in the form the store holds.
pub fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    if !is_event(rt) {
        return obj;
    }
    let mut obj = if is_events_k8s_io(rt) {
        rename(obj, RENAMED.iter().map(|&(core, v1)| (v1, core)))
    } else {
        obj
    };
    if let Some(map) = obj.as_object_mut() {
        // Stored as core/v1 whichever version wrote it, so that the same Event written through
        // the other version is no change.
        map.insert("apiVersion".into(), json!("v1"));
        // Not optional in core/v1 (the API server always has one, empty or not).
        map.entry("involvedObject").or_insert_with(|| json!({}));
    }
    obj
}

/// A stored object as served at `rt`'s version.
pub fn from_storage(rt: &ResourceType, obj: Value) -> Value {
    if is_events_k8s_io(rt) {
        rename(obj, RENAMED.iter().copied())
    } else {
        obj
    }
}

/// Moves each `from` field to its `to` name. A `to` field the body already had is dropped:
/// in the version written it is not a field at all, so the API server would not keep it.
fn rename<'a>(obj: Value, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let Value::Object(mut map) = obj else {
        return obj;
    };
    let moved: Vec<(&str, Option<Value>)> =
        pairs.map(|(from, to)| (to, map.remove(from))).collect();
    for (to, value) in moved {
        map.remove(to);
        if let Some(v) = value {
            map.insert(to.to_string(), v);
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::resources::Registry;

    #[test]
    fn each_version_round_trips_through_the_store() {
        let reg = Registry::with_builtins();
        let core = reg.get("", "v1", "events").unwrap();
        let v1 = reg.get("events.k8s.io", "v1", "events").unwrap();
        let written = json!({"regarding": {"kind": "FloatingIP", "name": "web"}, "note": "moved",
                             "reportingController": "floatip.io/controller", "reason": "Moved",
                             "deprecatedCount": 2, "message": "not an events.k8s.io field"});
        let stored = to_storage(&v1, written.clone());
        assert_eq!(
            stored,
            json!({"apiVersion": "v1",
                   "involvedObject": {"kind": "FloatingIP", "name": "web"}, "message": "moved",
                   "reportingComponent": "floatip.io/controller", "reason": "Moved", "count": 2})
        );
        assert_eq!(from_storage(&core, stored.clone()), stored);
        let mut back = written;
        back.as_object_mut().unwrap().remove("message");
        back["apiVersion"] = json!("v1");
        assert_eq!(from_storage(&v1, stored), back);
        assert_eq!(core.storage_key(), v1.storage_key());
    }

    #[test]
    fn a_core_event_always_has_an_involved_object() {
        let reg = Registry::with_builtins();
        let core = reg.get("", "v1", "events").unwrap();
        let stored = to_storage(&core, json!({"reason": "Moved"}));
        assert_eq!(stored["involvedObject"], json!({}));
    }
}
