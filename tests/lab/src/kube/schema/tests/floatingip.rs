//! The FloatingIP CRD end to end: defaults, pruning, structural errors, formatting.

use serde_json::json;

use super::*;
use crate::kube::schema::{format_invalid, format_strict, invalid_status};

#[test]
fn valid_object_passes_and_gets_defaults() {
    let stored = admitted(&fip_schema(), fip(valid_spec()));
    assert_eq!(
        stored,
        json!({
            "apiVersion": "floatip.io/v1alpha1",
            "kind": "FloatingIP",
            "metadata": {"name": "web", "uid": "u-1", "labels": {"team": "net"}},
            "spec": {
                "address": "10.0.8.100",
                "subnetId": "subnet-0a1b2c3d",
                "mode": "SecondaryIP",
                "failback": "Never",
                "failover": {"minHoldSeconds": 30},
            },
        })
    );
}

#[test]
fn health_check_defaults_only_when_present() {
    let mut spec = valid_spec();
    spec["healthCheck"] = json!({"port": 30080});
    spec["failover"] = json!({});
    let stored = admitted(&fip_schema(), fip(spec));
    assert_eq!(
        stored["spec"]["healthCheck"],
        json!({"port": 30080, "intervalMs": 100, "failureThreshold": 3, "successThreshold": 2, "protocol": "TCP"})
    );
    assert_eq!(stored["spec"]["failover"], json!({"minHoldSeconds": 30}));

    let mut spec = valid_spec();
    spec["failover"] = json!({"minHoldSeconds": 5});
    spec["healthCheck"] =
        json!({"port": 53, "protocol": "UDP", "timeoutMs": 100, "udp": {"payloadBase64": "AAE="}});
    let stored = admitted(&fip_schema(), fip(spec));
    assert_eq!(stored["spec"]["failover"], json!({"minHoldSeconds": 5}));
    assert_eq!(
        stored["spec"]["healthCheck"]["udp"],
        json!({"payloadBase64": "AAE=", "replyRequired": false})
    );
}

#[test]
fn status_defaults_and_nulls() {
    let mut obj = fip(valid_spec());
    obj["status"] = json!({"holder": null, "conditions": null});
    let stored = admitted(&fip_schema(), obj);
    // holder is nullable and stays null; conditions is not, has no default, and goes.
    assert_eq!(stored["status"], json!({"holder": null, "moveCount": 0}));

    // A null where a default exists takes the default.
    let mut spec = valid_spec();
    spec["mode"] = json!(null);
    spec["preferredNodes"] = json!(null);
    let stored = admitted(&fip_schema(), fip(spec));
    assert_eq!(stored["spec"]["mode"], json!("SecondaryIP"));
    assert!(stored["spec"].get("preferredNodes").is_none());
}

fn with_unknown_fields() -> serde_json::Value {
    let mut spec = valid_spec();
    spec["foo"] = json!("x");
    spec["healthCheck"] = json!({"port": 80, "bar": {"baz": 1}});
    let mut obj = fip(spec);
    obj["extra"] = json!(true);
    obj["metadata"]["notAMetaField"] = json!(1);
    obj["status"] = json!({"conditions": [{
        "type": "Ready", "status": "True", "reason": "Held", "message": "",
        "lastTransitionTime": "2024-05-01T10:00:00Z", "junk": 1
    }]});
    obj
}

#[test]
fn unknown_fields_are_pruned_and_warned() {
    let schema = fip_schema();
    let mut obj = with_unknown_fields();
    let warnings = schema.admit(&mut obj, None, UnknownFields::Warn).unwrap();
    assert_eq!(
        warnings,
        [
            r#"unknown field "extra""#,
            r#"unknown field "spec.foo""#,
            r#"unknown field "spec.healthCheck.bar""#,
            r#"unknown field "status.conditions[0].junk""#,
        ]
    );
    assert!(obj.get("extra").is_none());
    assert!(obj["spec"].get("foo").is_none());
    assert!(obj["spec"]["healthCheck"].get("bar").is_none());
    assert!(obj["status"]["conditions"][0].get("junk").is_none());
    // metadata belongs to the server, not to the schema.
    assert_eq!(obj["metadata"]["notAMetaField"], json!(1));
}

