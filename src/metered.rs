//! A client stream's request, read a message at a time under the limits that whole requests
//! are read under. Reflection's bidi stream cannot be read whole before it runs, and tonic
//! buffers each message until it has arrived whole, up to the message limit, with no time
//! limit; so each message's bytes count against the budget shared with whole requests while
//! the message is partly arrived, a message over `MAX_REQUEST_BYTES` is refused at its
//! prefix, and a message must arrive whole within the body timeout. A refusal ends the
//! request stream and is kept in a [`Fault`] for the response's trailers: the service ends
//! its answer OK when its requests fail.

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

use crate::{error::Error, telemetry::MAX_REQUEST_BYTES};

/// Why a metered request stream was ended, if it was; shared with the response.
pub type Fault = Arc<OnceLock<Status>>;

/// The gRPC message prefix: a flag byte and a 4-byte length.
const PREFIX: usize = 5;

/// A request body read a message at a time; see the module docs.
pub struct Metered {
    inner: Body,
    budget: Arc<Semaphore>,
    /// The budget held for the message being read: as many permits as it has bytes so far.
    held: Option<OwnedSemaphorePermit>,
    timeout: Duration,
    /// When the message being read must have arrived whole; none between messages.
    due: Option<Pin<Box<Sleep>>>,
    /// Bytes of the message being read so far, its prefix included.
    read: usize,
    prefix: [u8; PREFIX],
    /// The message's whole length with its prefix, once the prefix is in.
    whole: Option<usize>,
    fault: Fault,
}

impl Metered {
    /// Meters `inner` against `budget`, each message within `timeout`; a refusal is kept in
    /// `fault`.
    pub fn new(inner: Body, budget: Arc<Semaphore>, timeout: Duration, fault: Fault) -> Self {
        Metered {
            inner,
            budget,
            held: None,
            timeout,
            due: None,
            read: 0,
            prefix: [0; PREFIX],
            whole: None,
            fault,
        }
    }

    /// Follows the message framing through `data`, then holds budget for the bytes of the
    /// message left partly arrived, and times it.
    fn take(&mut self, mut data: &[u8]) -> Result<(), Error> {
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
                        if PREFIX + len > MAX_REQUEST_BYTES {
                            return Err(Error::RequestTooLarge(format!(
                                "a request message is larger than {MAX_REQUEST_BYTES} bytes"
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
            }
        }
        let held = self.held.as_ref().map_or(0, |p| p.num_permits());
        if self.read > held {
            let more = u32::try_from(self.read - held).unwrap_or(u32::MAX);
            let more = self
                .budget
                .clone()
                .try_acquire_many_owned(more)
                .map_err(|_| {
                    Error::Overloaded(
                        "the server is reading too many requests; retry with backoff".into(),
                    )
                })?;
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
        } else if self.due.is_none() {
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
