//! The admin HTTP server of every long-running component: /metrics for Prometheus, /livez and
//! /readyz for the kubelet. One server; each component says what its probes mean through
//! [`Checks`] and what it measures through [`Exposition`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What /readyz and /livez answer for one component.
pub trait Checks: Send + Sync + 'static {
    /// Ok when the component can do its job; else why not, in one line.
    fn ready(&self) -> Result<(), String>;
    /// Ok while the component's loops run; else which one stalled. A failure makes the kubelet
    /// restart the container, so only what a restart can fix belongs here.
    fn live(&self) -> Result<(), String>;
}

/// What /metrics serves: the text exposition of a component's registry.
pub trait Exposition: Send + Sync + 'static {
    fn encode(&self) -> String;
}

/// The controller's /readyz: every watch has synced and the lease state is known.
#[derive(Default)]
pub struct Readiness {
    pub watches_synced: AtomicBool,
    pub lease_known: AtomicBool,
}

impl Checks for Readiness {
    fn ready(&self) -> Result<(), String> {
        if !self.watches_synced.load(Ordering::Relaxed) {
            return Err("watches have not synced yet".into());
        }
        if !self.lease_known.load(Ordering::Relaxed) {
            return Err("leader election has not completed a round yet".into());
        }
        Ok(())
    }

    /// The controller exits when its lease task dies, the one loop whose stall would matter,
    /// so being able to answer is being alive.
    fn live(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Serves until the process ends. Binds first, so a taken port fails start-up loudly.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<dyn Exposition>,
    checks: Arc<dyn Checks>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot serve /metrics, /livez and /readyz on {addr}: {e} (choose another address with --admin-addr)"),
        )
    })?;
    // The bound address: with port 0 the system picks one, and the log says which.
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "admin server listening");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let checks = checks.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let resp = respond(req.uri().path(), &*metrics, &*checks);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

fn respond(path: &str, metrics: &dyn Exposition, checks: &dyn Checks) -> Response<Full<Bytes>> {
    let text = "text/plain";
    let (status, ctype, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/livez" => probe_answer(checks.live()),
        "/readyz" => probe_answer(checks.ready()),
        _ => (StatusCode::NOT_FOUND, text, "not found\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

/// 200 "ok", or 503 with the reason, for whoever asks by hand (the kubelet only sees the code).
fn probe_answer(result: Result<(), String>) -> (StatusCode, &'static str, String) {
    match result {
        Ok(()) => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("{why}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn readyz_needs_both_watches_and_lease() {
        let r = Readiness::default();
        let m = Metrics::new();
        assert_eq!(
            respond("/readyz", &m, &r).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        r.watches_synced.store(true, Ordering::Relaxed);
        assert_eq!(
            respond("/readyz", &m, &r).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        r.lease_known.store(true, Ordering::Relaxed);
        assert_eq!(respond("/readyz", &m, &r).status(), StatusCode::OK);
        assert_eq!(respond("/livez", &m, &r).status(), StatusCode::OK);
        assert_eq!(respond("/metrics", &m, &r).status(), StatusCode::OK);
        assert_eq!(respond("/nope", &m, &r).status(), StatusCode::NOT_FOUND);
    }

    /// A component whose checks fail with a reason.
    struct Failing;

    impl Checks for Failing {
        fn ready(&self) -> Result<(), String> {
            Err("not today".into())
        }
        fn live(&self) -> Result<(), String> {
            Err("stalled".into())
        }
    }

    #[tokio::test]
    async fn failed_checks_answer_503_with_their_reason() {
        let m = Metrics::new();
        for (path, why) in [("/readyz", "not today\n"), ("/livez", "stalled\n")] {
            let resp = respond(path, &m, &Failing);
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(body, why.as_bytes(), "{path}");
        }
    }
}
