//! Admission tests against the real FloatingIP CRD (crds/floatingip.yaml) and small
//! hand-written schemas. Expected strings are the apiserver's words for the same input.

mod floatingip;
mod keywords;
mod rules;

use serde_json::{json, Value};

use super::{CrdSchema, FieldError, Rejection, UnknownFields};

fn crd() -> Value {
    serde_yaml_ng::from_str(include_str!("../../../../../crds/floatingip.yaml"))
        .expect("crds/floatingip.yaml parses")
}

fn fip_schema() -> CrdSchema {
    CrdSchema::for_version(&crd(), "v1alpha1").expect("the FloatingIP schema compiles")
}

fn fip(spec: Value) -> Value {
    json!({
        "apiVersion": "floatip.io/v1alpha1",
        "kind": "FloatingIP",
        "metadata": {"name": "web", "uid": "u-1", "labels": {"team": "net"}},
        "spec": spec,
    })
}

fn valid_spec() -> Value {
    json!({"address": "10.0.8.100", "subnetId": "subnet-0a1b2c3d"})
}

/// A schema with `spec` as given, for keyword tests.
fn spec_schema(spec: Value) -> CrdSchema {
    CrdSchema::new(&json!({"type": "object", "properties": {"spec": spec}})).expect("schema")
}

/// The errors of a refused object, printed as field.Error.Error().
fn refused(schema: &CrdSchema, mut obj: Value) -> Vec<String> {
    match schema.admit(&mut obj, None, UnknownFields::Warn) {
        Ok(w) => panic!("admitted (warnings {w:?}): {obj}"),
        Err(errors) => errors.iter().map(FieldError::to_string).collect(),
    }
}

fn refused_update(schema: &CrdSchema, mut obj: Value, old: &Value) -> Vec<String> {
    match schema.admit(&mut obj, Some(old), UnknownFields::Warn) {
        Ok(w) => panic!("admitted (warnings {w:?}): {obj}"),
        Err(errors) => errors.iter().map(FieldError::to_string).collect(),
    }
}

/// Admits and returns the stored object.
fn admitted(schema: &CrdSchema, mut obj: Value) -> Value {
    match schema.admit(&mut obj, None, UnknownFields::Warn) {
        Ok(w) => assert!(w.is_empty(), "unexpected warnings {w:?}"),
        Err(e) => panic!("refused: {e:?}"),
    }
    obj
}

const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked \
                           because the object was invalid; correct the existing errors to \
                           complete validation";

#[test]
fn schema_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CrdSchema>();
}

#[test]
fn strictness_comes_from_the_query() {
    assert_eq!(UnknownFields::from_query(None), Ok(UnknownFields::Warn));
    assert_eq!(UnknownFields::from_query(Some("")), Ok(UnknownFields::Warn));
    assert_eq!(
        UnknownFields::from_query(Some("Strict")),
        Ok(UnknownFields::Strict)
    );
    assert_eq!(
        UnknownFields::from_query(Some("Ignore")),
        Ok(UnknownFields::Ignore)
    );
    assert_eq!(
        UnknownFields::from_query(Some("strict"))
            .unwrap_err()
            .to_string(),
        r#"fieldValidation: Unsupported value: "strict": supported values: "", "Ignore", "Strict", "Warn""#
    );
}

#[test]
fn bad_schemas_are_named() {
    let err = CrdSchema::new(&json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==="}]}}
    }))
    .unwrap_err();
    assert!(
        err.starts_with(
            "openAPIV3Schema.properties[spec].x-kubernetes-validations: failed to compile CEL rule \"self.a ===\""
        ),
        "{err}"
    );
    let err = CrdSchema::new(&json!({"type": "object", "properties": {"spec": {"type": "strin"}}}))
        .unwrap_err();
    assert_eq!(
        err,
        "openAPIV3Schema.properties[spec].type: unsupported type \"strin\""
    );
    let err = CrdSchema::for_version(&crd(), "v1").unwrap_err();
    assert_eq!(err, "the CRD has no version \"v1\"");
}

#[test]
fn rejection_kinds_are_kept_apart() {
    let schema = fip_schema();
    let mut spec = valid_spec();
    spec["foo"] = json!(1);
    let r = schema
        .review(&mut fip(spec), None, UnknownFields::Strict)
        .unwrap_err();
    assert!(matches!(r, Rejection::StrictDecoding(_)));
    assert_eq!(r.errors()[0].message, "unknown field \"spec.foo\"");
    let r = schema
        .review(&mut fip(json!({})), None, UnknownFields::Strict)
        .unwrap_err();
    assert!(matches!(r, Rejection::Invalid(_)));
    assert_eq!(r.errors()[0].to_string(), "spec.address: Required value");
}
