//! Connection limits and deadlines: what keeps silent, slow and idle clients from holding the
//! gateway's sockets.
//!
//! Every accepted connection holds one of `max_connections` permits (a [`Permits`] make-service:
//! at the limit the accept loop waits, so further connections wait in the kernel's backlog
//! instead of using file descriptors), and its socket is wrapped in a [`Timed`] stream that
//! closes it when a deadline passes while no request is being handled:
//! - `first_request`: from accept (and the TLS handshake) to the first request's headers;
//! - `header`: from a request's first byte to the end of its headers;
//! - `idle`: a kept-alive connection waiting for its next request.
//!
//! A request being handled has no connection deadline (its body has its own, in [`super::api`]);
//! the service wrapper [`Tracked`] tells the stream when one starts and ends. HTTP/1.1 only.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSemaphore;
use tower_service::Service;

use hashsweep_core::sync::lock;

/// The deadlines of [`Timed`] connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub first_request: Duration,
    pub header: Duration,
    pub idle: Duration,
}

/// The defaults of `--first-request-timeout`, `--header-timeout`, `--idle-timeout`.
pub const DEADLINES: Deadlines = Deadlines {
    first_request: Duration::from_secs(10),
    header: Duration::from_secs(10),
    idle: Duration::from_secs(60),
};

/// File descriptors kept for everything but client connections (store, upstream, logs, the
/// runtime) when `--max-connections` is derived from the open-file limit.
const FD_RESERVE_MIN: u64 = 64;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; the soft limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The default `--max-connections` never exceeds this (memory: each connection holds buffers).
pub const MAX_CONNECTIONS_CAP: u64 = 16_384;

/// The most connections an open-file limit of `nofile` allows: an eighth of it (at least 64)
/// is kept for everything else.
fn connections_allowed(nofile: u64) -> u64 {
    let reserve = (nofile / 8).max(FD_RESERVE_MIN);
    nofile.saturating_sub(reserve).max(1)
}

/// The default `--max-connections` under an open-file limit of `nofile`: what it allows, and at
/// most [`MAX_CONNECTIONS_CAP`].
pub fn default_max_connections(nofile: u64) -> usize {
    let n = connections_allowed(nofile).min(MAX_CONNECTIONS_CAP);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// An explicit `--max-connections` under an open-file limit of `nofile`: `Err(allowed)` when
/// the limit does not allow it (the same eighth kept as for the default), else `Ok(asked)`.
pub fn explicit_max_connections(asked: usize, nofile: u64) -> Result<usize, usize> {
    let allowed = usize::try_from(connections_allowed(nofile)).unwrap_or(usize::MAX);
    if asked > allowed {
        Err(allowed)
    } else {
        Ok(asked)
    }
}

/// What a connection's stream and its requests share.
#[derive(Debug)]
struct Activity {
    /// Requests whose handler is running.
    in_flight: usize,
    /// Requests started on this connection.
    started: u64,
    /// Accept time, or when the last request ended.
    waiting_since: Instant,
    /// The first byte read since `waiting_since`, while no request was in flight.
    head_since: Option<Instant>,
}

impl Activity {
    /// When the connection must be closed if nothing changes (`None`: a request is running).
    fn deadline(&self, d: &Deadlines) -> Option<(Instant, &'static str)> {
        if self.in_flight > 0 {
            return None;
        }
        let waiting = if self.started == 0 {
            (self.waiting_since + d.first_request, "first_request")
        } else {
            (self.waiting_since + d.idle, "idle")
        };
        Some(match self.head_since {
            Some(h) if h + d.header < waiting.0 || self.started > 0 => (h + d.header, "header"),
            _ => waiting,
        })
    }
}

/// A make-service that hands out one of `max` permits per connection: at the limit its
/// `poll_ready` waits, and with it the accept loop.
pub struct Permits<M> {
    inner: M,
    permits: PollSemaphore,
    ready: Option<OwnedSemaphorePermit>,
}

impl<M> Permits<M> {
    pub fn new(inner: M, max: usize) -> Permits<M> {
        Permits {
            inner,
            permits: PollSemaphore::new(Arc::new(Semaphore::new(max.max(1)))),
            ready: None,
        }
    }
}

impl<M, T> Service<T> for Permits<M>
where
    M: Service<T>,
    M::Future: Send + 'static,
{
    type Response = WithPermit<M::Response>;
    type Error = M::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, M::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), M::Error>> {
        if self.ready.is_none() {
            match self.permits.poll_acquire(cx) {
                Poll::Ready(Some(p)) => self.ready = Some(p),
                // The semaphore is never closed.
                Poll::Ready(None) => {}
                Poll::Pending => {
                    metrics::counter!("hashsweep_gateway_connections_waited_total").increment(1);
                    return Poll::Pending;
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, target: T) -> Self::Future {
        let permit = Arc::new(Mutex::new(self.ready.take()));
        let fut = self.inner.call(target);
        Box::pin(async move {
            Ok(WithPermit {
                inner: fut.await?,
                permit,
            })
        })
    }
}

/// A connection's service with its permit, until [`Limits`] moves the permit to the stream.
#[derive(Clone)]
pub struct WithPermit<S> {
    inner: S,
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

/// Delegates (the acceptor replaces it by [`Tracked`] before any request).
impl<S: Service<R>, R> Service<R> for WithPermit<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.inner.call(req)
    }
}

/// The acceptor: wraps each stream in [`Timed`] (holding the connection's permit) and its
/// service in [`Tracked`]. Under TLS it runs before the handshake, so that is timed too.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadlines: Deadlines,
}

impl<I, S> axum_server::accept::Accept<I, WithPermit<S>> for Limits {
    type Stream = Timed<I>;
    type Service = Tracked<S>;
    type Future = std::future::Ready<io::Result<(Timed<I>, Tracked<S>)>>;

    fn accept(&self, stream: I, service: WithPermit<S>) -> Self::Future {
        let activity = Arc::new(Mutex::new(Activity {
            in_flight: 0,
            started: 0,
            waiting_since: Instant::now(),
            head_since: None,
        }));
        metrics::gauge!("hashsweep_gateway_connections_open").increment(1.0);
        let timed = Timed {
            inner: stream,
            activity: Arc::clone(&activity),
            deadlines: self.deadlines,
            sleep: Box::pin(tokio::time::sleep(self.deadlines.first_request)),
            _permit: lock(&service.permit).take(),
        };
        std::future::ready(Ok((
            timed,
            Tracked {
                inner: service.inner,
                activity,
            },
        )))
    }
}

/// A connection's service: marks its requests as running while their handler runs.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Mutex<Activity>>,
}

