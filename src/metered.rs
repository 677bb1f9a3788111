//! A client stream's request, read a message at a time under the limits that whole requests
//! are read under. Reflection's bidi stream cannot be read whole before it runs, and tonic
//! buffers each message until it has arrived whole, up to the message limit, with no time
//! limit; so each message's bytes count against a budget of bytes while the message is
//! partly arrived, a message over its limit is refused at its prefix, and a message must
//! arrive whole within the body timeout. A refusal ends the request stream and is kept in a
//! [`Fault`] for the response's trailers: the service ends its answer OK when its requests
//! fail.
//!
//! The timeout is judged when the stream is read. A service that stops reading (reflection
//! waits for its client to take an answer before it reads the next request) holds at most
//! one partial message, up to the message limit, charged to the budget until the stream
//! ends; the budget (the probes' own, see [`crate::telemetry::CallLimits`]) and the streams
//! a connection may hold bound that.

use std::{
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tonic::{Status, body::Body};

use crate::{error::Error, telemetry::charge};

/// Why a metered request stream was ended, if it was; shared with the response.
pub type Fault = Arc<OnceLock<Status>>;

/// The gRPC message prefix: a flag byte and a 4-byte length.
const PREFIX: usize = 5;

/// A request body read a message at a time; see the module docs.
pub struct Metered {
    /// The request as it arrives.
    inner: Body,
    /// Where the bytes of partly arrived messages are charged.
    budget: Arc<Semaphore>,
    /// The budget held for the message being read: as many permits as it has bytes so far.
    held: Option<OwnedSemaphorePermit>,
    /// The largest message, its prefix included.
    max: usize,
    /// How long a message may take to arrive whole.
    timeout: Duration,
    /// When the message being read must have arrived whole; none between messages.
    due: Option<Pin<Box<Sleep>>>,
    /// Bytes of the message being read so far, its prefix included.
    read: usize,
    /// The message's prefix, as much as has arrived.
    prefix: [u8; PREFIX],
    /// The message's whole length with its prefix, once the prefix is in.
    whole: Option<usize>,
    /// Why the stream was refused, shared with the response.
    fault: Fault,
}

impl Metered {
    /// Meters `inner` against `budget`, each message of at most `max` bytes (its prefix
    /// included) within `timeout`; a refusal is kept in `fault`.
    pub fn new(
        inner: Body,
        budget: Arc<Semaphore>,
        max: usize,
        timeout: Duration,
        fault: Fault,
    ) -> Self {
        Metered {
            inner,
            budget,
            held: None,
            max,
            timeout,
            due: None,
            read: 0,
            prefix: [0; PREFIX],
            whole: None,
            fault,
        }
    }

    /// Follows the message framing through `data`, then holds budget for the bytes of the
    /// message left partly arrived, and times it from its first byte.
    fn take(&mut self, mut data: &[u8]) -> Result<(), Error> {
        // Whether a message ended in `data`: the one left partly arrived is another, with a
        // time of its own.
        let mut ended = false;
        while !data.is_empty() {
            let n = match self.whole {
                None => {
                    let n = (PREFIX - self.read).min(data.len());
                    self.prefix[self.read..self.read + n].copy_from_slice(&data[..n]);
                    if self.read + n == PREFIX {
                        let len = u32::from_be_bytes([
                            self.prefix[1],
                            self.prefix[2],
                            self.prefix[3],
                            self.prefix[4],
                        ]) as usize;
                        if len > self.max - PREFIX {
                            return Err(Error::RequestTooLarge(format!(
                                "a request message is larger than {} bytes",
                                self.max - PREFIX
                            )));
                        }
                        self.whole = Some(PREFIX + len);
                    }
                    n
                }
                Some(whole) => (whole - self.read).min(data.len()),
            };
            self.read += n;
            data = &data[n..];
            if self.whole == Some(self.read) {
                self.read = 0;
                self.whole = None;
                ended = true;
            }
        }
        let held = self.held.as_ref().map_or(0, |p| p.num_permits());
        if self.read > held {
            let more = charge(
                &self.budget,
                u32::try_from(self.read - held).unwrap_or(u32::MAX),
            )?;
            match &mut self.held {
                Some(h) => h.merge(more),
                None => self.held = Some(more),
            }
        } else if self.read == 0 {
            self.held = None;
        } else if let Some(h) = &mut self.held {
            drop(h.split(held - self.read));
        }
        if self.read == 0 {
            self.due = None;
        } else if ended || self.due.is_none() {
            self.due = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
        Ok(())
    }

    /// Ends the stream with `err`, giving its budget back.
    fn fail(&mut self, err: Error) -> Status {
        self.held = None;
        self.due = None;
        let status = Status::from(err);
        let _ = self.fault.set(status.clone());
        status
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.fault.get().is_some() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(err) = this.take(data)
                {
                    return Poll::Ready(Some(Err(this.fail(err))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.held = None;
                this.due = None;
                Poll::Ready(other)
            }
            Poll::Pending => {
                if let Some(due) = &mut this.due
                    && due.as_mut().poll(cx).is_ready()
                {
                    let err = Error::RequestTimeout(format!(
                        "a request message did not arrive within {} ms",
                        this.timeout.as_millis()
                    ));
                    return Poll::Ready(Some(Err(this.fail(err))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.fault.get().is_some() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The trailers that end a response whose request stream was refused with `status`.
pub fn fault_trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    // Only a status whose message cannot be a header value fails, and those are ours.
    let _ = status.add_header(&mut trailers);
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    /// What feeds a metered body its frames.
    type Feed = mpsc::Sender<Result<Frame<Bytes>, Status>>;

    /// A metered body fed by the returned sender, against a budget of 1,000 bytes, messages
    /// of at most 100 bytes with their prefix, within 1 s.
    fn metered() -> (Metered, Feed, Arc<Semaphore>, Fault) {
        let (send, recv) = mpsc::channel(8);
        let budget = Arc::new(Semaphore::new(1000));
        let fault = Fault::default();
        let body = Body::new(StreamBody::new(ReceiverStream::new(recv)));
        let m = Metered::new(
            body,
            budget.clone(),
            100,
            Duration::from_secs(1),
            fault.clone(),
        );
        (m, send, budget, fault)
    }

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    async fn feed(m: &mut Metered, send: &Feed, b: &[u8]) {
        send.send(Ok(Frame::data(Bytes::copy_from_slice(b))))
            .await
            .unwrap();
        let frame = m.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap().len(), b.len());
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_message_partly_arrived_holds_budget_for_its_time() {
        let (mut m, send, budget, fault) = metered();
        // A prefix cut in two, then the rest: held while partial, given back once whole.
        let one = message(10);
        feed(&mut m, &send, &one[..3]).await;
        assert_eq!(budget.available_permits(), 997);
        feed(&mut m, &send, &one[3..]).await;
        assert_eq!(budget.available_permits(), 1000);
        // Two whole messages, an empty one among them, and 20 bytes of a third, in one frame.
        let mut frame = message(0);
        frame.extend(message(30));
        frame.extend(&message(50)[..20]);
        feed(&mut m, &send, &frame).await;
        assert_eq!(budget.available_permits(), 980);
        // The third began now, with a time of its own: 0.9 s on, it may still come.
        tokio::time::sleep(Duration::from_millis(900)).await;
        feed(&mut m, &send, &message(50)[20..40]).await;
        assert_eq!(budget.available_permits(), 960);
        // A message ending in a frame that begins another gives the new one a full second.
        let mut frame = message(50)[40..].to_vec();
        frame.extend(&message(10)[..2]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        feed(&mut m, &send, &frame).await;
        assert_eq!(budget.available_permits(), 998);
        tokio::time::sleep(Duration::from_millis(900)).await;
        let early = tokio::time::timeout(Duration::from_millis(50), m.frame()).await;
        assert!(
            early.is_err(),
            "ended before its message's second: {early:?}"
        );
        assert!(fault.get().is_none());
        // Past its second, the stream ends, and says why.
        let late = m.frame().await.unwrap().unwrap_err();
        assert_eq!(late.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(
            fault.get().map(Status::code),
            Some(tonic::Code::DeadlineExceeded)
        );
        assert_eq!(budget.available_permits(), 1000);
        assert!(m.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_message_over_its_limit_or_the_budget_is_refused() {
        let (mut m, send, budget, fault) = metered();
        send.send(Ok(Frame::data(Bytes::from(message(96)))))
            .await
            .unwrap();
        let err = m.frame().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(fault.get().is_some());
        assert_eq!(budget.available_permits(), 1000);
        // With the budget spent elsewhere, a partial message is refused OVERLOADED.
        let (mut m, send, budget, _) = metered();
        let _spent = budget.clone().try_acquire_many_owned(995).unwrap();
        send.send(Ok(Frame::data(Bytes::from(message(20)[..10].to_vec()))))
            .await
            .unwrap();
        let err = m.frame().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }
}
