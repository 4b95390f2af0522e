//! One client connection's life: how long it may take to start its first
//! request, how long it may sit idle, and its graceful end at shutdown.
//!
//! hyper times out only the headers of an HTTP/1 request. Before that,
//! while the first bytes tell HTTP/1 from HTTP/2, nothing bounds the wait,
//! and an HTTP/2 connection that never opens a stream, or any keep-alive
//! connection left open, would be held for ever. So each connection counts
//! its requests in flight (a request lasts until its response body has
//! been sent or dropped) and is driven here:
//! - no request within `header_read_timeout` of the start (after TLS): closed;
//! - no request in flight for `idle_timeout`: closed gracefully (HTTP/2
//!   GOAWAY; HTTP/1 closes between requests);
//! - gateway shutdown: closed gracefully, requests in flight finish.
//!
//! The request path only touches two atomics; the timer is checked here,
//! at most once per idle period, so an idle connection closes between one
//! and two periods after its last request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

/// The client at the other end of a connection, as each of its requests
/// learns it (a request extension).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address, for rate limits by address.
    pub addr: std::net::SocketAddr,
    /// Its IP as the `X-Forwarded-For` value, made once per connection.
    pub ip: HeaderValue,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            addr,
            ip: crate::upstream::metadata::client_ip_header(addr.ip()),
        }
    }
}

/// A connection's requests, counted by the service that handles them.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` when the last request ended, plus one
    /// (0: no request has started yet).
    last_end: AtomicU64,
}

impl Activity {
    /// A connection opened now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
        })
    }

    /// A request started; it ends when the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        // Any value but 0 says a request has started.
        let _ = self
            .last_end
            .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    /// When the connection may be closed if nothing changes meanwhile,
    /// or `None` while a request is in flight.
    fn closes_at(&self, first_request: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        match self.last_end.load(Ordering::Relaxed) {
            0 => Some(self.started + first_request),
            end => Some(self.started + Duration::from_millis(end - 1) + idle),
        }
    }

    fn has_started(&self) -> bool {
        self.last_end.load(Ordering::Relaxed) > 0
    }
}

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let end = self.0.millis(Instant::now()).saturating_add(1);
        self.0.last_end.fetch_max(end, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted until it is done.
#[derive(Debug)]
pub struct Counted {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl Counted {
    /// `body`, counted by `in_flight`.
    pub fn new(body: axum::body::Body, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How long a connection may wait.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For its first request (`server.header_read_timeout`).
    pub first_request: Duration,
    /// With no request in flight (`server.idle_timeout`).
    pub idle: Duration,
}

/// Drives `connection` until it ends: closed when it starts no request in
/// time or stays idle, shut down gracefully when `stop` turns true.
/// `graceful` starts the connection's graceful shutdown.
pub async fn drive<C, E>(
    connection: C,
    graceful: impl Fn(Pin<&mut C>),
    activity: Arc<Activity>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    loop {
        // Nothing wakes this loop when requests come and go: it looks again
        // after an idle period at the latest, so an idle connection is
        // closed at most one period late.
        let next = Instant::now() + timeouts.idle;
        let wake = activity
            .closes_at(timeouts.first_request, timeouts.idle)
            .map_or(next, |at| at.min(next));
        tokio::select! {
            ended = connection.as_mut() => return ended,
            () = tokio::time::sleep_until(wake), if !closing => {
                match activity.closes_at(timeouts.first_request, timeouts.idle) {
                    Some(at) if at <= Instant::now() => {
                        if !activity.has_started() {
                            tracing::debug!("connection closed: no request in time");
                            return Ok(());
                        }
                        tracing::debug!("connection idle: closing it");
                        graceful(connection.as_mut());
                        closing = true;
                    }
                    _ => {}
                }
            }
            changed = stop.changed(), if !closing => {
                // The gateway stops (or is gone): finish what is in flight.
                let _ = changed;
                graceful(connection.as_mut());
                closing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        first_request: Duration::from_secs(1),
        idle: Duration::from_secs(10),
    };

    /// A connection that never ends by itself; shutting it down ends it.
    fn endless(ended: Arc<std::sync::atomic::AtomicBool>) -> impl Future<Output = Result<(), ()>> {
        std::future::poll_fn(move |_| {
            if ended.load(Ordering::Relaxed) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_closed_after_the_first_request_timeout() {
        let activity = Activity::new();
        let (_stop, stopped) = watch::channel(false);
        let shut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let ended = drive(
            endless(Arc::new(false.into())),
            |_| shut.store(true, Ordering::Relaxed),
            activity,
            TIMEOUTS,
            stopped,
        )
        .await;
        assert_eq!(ended, Ok(()));
        assert_eq!(started.elapsed(), TIMEOUTS.first_request);
        assert!(
            !shut.load(Ordering::Relaxed),
            "closed outright, not gracefully"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_gracefully_busy_ones_stay() {
        let activity = Activity::new();
        let (_stop, stopped) = watch::channel(false);
        let shut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let request = activity.begin();
        let started = Instant::now();
        let driven = tokio::spawn({
            let (activity, shut) = (activity.clone(), shut.clone());
            async move {
                drive(
                    endless(shut.clone()),
                    |_| shut.store(true, Ordering::Relaxed),
                    activity,
                    TIMEOUTS,
                    stopped,
                )
                .await
            }
        });
        // A request in flight for three idle periods: the connection stays.
        tokio::time::sleep(TIMEOUTS.idle * 3).await;
        assert!(!shut.load(Ordering::Relaxed));
        drop(request);
        let ended_at = Instant::now();
        assert_eq!(driven.await.unwrap(), Ok(()));
        assert!(shut.load(Ordering::Relaxed), "closed gracefully");
        let idle = Instant::now() - ended_at;
        assert!(
            idle >= TIMEOUTS.idle && idle <= TIMEOUTS.idle * 2,
            "{idle:?} after the request, {:?} in all",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_shuts_down_gracefully() {
        let activity = Activity::new();
        let _request = activity.begin();
        let (stop, stopped) = watch::channel(false);
        let shut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let driven = tokio::spawn({
            let shut = shut.clone();
            async move {
                drive(
                    endless(shut.clone()),
                    |_| shut.store(true, Ordering::Relaxed),
                    activity,
                    TIMEOUTS,
                    stopped,
                )
                .await
            }
        });
        stop.send_replace(true);
        assert_eq!(driven.await.unwrap(), Ok(()));
        assert!(shut.load(Ordering::Relaxed));
    }
}
