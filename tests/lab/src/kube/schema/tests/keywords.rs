//! Each OpenAPI keyword on a small schema, with the apiserver's message.

use serde_json::json;

use super::*;

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "x"}, "spec": spec})
}

#[test]
fn nullable_and_non_nullable_nulls() {
    let schema = spec_schema(json!({
        "type": "object",
        "properties": {
            "a": {"type": "string", "nullable": true},
            "b": {"type": "string"},
            "c": {"type": "string", "nullable": true, "enum": ["x"]},
        }
    }));
    let stored = admitted(&schema, obj(json!({"a": null, "b": null})));
    assert_eq!(stored["spec"], json!({"a": null}));
    // A null never satisfies an enum.
    assert_eq!(
        refused(&schema, obj(json!({"c": null}))),
        [r#"spec.c: Unsupported value: null: supported values: "x""#]
    );
    // Items of a list are not pruned when null.
    let schema = spec_schema(json!({"type": "array", "items": {"type": "string"}}));
    assert_eq!(
        refused(&schema, obj(json!(["a", null]))),
        [r#"spec[1]: Invalid value: "null": spec[1] in body must be of type string: "null""#]
    );
}

#[test]
fn defaults_nest_into_defaulted_parents() {
    let schema = spec_schema(json!({
        "type": "object",
        "default": {},
        "properties": {
            "outer": {
                "type": "object",
                "default": {"given": true},
                "properties": {
                    "given": {"type": "boolean"},
                    "inner": {"type": "integer", "default": 7},
                },
            },
            "list": {"type": "array", "items": {
                "type": "object",
                "properties": {"k": {"type": "string", "default": "d"}},
            }},
            "map": {"type": "object", "additionalProperties": {
                "type": "object",
                "properties": {"v": {"type": "integer", "default": 1}},
            }},
        }
    }));
    let stored = admitted(
        &schema,
        json!({"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "x"}}),
    );
    assert_eq!(
        stored["spec"],
        json!({"outer": {"given": true, "inner": 7}})
    );
    let stored = admitted(
        &schema,
        obj(json!({"list": [{}, {"k": "set"}], "map": {"a": {}, "b": {"v": 5}}})),
    );
    assert_eq!(
        stored["spec"],
        json!({
            "outer": {"given": true, "inner": 7},
            "list": [{"k": "d"}, {"k": "set"}],
            "map": {"a": {"v": 1}, "b": {"v": 5}},
        })
    );
}

#[test]
fn preserve_unknown_fields_and_embedded_resources() {
    let schema = spec_schema(json!({
        "type": "object",
        "properties": {
            "free": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"typed": {"type": "object", "properties": {"a": {"type": "string"}}}},
            },
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}},
            },
        }
    }));
    let mut o = obj(json!({
        "free": {"anything": {"deep": 1}, "typed": {"a": "k", "b": "gone"}},
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "y", "z": 1}},
    }));
    let warnings = schema.admit(&mut o, None, UnknownFields::Warn).unwrap();
    assert_eq!(
        warnings,
        [
            r#"unknown field "spec.free.typed.b""#,
            r#"unknown field "spec.template.spec.z""#
        ]
    );
    assert_eq!(
        o["spec"],
        json!({
            "free": {"anything": {"deep": 1}, "typed": {"a": "k"}},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "y"}},
        })
    );
}

