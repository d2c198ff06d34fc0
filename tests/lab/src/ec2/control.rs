//! The lab's control endpoint, on the same listener as EC2 under /_lab/:
//!
//! - `POST /_lab/faults` with a JSON [`Spec`] arms a fault and answers it with its id.
//! - `GET /_lab/faults` lists the armed faults; `DELETE /_lab/faults` disarms them all.
//! - `GET /_lab/calls` counts requests per EC2 Action, mutating or not, and per caller (access
//!   key ID) and Action; `DELETE` resets them.
//! - `POST /_lab/primaries` with `{"address": A}` makes A the primary address EC2 gives the next
//!   new ENI whose CreateNetworkInterface names none, as EC2 may pick any free address (moto
//!   picks at random); queued addresses go one per ENI, in order. `GET` lists those queued.
//! - `GET /_lab/info` tells moto's address and process id, and the round trip every EC2
//!   request waits (`latency_ms`).
//! - `GET /_lab/attachments` lists the ENI attachments in transition, `{"attaching": [ID],
//!   "detaching": [ID]}`, the ENIs attaching or on their way (`attaching_enis`), and the
//!   delays (`attach_ms`, `detach_ms`).
//! - `GET /_lab/generation?after=N&waitMs=M` answers `{"generation": G}`, how many mutating
//!   calls moto carried out, once G exceeds N or M ms (at most [`MAX_WAIT`]) have passed:
//!   how the simulated VPC hears of changes in EC2 as they happen.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::attachments::Phase;
use super::faults::{Calls, Spec};
use super::proxy::{text, Reply, State};

pub const PREFIX: &str = "/_lab/";

/// The longest a `GET /_lab/generation` waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

pub async fn handle(state: &State, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => return text(StatusCode::BAD_REQUEST, format!("reading body: {err}")),
    };
    let now = Instant::now();
    let path = parts.uri.path().trim_start_matches(PREFIX);
    match (&parts.method, path) {
        (&Method::POST, "faults") => match serde_json::from_slice::<Spec>(&body) {
            Ok(spec) => match state.faults().add(spec, now) {
                Ok(fault) => {
                    tracing::info!(?fault, "fault armed");
                    json(StatusCode::CREATED, &fault)
                }
                Err(msg) => text(StatusCode::BAD_REQUEST, msg),
            },
            Err(err) => text(StatusCode::BAD_REQUEST, format!("fault spec: {err}")),
        },
        (&Method::GET, "faults") => json(StatusCode::OK, &state.faults().list(now)),
        (&Method::DELETE, "faults") => {
            let cleared = state.faults().clear();
            tracing::info!(cleared, "faults cleared");
            json(StatusCode::OK, &serde_json::json!({ "cleared": cleared }))
        }
        (&Method::POST, "primaries") => match serde_json::from_slice::<Primary>(&body) {
            Ok(p) => {
                tracing::info!(address = %p.address, "the next new ENI naming no address gets it");
                state.primaries().queue(p.address);
                json(StatusCode::CREATED, &state.primaries().queued())
            }
            Err(err) => text(StatusCode::BAD_REQUEST, format!("primary: {err}")),
        },
        (&Method::GET, "primaries") => json(StatusCode::OK, &state.primaries().queued()),
        (&Method::GET, "calls") => json(StatusCode::OK, &*state.calls()),
        (&Method::DELETE, "calls") => {
            *state.calls() = Calls::default();
            json(StatusCode::OK, &serde_json::json!({}))
        }
        (&Method::GET, "info") => json(
            StatusCode::OK,
            &serde_json::json!({
                "moto_addr": state.moto.to_string(),
                "moto_pid": state.moto_pid,
                "latency_ms": state.faults().round_trip().as_millis() as u64,
            }),
        ),
        (&Method::GET, "attachments") => {
            let book = state.attachments();
            let ids = |phase| {
                book.shown()
                    .into_iter()
                    .filter(|(_, p)| *p == phase)
                    .map(|(id, _)| id)
                    .collect::<Vec<_>>()
            };
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "attaching": ids(Phase::Attaching),
                    "detaching": ids(Phase::Detaching),
                    "attaching_enis": book.attaching_enis(),
                    "attach_ms": book.delays().attach_ms,
                    "detach_ms": book.delays().detach_ms,
                }),
            )
        }
        (&Method::GET, "generation") => {
            let (after, wait) = generation_query(parts.uri.query().unwrap_or_default());
            let generation = state.generation_after(after, wait).await;
            json(
                StatusCode::OK,
                &serde_json::json!({ "generation": generation }),
            )
        }
        (_, "faults" | "calls" | "info" | "attachments" | "generation" | "primaries") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "no such lab path"),
    }
}

/// The JSON body of `POST /_lab/primaries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Primary {
    address: String,
}

/// `after` and `waitMs` of a generation query: without `after` the answer comes at once.
fn generation_query(query: &str) -> (u64, Duration) {
    let mut after = None;
    let mut wait = Duration::ZERO;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "after" => after = value.parse().ok(),
            "waitMs" => wait = value.parse().map_or(wait, Duration::from_millis),
            _ => {}
        }
    }
    match after {
        Some(after) => (after, wait.min(MAX_WAIT)),
        None => (u64::MAX, Duration::ZERO),
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut reply = text(status, Bytes::from(body));
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            reply
        }
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_queries_wait_only_when_given_a_generation_and_not_for_long() {
        let ms = Duration::from_millis;
        assert_eq!(generation_query("after=7&waitMs=10"), (7, ms(10)));
        assert_eq!(generation_query("after=7"), (7, Duration::ZERO));
        assert_eq!(generation_query("after=7&waitMs=3600000"), (7, MAX_WAIT));
        assert_eq!(generation_query("waitMs=10"), (u64::MAX, Duration::ZERO));
        assert_eq!(generation_query(""), (u64::MAX, Duration::ZERO));
    }
}
