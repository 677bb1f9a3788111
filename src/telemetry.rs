//! Request telemetry: a tower layer that gives every gRPC call a request id (the caller's
//! `x-request-id`, or a new one, echoed in the response), writes one log line per call with
//! its method, status code, latency, subject and request id (never a token), and records it
//! in the metrics. It also bounds every call's time (`DEADLINE`): a database that stops
//! answering without closing the connection is answered UNAVAILABLE, not left hanging.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::HeaderValue;
use tower::{Layer, Service};

use crate::{auth::SubjectSlot, error::Error, metrics::Metrics};

/// How long a call may take before it is answered UNAVAILABLE (reason
/// DATABASE_UNAVAILABLE): the contract's 5 s for an unreachable database, less a margin.
/// Every wait inside a call is the database's (a pooled connection, a row lock, a query), so
/// a call this slow is one the database did not answer. The call itself runs on as a task of
/// its own: a commit already sent completes, and the replica's view learns of it, as always,
/// after it. (Its caller, as after any UNAVAILABLE, cannot tell whether a change was made.)
pub const DEADLINE: Duration = Duration::from_millis(4500);

/// The metadata key of the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The layer; see the module docs.
#[derive(Clone, Debug)]
pub struct RequestLogLayer {
    metrics: Arc<Metrics>,
}

impl RequestLogLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RequestLogLayer { metrics }
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone, Debug)]
pub struct RequestLog<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The caller's request id if it is a sensible one, else a new UUID.
fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    given
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        })
}

impl<S, B, RB> Service<http::Request<B>> for RequestLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let id = request_id(req.headers().get(REQUEST_ID));
        req.headers_mut().insert(REQUEST_ID, id.clone());
        let slot = SubjectSlot::default();
        req.extensions_mut().insert(slot.clone());
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut res = match tokio::time::timeout(DEADLINE, tokio::spawn(fut)).await {
                Ok(Ok(res)) => res,
                Ok(Err(_)) => {
                    let err = Error::Internal("the call's task failed".into());
                    tracing::error!(%method, "{err}");
                    Ok(tonic::Status::from(err).into_http())
                }
                Err(_) => {
                    let err = Error::DatabaseUnavailable(format!(
                        "the database did not answer within {} ms",
                        DEADLINE.as_millis()
                    ));
                    tracing::warn!(%method, "{err}");
                    Ok(tonic::Status::from(err).into_http())
                }
            };
            let latency = start.elapsed();
            // Errors answer trailers-only, with grpc-status in the headers; a status missing
            // there is the OK that a successful call sends in its trailers.
            let code = match &mut res {
                Ok(r) => {
                    r.headers_mut().insert(REQUEST_ID, id.clone());
                    r.headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0)
                }
                Err(_) => tonic::Code::Unknown as i32,
            };
            let code = format!("{:?}", tonic::Code::from_i32(code));
            metrics.observe(&method, &code, latency);
            let subject = slot
                .0
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or_default();
            let request_id = id.to_str().unwrap_or_default();
            let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
            if method.starts_with("/grpc.health.") || method.starts_with("/grpc.reflection.") {
                tracing::debug!(%method, %code, latency_ms, request_id, "request");
            } else {
                tracing::info!(%method, %code, latency_ms, %subject, request_id, "request");
            }
            res
        })
    }
}
