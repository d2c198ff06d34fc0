//! The OpenAPI keyword checks, in kube-openapi's order and words (validate/schema.go: type,
//! allOf/anyOf/oneOf/not, string, format, number, array, enum, object), converted to field
//! errors the way apiextensions' kubeOpenAPIResultToFieldErrors does.
//!
//! On updates, unchanged values are not checked again (CRD validation ratcheting): a subtree
//! equal to the value at the same place in the old object reports nothing.

use serde_json::{Map, Value};

use super::field::field_of;
use super::formats;
use super::node::{Additional, Node};
use super::render::{self, bad_value, quote, Num};
use super::FieldError;

const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// Validates the resource (apiVersion, kind and metadata excluded) against its root schema.
pub(super) fn validate(root: &Node, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut v = Validator::default();
    v.node(root, obj, old, "", true);
    v.errors
}

#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// swag.IsFloat64AJSONInteger, near enough: whole and within the exact float range.
fn is_json_integer(f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_991.0
}

/// Equality the enum check accepts: numbers by value, everything else structurally.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Num::of(x).as_f64() == Num::of(y).as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| loose_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| loose_eq(a, b)))
        }
        _ => a == b,
    }
}

/// The old item a new list item is compared with: only list-type map items correlate, by keys.
pub(super) fn correlate_item<'a>(
    s: &Node,
    item: &Value,
    old_list: Option<&'a Value>,
) -> Option<&'a Value> {
    if s.list_type.as_deref() != Some("map") || s.list_map_keys.is_empty() {
        return None;
    }
    let key = |v: &Value| -> Vec<Option<Value>> {
        s.list_map_keys.iter().map(|k| v.get(k).cloned()).collect()
    };
    let wanted = key(item);
    old_list?
        .as_array()?
        .iter()
        .find(|o| o.is_object() && key(o) == wanted)
}

impl Validator {
    fn push(&mut self, e: FieldError) {
        // Result.AddErrors keeps one of each message.
        if !self
            .errors
            .iter()
            .any(|x| x.field == e.field && x.message == e.message)
        {
            self.errors.push(e);
        }
    }

    fn branch(s: &Node, v: &Value, old: Option<&Value>, path: &str) -> Vec<FieldError> {
        let mut sub = Validator::default();
        sub.node(s, v, old, path, false);
        sub.errors
    }

    fn node(&mut self, s: &Node, v: &Value, old: Option<&Value>, path: &str, root: bool) {
        if old.is_some_and(|o| o == v) {
            return;
        }
        if v.is_null() {
            self.type_of_null(s, path);
            self.enumeration(s, v, path);
            return;
        }
        self.type_of(s, v, path);
        self.junctors(s, v, old, path);
        match v {
            Value::String(text) => {
                self.string(s, text, path);
                self.format(s, text, path);
            }
            Value::Number(n) => self.number(s, Num::of(n), path),
            Value::Array(items) => self.array(s, items, old, path),
            _ => {}
        }
        self.enumeration(s, v, path);
        if let Value::Object(map) = v {
            self.object(s, map, old, path, root);
        }
    }

    fn type_error(&mut self, path: &str, expected: &str, got: &str) {
        let detail = format!("{path} in body must be of type {expected}: {}", quote(got));
        self.push(FieldError::type_invalid(
            field_of(path),
            &quote(got),
            &detail,
        ));
    }

    fn type_of_null(&mut self, s: &Node, path: &str) {
        let types = s.types();
        if !types.is_empty() && !s.nullable {
            self.type_error(path, &types.join(","), "null");
        }
    }

    fn type_of(&mut self, s: &Node, v: &Value, path: &str) {
        let types = s.types();
        if types.is_empty() && s.format.is_empty() {
            return;
        }
        let (data_type, data_format, float) = match v {
            Value::Bool(_) => ("boolean", "", None),
            Value::String(_) => ("string", "", None),
            Value::Number(n) => match Num::of(n) {
                Num::Int(_) => ("integer", "int64", None),
                Num::Float(f) => ("number", "float64", Some(f)),
            },
            Value::Array(_) => ("array", "", None),
            Value::Object(_) => ("object", "", None),
            Value::Null => return,
        };
        let has = |t: &str| types.contains(&t);
        let float_int = float.is_some_and(is_json_integer) && has("integer");
        let int_float = data_type == "integer" && has("number");
        let string_or_list = matches!(v, Value::String(_) | Value::Array(_));
        let format = s.format.as_str();
        // A non-string value under a format-carrying schema: reported against the format.
        let fits_format =
            format.is_empty() || has(data_type) || data_format == format || float_int || int_float;
        if !(string_or_list || fits_format) {
            self.type_error(path, format, data_format);
            return;
        }
        // A string (or list) under a string format is left to the format check.
        if !(has("number") || has("integer") || format.is_empty()) && string_or_list {
            return;
        }
        if !(has(data_type) || float_int || int_float) {
            self.type_error(path, &types.join(","), data_type);
        }
    }

