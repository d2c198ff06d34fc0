//! The EC2 endpoint clients talk to: forwards each request to moto unless a fault says otherwise.
//! Paths under /_lab/ (which the EC2 query API never uses) go to the control endpoint instead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::attachments::{self, Book};
use super::faults::{is_mutating, CallRecord, Calls, Faults, Kind, Outcome};
use super::primaries::Primaries;
use super::{control, routes};

pub struct State {
    pub moto: SocketAddr,
    pub moto_pid: Option<u32>,
    faults: Mutex<Faults>,
    calls: Mutex<Calls>,
    primaries: Mutex<Primaries>,
    /// How many mutating calls moto carried out (answered with success): the simulated VPC
    /// waits on it to follow EC2 as it changes rather than read EC2 over and over.
    generation: watch::Sender<u64>,
    pub(super) client: Client<HttpConnector, Full<Bytes>>,
    /// Attachments in transition ([`attachments`]).
    attachments: Mutex<Book>,
    /// moto itself, for what the proxy checks before it forwards.
    moto_client: aws_sdk_ec2::Client,
}

impl State {
    /// Forwards to moto at `moto`; every EC2 request waits `round_trip` first; attachments
    /// take `delays`.
    pub fn new(
        moto: SocketAddr,
        moto_pid: Option<u32>,
        round_trip: Duration,
        delays: super::EniDelays,
    ) -> Self {
        let moto_client = crate::sim::ec2_client_with(
            &format!("http://{moto}"),
            aws_sdk_ec2::config::retry::RetryConfig::disabled(),
        );
        Self {
            attachments: Mutex::new(Book::new(delays)),
            moto_client,
            moto,
            moto_pid,
            faults: Mutex::new(Faults::with_round_trip(round_trip)),
            calls: Mutex::default(),
            primaries: Mutex::default(),
            generation: watch::Sender::new(0),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Waits until more than `after` mutating calls were carried out, at most `wait`; the
    /// count then.
    pub async fn generation_after(&self, after: u64, wait: Duration) -> u64 {
        let mut changes = self.generation.subscribe();
        let _ = tokio::time::timeout(wait, changes.wait_for(|g| *g > after)).await;
        let now = *changes.borrow();
        now
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn calls(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn primaries(&self) -> MutexGuard<'_, Primaries> {
        self.primaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn attachments(&self) -> MutexGuard<'_, Book> {
        self.attachments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn moto_client(&self) -> &aws_sdk_ec2::Client {
        &self.moto_client
    }

    /// Counts a change of EC2 made outside a call (a transition that became due).
    pub fn changed(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    pub async fn send_to_moto(&self, req: Request<Full<Bytes>>) -> anyhow::Result<StatusCode> {
        Ok(self.client.request(req).await?.status())
    }
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an outage fault")
    }
}

impl std::error::Error for Dropped {}

pub type Reply = Response<Full<Bytes>>;

pub async fn serve(listener: TcpListener, state: Arc<State>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Such as running out of file descriptors: keep serving the open connections.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(err) = conn.await {
                tracing::debug!(%peer, %err, "connection ended");
            }
        });
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, Dropped> {
    if req.uri().path().starts_with(control::PREFIX) {
        return Ok(control::handle(&state, req).await);
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                format!("reading body: {err}"),
            ))
        }
    };
    let action = action_of(&parts.uri, &body);
    let caller = caller_of(&parts.headers);
    let started_ms = unix_ms();
    let values: Vec<String> = url::form_urlencoded::parse(&body)
        .map(|(_, v)| v.into_owned())
        .collect();
    let decision = state
        .faults()
        .decide_request(action.as_deref(), &values, Instant::now());
    let faulted = decision.outcome != Outcome::Forward;
    {
        let mut calls = state.calls();
        calls.record(action.as_deref(), caller.as_deref(), faulted);
        for implied in implied_actions(action.as_deref(), &body) {
            calls.authorized(caller.as_deref(), implied);
        }
    }
    tracing::debug!(?action, ?decision, "request");
    tokio::time::sleep(decision.delay).await;
    let reply = match decision.outcome {
        Outcome::Forward => {
            let (parts, body) = name_primary(&state, action.as_deref(), parts, body);
            let refused = match action.as_deref() {
                Some(a) => routes::refusal(&state, a, &body, &parts.headers).await,
                None => None,
            };
            match (refused, action.as_deref()) {
                (Some((status, code, message)), _) => Ok(ec2_error_with(status, code, &message)),
                (
                    None,
                    Some(
                        a @ ("AttachNetworkInterface"
                        | "DetachNetworkInterface"
                        | "DeleteNetworkInterface"),
                    ),
                ) => Ok(attachments::carry_out(&state, a, parts, body).await),
                (None, Some(a)) if a.starts_with("Describe") => {
                    Ok(attachments::shown_in(&state, forward(&state, parts, body).await).await)
                }
                (None, _) => Ok(forward(&state, parts, body).await),
            }
        }
        Outcome::Error(kind) => Ok(ec2_error(kind)),
        Outcome::Drop => Err(Dropped),
    };
    let action = action.unwrap_or_else(|| "(none)".into());
    let changed = !faulted && is_mutating(&action);
    if changed && reply.as_ref().is_ok_and(|r| r.status().is_success()) {
        state.generation.send_modify(|g| *g += 1);
    }
    state.calls().finished(CallRecord {
        action,
        started_ms,
        finished_ms: unix_ms(),
        faulted,
    });
    reply
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The EC2 Action: in the form body (as SDKs send it) or in the query string.
fn action_of(uri: &Uri, body: &[u8]) -> Option<String> {
    let from = |bytes: &[u8]| {
        url::form_urlencoded::parse(bytes)
            .find(|(key, _)| key == "Action")
            .map(|(_, value)| value.into_owned())
    };
    from(body).or_else(|| from(uri.query().unwrap_or_default().as_bytes()))
}

/// Actions IAM authorizes besides the request's own: tags given at creation (TagSpecification
/// parameters) are authorized as ec2:CreateTags on the new resource.
fn implied_actions(action: Option<&str>, body: &[u8]) -> Vec<&'static str> {
    let creates = action.is_some_and(|a| a.starts_with("Create") || a == "RunInstances");
    let tagged = url::form_urlencoded::parse(body).any(|(k, _)| k.starts_with("TagSpecification."));
    if creates && tagged {
        vec!["CreateTags"]
    } else {
        Vec::new()
    }
}

