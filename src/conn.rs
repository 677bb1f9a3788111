//! Connections from hostile networks: a bound on how many are open at once, and deadlines
//! that close a connection which sends nothing. A connection must start its first call
//! within the handshake timeout of being accepted (so a silent socket, a slowloris sending a
//! byte a second, or a client stalled in the TLS handshake holds a slot for seconds, not for
//! ever), and is closed once it has had no call in flight for the idle timeout (gRPC's
//! MAX_CONNECTION_IDLE; clients reconnect on their next call). Calls mark the connection
//! busy through the [`ConnInfo`] that tonic puts on every request.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpIncoming};

/// The connection limits of a server.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a new connection may take to start its first call.
    pub handshake_timeout: Duration,
    /// How long a connection may stay open without a call in flight.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Raises this process's open-file limit to its hard limit, and returns how many
/// connections fit in it beside the database pool, logs and listeners.
pub fn fit_connections(wanted: usize) -> usize {
    const RESERVED: u64 = 256;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED).max(16)).unwrap_or(usize::MAX);
    wanted.min(room)
}

/// What a connection knows of its calls, shared by the connection and its requests.
#[derive(Debug)]
pub struct ConnState {
    opened: Instant,
    /// Calls in flight (until their response body is done).
    active: AtomicUsize,
    /// Whether any call has started.
    served: AtomicBool,
    /// When the last call started or ended, in ms since `opened`.
    last_ms: AtomicU64,
    /// Health and reflection calls open (see [`ConnInfo::probe`]).
    probes: AtomicUsize,
}

impl ConnState {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection is to be closed if nothing changes, or `None` while busy.
    fn deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Acquire) {
            return Some(self.opened + limits.handshake_timeout);
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.opened + last + limits.idle_timeout)
    }
}

/// Put on every request by tonic: the connection the call came on.
#[derive(Clone, Debug)]
pub struct ConnInfo(Arc<ConnState>);

impl ConnInfo {
    /// A place for a Health or reflection call, if fewer than `max` are open on this
    /// connection: they need no token and hold no place in flight, and a watch or a
    /// reflection stream stays open as long as its client likes.
    pub fn probe(&self, max: usize) -> Option<ProbeGuard> {
        self.0
            .probes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ProbeGuard(self.0.clone()))
    }

    /// Marks the connection busy until the returned guard is dropped.
    pub fn call(&self) -> CallGuard {
        self.0.served.store(true, Ordering::Release);
        self.0.active.fetch_add(1, Ordering::AcqRel);
        self.0.touch();
        CallGuard(self.0.clone())
    }
}

/// A call in flight on a connection; see [`ConnInfo::call`].
#[derive(Debug)]
pub struct CallGuard(Arc<ConnState>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A Health or reflection call open on a connection; see [`ConnInfo::probe`].
#[derive(Debug)]
pub struct ProbeGuard(Arc<ConnState>);

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        self.0.probes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted connection under the limits.
#[derive(Debug)]
pub struct Conn {
    io: TcpStream,
    state: Arc<ConnState>,
    limits: ConnLimits,
    timer: Pin<Box<Sleep>>,
    /// When bytes last arrived: a call may be among them, not yet seen by the service.
    last_read: Instant,
    _slot: OwnedSemaphorePermit,
}

/// How recent a read keeps an idle connection open a little longer: HTTP/2 reads every
/// frame that has arrived before the service sees a new call, so bytes read just now may be
/// a call that closing would fail. Once only, past the idle deadline: bytes that are not a
/// call (PINGs every second) must not keep a connection open for ever.
const READ_GRACE: Duration = Duration::from_secs(1);

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo(self.state.clone())
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        if let Poll::Ready(res) = Pin::new(&mut this.io).poll_read(cx, buf) {
            if buf.filled().len() > before {
                this.last_read = Instant::now();
            }
            return Poll::Ready(res);
        }
        // Nothing to read: the connection waits for its client, and the timer decides how
        // long. A busy connection re-checks after an idle timeout (its calls may end).
        loop {
            ready!(this.timer.as_mut().poll(cx));
            let now = Instant::now();
            let served = this.state.served.load(Ordering::Acquire);
            match this.state.deadline(&this.limits) {
                Some(at)
                    if at <= now
                        && served
                        && now < this.last_read + READ_GRACE
                        && now < at + READ_GRACE =>
                {
                    this.timer
                        .as_mut()
                        .reset((this.last_read + READ_GRACE).min(at + READ_GRACE));
                }
                Some(at) if at <= now => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection sent no call in time",
                    )));
                }
                Some(at) => this.timer.as_mut().reset(at),
                None => this.timer.as_mut().reset(now + this.limits.idle_timeout),
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The accepted connections of a listener, under the limits.
#[derive(Debug)]
pub struct Incoming {
    inner: TcpIncoming,
    slots: Arc<Semaphore>,
    limits: ConnLimits,
}

impl Incoming {
    /// Connections of `inner` under `limits`.
    pub fn new(inner: TcpIncoming, limits: ConnLimits) -> Self {
        Incoming {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let io = match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(io)) => io,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            };
            // Over the limit the connection is closed at once: a client learns it now and
            // may try another replica, rather than waiting in the listen backlog.
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                tracing::debug!("connection limit reached; closing a new connection");
                drop(io);
                continue;
            };
            let now = Instant::now();
            let state = Arc::new(ConnState {
                opened: now,
                active: AtomicUsize::new(0),
                served: AtomicBool::new(false),
                last_ms: AtomicU64::new(0),
                probes: AtomicUsize::new(0),
            });
            return Poll::Ready(Some(Ok(Conn {
                io,
                state,
                limits: self.limits,
                timer: Box::pin(tokio::time::sleep_until(
                    now + self.limits.handshake_timeout,
                )),
                last_read: now,
                _slot: slot,
            })));
        }
    }
}