    /// allOf/anyOf/oneOf/not report "<nil>" errors naming the path, plus the failures of
    /// the branch that came closest (here: the one with the fewest errors).
    fn junctors(&mut self, s: &Node, v: &Value, old: Option<&Value>, path: &str) {
        let composite = |this: &mut Validator, msg: String| {
            this.push(FieldError::invalid(field_of(""), "\"\"", &msg));
        };
        let best = |results: Vec<Vec<FieldError>>| {
            results
                .into_iter()
                .filter(|r| !r.is_empty())
                .min_by_key(Vec::len)
                .unwrap_or_default()
        };
        if !s.any_of.is_empty() {
            let mut failures = Vec::new();
            let mut ok = false;
            for b in &s.any_of {
                let r = Self::branch(b, v, old, path);
                if r.is_empty() {
                    ok = true;
                    break;
                }
                failures.push(r);
            }
            if !ok {
                let msg = format!("{} must validate at least one schema (anyOf)", quote(path));
                composite(self, msg);
                for e in best(failures) {
                    self.push(e);
                }
            }
        }
        if !s.one_of.is_empty() {
            let mut failures = Vec::new();
            let mut valid = 0;
            for b in &s.one_of {
                let r = Self::branch(b, v, old, path);
                if r.is_empty() {
                    valid += 1;
                } else if valid == 0 {
                    failures.push(r);
                }
            }
            if valid != 1 {
                let found = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                let msg = format!(
                    "{} must validate one and only one schema (oneOf). {found}",
                    quote(path)
                );
                composite(self, msg);
                if valid == 0 {
                    for e in best(failures) {
                        self.push(e);
                    }
                }
            }
        }
        if !s.all_of.is_empty() {
            let mut valid = 0;
            for b in &s.all_of {
                let r = Self::branch(b, v, old, path);
                if r.is_empty() {
                    valid += 1;
                }
                for e in r {
                    self.push(e);
                }
            }
            if valid != s.all_of.len() {
                let none = if valid == 0 { ". None validated" } else { "" };
                let msg = format!(
                    "{} must validate all the schemas (allOf){none}",
                    quote(path)
                );
                composite(self, msg);
            }
        }
        if let Some(not) = &s.not {
            if Self::branch(not, v, old, path).is_empty() {
                let msg = format!("{} must not validate the schema (not)", quote(path));
                composite(self, msg);
            }
        }
    }

    /// Only the first failing string check is reported.
    fn string(&mut self, s: &Node, text: &str, path: &str) {
        let chars = text.chars().count() as i64;
        if let Some(max) = s.max_length {
            if chars > max {
                self.push(FieldError::too_long(field_of(path), max));
                return;
            }
        }
        if let Some(min) = s.min_length {
            if chars < min {
                let detail = format!("{path} in body should be at least {min} chars long");
                self.push(FieldError::invalid(field_of(path), &quote(text), &detail));
                return;
            }
        }
        if let Some((pattern, re)) = &s.pattern {
            if !re.is_match(text) {
                let detail = format!("{path} in body should match '{pattern}'");
                self.push(FieldError::invalid(field_of(path), &quote(text), &detail));
            }
        }
    }

    fn format(&mut self, s: &Node, text: &str, path: &str) {
        if !s.format.is_empty() && !formats::valid(&s.format, text) {
            let detail = format!(
                "{path} in body must be of type {}: {}",
                s.format,
                quote(text)
            );
            self.push(FieldError::type_invalid(
                field_of(path),
                &quote(text),
                &detail,
            ));
        }
    }

