//! The admin HTTP server: /metrics for Prometheus, /livez and /readyz for the kubelet.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::metrics::Metrics;

/// What /readyz reports: every watch has synced and the lease state is known.
#[derive(Default)]
pub struct Readiness {
    pub watches_synced: AtomicBool,
    pub lease_known: AtomicBool,
}

impl Readiness {
    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.watches_synced.load(Ordering::Relaxed) {
            return Err("watches have not synced yet");
        }
        if !self.lease_known.load(Ordering::Relaxed) {
            return Err("leader election has not completed a round yet");
        }
        Ok(())
    }
}

/// Serves until the process ends. Binds first, so a taken port fails start-up loudly.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    readiness: Arc<Readiness>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin server listening");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let resp = respond(req.uri().path(), &metrics, &readiness);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

fn respond(path: &str, metrics: &Metrics, readiness: &Readiness) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/livez" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => match readiness.ready() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
