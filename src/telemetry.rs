//! The layer every gRPC call passes through before its service: it gives the call a request
//! id (the caller's `x-request-id`, or a new one, echoed in the response), writes one log
//! line per call with its method, status code, latency (and of it, the time before the call
//! had its place in flight), subject and request id (never a token), and records it in the
//! metrics. It also keeps hostile or unlucky traffic from holding the server:
//!
//! - a workspaced or Health call's request is read whole, within `body_timeout`,
//!   `MAX_REQUEST_BYTES` (`MAX_PROBE_REQUEST_BYTES` for Health) and a budget of bytes shared
//!   by all calls of its kind (workspaced's, or the probes': Health and reflection), and
//!   must be exactly one well-framed gRPC message, before any work starts; so a body that
//!   never arrives is DEADLINE_EXCEEDED (never a false database alarm), and bad framing is
//!   INVALID_ARGUMENT (tonic itself answers INTERNAL); reflection's stream is read a message
//!   at a time under the same limits (see [`crate::metered`]), and every call's header
//!   block counts against its budget until the call is answered;
//! - at most `max_in_flight` calls run at once (fewer while overload lasts); the next ones
//!   wait in line (see [`crate::overload`]: at most `queue_wait` for a burst, 5 ms once the
//!   line stands), and are then answered UNAVAILABLE (reason OVERLOADED) instead of queueing
//!   without limit (Health and reflection are exempt, so probes still see the server; but
//!   at most `probe_calls` of them are open at once on a connection). The
//!   short line absorbs bursts; the bound on calls running keeps the database's own queues
//!   (pool, locks) short;
//! - every call is answered within `DEADLINE`, and holds its place in flight until it ends
//!   or that deadline passes, even if its caller leaves sooner; once its caller is answered
//!   or gone, it is dropped unless it has begun to commit (see
//!   [`crate::store::committing`]), and abandoned after `abandon_after` in any case;
//! - the connection counts as busy until the answer is taken by HTTP/2, or a stream ends
//!   (see [`crate::conn`]).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::{
    auth::SubjectSlot,
    conn::{CallGuard, ConnInfo, ProbeGuard},
    domain::events::{Call, in_call},
    error::Error,
    metered::{Fault, Metered, fault_trailers},
    metrics::Metrics,
    overload::{Line, Place},
    store::committing::Committing,
};

/// How long a call may take before it is answered UNAVAILABLE (reason
/// DATABASE_UNAVAILABLE): the contract's 5 s for an unreachable database, less a margin.
/// It starts once the request has arrived, so every wait inside it is the database's (a
/// pooled connection, a row lock, a query). A call that has begun to commit runs on as a
/// task of its own: its commit completes (unless one of its waits for a lock passes
/// `store::LOCK_TIMEOUT`, or a statement `store::STATEMENT_TIMEOUT`), and the replica's
/// view learns of it, as always, after it; any other call is dropped then. (Its caller, as
/// after any UNAVAILABLE, cannot tell whether a change was made.)
pub const DEADLINE: Duration = Duration::from_millis(4500);

/// The largest request accepted: the gRPC frame's 5 bytes and a message of at most 64 KiB,
/// far above any valid request (64 labels and a description come to about 10 KB).
pub const MAX_REQUEST_BYTES: usize = 5 + (64 << 10);

/// The largest Health request or reflection message: a service or symbol name.
pub const MAX_PROBE_REQUEST_BYTES: usize = 5 + (8 << 10);

/// The largest header block of a Health or reflection call: room for a 16 KB token, which
/// tools may send anyway, beside the usual metadata.
pub const MAX_PROBE_HEADER_BYTES: u32 = 32 << 10;

