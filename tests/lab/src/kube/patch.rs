//! PATCH bodies: JSON merge patch, JSON patch, strategic merge patch (approximated as a merge
//! patch: lists are replaced, not merged by key) and server-side apply (create-or-merge).

use serde_json::Value;

use super::errors::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let media = ct.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {other:?}"),
            )),
        }
    }
}

/// Parses a patch body: JSON, or YAML for apply.
pub fn parse_body(kind: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = if kind == PatchType::Apply {
        serde_yaml_ng::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies `patch` to `target` in place.
pub fn apply(kind: PatchType, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    match kind {
        PatchType::Merge | PatchType::Strategic | PatchType::Apply => {
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(target, &ops).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_replaces_lists_and_removes_nulls() {
        let mut obj = json!({"spec": {"a": 1, "b": [1, 2], "c": {"d": 1}}});
        apply(
            PatchType::Merge,
            &mut obj,
            &json!({"spec": {"a": null, "b": [3], "c": {"e": 2}}}),
        )
        .unwrap();
        assert_eq!(obj, json!({"spec": {"b": [3], "c": {"d": 1, "e": 2}}}));
    }

    #[test]
    fn json_patch_ops_and_failed_test() {
        let mut obj = json!({"metadata": {"finalizers": ["a", "b"]}});
        let ops = json!([{"op": "remove", "path": "/metadata/finalizers/0"}, {"op": "add", "path": "/spec", "value": {"x": 1}}]);
        apply(PatchType::Json, &mut obj, &ops).unwrap();
        assert_eq!(
            obj,
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"x": 1}})
        );
        let failing = json!([{"op": "test", "path": "/spec/x", "value": 2}]);
        assert_eq!(
            apply(PatchType::Json, &mut obj, &failing).unwrap_err().code,
            422
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml; charset=utf-8").unwrap(),
            PatchType::Apply
        );
        assert_eq!(
            PatchType::from_content_type("application/json")
                .unwrap_err()
                .code,
            415
        );
    }
}
