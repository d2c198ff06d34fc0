//! Admission of a custom resource against its CRD version's `openAPIV3Schema`, in the order and
//! words of kube-apiserver's apiextensions handler:
//!
//! 1. prune fields the structural schema does not declare (apiVersion, kind and metadata are the
//!    server's and never touched), refusing or warning about them per `fieldValidation`;
//! 2. drop nulls the schema does not allow and has no default for, then apply `default`s;
//! 3. check the OpenAPI keywords (kube-openapi's validator), then list-type set/map invariants;
//! 4. evaluate `x-kubernetes-validations` with kube-cel, unless step 3 found a type, required,
//!    enum or size violation (then one "some validation rules were not checked" error instead).
//!
//! On updates, values that did not change are not held to the schema again (ratcheting), as in
//! Kubernetes 1.30 and later. Messages follow apimachinery's field.Error of Kubernetes 1.34.

mod cel;
mod field;
mod formats;
mod listtype;
mod node;
pub(crate) mod render;
mod structural;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::HashSet;
use std::fmt;

use serde_json::{json, Value};

pub use field::NIL_PATH;
use node::Node;

/// The request's `fieldValidation`: what to do about fields the schema does not declare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownFields {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (`unknown field "spec.foo"`); the apiserver's default.
    #[default]
    Warn,
    /// Refuse the request (400, `strict decoding error: unknown field "spec.foo"`).
    Strict,
}

impl UnknownFields {
    /// Parses the `fieldValidation` query parameter; absent or empty means Warn. An unknown
    /// value is refused with the apiserver's error (a 422 on the request options).
    pub fn from_query(value: Option<&str>) -> Result<Self, FieldError> {
        match value.unwrap_or("") {
            "" | "Warn" => Ok(UnknownFields::Warn),
            "Ignore" => Ok(UnknownFields::Ignore),
            "Strict" => Ok(UnknownFields::Strict),
            other => Err(FieldError::not_supported(
                "fieldValidation".to_string(),
                &render::quote(other),
                &["".into(), "Ignore".into(), "Strict".into(), "Warn".into()],
            )),
        }
    }
}

/// One field.Error: `field` as the apiserver prints it (`spec.healthCheck.port`, `<nil>` for
/// the root), `reason` its metav1.CauseType, `message` its body (StatusCause.message), e.g.
/// `Invalid value: 70000: spec.healthCheck.port in body should be less than or equal to 65535`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for FieldError {
    /// field.Error.Error(): `<field>: <message>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why an object was refused; the two map to different HTTP answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// fieldValidation=Strict and unknown fields: 400 BadRequest, see [`format_strict`].
    /// Each error's message is `unknown field "<path>"`.
    StrictDecoding(Vec<FieldError>),
    /// Schema or rule violations: 422 Invalid, see [`format_invalid`] and [`invalid_status`].
    Invalid(Vec<FieldError>),
}

impl Rejection {
    #[cfg(test)]
    pub fn errors(&self) -> &[FieldError] {
        match self {
            Rejection::StrictDecoding(e) | Rejection::Invalid(e) => e,
        }
    }
}

/// A CRD version's schema, parsed and with its CEL rules compiled, ready to admit objects.
pub struct CrdSchema {
    root: Node,
    rules: kube_cel::CompiledSchema,
    has_rules: bool,
}

impl fmt::Debug for CrdSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrdSchema").finish_non_exhaustive()
    }
}

impl CrdSchema {
    /// Compiles once (patterns and CEL rules too). Err names the bad schema node or rule, e.g.
    /// `openAPIV3Schema.properties[spec].x-kubernetes-validations: failed to compile CEL rule ...`.
    pub fn new(open_api_v3_schema: &Value) -> Result<Self, String> {
        let root = Node::parse(open_api_v3_schema, "openAPIV3Schema")?;
        let rules = cel::compile(open_api_v3_schema)?;
        let has_rules = root.has_rules();
        Ok(CrdSchema {
            root,
            rules,
            has_rules,
        })
    }

    /// The schema of `version` in a CustomResourceDefinition (as JSON).
    #[cfg(test)]
    pub fn for_version(crd: &Value, version: &str) -> Result<Self, String> {
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .ok_or("the CRD has no spec.versions")?;
        let v = versions
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
            .ok_or_else(|| format!("the CRD has no version {version:?}"))?;
        let schema = v
            .pointer("/schema/openAPIV3Schema")
            .ok_or_else(|| format!("version {version:?} has no schema.openAPIV3Schema"))?;
        CrdSchema::new(schema)
    }

