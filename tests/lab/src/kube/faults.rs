//! Fault injection, driven over `/_lab/faults`: fail requests with a chosen status, stall them,
//! drop open watches, or stop serving for a while.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

/// `POST /_lab/faults` body. Every field is optional; what is given replaces the current setting.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRequest {
    /// Answer matching requests with this error.
    pub fail: Option<FailRule>,
    /// Hold matching requests this long before serving them.
    pub stall: Option<StallRule>,
    /// End every open watch now (clients see the stream close and must resume).
    #[serde(default)]
    pub drop_watches: bool,
    /// Refuse every connection for this many seconds; open connections and watches are cut.
    pub outage_seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailRule {
    /// HTTP status to answer with: 429, 500, 503, 504, 403, 409...
    pub status: u16,
    #[serde(flatten)]
    pub scope: Scope,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StallRule {
    pub millis: u64,
    #[serde(flatten)]
    pub scope: Scope,
}

/// Which requests a rule applies to, and for how long.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Only requests whose path starts with this.
    pub path_prefix: Option<String>,
    /// Only this HTTP method (GET, PUT, PATCH, POST, DELETE).
    pub method: Option<String>,
    /// Only the next N matching requests; unlimited when absent.
    pub count: Option<u32>,
    /// Only for this many seconds; forever when absent.
    pub seconds: Option<f64>,
}

struct Active<T> {
    rule: T,
    scope: Scope,
    until: Option<Instant>,
}

impl<T: Clone> Active<T> {
    fn new(rule: T, scope: Scope) -> Self {
        let until = scope
            .seconds
            .map(|s| Instant::now() + Duration::from_secs_f64(s));
        Self { rule, scope, until }
    }

    /// Consumes one use if the request matches and the rule is still live.
    fn take(&mut self, method: &str, path: &str) -> Option<T> {
        if self.until.is_some_and(|u| Instant::now() >= u) || self.scope.count == Some(0) {
            return None;
        }
        if self
            .scope
            .method
            .as_deref()
            .is_some_and(|m| !m.eq_ignore_ascii_case(method))
        {
            return None;
        }
        if self
            .scope
            .path_prefix
            .as_deref()
            .is_some_and(|p| !path.starts_with(p))
        {
            return None;
        }
        if let Some(c) = self.scope.count.as_mut() {
            *c -= 1;
        }
        Some(self.rule.clone())
    }
}

#[derive(Default)]
struct State {
    fail: Option<Active<u16>>,
    stall: Option<Active<u64>>,
    outage_until: Option<Instant>,
}

pub struct Faults {
    state: Mutex<State>,
    /// Bumped to end every open watch.
    drop_tx: watch::Sender<u64>,
}

/// What to do with one request.
pub enum Verdict {
    Serve,
    Stall(Duration),
    Fail(u16),
}

impl Faults {
    pub fn new() -> Self {
        Self {
            state: Mutex::default(),
            drop_tx: watch::channel(0).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn apply(&self, req: FaultRequest) {
        let mut st = self.state();
        if let Some(f) = req.fail {
            st.fail = Some(Active::new(f.status, f.scope));
        }
        if let Some(s) = req.stall {
            st.stall = Some(Active::new(s.millis, s.scope));
        }
        if let Some(secs) = req.outage_seconds {
            st.outage_until = Some(Instant::now() + Duration::from_secs_f64(secs));
        }
        if req.drop_watches || req.outage_seconds.is_some() {
            self.drop_tx.send_modify(|n| *n += 1);
        }
    }

    pub fn clear(&self) {
        *self.state() = State::default();
    }

    pub fn in_outage(&self) -> bool {
        self.state()
            .outage_until
            .is_some_and(|u| Instant::now() < u)
    }

    pub fn verdict(&self, method: &str, path: &str) -> Verdict {
        let mut st = self.state();
        if let Some(status) = st.fail.as_mut().and_then(|f| f.take(method, path)) {
            return Verdict::Fail(status);
        }
        if let Some(ms) = st.stall.as_mut().and_then(|s| s.take(method, path)) {
            return Verdict::Stall(Duration::from_millis(ms));
        }
        Verdict::Serve
    }

    pub fn watch_drops(&self) -> watch::Receiver<u64> {
        self.drop_tx.subscribe()
    }

    pub fn describe(&self) -> Value {
        let st = self.state();
        json!({
            "fail": st.fail.as_ref().map(|f| json!({"status": f.rule, "remaining": f.scope.count})),
            "stall": st.stall.as_ref().map(|s| json!({"millis": s.rule, "remaining": s.scope.count})),
            "outage": st.outage_until.is_some_and(|u| Instant::now() < u),
        })
    }
}

/// The Status reason the API server uses with each code.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}
