//! x-kubernetes-validations through kube-cel, reported as the apiserver's CEL validator reports
//! them: at the path of the schema node holding the rule (plus its fieldPath), with the node's
//! type as the "value" (`spec: Invalid value: "object": <message>`), and with failures of
//! non-transition rules on unchanged values turned into warnings (ratcheting).

use kube_cel::{CompiledSchema, ErrorKind, ValidationError};
use serde_json::Value;

use super::field::field_of;
use super::node::Node;
use super::render::quote;
use super::validate::correlate_item;
use super::FieldError;

/// Compiles every rule and messageExpression; the first failure names where it sits.
pub(super) fn compile(schema: &Value) -> Result<CompiledSchema, String> {
    let compiled = kube_cel::compile_schema(schema);
    let mut at = "openAPIV3Schema".to_string();
    first_error(&compiled, &mut at)?;
    Ok(compiled)
}

fn first_error(c: &CompiledSchema, at: &mut String) -> Result<(), String> {
    if let Some(e) = c.compilation_errors().first() {
        return Err(format!("{at}.x-kubernetes-validations: {e}"));
    }
    let len = at.len();
    let mut props: Vec<_> = c.properties.iter().collect();
    props.sort_by(|a, b| a.0.cmp(b.0));
    for (k, child) in props {
        at.push_str(&format!(".properties[{k}]"));
        first_error(child, at)?;
        at.truncate(len);
    }
    for (name, child) in [
        ("items", &c.items),
        ("additionalProperties", &c.additional_properties),
    ] {
        if let Some(child) = child {
            at.push('.');
            at.push_str(name);
            first_error(child, at)?;
            at.truncate(len);
        }
    }
    for (name, list) in [
        ("allOf", &c.all_of),
        ("anyOf", &c.any_of),
        ("oneOf", &c.one_of),
    ] {
        for (i, child) in list.iter().enumerate() {
            at.push_str(&format!(".{name}[{i}]"));
            first_error(child, at)?;
            at.truncate(len);
        }
    }
    Ok(())
}

/// Runs the rules on a structurally valid object; returns errors and ratcheting warnings.
pub(super) fn check(
    compiled: &CompiledSchema,
    root: &Node,
    obj: &Value,
    old: Option<&Value>,
) -> (Vec<FieldError>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let Err(failures) = kube_cel::validate_compiled(compiled, obj, old) else {
        return (errors, warnings);
    };
    // kube-cel walks properties in hash order; report in schema order instead: a node's rules
    // (in their order) before its children's, children by name and index.
    let mut located: Vec<(Located, &ValidationError)> = failures
        .iter()
        .map(|f| (locate(root, obj, old, f), f))
        .collect();
    located.sort_by(|a, b| a.0.order.cmp(&b.0.order));
    for (at, f) in located {
        let e = to_field_error(f, &at);
        if old.is_some() && at.unchanged && !at.transition {
            warnings.push(e.to_string());
        } else {
            errors.push(e);
        }
    }
    (errors, warnings)
}

/// Where a failed rule sits, in the apiserver's terms.
struct Located {
    /// Path of the node holding the rule (field.Path style: maps as `[key]`).
    node_path: String,
    /// The same with the rule's fieldPath appended.
    rule_path: String,
    schema_type: String,
    transition: bool,
    /// The node's value equals the correlated old value.
    unchanged: bool,
    /// The node's place in the schema, for ordering.
    order: Vec<Seg>,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The next step of a kube-cel path (`spec.list[0].name`) at schema node `s` holding `v`, and
/// the rest. Map keys may contain dots (`labels.app.kubernetes.io/name`), so a key is matched
/// against the declared properties first, then the longest fitting key of the value.
fn next_segment<'p>(rest: &'p str, s: &Node, v: Option<&Value>) -> Option<(Seg, &'p str)> {
    if let Some(inner) = rest.strip_prefix('[') {
        let end = inner.find(']')?;
        let i = inner[..end].parse().ok()?;
        return Some((Seg::Index(i), &inner[end + 1..]));
    }
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    if rest.is_empty() {
        return None;
    }
    let fits = |k: &str| {
        rest.strip_prefix(k)
            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
    };
    let key = s
        .properties
        .keys()
        .map(String::as_str)
        .find(|k| fits(k))
        .or_else(|| {
            v.and_then(Value::as_object)?
                .keys()
                .map(String::as_str)
                .filter(|k| fits(k))
                .max_by_key(|k| k.len())
        })
        .unwrap_or_else(|| &rest[..rest.find(['.', '[']).unwrap_or(rest.len())]);
    Some((Seg::Key(key.to_string()), &rest[key.len()..]))
}

/// kube-cel's path for a rule: the node path with the rule's fieldPath appended.
fn with_field_path(base: &str, field_path: Option<&str>) -> String {
    match field_path {
        None => base.to_string(),
        Some(fp) => {
            let fp = fp.trim_start_matches('.');
            if base.is_empty() {
                fp.to_string()
            } else {
                format!("{base}.{fp}")
            }
        }
    }
}