    /// Defaults, prunes (or reports) unknown fields, validates structure, then CEL (with `old`
    /// for transition rules on update). Mutates `obj` in place: pruning, defaults, and whole
    /// floats turned into integers (`80.0` is stored as `80`, as after the apiserver's JSON).
    /// Ok(warnings) or Err(errors); [`CrdSchema::review`] tells a strict-decoding refusal apart.
    #[cfg(test)]
    pub fn admit(
        &self,
        obj: &mut Value,
        old: Option<&Value>,
        unknown: UnknownFields,
    ) -> Result<Vec<String>, Vec<FieldError>> {
        self.review(obj, old, unknown).map_err(|r| match r {
            Rejection::StrictDecoding(e) | Rejection::Invalid(e) => e,
        })
    }

    /// [`CrdSchema::admit`] with the kind of refusal kept. `old` is the stored object (already
    /// pruned and defaulted) on updates, None on create.
    pub fn review(
        &self,
        obj: &mut Value,
        old: Option<&Value>,
        unknown: UnknownFields,
    ) -> Result<Vec<String>, Rejection> {
        let mut warnings = Vec::new();
        let unknown_paths = structural::prune(obj, &self.root);
        let unknown_msgs = unknown_paths
            .iter()
            .map(|p| format!("unknown field {}", render::quote(p)));
        match unknown {
            UnknownFields::Strict if !unknown_paths.is_empty() => {
                let errors = unknown_paths
                    .iter()
                    .zip(unknown_msgs)
                    .map(|(p, m)| FieldError {
                        field: p.clone(),
                        reason: "FieldValueForbidden",
                        message: m,
                    })
                    .collect();
                return Err(Rejection::StrictDecoding(errors));
            }
            UnknownFields::Warn => warnings.extend(unknown_msgs),
            _ => {}
        }
        structural::prune_nulls(obj, Some(&self.root));
        structural::apply_defaults(obj, &self.root);

        let mut errors = validate::validate(&self.root, obj, old);
        // Ratcheting for list types: an old object already breaking them is not held to them.
        if old.is_none_or(|o| listtype::validate(&self.root, o).is_empty()) {
            errors.extend(listtype::validate(&self.root, obj));
        }
        // Without any rule the apiserver has no CEL validator, and nothing to report skipping.
        if self.has_rules {
            if errors.iter().any(FieldError::blocks_cel) {
                errors.push(FieldError::invalid(
                    NIL_PATH.to_string(),
                    "null",
                    "some validation rules were not checked because the object was invalid; \
                     correct the existing errors to complete validation",
                ));
            } else {
                structural::integers_for_rules(obj, &self.root);
                let (cel_errors, cel_warnings) = cel::check(&self.rules, &self.root, obj, old);
                errors.extend(cel_errors);
                warnings.extend(cel_warnings);
            }
        }
        if errors.is_empty() {
            // Validation saw the numbers as decoded; storage sees them as re-encoded.
            structural::normalize_numbers(obj);
            Ok(warnings)
        } else {
            Err(Rejection::Invalid(errors))
        }
    }
}

/// The messages of `errors` without repeats, as field.ErrorList.ToAggregate keeps them.
fn aggregate(errors: &[FieldError], show: impl Fn(&FieldError) -> String) -> Vec<String> {
    let mut seen = HashSet::new();
    errors
        .iter()
        .map(show)
        .filter(|m| seen.insert(m.clone()))
        .collect()
}

/// The 422 message (errors.NewInvalid): `FloatingIP.floatip.io "web" is invalid: [a, b]`, no
/// brackets for a single error. `kind` is the qualified kind, `Kind.group` (just `Kind` for
/// the core group).
pub fn format_invalid(kind: &str, name: &str, errors: &[FieldError]) -> String {
    let msgs = aggregate(errors, FieldError::to_string);
    let name = render::quote(name);
    match msgs.as_slice() {
        [] => format!("{kind} {name} is invalid"),
        [one] => format!("{kind} {name} is invalid: {one}"),
        many => format!("{kind} {name} is invalid: [{}]", many.join(", ")),
    }
}

/// The 400 message for unknown fields under fieldValidation=Strict (transformDecodeError):
/// `FloatingIP in version "v1alpha1" cannot be handled as a FloatingIP: strict decoding error:
/// unknown field "spec.foo"`.
pub fn format_strict(kind: &str, version: &str, errors: &[FieldError]) -> String {
    let msgs = aggregate(errors, |e| e.message.clone());
    format!(
        "{kind} in version {} cannot be handled as a {kind}: strict decoding error: {}",
        render::quote(version),
        msgs.join(", ")
    )
}

/// The full 422 metav1.Status for `errors` on the named object of `group`/`kind`.
pub fn invalid_status(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Value {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
        .collect();
    let mut details = json!({"name": name, "kind": kind, "causes": causes});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format_invalid(&qualified, name, errors),
        "reason": "Invalid",
        "details": details,
        "code": 422,
    })
}