/// The access key ID a request was signed with (SigV4 `Credential=AKID/date/region/...`): in
/// the lab, the name each floatip process is given as its AWS_ACCESS_KEY_ID.
fn caller_of(headers: &http::HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split_once("Credential=")?.1;
    let key = credential.split('/').next()?.trim();
    (!key.is_empty()).then(|| key.to_string())
}

/// The request with the next queued primary address named in it, when it creates an ENI
/// that names none ([`Primaries`]). moto checks no signature: only the length changes.
fn name_primary(
    state: &State,
    action: Option<&str>,
    mut parts: http::request::Parts,
    body: Bytes,
) -> (http::request::Parts, Bytes) {
    match state.primaries().name_next(action, &body) {
        Some(named) => {
            (parts.headers).insert(header::CONTENT_LENGTH, named.len().into());
            (parts, named)
        }
        None => (parts, body),
    }
}

pub(super) async fn forward(state: &State, mut parts: http::request::Parts, body: Bytes) -> Reply {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("http://{}{path}", state.moto).parse() {
        Ok(uri) => uri,
        Err(err) => return text(StatusCode::BAD_REQUEST, format!("request path: {err}")),
    };
    let upstream = Request::from_parts(parts, Full::new(body));
    let reply = async {
        let (parts, body) = state.client.request(upstream).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok(Response::from_parts(parts, Full::new(body)))
    };
    reply.await.unwrap_or_else(|err| {
        tracing::warn!(err = format!("{err:#}"), "moto did not answer");
        text(
            StatusCode::BAD_GATEWAY,
            format!("moto did not answer: {err:#}"),
        )
    })
}

