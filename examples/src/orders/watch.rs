//! WatchOrder streams: the latest status change of one order, then every
//! later change as the order book broadcasts it, until a terminal status.
//! Counts active watches and those the client gave up on; which changes are
//! allowed is decided by the order book (`orders.rs`), not here.

use super::{Orders, is_terminal};
use crate::pb::shop::order::v1::{OrderStatus, OrderStatusChange};
use futures_util::stream::{self, Stream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tonic::Status;

/// Changes buffered per watcher; one that falls further behind starts over
/// from the order's latest change.
pub(super) const CHANGES_CAPACITY: usize = 64;

/// Counts of WatchOrder streams, shared by all clones of one [`Orders`].
#[derive(Debug, Default)]
pub(super) struct WatchCounts {
    active: AtomicU64,
    cancelled: AtomicU64,
}

impl WatchCounts {
    /// Streams not yet finished or dropped.
    pub(super) fn active(&self) -> u64 {
        self.active.load(Ordering::SeqCst)
    }

    /// Streams dropped before they finished: the client went away.
    pub(super) fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Lives inside one watch stream: counts it as active, and, if the stream
/// is dropped before [`Guard::finish`], as cancelled. Tonic drops a response
/// stream when its client resets the call or the connection closes, so no
/// polling is needed to notice a client that went away.
#[derive(Debug)]
struct Guard {
    counts: Arc<WatchCounts>,
    finished: bool,
}

impl Guard {
    fn new(counts: Arc<WatchCounts>) -> Self {
        counts.active.fetch_add(1, Ordering::SeqCst);
        Guard {
            counts,
            finished: false,
        }
    }

    /// The stream yields its last item: a terminal status or an error.
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Active first, so whoever sees the cancellation also sees it inactive.
        self.counts.active.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.counts.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The WatchOrder response stream of order `name`.
///
/// Errors: INVALID_ARGUMENT for a malformed name, NOT_FOUND for an unknown
/// order. Once started, the stream ends with OK after a terminal status and
/// with UNAVAILABLE when the servers stop.
pub(super) fn watch(
    orders: &Orders,
    name: String,
) -> Result<impl Stream<Item = Result<OrderStatusChange, Status>> + Send + 'static, Status> {
    let (latest, changes) = orders.subscribe(&name)?;
    let watch = Watch {
        orders: orders.clone(),
        name,
        first: Some(latest),
        last: OrderStatus::Unspecified,
        changes,
        stop: orders.stop.clone(),
        guard: Guard::new(Arc::clone(&orders.watches)),
    };
    Ok(stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        match watch.next().await {
            Ok(change) if !is_terminal(change.status()) => Some((Ok(change), Some(watch))),
            last => {
                watch.guard.finish();
                Some((last, None))
            }
        }
    }))
}

/// The state of one watch stream.
struct Watch {
    /// For starting over after lagging behind.
    orders: Orders,
    name: String,
    /// The change to send first, until sent.
    first: Option<OrderStatusChange>,
    /// The status sent last.
    last: OrderStatus,
    changes: broadcast::Receiver<OrderStatusChange>,
    stop: Option<watch::Receiver<()>>,
    guard: Guard,
}

impl Watch {
    /// The next change of the order.
    async fn next(&mut self) -> Result<OrderStatusChange, Status> {
        if let Some(first) = self.first.take() {
            self.last = first.status();
            return Ok(first);
        }
        loop {
            let received = tokio::select! {
                received = self.changes.recv() => received,
                () = stopped(&mut self.stop) => {
                    return Err(Status::unavailable("the order service is shutting down"));
                }
            };
            match received {
                Ok(change) if change.name == self.name => {
                    self.last = change.status();
                    return Ok(change);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    // Statuses only move forward, so the latest change
                    // supersedes the missed ones.
                    tracing::warn!(name = %self.name, missed, "order watch lagged; starting over");
                    let (latest, changes) = self.orders.subscribe(&self.name)?;
                    self.changes = changes;
                    if latest.status() != self.last {
                        self.last = latest.status();
                        return Ok(latest);
                    }
                }
                // The sender lives in the order book, which `orders` keeps.
                Err(RecvError::Closed) => {
                    return Err(Status::unavailable("the order service is shutting down"));
                }
            }
        }
    }
}

/// Resolves when the servers stop; never without a stop signal.
async fn stopped(stop: &mut Option<watch::Receiver<()>>) {
    match stop {
        // Err: the sender was dropped with the servers, which also means stop.
        Some(stop) => {
            let _ = stop.changed().await;
        }
        None => std::future::pending().await,
    }
}