#[test]
fn unknown_fields_are_dropped_silently_when_ignored() {
    let mut obj = with_unknown_fields();
    let warnings = fip_schema()
        .admit(&mut obj, None, UnknownFields::Ignore)
        .unwrap();
    assert!(warnings.is_empty());
    assert!(obj["spec"].get("foo").is_none());
}

#[test]
fn unknown_fields_are_refused_when_strict() {
    let mut obj = with_unknown_fields();
    let errors = fip_schema()
        .admit(&mut obj, None, UnknownFields::Strict)
        .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "extra",
            "spec.foo",
            "spec.healthCheck.bar",
            "status.conditions[0].junk"
        ]
    );
    assert!(errors.iter().all(|e| e.reason == "FieldValueForbidden"));
    assert_eq!(
        format_strict("FloatingIP", "v1alpha1", &errors),
        "FloatingIP in version \"v1alpha1\" cannot be handled as a FloatingIP: strict decoding error: \
         unknown field \"extra\", unknown field \"spec.foo\", unknown field \"spec.healthCheck.bar\", \
         unknown field \"status.conditions[0].junk\""
    );
}

#[test]
fn numbers_out_of_range() {
    let schema = fip_schema();
    let mut spec = valid_spec();
    spec["healthCheck"] = json!({"port": 70000});
    assert_eq!(
        refused(&schema, fip(spec)),
        ["spec.healthCheck.port: Invalid value: 70000: spec.healthCheck.port in body should be less than or equal to 65535"]
    );
    let mut spec = valid_spec();
    spec["healthCheck"] = json!({"port": 0, "intervalMs": 50});
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            "spec.healthCheck.intervalMs: Invalid value: 50: spec.healthCheck.intervalMs in body should be greater than or equal to 100",
            "spec.healthCheck.port: Invalid value: 0: spec.healthCheck.port in body should be greater than or equal to 1",
        ]
    );
}

#[test]
fn enum_required_and_length_block_the_rules() {
    let schema = fip_schema();
    // No subnetId would also break a rule on spec; the rules do not run.
    let spec = json!({"address": "10.0.8.100", "mode": "Foo"});
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            r#"spec.mode: Unsupported value: "Foo": supported values: "SecondaryIP", "ElasticIP", "RouteTable", "Interface""#,
            NOT_CHECKED,
        ]
    );
    assert_eq!(
        refused(&schema, fip(json!({"subnetId": "subnet-0a1b2c3d"}))),
        ["spec.address: Required value", NOT_CHECKED]
    );
    assert_eq!(
        refused(
            &schema,
            json!({"apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP", "metadata": {"name": "x"}})
        ),
        ["spec: Required value", NOT_CHECKED]
    );
    let mut spec = valid_spec();
    spec["address"] = json!("1".repeat(46));
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            "spec.address: Too long: may not be more than 45 bytes",
            NOT_CHECKED
        ]
    );
}

#[test]
fn wrong_types() {
    let schema = fip_schema();
    let mut spec = valid_spec();
    spec["healthCheck"] = json!({"port": "80"});
    spec["preferredNodes"] = json!("node-a");
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            r#"spec.healthCheck.port: Invalid value: "string": spec.healthCheck.port in body must be of type integer: "string""#,
            r#"spec.preferredNodes: Invalid value: "string": spec.preferredNodes in body must be of type array: "string""#,
            NOT_CHECKED,
        ]
    );
    // A whole float is an integer to the apiserver.
    let mut spec = valid_spec();
    spec["healthCheck"] = json!({"port": 80.0});
    let stored = admitted(&schema, fip(spec));
    assert_eq!(stored["spec"]["healthCheck"]["port"].as_i64(), Some(80));
    let mut spec = valid_spec();
    spec["healthCheck"] = json!({"port": 80.5});
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            r#"spec.healthCheck.port: Invalid value: "number": spec.healthCheck.port in body must be of type integer: "number""#,
            NOT_CHECKED,
        ]
    );
}

