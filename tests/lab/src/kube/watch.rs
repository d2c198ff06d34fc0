//! Watch streams: resume from a resourceVersion, bookmarks, 410 Gone, timeouts, and the
//! drop-watches fault.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::errors::ApiError;
use super::handlers::{columns, Query, Wants};
use super::printer;
use super::resources::ResourceType;
use super::server::{App, Body};
use super::store::{present, Event, EventType, Filter};

/// The API server's default when the client sets no timeoutSeconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

pub fn serve(
    app: &Arc<App>,
    rt: Arc<ResourceType>,
    namespace: Option<&str>,
    q: &Query,
    wants: Wants,
) -> Result<Response<Body>, ApiError> {
    let filter = q.filter(namespace)?;
    let send_initial = q.flag("sendInitialEvents");
    let bookmarks = q.flag("allowWatchBookmarks");
    let from = match q.get("resourceVersion") {
        _ if send_initial => None,
        None | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    match app.store.watch(&rt, from, &filter) {
        Ok(start) => {
            let w = Watcher {
                rt,
                filter,
                wants,
                tx,
            };
            let app = app.clone();
            tokio::spawn(async move {
                w.run(app, start, send_initial && bookmarks, bookmarks, timeout)
                    .await
            });
        }
        // As the API server does: 200, then one ERROR event carrying the 410 Status.
        Err(e) if e.code == 410 => {
            let line = line(&json!({"type": "ERROR", "object": e.to_status()}));
            tx.try_send(line).expect("fresh channel has room");
        }
        Err(e) => return Err(e),
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(StreamBody::new(stream).boxed())
        .expect("valid response"))
}

fn line(v: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(v).expect("JSON values serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

struct Watcher {
    rt: Arc<ResourceType>,
    filter: Filter,
    wants: Wants,
    tx: mpsc::Sender<Bytes>,
}

impl Watcher {
    async fn run(
        self,
        app: Arc<App>,
        start: super::store::WatchStart,
        initial_end_bookmark: bool,
        bookmarks: bool,
        timeout: Duration,
    ) {
        let key = self.rt.storage_key();
        let mut seen = start.synced_rv;
        for e in &start.backlog {
            if !self.send_event(e).await {
                return;
            }
        }
        if initial_end_bookmark && !self.send_bookmark(seen, true).await {
            return;
        }
        let mut events = start.events;
        let mut drops = app.faults.watch_drops();
        drops.borrow_and_update();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(app.bookmark_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(e) => {
                        seen = e.rv;
                        if e.resource == key && !self.send_event(&e).await {
                            return;
                        }
                    }
                    // Too slow to keep up, or the server is going away: end the stream and let
                    // the client resume from the last version it saw.
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    if !self.send_bookmark(seen, false).await {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = drops.changed() => return,
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Sends the event as this watch sees it through its selectors; false once the client is gone.
    async fn send_event(&self, e: &Event) -> bool {
        // Selectors name the fields of the version watched.
        let obj = present(&self.rt, e.object.clone());
        let previous = e.previous.clone().map(|p| present(&self.rt, p));
        let Some(kind) = self.visible_kind(e, &obj, previous.as_ref()) else {
            return true;
        };
        let obj = if self.wants.table {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            printer::table(
                &columns(&self.rt),
                &[obj],
                &rv,
                &self.wants.include_object,
                jiff::Timestamp::now(),
            )
        } else {
            obj
        };
        self.tx
            .send(line(&json!({"type": kind.as_str(), "object": obj})))
            .await
            .is_ok()
    }

    /// An object that starts matching the selectors is ADDED to this watch, one that stops
    /// matching is DELETED from it.
    fn visible_kind(&self, e: &Event, obj: &Value, previous: Option<&Value>) -> Option<EventType> {
        let now = self.filter.matches(&e.namespace, obj);
        let before = previous.is_some_and(|p| self.filter.matches(&e.namespace, p));
        match (e.kind, before, now) {
            (EventType::Added, _, true) => Some(EventType::Added),
            (EventType::Modified, true, true) => Some(EventType::Modified),
            (EventType::Modified, false, true) => Some(EventType::Added),
            (EventType::Modified, true, false) => Some(EventType::Deleted),
            (EventType::Deleted, b, n) if b || n => Some(EventType::Deleted),
            _ => None,
        }
    }

    async fn send_bookmark(&self, rv: u64, initial_events_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta});
        self.tx
            .send(line(&json!({"type": "BOOKMARK", "object": obj})))
            .await
            .is_ok()
    }
}
