//! Request logging: a tower layer that writes one line per gRPC call with its method, status
//! code, latency and the caller's subject, and never a token.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use tower::{Layer, Service};

use crate::auth::SubjectSlot;

/// The layer; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestLogLayer;

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog { inner }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone, Debug)]
pub struct RequestLog<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for RequestLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let slot = SubjectSlot::default();
        req.extensions_mut().insert(slot.clone());
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let latency = start.elapsed();
            // Errors answer trailers-only, with grpc-status in the headers; a status missing
            // there is the OK that a successful call sends in its trailers.
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0),
                Err(_) => tonic::Code::Unknown as i32,
            };
            let code = format!("{:?}", tonic::Code::from_i32(code));
            let subject = slot
                .0
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or_default();
            if method.starts_with("/grpc.health.") || method.starts_with("/grpc.reflection.") {
                tracing::debug!(%method, %code, ?latency, "request");
            } else {
                tracing::info!(%method, %code, ?latency, %subject, "request");
            }
            res
        })
    }
}