#[test]
fn patterns_lists_and_formats() {
    let schema = fip_schema();
    let mut spec = valid_spec();
    spec["subnetId"] = json!("subnet-xyz");
    spec["preferredNodes"] = json!(["", "node-a", "node-a", "Node_B"]);
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            r#"spec.preferredNodes[0]: Invalid value: "": spec.preferredNodes[0] in body should be at least 1 chars long"#,
            r#"spec.preferredNodes[3]: Invalid value: "Node_B": spec.preferredNodes[3] in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'"#,
            r#"spec.subnetId: Invalid value: "subnet-xyz": spec.subnetId in body should match '^subnet-([0-9a-f]{8}|[0-9a-f]{17})$'"#,
            r#"spec.preferredNodes[2]: Duplicate value: "node-a""#,
        ]
    );
    let mut spec = valid_spec();
    spec["preferredNodes"] = json!((0..33).map(|i| format!("n{i}")).collect::<Vec<_>>());
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            "spec.preferredNodes: Too many: 33: must have at most 32 items",
            NOT_CHECKED
        ]
    );
    let mut spec = valid_spec();
    spec["healthCheck"] =
        json!({"port": 53, "protocol": "UDP", "udp": {"payloadBase64": "not base64!"}});
    let mut obj = fip(spec);
    obj["status"] = json!({"conditions": [
        {"type": "Ready", "status": "True", "reason": "A", "message": "", "lastTransitionTime": "yesterday"},
        {"type": "Ready", "status": "False", "reason": "B", "message": "", "lastTransitionTime": "2024-05-01T10:00:00Z"},
    ]});
    assert_eq!(
        refused(&schema, obj),
        [
            r#"spec.healthCheck.udp.payloadBase64: Invalid value: "not base64!": spec.healthCheck.udp.payloadBase64 in body must be of type byte: "not base64!""#,
            r#"status.conditions[0].lastTransitionTime: Invalid value: "yesterday": status.conditions[0].lastTransitionTime in body must be of type date-time: "yesterday""#,
            r#"status.conditions[1]: Duplicate value: {"type":"Ready"}"#,
            NOT_CHECKED,
        ]
    );
}

#[test]
fn invalid_message_and_status() {
    let schema = fip_schema();
    let mut spec = json!({"address": "10.0.8.100/24", "mode": "ElasticIP", "interface": "Primary"});
    spec["healthCheck"] = json!({"port": 80, "timeoutMs": 900});
    let mut obj = fip(spec);
    let errors = schema
        .admit(&mut obj, None, UnknownFields::Warn)
        .unwrap_err();
    assert_eq!(
        format_invalid("FloatingIP.floatip.io", "web", &errors),
        "FloatingIP.floatip.io \"web\" is invalid: [\
         spec: Invalid value: \"object\": spec.elasticIP.allocationId is required when mode is ElasticIP, \
         spec.address: Invalid value: \"string\": spec.address must be a plain IPv4 or IPv6 address such as 10.0.8.100 or 2600:1f14::10, without a prefix length or zone, \
         spec.healthCheck: Invalid value: \"object\": spec.healthCheck.timeoutMs must not exceed intervalMs: a probe must finish before the next one starts]"
    );
    let one = &errors[1..2];
    assert_eq!(
        format_invalid("FloatingIP.floatip.io", "web", one),
        "FloatingIP.floatip.io \"web\" is invalid: spec.address: Invalid value: \"string\": spec.address must be a plain IPv4 or IPv6 address such as 10.0.8.100 or 2600:1f14::10, without a prefix length or zone"
    );
    let twice = [errors[1].clone(), errors[1].clone()];
    assert_eq!(
        format_invalid("FloatingIP.floatip.io", "web", &twice),
        format_invalid("FloatingIP.floatip.io", "web", one)
    );
    assert_eq!(
        invalid_status("floatip.io", "FloatingIP", "web", one),
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format_invalid("FloatingIP.floatip.io", "web", one),
            "reason": "Invalid",
            "details": {
                "name": "web",
                "group": "floatip.io",
                "kind": "FloatingIP",
                "causes": [{
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: \"string\": spec.address must be a plain IPv4 or IPv6 address such as 10.0.8.100 or 2600:1f14::10, without a prefix length or zone",
                    "field": "spec.address",
                }],
            },
            "code": 422,
        })
    );
}