/// Ends a request (also when its future is dropped).
struct Running(Arc<Mutex<Activity>>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut a = lock(&self.0);
        a.in_flight = a.in_flight.saturating_sub(1);
        if a.in_flight == 0 {
            a.waiting_since = Instant::now();
            a.head_since = None;
        }
    }
}

impl<S, R> Service<R> for Tracked<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        {
            let mut a = lock(&self.activity);
            a.in_flight += 1;
            a.started += 1;
            a.head_since = None;
        }
        let running = Running(Arc::clone(&self.activity));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(running);
            out
        })
    }
}

/// A client socket closed when its [`Deadlines`] pass (see the module doc).
pub struct Timed<I> {
    inner: I,
    activity: Arc<Mutex<Activity>>,
    deadlines: Deadlines,
    sleep: Pin<Box<Sleep>>,
    /// Released when the connection is closed.
    _permit: Option<OwnedSemaphorePermit>,
}

impl<I> Drop for Timed<I> {
    fn drop(&mut self) {
        metrics::gauge!("hashsweep_gateway_connections_open").decrement(1.0);
    }
}

impl<I> Timed<I> {
    /// `Err` once the current deadline has passed; else arms the timer to wake this task then.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some((at, phase)) = lock(&self.activity).deadline(&self.deadlines) else {
            return Ok(());
        };
        if self.sleep.deadline() != at {
            self.sleep.as_mut().reset(at);
        }
        if Instant::now() >= at || self.sleep.as_mut().poll(cx).is_ready() {
            metrics::counter!("hashsweep_gateway_connections_timed_out_total", "phase" => phase)
                .increment(1);
            tracing::debug!("closing a connection: its {phase} timeout passed");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{phase} timeout"),
            ));
        }
        Ok(())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Timed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let mut a = lock(&self.activity);
                    if a.in_flight == 0 && a.head_since.is_none() {
                        a.head_since = Some(Instant::now());
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Timed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            done => done,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(started: u64, in_flight: usize, head: Option<u64>) -> (Instant, Activity) {
        let t0 = Instant::now();
        (
            t0,
            Activity {
                in_flight,
                started,
                waiting_since: t0,
                head_since: head.map(|s| t0 + Duration::from_secs(s)),
            },
        )
    }

    #[test]
    fn each_phase_of_a_connection_has_its_deadline() {
        let d = Deadlines {
            first_request: Duration::from_secs(5),
            header: Duration::from_secs(3),
            idle: Duration::from_secs(60),
        };
        let s = Duration::from_secs;
        let (t0, a) = activity(0, 0, None);
        assert_eq!(a.deadline(&d), Some((t0 + s(5), "first_request")));
        // A first request's head started at 1 s: the earlier of the two.
        let (t0, a) = activity(0, 0, Some(1));
        assert_eq!(a.deadline(&d), Some((t0 + s(4), "header")));
        let (t0, a) = activity(0, 0, Some(4));
        assert_eq!(a.deadline(&d), Some((t0 + s(5), "first_request")));
        let (t0, a) = activity(3, 0, None);
        assert_eq!(a.deadline(&d), Some((t0 + s(60), "idle")));
        let (t0, a) = activity(3, 0, Some(50));
        assert_eq!(a.deadline(&d), Some((t0 + s(53), "header")));
        assert_eq!(activity(3, 1, Some(50)).1.deadline(&d), None);
    }

    #[test]
    fn the_default_connection_cap_stays_below_the_open_file_limit() {
        assert_eq!(default_max_connections(1024), 896);
        assert_eq!(default_max_connections(256), 192);
        assert_eq!(default_max_connections(4096), 3584);
        assert_eq!(default_max_connections(65536), 16384);
        assert_eq!(default_max_connections(10), 1);
    }

    #[test]
    fn an_explicit_connection_cap_is_cut_to_what_the_open_file_limit_allows() {
        assert_eq!(explicit_max_connections(5000, 1024), Err(896));
        assert_eq!(explicit_max_connections(896, 1024), Ok(896));
        // Above the default's cap is fine when the limit allows it.
        assert_eq!(explicit_max_connections(20_000, 1 << 20), Ok(20_000));
    }
}
