//! x-kubernetes-validations: messages, paths, reasons, transition rules and ratcheting.

use serde_json::json;

use super::*;

#[test]
fn floatingip_rule_failures_carry_their_messages() {
    let schema = fip_schema();
    assert_eq!(
        refused(&schema, fip(json!({"address": "10.0.8.100"}))),
        [
            r#"spec: Invalid value: "object": spec.subnetId is required when mode is SecondaryIP: name the subnet whose ENIs may hold the address"#
        ]
    );
    let mut spec = valid_spec();
    spec["address"] = json!("127.0.0.1");
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            r#"spec.address: Invalid value: "string": spec.address must be a unicast address a VPC can route: not loopback, link-local, multicast, broadcast or unspecified"#
        ]
    );
    let mut spec = valid_spec();
    spec["healthCheck"] =
        json!({"port": 53, "protocol": "UDP", "udp": {"payload": "x", "payloadBase64": "eA=="}});
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            r#"spec.healthCheck.udp: Invalid value: "object": spec.healthCheck.udp takes payload or payloadBase64, not both"#
        ]
    );
    let spec = json!({"address": "2600:1f14::10", "mode": "RouteTable", "routeTableIds": [], "interface": "Primary"});
    assert_eq!(
        refused(&schema, fip(spec)),
        [
            r#"spec: Invalid value: "object": spec.routeTableIds needs at least one route table when mode is RouteTable"#,
            r#"spec: Invalid value: "object": spec.interface is only used when mode is SecondaryIP or ElasticIP; remove it or change the mode"#,
        ]
    );
}

#[test]
fn immutable_address_refuses_a_changed_update() {
    let schema = fip_schema();
    let old = admitted(&schema, fip(valid_spec()));
    // Same address: fine, and status changes do not matter.
    let mut new = old.clone();
    new["status"] = json!({"moveCount": 1});
    assert_eq!(
        schema.admit(&mut new, Some(&old), UnknownFields::Warn),
        Ok(vec![])
    );

    let mut new = old.clone();
    new["spec"]["address"] = json!("10.0.8.101");
    assert_eq!(
        refused_update(&schema, new, &old),
        [
            r#"spec.address: Invalid value: "string": spec.address is immutable: create a new FloatingIP for a different address"#
        ]
    );
    let mut new = old.clone();
    new["spec"]["mode"] = json!("Interface");
    assert_eq!(
        refused_update(&schema, new, &old),
        [
            r#"spec.mode: Invalid value: "string": spec.mode is immutable: create a new FloatingIP to change how the address is carried"#
        ]
    );
}

#[test]
fn unchanged_rule_failures_are_warnings_on_update() {
    let schema = fip_schema();
    // Stored before the subnet rule existed: spec breaks a rule that is not a transition rule.
    let old = json!({
        "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP", "metadata": {"name": "web"},
        "spec": {"address": "10.0.8.100", "mode": "SecondaryIP", "failback": "Never", "failover": {"minHoldSeconds": 30}},
    });
    let mut new = old.clone();
    new["status"] = json!({"moveCount": 2});
    assert_eq!(
        schema.admit(&mut new, Some(&old), UnknownFields::Warn),
        Ok(vec![
            r#"spec: Invalid value: "object": spec.subnetId is required when mode is SecondaryIP: name the subnet whose ENIs may hold the address"#
                .to_string()
        ])
    );
    let mut new = old.clone();
    new["spec"]["failback"] = json!("Always");
    assert_eq!(
        refused_update(&schema, new, &old),
        [
            r#"spec: Invalid value: "object": spec.subnetId is required when mode is SecondaryIP: name the subnet whose ENIs may hold the address"#
        ]
    );
}

#[test]
fn reasons_field_paths_and_message_expressions() {
    let schema = CrdSchema::new(&json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.metadata.name != 'forbidden'", "message": "name is taken"}],
        "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' exceeds max ' + string(self.max)"},
                {"rule": "self.min != 3", "reason": "FieldValueForbidden", "fieldPath": ".min", "message": " three is not allowed "},
                {"rule": "self.min != 4", "reason": "FieldValueRequired", "message": "four needs a friend"},
                {"rule": "self.min != 5", "reason": "FieldValueDuplicate", "message": "unused"},
                {"rule": "self.min != 6"},
            ],
            "properties": {
                "min": {"type": "integer"},
                "max": {"type": "integer"},
                "labels": {"type": "object", "additionalProperties": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "self.size() < 3", "message": "label too long"}],
                }},
            },
        }},
    }))
    .unwrap();
    let obj = |spec: Value| json!({"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "x"}, "spec": spec});
    assert_eq!(
        refused(&schema, obj(json!({"min": 9, "max": 1}))),
        [r#"spec: Invalid value: "object": min 9 exceeds max 1"#]
    );
    assert_eq!(
        refused(&schema, obj(json!({"min": 3, "max": 9}))),
        ["spec.min: Forbidden: three is not allowed"]
    );
    assert_eq!(
        refused(&schema, obj(json!({"min": 4, "max": 9}))),
        ["spec: Required value: four needs a friend"]
    );
    assert_eq!(
        refused(&schema, obj(json!({"min": 5, "max": 9}))),
        [r#"spec: Duplicate value: "object""#]
    );
    assert_eq!(
        refused(&schema, obj(json!({"min": 6, "max": 9}))),
        [r#"spec: Invalid value: "object": failed rule: self.min != 6"#]
    );
    assert_eq!(
        refused(
            &schema,
            obj(
                json!({"min": 1, "max": 9, "labels": {"ok": "ab", "app.kubernetes.io/name": "abc"}})
            )
        ),
        [r#"spec.labels[app.kubernetes.io/name]: Invalid value: "string": label too long"#]
    );
    let mut root_breaker = obj(json!({"min": 1, "max": 2}));
    root_breaker["metadata"]["name"] = json!("forbidden");
    assert_eq!(
        refused(&schema, root_breaker),
        [r#"<nil>: Invalid value: "object": name is taken"#]
    );
}

#[test]
fn evaluation_errors_name_the_rule() {
    let schema = spec_schema(json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.items[5] == 'x'", "message": "never shown"}],
        "properties": {"items": {"type": "array", "items": {"type": "string"}}},
    }));
    let errors = refused(
        &schema,
        json!({"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"items": ["a"]}}),
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(r#"spec: Invalid value: "object": "#)
            && errors[0].ends_with(" evaluating rule: self.items[5] == 'x'"),
        "{errors:?}"
    );
}

#[test]
fn whole_floats_are_integers_to_the_rules() {
    let schema = spec_schema(json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.n != 3", "message": "not three"}],
        "properties": {"n": {"type": "integer"}},
    }));
    let obj = json!({"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"n": 3.0}});
    assert_eq!(
        refused(&schema, obj),
        [r#"spec: Invalid value: "object": not three"#]
    );
}

#[test]
fn non_blocking_errors_still_let_the_rules_run() {
    // A pattern mismatch does not stop CEL (only type, required, enum and size errors do).
    let spec = json!({"address": "10.0.8.100", "subnetId": "subnet-nope", "mode": "ElasticIP"});
    assert_eq!(
        refused(&fip_schema(), fip(spec)),
        [
            r#"spec.subnetId: Invalid value: "subnet-nope": spec.subnetId in body should match '^subnet-([0-9a-f]{8}|[0-9a-f]{17})$'"#,
            r#"spec: Invalid value: "object": spec.elasticIP.allocationId is required when mode is ElasticIP"#,
        ]
    );
}