/// The metadata key of the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// What the layer needs besides the metrics.
#[derive(Clone, Copy, Debug)]
pub struct CallLimits {
    /// Calls run at once, past which the next ones wait in line.
    pub max_in_flight: usize,
    /// The fewest calls run at once while overload lasts (see [`crate::overload`]); `None`
    /// takes the floor the layer is built with (the store's
    /// [`crate::store::Store::overload_places`]). At most `max_in_flight`.
    pub min_in_flight: Option<usize>,
    /// How long a call waits in line in a burst before it is answered OVERLOADED (a line
    /// that stands waits less; see [`crate::overload`]). Long enough to ride out a database
    /// stall of a few tens of ms without refusing calls while the places last: 20 ms cut the
    /// admitted p99 under overload, but refused hundreds of calls in such stalls (see
    /// `benches/RESULTS.md`).
    pub queue_wait: Duration,
    /// How long a call's request may take to arrive.
    pub body_timeout: Duration,
    /// Bytes of requests held while they are read, for all calls together: requests are
    /// read before their caller is authenticated, and each connection may send 128 at once,
    /// so without a shared bound many connections could make the server hold gigabytes.
    /// Past it a request is answered OVERLOADED. The header blocks of calls not yet
    /// answered count too (up to 128 KiB each). Health and reflection calls have a budget of
    /// their own, `probe_bytes`, so that neither kind of call can spend the other's.
    pub request_bytes: usize,
    /// The same for Health and reflection calls: their header blocks until answered, their
    /// requests while read, reflection's messages while they arrive (see
    /// [`crate::metered`]).
    pub probe_bytes: usize,
    /// Health and reflection calls open at once on one connection: they need no token and
    /// hold no place in flight, and a watch or a reflection stream stays open as long as its
    /// client likes. More are answered OVERLOADED. gRPC clients that check health watch
    /// once per connection.
    pub probe_calls: usize,
    /// How long a call that missed its deadline after it began to commit may run on before
    /// it is dropped, with its database connection: a commit on a connection whose network
    /// silently drops packets would otherwise hold it until TCP gives up, many minutes
    /// later.
    pub abandon_after: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            max_in_flight: 64,
            min_in_flight: None,
            queue_wait: Duration::from_millis(50),
            body_timeout: Duration::from_secs(10),
            request_bytes: 64 << 20,
            probe_bytes: 16 << 20,
            probe_calls: 32,
            abandon_after: Duration::from_secs(60),
        }
    }
}

/// The layer; see the module docs.
#[derive(Clone, Debug)]
pub struct RequestLogLayer {
    metrics: Arc<Metrics>,
    line: Arc<Line>,
    request_bytes: Arc<Semaphore>,
    probe_bytes: Arc<Semaphore>,
    probe_calls: usize,
    body_timeout: Duration,
    abandon_after: Duration,
}