    /// multipleOf, minimum, maximum; integers compare with the bound truncated to an integer,
    /// as MinimumNativeType/MaximumNativeType do.
    fn number(&mut self, s: &Node, n: Num, path: &str) {
        let field = field_of(path);
        let bad = n.v();
        if let Some(factor) = s.multiple_of {
            let (fails, shown) = match n {
                Num::Int(i) if factor as i64 != 0 => {
                    (i % (factor as i64) != 0, (factor as i64).to_string())
                }
                _ => {
                    let x = n.as_f64();
                    let mult = if factor < 1.0 {
                        1.0 / factor * x
                    } else {
                        x / factor
                    };
                    (!is_json_integer(mult), render::float_v(factor))
                }
            };
            if fails {
                let detail = format!("{path} in body should be a multiple of {shown}");
                self.push(FieldError::invalid(field.clone(), &bad, &detail));
            }
        }
        let bound = |limit: f64, excl: bool, below: bool| -> Option<String> {
            let (fails, shown) = match n {
                Num::Int(i) => {
                    let l = limit as i64;
                    let fails = match (below, excl) {
                        (true, false) => i < l,
                        (true, true) => i <= l,
                        (false, false) => i > l,
                        (false, true) => i >= l,
                    };
                    (fails, l.to_string())
                }
                Num::Float(x) => {
                    let fails = match (below, excl) {
                        (true, false) => x < limit,
                        (true, true) => x <= limit,
                        (false, false) => x > limit,
                        (false, true) => x >= limit,
                    };
                    (fails, render::float_v(limit))
                }
            };
            let rel = match (below, excl) {
                (true, false) => "greater than or equal to",
                (true, true) => "greater than",
                (false, false) => "less than or equal to",
                (false, true) => "less than",
            };
            fails.then(|| format!("{path} in body should be {rel} {shown}"))
        };
        if let Some(min) = s.minimum {
            if let Some(detail) = bound(min, s.exclusive_minimum, true) {
                self.push(FieldError::invalid(field.clone(), &bad, &detail));
            }
        }
        if let Some(max) = s.maximum {
            if let Some(detail) = bound(max, s.exclusive_maximum, false) {
                self.push(FieldError::invalid(field, &bad, &detail));
            }
        }
    }

    fn array(&mut self, s: &Node, items: &[Value], old: Option<&Value>, path: &str) {
        if let Some(item_schema) = &s.items {
            for (i, item) in items.iter().enumerate() {
                let old_item = correlate_item(s, item, old);
                self.node(item_schema, item, old_item, &format!("{path}[{i}]"), false);
            }
        }
        let size = items.len() as i64;
        if let Some(min) = s.min_items {
            if size < min {
                let detail = format!("{path} in body should have at least {min} items");
                self.push(FieldError::invalid(
                    field_of(path),
                    &size.to_string(),
                    &detail,
                ));
            }
        }
        if let Some(max) = s.max_items {
            if size > max {
                self.push(FieldError::too_many(field_of(path), size, max));
            }
        }
        if s.unique_items
            && items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].iter().any(|b| b == a))
        {
            let detail = format!("{path} in body shouldn't contain duplicates");
            self.push(FieldError::invalid(field_of(path), "\"\"", &detail));
        }
    }

    /// A null never matches an enum, even one listing null (basicCommonValidator).
    fn enumeration(&mut self, s: &Node, v: &Value, path: &str) {
        let Some(values) = &s.enum_ else {
            return;
        };
        if !v.is_null() && values.iter().any(|e| loose_eq(v, e)) {
            return;
        }
        let allowed: Vec<String> = values
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => render::json(other),
            })
            .collect();
        self.push(FieldError::not_supported(
            field_of(path),
            &bad_value(v),
            &allowed,
        ));
    }

    fn object(
        &mut self,
        s: &Node,
        map: &Map<String, Value>,
        old: Option<&Value>,
        path: &str,
        root: bool,
    ) {
        let skip = |k: &str| root && META_FIELDS.contains(&k);
        let count = map.keys().filter(|k| !skip(k)).count() as i64;
        if let Some(min) = s.min_properties {
            if count < min {
                let detail = format!("{path} in body should have at least {min} properties");
                self.push(FieldError::invalid(
                    field_of(path),
                    &count.to_string(),
                    &detail,
                ));
                return;
            }
        }
        if let Some(max) = s.max_properties {
            if count > max {
                self.push(FieldError::too_many(field_of(path), count, max));
                return;
            }
        }
        match &s.additional {
            Some(Additional::Allows(false)) => {
                for k in map
                    .keys()
                    .filter(|k| !skip(k) && !s.properties.contains_key(*k))
                {
                    let detail = format!("{path}.{k} in body is a forbidden property");
                    self.push(FieldError::invalid(field_of(path), &quote(k), &detail));
                }
            }
            Some(Additional::Schema(add)) => {
                for (k, v) in map.iter().filter(|(k, _)| !skip(k)) {
                    if !s.properties.contains_key(k) {
                        let old_v = old.and_then(|o| o.get(k));
                        self.node(add, v, old_v, &join(path, k), false);
                    }
                }
            }
            _ => {}
        }
        for (name, prop) in &s.properties {
            if skip(name) {
                continue;
            }
            if let Some(v) = map.get(name) {
                let old_v = old.and_then(|o| o.get(name));
                self.node(prop, v, old_v, &join(path, name), false);
            }
        }
        for req in &s.required {
            if !map.contains_key(req) {
                self.push(FieldError::required(field_of(&join(path, req)), ""));
            }
        }
    }
}
