//! Where an Event about an object may be stored, as the API server checks it
//! (legacyValidateEvent, pkg/apis/core/validation/events.go), for core/v1 and events.k8s.io/v1
//! Events alike (the regarding object is `involvedObject` in one, `regarding` in the other):
//!
//! | eventTime | object's namespace | the Event's namespace must be |
//! |-----------|--------------------|-------------------------------|
//! | unset     | none               | `default`                     |
//! | unset     | ns                 | ns                            |
//! | set       | none               | `default` or `kube-system`    |
//! | set       | ns                 | anything                      |
//!
//! floatip writes events.k8s.io/v1 Events (eventTime set) about cluster-scoped FloatingIPs,
//! so only `default` and `kube-system` take them.

use serde_json::Value;

use super::errors::ApiError;
use super::resources::ResourceType;
use super::schema::{invalid_status, FieldError};

/// Err (422 Invalid, the API server's message) when `obj`, an Event to be stored in
/// `namespace` as `name`, breaks the rule; Ok for every other kind.
pub fn check(rt: &ResourceType, namespace: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
    let regarding = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Event") => &obj["involvedObject"],
        ("events.k8s.io", "Event") => &obj["regarding"],
        _ => return Ok(()),
    };
    let object_ns = regarding["namespace"].as_str().unwrap_or_default();
    let event_time = obj
        .get("eventTime")
        .is_some_and(|t| !t.is_null() && t.as_str() != Some(""));
    let allowed = match (event_time, object_ns) {
        (false, "") => namespace == "default",
        (false, ns) => namespace == ns,
        (true, "") => namespace == "default" || namespace == "kube-system",
        (true, _) => true,
    };
    if allowed {
        return Ok(());
    }
    let error = FieldError {
        field: "involvedObject.namespace".into(),
        reason: "FieldValueInvalid",
        message: format!(
            "Invalid value: {}: does not match event.namespace",
            Value::from(object_ns)
        ),
    };
    let status = invalid_status(&rt.group, &rt.kind, name, &[error]);
    Err(ApiError {
        code: 422,
        reason: "Invalid",
        message: status["message"].as_str().unwrap_or_default().to_string(),
        details: Some(status["details"].clone()),
    })
}
