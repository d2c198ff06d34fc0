//! The verbs: get, list, watch, create, update, patch, delete and deletecollection, on a
//! resource or its /status subresource.

use std::collections::HashMap;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::errors::ApiError;
use super::patch::{self, PatchType};
use super::printer;
use super::resources::ResourceType;
use super::schema::UnknownFields;
use super::selectors::{FieldSelector, LabelSelector};
use super::server::{json_response, read_body, App, Body, Target};
use super::store::{name_of, Filter, Part};
use super::watch;

/// Query parameters, decoded.
pub struct Query(HashMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    fn unknown_fields(&self) -> Result<UnknownFields, ApiError> {
        UnknownFields::from_query(self.get("fieldValidation"))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    pub fn filter(&self, namespace: Option<&str>) -> Result<Filter, ApiError> {
        Ok(Filter {
            namespace: namespace.map(String::from),
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(self.get("fieldSelector").unwrap_or_default())?,
        })
    }
}

/// What the client asked the response to look like.
pub struct Wants {
    pub table: bool,
    pub include_object: String,
}

impl Wants {
    fn from(req: &Request<Incoming>, q: &Query) -> Result<Self, ApiError> {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let include_object = q.get("includeObject").unwrap_or("Metadata").to_string();
        printer::check_include_object(&include_object).map_err(ApiError::bad_request)?;
        Ok(Self {
            table: accept.contains("as=Table"),
            include_object,
        })
    }
}

pub fn columns(rt: &ResourceType) -> Vec<printer::Column> {
    if rt.columns.is_empty() {
        printer::default_columns()
    } else {
        rt.columns.clone()
    }
}

pub async fn handle(
    app: &Arc<App>,
    req: Request<Incoming>,
    t: Target,
) -> Result<Response<Body>, ApiError> {
    let rt = app
        .store
        .lock()
        .0
        .registry
        .get(&t.group, &t.version, &t.plural)
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource".to_string(),
            )
        })?;
    if !rt.namespaced && t.namespace.is_some() {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("{} is cluster-scoped", rt.qualified_resource()),
        ));
    }
    let q = Query::parse(req.uri().query());
    if q.get("dryRun").is_some() {
        return Err(ApiError::bad_request(
            "dryRun is not supported by floatip-lab",
        ));
    }
    let wants = Wants::from(&req, &q)?;
    let ns = t.namespace.clone().unwrap_or_default();
    let sub = match t.subresource.as_deref() {
        None => Part::Main,
        Some("status") if rt.status_subresource => Part::Status,
        Some(other) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("{}/{other} is not served", rt.qualified_resource()),
            ))
        }
    };
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    match (method, t.name.clone()) {
        (Method::GET, None) if q.flag("watch") => {
            watch::serve(app, rt, t.namespace.as_deref(), &q, wants)
        }
        (Method::GET, None) => list(app, &rt, t.namespace.as_deref(), &q, &wants),
        (Method::GET, Some(name)) => {
            let obj = app.store.lock().0.get_or_404(&rt, &ns, &name)?;
            Ok(respond(StatusCode::OK, &rt, obj, &wants, &[]))
        }
        (Method::POST, None) => {
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource: namespace required",
                ));
            }
            let obj = parse_json(&read_body(req).await?)?;
            let (mut inner, tx) = app.store.lock();
            let (created, warnings) = inner.create(tx, &rt, &ns, obj, q.unknown_fields()?)?;
            Ok(respond(
                StatusCode::CREATED,
                &rt,
                created,
                &wants,
                &warnings,
            ))
        }
        (Method::PUT, Some(name)) => {
            let obj = parse_json(&read_body(req).await?)?;
            let (mut inner, tx) = app.store.lock();
            let (updated, warnings) =
                inner.update(tx, &rt, &ns, &name, obj, sub, q.unknown_fields()?)?;
            Ok(respond(StatusCode::OK, &rt, updated, &wants, &warnings))
        }
        (Method::PATCH, Some(name)) => {
            let kind = PatchType::from_content_type(&content_type)?;
            let body = patch::parse_body(kind, &read_body(req).await?)?;
            patch_object(app, &rt, &ns, &name, sub, kind, body, &q, &wants)
        }
        (Method::DELETE, Some(name)) => {
            let opts = delete_options(&read_body(req).await?)?;
            let (mut inner, tx) = app.store.lock();
            let obj = inner.delete(tx, &rt, &ns, &name, &opts["preconditions"])?;
            Ok(respond(StatusCode::OK, &rt, obj, &wants, &[]))
        }
        (Method::DELETE, None) => {
            let filter = q.filter(t.namespace.as_deref())?;
            let (mut inner, tx) = app.store.lock();
            let (items, _) = inner.list(&rt, &filter, None, usize::MAX);
            let mut deleted = Vec::new();
            for item in items {
                let item_ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
                deleted.push(inner.delete(tx, &rt, item_ns, &name_of(&item), &Value::Null)?);
            }
            let rv = inner.rv.to_string();
            Ok(json_response(
                StatusCode::OK,
                &list_doc(&rt, deleted, &rv, None),
            ))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "{m} is not allowed on {}",
            rt.qualified_resource()
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    app: &Arc<App>,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    part: Part,
    kind: PatchType,
    body: Value,
    q: &Query,
    wants: &Wants,
) -> Result<Response<Body>, ApiError> {
    if kind == PatchType::Apply && q.get("fieldManager").is_none() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let unknown = q.unknown_fields()?;
    let (mut inner, tx) = app.store.lock();
    match inner.get(rt, ns, name) {
        None if kind == PatchType::Apply && part == Part::Main => {
            let mut obj = body;
            obj["metadata"]["name"] = json!(name);
            let (created, warnings) = inner.create(tx, rt, ns, obj, unknown)?;
            Ok(respond(StatusCode::CREATED, rt, created, wants, &warnings))
        }
        None => Err(ApiError::not_found(rt, name)),
        Some(current) => {
            let mut target = current.clone();
            patch::apply(kind, &mut target, &body)?;
            let (updated, warnings) = inner.update(tx, rt, ns, name, target, part, unknown)?;
            Ok(respond(StatusCode::OK, rt, updated, wants, &warnings))
        }
    }
}

