//! field.Error constructors (k8s.io/apimachinery/pkg/util/validation/field), printing their
//! bodies the way ErrorBody does.

use super::render;
use super::FieldError;

/// field.Path.String() of the nil path, which the apiserver prints for root-level errors.
pub const NIL_PATH: &str = "<nil>";

/// A path as the OpenAPI validator names it ("" at the root) turned into a field string.
pub(crate) fn field_of(path: &str) -> String {
    if path.is_empty() {
        NIL_PATH.to_string()
    } else {
        path.to_string()
    }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

impl FieldError {
    fn new(field: String, reason: &'static str, message: String) -> FieldError {
        FieldError {
            field,
            reason,
            message,
        }
    }

    /// field.Invalid; `bad` is already rendered (see render::bad_value).
    pub(crate) fn invalid(field: String, bad: &str, detail: &str) -> FieldError {
        let msg = with_detail(format!("Invalid value: {bad}"), detail);
        FieldError::new(field, "FieldValueInvalid", msg)
    }

    /// field.TypeInvalid.
    pub(crate) fn type_invalid(field: String, bad: &str, detail: &str) -> FieldError {
        let msg = with_detail(format!("Invalid value: {bad}"), detail);
        FieldError::new(field, "FieldValueTypeInvalid", msg)
    }

    /// field.Required.
    pub(crate) fn required(field: String, detail: &str) -> FieldError {
        let msg = with_detail("Required value".to_string(), detail);
        FieldError::new(field, "FieldValueRequired", msg)
    }

    /// field.Forbidden.
    pub(crate) fn forbidden(field: String, detail: &str) -> FieldError {
        let msg = with_detail("Forbidden".to_string(), detail);
        FieldError::new(field, "FieldValueForbidden", msg)
    }

    /// field.Duplicate.
    pub(crate) fn duplicate(field: String, bad: &str) -> FieldError {
        FieldError::new(
            field,
            "FieldValueDuplicate",
            format!("Duplicate value: {bad}"),
        )
    }

    /// field.NotSupported; `values` are the allowed values as strings, quoted here.
    pub(crate) fn not_supported(field: String, bad: &str, values: &[String]) -> FieldError {
        let quoted: Vec<String> = values.iter().map(|v| render::quote(v)).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        let msg = with_detail(format!("Unsupported value: {bad}"), &detail);
        FieldError::new(field, "FieldValueNotSupported", msg)
    }

    /// field.TooLong: the body never shows the value; the count is in bytes by its wording
    /// although CRD maxLength counts characters.
    pub(crate) fn too_long(field: String, max: i64) -> FieldError {
        let detail = match max {
            1 => "may not be more than 1 byte".to_string(),
            m if m >= 0 => format!("may not be more than {m} bytes"),
            _ => "value is too long".to_string(),
        };
        FieldError::new(field, "FieldValueTooLong", format!("Too long: {detail}"))
    }

    /// field.TooMany, used for maxItems and maxProperties alike.
    pub(crate) fn too_many(field: String, actual: i64, max: i64) -> FieldError {
        let detail = match max {
            1 => "must have at most 1 item".to_string(),
            m if m >= 0 => format!("must have at most {m} items"),
            _ => "has too many items".to_string(),
        };
        FieldError::new(
            field,
            "FieldValueTooMany",
            format!("Too many: {actual}: {detail}"),
        )
    }

    /// CEL rule failures whose `reason` asks for another error type (fieldErrorForReason).
    pub(crate) fn for_reason(
        reason: Option<&str>,
        field: String,
        schema_type: &str,
        detail: &str,
    ) -> FieldError {
        let bad = render::quote(schema_type);
        match reason {
            Some("FieldValueForbidden") => FieldError::forbidden(field, detail),
            Some("FieldValueRequired") => FieldError::required(field, detail),
            Some("FieldValueDuplicate") => FieldError::duplicate(field, &bad),
            _ => FieldError::invalid(field, &bad, detail),
        }
    }

    /// Statuses that keep CEL rules from running (hasBlockingErr in the CR strategy).
    pub(crate) fn blocks_cel(&self) -> bool {
        matches!(
            self.reason,
            "FieldValueNotSupported"
                | "FieldValueRequired"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
                | "FieldValueTypeInvalid"
        )
    }
}