/// A reply's head and whole body.
pub(super) async fn split(reply: Reply) -> (http::response::Parts, Bytes) {
    let (parts, body) = reply.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (parts, body)
}

/// A success as EC2's query API sends it for actions that answer only `true`.
pub(super) fn ec2_ok(element: &str) -> Reply {
    let id = request_id();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{element} \
         xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>{id}</requestId>\
         <return>true</return></{element}>"
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/xml;charset=UTF-8")
        .header("x-amzn-requestid", id)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// An error as EC2's query API sends it: status, XML body, and the request id header.
fn ec2_error(kind: Kind) -> Reply {
    let (status, code, message) = match kind {
        Kind::Throttle => (
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestLimitExceeded",
            "Request limit exceeded.",
        ),
        Kind::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The server is overloaded and can't handle the request.",
        ),
        Kind::Unauthorized => (
            StatusCode::FORBIDDEN,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        ),
        Kind::InvalidParameter => (
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "The lab refuses an address named in this request.",
        ),
        Kind::InternalError | Kind::Latency | Kind::Outage => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "An internal error has occurred.",
        ),
    };
    ec2_error_with(status, code, message)
}

/// An EC2 error with this status, code and message.
pub(super) fn ec2_error_with(status: StatusCode, code: &str, message: &str) -> Reply {
    let id = request_id();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>{id}</RequestID></Response>"
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/xml;charset=UTF-8")
        .header("x-amzn-requestid", id)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// A fresh id in the UUID layout EC2 uses: unique, not secret.
fn request_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = nanos ^ (u64::from(std::process::id()) << 40);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (mix(seed ^ seq), mix(seed.wrapping_add(seq).rotate_left(17)));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut reply = Response::new(Full::new(body.into()));
    *reply.status_mut() = status;
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_comes_from_body_then_query() {
        let uri: Uri = "/?Action=DescribeVpcs".parse().unwrap();
        let body = b"Action=AssignPrivateIpAddresses&Version=2016-11-15";
        assert_eq!(
            action_of(&uri, body).as_deref(),
            Some("AssignPrivateIpAddresses")
        );
        assert_eq!(action_of(&uri, b"").as_deref(), Some("DescribeVpcs"));
        assert_eq!(action_of(&Uri::from_static("/"), b"Version=1"), None);
    }

    #[test]
    fn tags_at_creation_imply_create_tags() {
        let tagged =
            b"Action=CreateNetworkInterface&TagSpecification.1.ResourceType=network-interface";
        assert_eq!(
            implied_actions(Some("CreateNetworkInterface"), tagged),
            ["CreateTags"]
        );
        let untagged = b"Action=CreateNetworkInterface&SubnetId=subnet-1";
        assert!(implied_actions(Some("CreateNetworkInterface"), untagged).is_empty());
        assert!(implied_actions(Some("AssignPrivateIpAddresses"), tagged).is_empty());
    }

    #[test]
    fn caller_is_the_signing_access_key() {
        let mut h = http::HeaderMap::new();
        assert_eq!(caller_of(&h), None);
        h.insert(
            header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=floatip-agent/20260101/us-west-2/ec2/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(caller_of(&h).as_deref(), Some("floatip-agent"));
    }

    #[tokio::test]
    async fn throttle_is_ec2s_503_request_limit_exceeded() {
        let reply = ec2_error(Kind::Throttle);
        assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = reply.into_body().collect().await.unwrap().to_bytes();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains("<Code>RequestLimitExceeded</Code>"), "{body}");
        assert!(body.contains("<RequestID>"), "{body}");
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(request_id(), request_id());
        assert_eq!(request_id().len(), 36);
    }
}