fn list(
    app: &Arc<App>,
    rt: &ResourceType,
    namespace: Option<&str>,
    q: &Query,
    wants: &Wants,
) -> Result<Response<Body>, ApiError> {
    let filter = q.filter(namespace)?;
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let after = q.get("continue").map(decode_continue).transpose()?;
    let (inner, _) = app.store.lock();
    let (items, next) = inner.list(rt, &filter, after.as_ref(), limit);
    let rv = inner.rv.to_string();
    drop(inner);
    let next = next.map(|(ns, name)| encode_continue(&ns, &name));
    if wants.table {
        let table = printer::table(
            &columns(rt),
            &items,
            &rv,
            &wants.include_object,
            jiff::Timestamp::now(),
        );
        return Ok(json_response(StatusCode::OK, &table));
    }
    Ok(json_response(
        StatusCode::OK,
        &list_doc(rt, items, &rv, next),
    ))
}

fn list_doc(rt: &ResourceType, items: Vec<Value>, rv: &str, next: Option<String>) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = next {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": meta,
        "items": items,
    })
}

fn encode_continue(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (ns, name) = text.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let parsed: Result<Value, String> = serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice(body).map_err(|e| e.to_string()));
    parsed.map_err(|e| ApiError::bad_request(format!("the body could not be decoded: {e}")))
}

fn delete_options(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    parse_json(body)
}

/// An object, or a one-row Table of it, with any warnings as Warning headers.
fn respond(
    status: StatusCode,
    rt: &ResourceType,
    obj: Value,
    wants: &Wants,
    warnings: &[String],
) -> Response<Body> {
    let body = if wants.table {
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        printer::table(
            &columns(rt),
            &[obj],
            &rv,
            &wants.include_object,
            jiff::Timestamp::now(),
        )
    } else {
        obj
    };
    let mut resp = json_response(status, &body);
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue("default", "web-1");
        assert_eq!(
            decode_continue(&token).unwrap(),
            ("default".into(), "web-1".into())
        );
        assert_eq!(decode_continue("zz").unwrap_err().code, 400);
    }
}