fn locate(root: &Node, obj: &Value, old: Option<&Value>, f: &ValidationError) -> Located {
    let mut found = Located {
        node_path: f.field_path.clone(),
        rule_path: f.field_path.clone(),
        schema_type: String::new(),
        transition: false,
        unchanged: false,
        order: vec![Seg::Key(f.field_path.clone())],
    };
    let mut node = Some(root);
    let mut order = Vec::new();
    let (mut cel_path, mut api_path) = (String::new(), String::new());
    let (mut new_v, mut old_v) = (Some(obj), old);
    let mut rest = f.field_path.as_str();
    while let Some(s) = node {
        if let Some(rule) = s.rules.iter().find(|r| {
            r.rule == f.rule && with_field_path(&cel_path, r.field_path.as_deref()) == f.field_path
        }) {
            found = Located {
                node_path: api_path.clone(),
                rule_path: with_field_path(&api_path, rule.field_path.as_deref()),
                schema_type: s.type_.clone(),
                transition: rule.transition,
                unchanged: matches!((new_v, old_v), (Some(n), Some(o)) if n == o),
                order: order.clone(),
            };
        }
        let Some((seg, after)) = next_segment(rest, s, new_v) else {
            break;
        };
        rest = after;
        match &seg {
            Seg::Key(k) => {
                cel_path = with_field_path(&cel_path, Some(k));
                if let Some(prop) = s.properties.get(k) {
                    api_path = with_field_path(&api_path, Some(k));
                    node = Some(prop);
                } else {
                    api_path.push_str(&format!("[{k}]"));
                    node = s.additional_schema();
                }
                new_v = new_v.and_then(|v| v.get(k));
                old_v = old_v.and_then(|v| v.get(k));
            }
            Seg::Index(i) => {
                cel_path.push_str(&format!("[{i}]"));
                api_path.push_str(&format!("[{i}]"));
                node = s.items.as_deref();
                new_v = new_v.and_then(|v| v.get(i));
                old_v = match new_v {
                    Some(item) => correlate_item(s, item, old_v),
                    None => None,
                };
            }
        }
        order.push(seg);
    }
    found
}

fn to_field_error(f: &ValidationError, at: &Located) -> FieldError {
    let rule = f.rule.trim();
    match f.kind {
        ErrorKind::ValidationFailure => {
            let detail = if f.message == format!("failed rule: {}", f.rule) {
                format!("failed rule: {rule}")
            } else {
                f.message.trim().to_string()
            };
            FieldError::for_reason(
                f.reason.as_deref(),
                field_of(&at.rule_path),
                &at.schema_type,
                &detail,
            )
        }
        ErrorKind::EvaluationError => {
            let cause = f
                .message
                .strip_prefix("rule evaluation error: ")
                .unwrap_or(&f.message);
            let detail = format!("{cause} evaluating rule: {rule}");
            FieldError::invalid(field_of(&at.node_path), &quote(&at.schema_type), &detail)
        }
        _ => FieldError::invalid(
            field_of(&at.node_path),
            &quote(&at.schema_type),
            f.message.trim(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_cel_paths_split_on_schema_and_keys() {
        let schema = Node::parse(
            &serde_json::json!({"properties": {"spec": {"properties": {
                "labels": {"additionalProperties": {"type": "string"}},
                "list": {"items": {"properties": {"name": {"type": "string"}}}},
            }}}}),
            "x",
        )
        .unwrap();
        let obj =
            serde_json::json!({"spec": {"labels": {"app.kubernetes.io/name": "x", "app": "y"}}});
        let spec = &schema.properties["spec"];
        let (seg, rest) =
            next_segment("spec.labels.app.kubernetes.io/name", &schema, Some(&obj)).unwrap();
        assert!(seg == Seg::Key("spec".into()) && rest == ".labels.app.kubernetes.io/name");
        let (seg, rest) = next_segment(rest, spec, obj.get("spec")).unwrap();
        assert!(seg == Seg::Key("labels".into()) && rest == ".app.kubernetes.io/name");
        let labels = &spec.properties["labels"];
        let (seg, rest) = next_segment(rest, labels, obj.pointer("/spec/labels")).unwrap();
        assert!(seg == Seg::Key("app.kubernetes.io/name".into()) && rest.is_empty());
        let (seg, rest) = next_segment("list[3].name", spec, None).unwrap();
        assert!(seg == Seg::Key("list".into()) && rest == "[3].name");
        let (seg, rest) = next_segment(rest, &spec.properties["list"], None).unwrap();
        assert!(seg == Seg::Index(3) && rest == ".name");
        assert!(next_segment("", spec, None).is_none());
    }

    #[test]
    fn field_paths_join() {
        assert_eq!(with_field_path("spec", Some(".address")), "spec.address");
        assert_eq!(with_field_path("", Some("spec")), "spec");
        assert_eq!(with_field_path("spec", None), "spec");
    }
}