#[test]
fn int_or_string() {
    let schema = spec_schema(json!({
        "type": "object",
        "properties": {"port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}},
    }));
    admitted(&schema, obj(json!({"port": 80})));
    admitted(&schema, obj(json!({"port": "http"})));
    assert_eq!(
        refused(&schema, obj(json!({"port": true}))),
        [
            r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
            r#"<nil>: Invalid value: "": "spec.port" must validate at least one schema (anyOf)"#,
            r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer: "boolean""#,
        ]
    );
}

#[test]
fn numbers() {
    let schema = spec_schema(json!({
        "type": "object",
        "properties": {
            "excl": {"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 10, "exclusiveMaximum": true},
            "ratio": {"type": "number", "minimum": 0.5, "maximum": 1.5, "multipleOf": 0.25},
            "step": {"type": "integer", "multipleOf": 5},
            "big": {"type": "number", "maximum": 1000000},
            "i32": {"type": "integer", "format": "int32"},
        }
    }));
    admitted(
        &schema,
        obj(json!({"excl": 5, "ratio": 0.75, "step": 10, "i32": 3_000_000_000i64})),
    );
    assert_eq!(
        refused(&schema, obj(json!({"excl": 0, "ratio": 1.6, "step": 7, "big": 1e7}))),
        [
            "spec.big: Invalid value: 1e+07: spec.big in body should be less than or equal to 1e+06",
            "spec.excl: Invalid value: 0: spec.excl in body should be greater than 0",
            "spec.ratio: Invalid value: 1.6: spec.ratio in body should be a multiple of 0.25",
            "spec.ratio: Invalid value: 1.6: spec.ratio in body should be less than or equal to 1.5",
            "spec.step: Invalid value: 7: spec.step in body should be a multiple of 5",
        ]
    );
    assert_eq!(
        refused(&schema, obj(json!({"excl": 10, "ratio": 0.25}))),
        [
            "spec.excl: Invalid value: 10: spec.excl in body should be less than 10",
            "spec.ratio: Invalid value: 0.25: spec.ratio in body should be greater than or equal to 0.5",
        ]
    );
}

#[test]
fn strings_count_characters() {
    let schema = spec_schema(json!({
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 2, "maxLength": 3}},
    }));
    admitted(&schema, obj(json!({"name": "été"})));
    assert_eq!(
        refused(&schema, obj(json!({"name": "étés"}))),
        ["spec.name: Too long: may not be more than 3 bytes"]
    );
    assert_eq!(
        refused(&schema, obj(json!({"name": "é"}))),
        [r#"spec.name: Invalid value: "é": spec.name in body should be at least 2 chars long"#]
    );
}

#[test]
fn lists_and_maps() {
    let schema = spec_schema(json!({
        "type": "object",
        "properties": {
            "few": {"type": "array", "minItems": 2, "items": {"type": "integer"}},
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["port", "protocol"],
                "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string"}}},
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}},
            "sized": {"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "string"}},
        }
    }));
    assert_eq!(
        refused(
            &schema,
            obj(json!({
                "few": [1],
                "set": [1, 2, 1, 1, 2],
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}, {"port": 80, "protocol": "TCP"}],
                "sized": {},
            }))
        ),
        [
            "spec.few: Invalid value: 1: spec.few in body should have at least 2 items",
            "spec.sized: Invalid value: 0: spec.sized in body should have at least 1 properties",
            r#"spec.ports[2]: Duplicate value: {"port":80,"protocol":"TCP"}"#,
            "spec.set[2]: Duplicate value: 1",
            "spec.set[4]: Duplicate value: 2",
        ]
    );
    assert_eq!(
        refused(
            &schema,
            obj(json!({"labels": {"a": "long", "b": 1}, "sized": {"a": "1", "b": "2", "c": "3"}}))
        ),
        [
            "spec.labels.a: Too long: may not be more than 3 bytes",
            r#"spec.labels.b: Invalid value: "integer": spec.labels.b in body must be of type string: "integer""#,
            "spec.sized: Too many: 3: must have at most 2 items",
        ]
    );
    assert_eq!(
        refused(&schema, obj(json!({"ports": [{"port": 1}, "x"]}))),
        [
            r#"spec.ports[1]: Invalid value: "string": spec.ports[1] in body must be of type object: "string""#,
            r#"spec.ports[1]: Invalid value: "x": must be an object for an array of list-type map"#,
        ]
    );
}

#[test]
fn junctors() {
    let schema = spec_schema(json!({
        "type": "object",
        "properties": {
            "one": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                    "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
            "all": {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]},
            "not": {"type": "string", "not": {"enum": ["forbidden"]}},
        }
    }));
    admitted(
        &schema,
        obj(json!({"one": {"a": "x"}, "all": 3, "not": "fine"})),
    );
    assert_eq!(
        refused(
            &schema,
            obj(json!({"one": {"a": "x", "b": "y"}, "all": 9, "not": "forbidden"}))
        ),
        [
            r#"spec.all: Invalid value: 9: spec.all in body should be less than or equal to 5"#,
            r#"<nil>: Invalid value: "": "spec.all" must validate all the schemas (allOf)"#,
            r#"<nil>: Invalid value: "": "spec.not" must not validate the schema (not)"#,
            r#"<nil>: Invalid value: "": "spec.one" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
        ]
    );
    assert_eq!(
        refused(&schema, obj(json!({"one": {}}))),
        [
            r#"<nil>: Invalid value: "": "spec.one" must validate one and only one schema (oneOf). Found none valid"#,
            "spec.one.a: Required value",
        ]
    );
}

#[test]
fn ratcheting_keeps_unchanged_invalid_values() {
    let schema = spec_schema(json!({
        "type": "object",
        "properties": {
            "port": {"type": "integer", "maximum": 10},
            "note": {"type": "string"},
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        }
    }));
    // Stored before the schema tightened.
    let old = obj(json!({"port": 99, "note": "a", "set": ["x", "x"]}));
    let mut new = obj(json!({"port": 99, "note": "b", "set": ["x", "x"]}));
    assert_eq!(
        schema.admit(&mut new, Some(&old), UnknownFields::Warn),
        Ok(vec![])
    );
    let new = obj(json!({"port": 98, "note": "b", "set": ["x", "x"]}));
    assert_eq!(
        refused_update(&schema, new, &old),
        ["spec.port: Invalid value: 98: spec.port in body should be less than or equal to 10"]
    );
    // A clean old object holds the new one to the list invariants.
    let old = obj(json!({"set": ["x"]}));
    assert_eq!(
        refused_update(&schema, obj(json!({"set": ["x", "x"]})), &old),
        [r#"spec.set[1]: Duplicate value: "x""#]
    );
}