impl RequestLogLayer {
    /// A layer recording into `metrics`, under `limits`; while overload lasts, calls run at
    /// once down to `limits.min_in_flight`, else `floor`.
    pub fn new(metrics: Arc<Metrics>, limits: CallLimits, floor: usize) -> Self {
        let line = Line::new(
            limits.max_in_flight,
            limits.min_in_flight.unwrap_or(floor),
            limits.queue_wait,
        );
        metrics.set_places(line.places());
        let request_bytes = Arc::new(Semaphore::new(limits.request_bytes));
        let probe_bytes = Arc::new(Semaphore::new(limits.probe_bytes));
        metrics.watch_budget("calls", request_bytes.clone(), limits.request_bytes);
        metrics.watch_budget("probes", probe_bytes.clone(), limits.probe_bytes);
        RequestLogLayer {
            metrics,
            line: Arc::new(line),
            request_bytes,
            probe_bytes,
            probe_calls: limits.probe_calls,
            body_timeout: limits.body_timeout,
            abandon_after: limits.abandon_after,
        }
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            metrics: self.metrics.clone(),
            line: self.line.clone(),
            request_bytes: self.request_bytes.clone(),
            probe_bytes: self.probe_bytes.clone(),
            probe_calls: self.probe_calls,
            body_timeout: self.body_timeout,
            abandon_after: self.abandon_after,
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone, Debug)]
pub struct RequestLog<S> {
    inner: S,
    metrics: Arc<Metrics>,
    line: Arc<Line>,
    request_bytes: Arc<Semaphore>,
    probe_bytes: Arc<Semaphore>,
    probe_calls: usize,
    body_timeout: Duration,
    abandon_after: Duration,
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

/// Whether `path` is exempt from the in-flight bound: probes and tools must reach an
/// overloaded server.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// Checks that `body` is exactly one gRPC message frame: a flag byte (1 = compressed, only
/// with a `grpc-encoding`), a 4-byte big-endian length, and that many bytes.
fn check_frame(body: &[u8], encoded: bool) -> Result<(), Error> {
    let bad = |what: &str| Error::invalid("request", format!("malformed gRPC framing: {what}"));
    if body.len() < 5 {
        return Err(bad(if body.is_empty() {
            "no message was sent"
        } else {
            "the message prefix is cut off"
        }));
    }
    match body[0] {
        0 => {}
        1 if encoded => {}
        1 => return Err(bad("the compressed flag is set without a grpc-encoding")),
        _ => return Err(bad("the compressed flag is neither 0 nor 1")),
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    match (body.len() - 5).cmp(&len) {
        std::cmp::Ordering::Less => Err(bad("the message is shorter than its prefix says")),
        std::cmp::Ordering::Greater => Err(bad("more than one message was sent")),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Whether the request of the call to `path` is read whole before the call runs: every
/// unary or server-streaming call (one request message), not reflection's bidi stream.
fn read_whole(path: &str) -> bool {
    path.starts_with("/workspaced.") || path.starts_with("/grpc.health.")
}

/// Whether the response to `path` is a stream that stays open (a watch, reflection), during
/// which the connection counts as busy; other calls count as done once their answer is out.
fn streams(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|m| m.starts_with("Watch"))
        || path.starts_with("/grpc.reflection.")
}

/// What a call's header block weighs against the budget of bytes: HTTP/2's measure of a
/// header list (RFC 9113, SETTINGS_MAX_HEADER_LIST_SIZE).
fn header_bytes(headers: &http::HeaderMap) -> u32 {
    let n: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Takes `n` bytes of a budget of request bytes, or refuses the call (reflection's
/// messages too, see [`crate::metered`]).
pub(crate) fn charge(budget: &Arc<Semaphore>, n: u32) -> Result<OwnedSemaphorePermit, Error> {
    budget.clone().try_acquire_many_owned(n).map_err(|_| {
        Error::Overloaded("the server is reading too many requests; retry with backoff".into())
    })
}

/// Reads a call's request whole, under the size and time limits and the shared budget of
/// bytes (returned held, to be given back when the call is answered), and checks its framing.
async fn read_request(
    req: http::Request<Body>,
    timeout: Duration,
    budget: &Arc<Semaphore>,
    max: usize,
) -> Result<(http::Request<Body>, Option<OwnedSemaphorePermit>), Error> {
    let (parts, mut body) = req.into_parts();
    let encoded = parts
        .headers
        .get("grpc-encoding")
        .is_some_and(|e| e.as_bytes() != b"identity");
    let mut buf = BytesMut::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| Error::invalid("request", "the request's body was cut off"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if buf.len() + data.len() > max {
                return Err(Error::RequestTooLarge(format!(
                    "the request is larger than {max} bytes"
                )));
            }
            let more = charge(budget, u32::try_from(data.len()).unwrap_or(u32::MAX))?;
            match &mut held {
                Some(h) => h.merge(more),
                None => held = Some(more),
            }
            buf.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => {
            return Err(Error::RequestTimeout(format!(
                "the request did not arrive within {} ms",
                timeout.as_millis()
            )));
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    let bytes = buf.freeze();
    check_frame(&bytes, encoded)?;
    Ok((
        http::Request::from_parts(parts, Body::new(Full::new(bytes))),
        held,
    ))
}

/// A response body that keeps its connection busy: a stream until it ends or is dropped,
/// any other answer until hyper takes its first frame. (A unary answer its client does not
/// read is then left to the idle timeout, which closes the connection and frees it.)
struct Guarded {
    inner: Body,
    call: Option<CallGuard>,
    stream: bool,
    /// Why the request stream was refused, if it was: then the answer ends with it.
    fault: Option<Fault>,
    /// A probe stream's place on its connection, given back when its answer ends.
    _probe: Option<ProbeGuard>,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if frame.is_ready() && !self.stream {
            self.call.take();
        }
        let ends = match &frame {
            Poll::Ready(Some(Ok(f))) => f.is_trailers(),
            Poll::Ready(None) => true,
            _ => false,
        };
        if ends && let Some(status) = self.fault.take().and_then(|f| f.get().cloned()) {
            return Poll::Ready(Some(Ok(Frame::trailers(fault_trailers(&status)))));
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<S> Service<http::Request<Body>> for RequestLog<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let id = request_id(req.headers().get(REQUEST_ID));
        req.headers_mut().insert(REQUEST_ID, id.clone());
        let slot = SubjectSlot::default();
        req.extensions_mut().insert(slot.clone());
        let conn = req.extensions().get::<ConnInfo>().cloned();
        let call = conn.as_ref().map(ConnInfo::call);
        let metrics = self.metrics.clone();
        let line = self.line.clone();
        let request_bytes = self.request_bytes.clone();
        let probe_bytes = self.probe_bytes.clone();
        let probe_calls = self.probe_calls;
        let body_timeout = self.body_timeout;
        let abandon_after = self.abandon_after;
        // The ready service for this call, leaving a fresh clone for the next (tower's
        // rule for services called from a spawned future).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let start = Instant::now();
        Box::pin(async move {
            // Until the call has its place in flight: reading its request and waiting in line.
            let mut queued = Duration::ZERO;
            let fault = Fault::default();
            let mut probe = None;
            let answer = async {
                // Answered here, so that it carries ErrorInfo as every other error does.
                if !metrics.serves(&method) {
                    return Err(Error::MethodNotFound(format!(
                        "the server serves no method {:?}",
                        crate::error::echo(&method)
                    )));
                }
                let probing = exempt(&method);
                let (budget, max) = if probing {
                    (&probe_bytes, MAX_PROBE_REQUEST_BYTES)
                } else {
                    (&request_bytes, MAX_REQUEST_BYTES)
                };
                let head = header_bytes(req.headers());
                if probing && head > MAX_PROBE_HEADER_BYTES {
                    return Err(Error::RequestTooLarge(format!(
                        "a Health or reflection call's metadata is larger than \
                         {MAX_PROBE_HEADER_BYTES} bytes"
                    )));
                }
                let _head = charge(budget, head)?;
                // A stream's place is held until its answer ends, a unary call's until it is
                // answered.
                let mut _unary = None;
                if let (true, Some(conn)) = (probing, &conn) {
                    let place = conn.probe(probe_calls).ok_or_else(|| {
                        Error::Overloaded(format!(
                            "this connection has {probe_calls} Health and reflection calls \
                             open, the most it may; retry with backoff"
                        ))
                    })?;
                    if streams(&method) {
                        probe = Some(place);
                    } else {
                        _unary = Some(place);
                    }
                }
                let (req, _bytes) = if read_whole(&method) {
                    read_request(req, body_timeout, budget, max).await?
                } else {
                    let (parts, body) = req.into_parts();
                    let body = Metered::new(body, budget.clone(), max, body_timeout, fault.clone());
                    (http::Request::from_parts(parts, Body::new(body)), None)
                };
                let permit = if exempt(&method) {
                    None
                } else {
                    let entered = line.enter().await;
                    queued = start.elapsed();
                    metrics.set_places(line.places());
                    let Some(permit) = entered else {
                        return Err(Error::Overloaded(
                            "the server is at its limit of calls in flight; retry with backoff"
                                .into(),
                        ));
                    };
                    Some(permit)
                };
                // The events this call writes name it.
                let call = Call {
                    request_id: id.to_str().unwrap_or_default().to_owned(),
                    method: method.trim_start_matches('/').to_owned(),
                };
                let committing = Committing::default();
                let fut = committing.scope(in_call(call, inner.call(req)));
                let deadline = tokio::time::Instant::now() + DEADLINE;
                let task = tokio::spawn(holding(
                    permit,
                    deadline,
                    tokio::time::timeout(abandon_after, fut),
                ));
                // Once its caller is answered or gone, the call is dropped unless it has
                // begun to commit (see `store::committing`): a read, or a wait for a
                // connection or a lock, is work for no one.
                let _abandon = Abandon {
                    task: task.abort_handle(),
                    committing,
                };
                match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok(Ok(res))) => Ok(res),
                    Ok(Ok(Err(_))) | Err(_) => Err(Error::DatabaseUnavailable(format!(
                        "the database did not answer within {} ms",
                        DEADLINE.as_millis()
                    ))),
                    Ok(Err(_)) => Err(Error::Internal("the call's task failed".into())),
                }
            };
            let mut res = match answer.await {
                Ok(Ok(res)) => Ok(res),
                Ok(Err(e)) => Err(e),
                Err(err) => {
                    if matches!(err, Error::DatabaseUnavailable(_)) {
                        tracing::warn!(%method, "{err}");
                    }
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
            let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
            let (latency_ms, queued_ms) = (ms(latency), ms(queued));
            // A client's path is logged, but not at any length (a probe's path too: any
            // path under the probes' services is exempt, with or without a token).
            let logged: String = method.chars().take(128).collect();
            if exempt(&method) {
                // A line per call, probes included, under a target of their own, so that
                // `RUST_LOG=info,sqlx=warn,sea_orm=warn,workspaced::probes=warn` leaves them
                // out.
                tracing::info!(target: "workspaced::probes", method = %logged, %code, latency_ms, queued_ms, %subject, request_id, "request");
            } else {
                tracing::info!(method = %logged, %code, latency_ms, queued_ms, %subject, request_id, "request");
            }
            let stream = streams(&method);
            res.map(|r| {
                r.map(|inner| {
                    Body::new(Guarded {
                        inner,
                        call,
                        stream,
                        fault: Some(fault),
                        _probe: probe,
                    })
                })
            })
        })
    }
}

/// Runs `call`, holding `place` until it ends or `deadline` passes, whichever is first,
/// whether or not its caller still waits: a caller that cancels at once must not free the
/// place for another call while its own runs on, or cancelling clients would run calls
/// without bound. Past the deadline a call that has begun to commit runs on without its
/// place, bounded by the database pool and by `abandon_after`, so that the next calls reach
/// the database (and learn that it is unavailable) instead of being refused as OVERLOADED.
async fn holding<F: Future>(
    place: Option<Place>,
    deadline: tokio::time::Instant,
    call: F,
) -> F::Output {
    let mut call = std::pin::pin!(call);
    tokio::select! {
        biased;
        out = &mut call => return out,
        () = tokio::time::sleep_until(deadline) => {}
    }
    drop(place);
    call.await
}

/// Drops a call's task once its caller has been answered or has gone, unless the call has
/// begun to commit.
struct Abandon {
    task: tokio::task::AbortHandle,
    committing: Committing,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.committing.abandon() {
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensible_request_id_is_kept_and_any_other_replaced() {
        let long = "a".repeat(129);
        let cases = [
            (Some("abc-123"), true),
            (Some(&"a".repeat(128)[..]), true),
            (Some(&long[..]), false),
            (Some(""), false),
            (None, false),
        ];
        for (given, kept) in cases {
            let header = given.map(|g| HeaderValue::from_str(g).unwrap());
            let id = request_id(header.as_ref());
            assert_eq!(given == Some(id.to_str().unwrap()), kept, "{given:?}");
            assert!(!id.is_empty() && id.len() <= 128, "{given:?}");
        }
        // Not valid UTF-8: replaced by a fresh UUID.
        let opaque = HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap();
        assert_eq!(request_id(Some(&opaque)).len(), 36);
    }

    #[test]
    fn only_probes_and_tools_skip_the_line_and_only_unary_calls_are_read_whole() {
        let cases = [
            ("/grpc.health.v1.Health/Check", true, true),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                true,
                false,
            ),
            ("/workspaced.v1.WorkspaceService/GetWorkspace", false, true),
            ("/unknown.Service/Method", false, false),
        ];
        for (path, skips, whole) in cases {
            assert_eq!(exempt(path), skips, "{path}");
            assert_eq!(read_whole(path), whole, "{path}");
        }
    }

    #[test]
    fn frames_must_hold_exactly_one_message() {
        let ok = [0, 0, 0, 0, 2, 8, 1];
        let cases: [(&[u8], bool, bool); 9] = [
            (&ok, false, true),
            (&[0, 0, 0, 0, 0], false, true),
            (&[1, 0, 0, 0, 2, 8, 1], true, true),
            (&[1, 0, 0, 0, 2, 8, 1], false, false),
            (&[2, 0, 0, 0, 2, 8, 1], true, false),
            (&[], false, false),
            (&[0, 0, 0], false, false),
            (&[0, 0, 0, 0, 3, 8, 1], false, false),
            (&[0, 0, 0, 0, 1, 8, 1], false, false),
        ];
        for (body, encoded, valid) in cases {
            assert_eq!(
                check_frame(body, encoded).is_ok(),
                valid,
                "{body:?} encoded={encoded}"
            );
        }
    }
}
