//! The HTTP side: accept loop (with the outage fault), routing, and the lab's control endpoints.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::audit::Audit;
use super::discovery;
use super::errors::ApiError;
use super::faults::{reason_for, FaultRequest, Faults, Verdict};
use super::handlers;
use super::store::Store;

pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted, as the API server's default.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct App {
    pub store: Arc<Store>,
    pub faults: Faults,
    pub bookmark_interval: Duration,
    pub audit: Audit,
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, app: Arc<App>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        if app.faults.in_outage() {
            // Refuse: the client sees the connection close before any response.
            drop(stream);
            continue;
        }
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { dispatch(app, req).await }
            });
            // A connection error (client went away, outage cut) ends only this connection.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An error from the service makes hyper drop the connection without answering, which is what
/// a server that stopped serving looks like to a client on an open keep-alive connection.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused: outage")
    }
}

impl std::error::Error for Refused {}

async fn dispatch(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Refused> {
    let path = req.uri().path().to_string();
    if path.starts_with("/_lab/") {
        return Ok(control(&app, req).await);
    }
    if app.faults.in_outage() {
        return Err(Refused);
    }
    match app.faults.verdict(req.method().as_str(), &path) {
        Verdict::Serve => {}
        Verdict::Stall(d) => tokio::time::sleep(d).await,
        Verdict::Fail(code) => {
            let err = ApiError::new(
                code,
                reason_for(code),
                format!("injected fault: {code} for {} {path}", req.method()),
            );
            let mut resp = error_response(&err);
            if code == 429 {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            }
            return Ok(resp);
        }
    }
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let resp = route(&app, req)
        .await
        .unwrap_or_else(|e| error_response(&e));
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    Ok(resp)
}

async fn control(app: &App, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    match (method, path.as_str()) {
        (Method::POST, "/_lab/faults") => match serde_json::from_slice::<FaultRequest>(&body) {
            Ok(f) => {
                app.faults.apply(f);
                json_response(StatusCode::OK, &app.faults.describe())
            }
            Err(e) => error_response(&ApiError::bad_request(format!("fault request: {e}"))),
        },
        (Method::DELETE, "/_lab/faults") => {
            app.faults.clear();
            json_response(StatusCode::OK, &app.faults.describe())
        }
        (Method::GET, "/_lab/faults") => json_response(StatusCode::OK, &app.faults.describe()),
        (Method::GET, "/_lab/audit") => json_response(StatusCode::OK, &app.audit.snapshot()),
        (Method::DELETE, "/_lab/audit") => {
            app.audit.clear();
            json_response(StatusCode::OK, &json!({}))
        }
        (Method::POST, "/_lab/compact") => {
            let rv = app.store.compact();
            json_response(StatusCode::OK, &json!({"compactedTo": rv.to_string()}))
        }
        _ => error_response(&ApiError::new(
            404,
            "NotFound",
            format!("no lab endpoint {path}"),
        )),
    }
}

pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("reading the request body: {e}"),
        )),
    }
}

/// A parsed resource path.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method() == Method::GET;
    let reg = || app.store.lock().0.registry.clone();
    match segs.as_slice() {
        ["version"] if get => return Ok(json_response(StatusCode::OK, &discovery::version())),
        ["healthz" | "livez" | "readyz"] if get => return Ok(text_response(StatusCode::OK, "ok")),
        ["api"] if get => return Ok(json_response(StatusCode::OK, &discovery::core_versions())),
        ["apis"] if get => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::group_list(&reg()),
            ))
        }
        ["api", v] if get => {
            return discovery::resource_list(&reg(), "", v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| not_served(&path))
        }
        ["apis", g] if get => {
            return discovery::group(&reg(), g)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| not_served(&path))
        }
        ["apis", g, v] if get => {
            return discovery::resource_list(&reg(), g, v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| not_served(&path))
        }
        ["openapi", "v3"] if get => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::openapi_root(&reg()),
            ))
        }
        ["openapi", "v3", "api", v] if get => {
            return discovery::openapi_group_version(&reg(), "", v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| not_served(&path))
        }
        ["openapi", "v3", "apis", g, v] if get => {
            return discovery::openapi_group_version(&reg(), g, v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(|| not_served(&path))
        }
        _ => {}
    }
    let target = parse_target(&segs).ok_or_else(|| not_served(&path))?;
    app.audit
        .record(req.method(), req.uri().query(), req.headers(), &target);
    handlers::handle(app, req, target).await
}

fn not_served(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

/// `/api/v1/...` or `/apis/{group}/{version}/...`, then
/// `[namespaces/{ns}/]{plural}[/{name}[/{subresource}]]`.
fn parse_target(segs: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let mut t = Target {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    let rest = match rest {
        // /api/v1/namespaces/{ns}/{plural}... (but not the namespace's own subresources)
        ["namespaces", ns, plural, more @ ..] if !matches!(*plural, "status" | "finalize") => {
            t.namespace = Some(ns.to_string());
            t.plural = plural.to_string();
            more
        }
        [plural, more @ ..] => {
            t.plural = plural.to_string();
            more
        }
        [] => return None,
    };
    match rest {
        [] => {}
        [name] => t.name = Some(name.to_string()),
        [name, sub] => {
            t.name = Some(name.to_string());
            t.subresource = Some(sub.to_string());
        }
        _ => return None,
    }
    Some(t)
}

pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("JSON values serialize");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .expect("valid response")
}

fn text_response(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .expect("valid response")
}

pub fn error_response(err: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &err.to_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(path: &str) -> Option<Target> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        parse_target(&segs)
    }

    #[test]
    fn paths() {
        let x = t("/apis/floatip.io/v1alpha1/floatingips/web/status").unwrap();
        assert_eq!(
            (
                x.group.as_str(),
                x.plural.as_str(),
                x.name.as_deref(),
                x.subresource.as_deref()
            ),
            ("floatip.io", "floatingips", Some("web"), Some("status"))
        );
        let x = t("/api/v1/namespaces/default/pods/p1").unwrap();
        assert_eq!(
            (x.namespace.as_deref(), x.plural.as_str(), x.name.as_deref()),
            (Some("default"), "pods", Some("p1"))
        );
        let x = t("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(
            (x.namespace, x.plural.as_str(), x.name.as_deref()),
            (None, "namespaces", Some("kube-system"))
        );
        let x = t("/api/v1/namespaces/kube-system/status").unwrap();
        assert_eq!(
            (
                x.plural.as_str(),
                x.name.as_deref(),
                x.subresource.as_deref()
            ),
            ("namespaces", Some("kube-system"), Some("status"))
        );
        let x = t("/apis/coordination.k8s.io/v1/namespaces/floatip/leases").unwrap();
        assert_eq!(
            (x.namespace.as_deref(), x.plural.as_str(), x.name),
            (Some("floatip"), "leases", None)
        );
        assert!(t("/apis/floatip.io").is_none());
    }
}
