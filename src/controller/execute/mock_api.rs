//! A scripted API server for the executor's tests: a `tower` service that hands every request
//! the `kube::Client` sends to the test, which checks it and answers it. What tower-test's
//! mock does, written here because tower-test turns on tokio's `test-util`, which would build
//! tokio (and everything above it) a second time for the tests (see the lab's build_features
//! test).

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use kube::client::Body;
use tokio::sync::{mpsc, oneshot};

type Exchange = (Request<Body>, oneshot::Sender<Response<Body>>);

/// The service the client sends through.
pub struct MockApi(mpsc::UnboundedSender<Exchange>);

/// The test's end: the requests, in the order the client sent them.
pub struct Handle(mpsc::UnboundedReceiver<Exchange>);

/// How the test answers one request.
pub struct SendResponse(oneshot::Sender<Response<Body>>);

pub fn pair() -> (MockApi, Handle) {
    let (tx, rx) = mpsc::unbounded_channel();
    (MockApi(tx), Handle(rx))
}

impl tower_service::Service<Request<Body>> for MockApi {
    type Response = Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Response<Body>, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (respond, answer) = oneshot::channel();
        let sent = self.0.send((request, respond));
        Box::pin(async move {
            sent.map_err(|_| "the scenario had ended when this request came")?;
            Ok(answer.await.map_err(|_| "the scenario did not answer")?)
        })
    }
}

impl Handle {
    /// The next request, or None once the client is gone.
    pub async fn next_request(&mut self) -> Option<(Request<Body>, SendResponse)> {
        let (request, respond) = self.0.recv().await?;
        Some((request, SendResponse(respond)))
    }
}

impl SendResponse {
    pub fn send_response(self, response: Response<Body>) {
        // The client may have given up (a timeout); the test then fails on what it checks.
        let _ = self.0.send(response);
    }
}
