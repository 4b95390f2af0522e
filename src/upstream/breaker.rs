//! Passive health: one endpoint's circuit breaker, fed by how its calls
//! end ([`Outcome`]).
//!
//! Closed, it counts failed calls: it trips after `consecutive_failures`
//! in a row, or when the failed share of a window's calls reaches
//! `failure_rate`. Open, the endpoint is ejected and takes no calls. When
//! the ejection ends it is half-open: one trial call at a time; an answer
//! closes it, a failure opens it again for twice as long (up to ten times
//! `ejection_time`). While it is open or half-open only the trial call
//! decides: calls sent before it opened may end any time and say little
//! about the endpoint now.
//!
//! It does not decide whether a tripped breaker may open: one ejection at a
//! time per backend, and `fail_open` never ejecting the last endpoint, are
//! [`super::backend`]'s. Active health checks are [`super::health`]'s.
//! Time is `tokio::time`, so tests drive it on a paused clock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::OutlierOptions;

/// How a call ended, for passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer, even an error status other than UNAVAILABLE.
    Answered,
    /// No answer or UNAVAILABLE: counts toward ejection.
    Failed,
    /// Says nothing about the endpoint: no endpoint was called, or the
    /// caller's deadline ended the call. A deadline is the caller's to set
    /// (`Grpc-Timeout` can be a millisecond), so it never counts against a
    /// backend, not even for a trial call, which then frees the trial for the
    /// next call; a hung backend is found by active health checks.
    Neutral,
}

/// One endpoint's breaker: closed, open (ejected until a time) or
/// half-open (back from an ejection, one trial call at a time).
#[derive(Debug)]
pub(super) struct Breaker {
    /// The endpoint's address, for the log.
    endpoint: String,
    /// Passive failures in a row.
    failures: AtomicU32,
    /// Ejections in a row with no answered call between them.
    ejections: AtomicU32,
    /// End of the current ejection in milliseconds after `born`; 0 when not ejected.
    /// An atomic, not a lock: every pick reads it.
    ejected_until: AtomicU64,
    born: Instant,
    /// A half-open endpoint's one trial call is in flight.
    probing: AtomicBool,
    /// Calls and failures in the current failure-rate window.
    window: Window,
}

/// What tripped a breaker: the counts its ejection is logged with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trip {
    /// Failed calls in a row.
    pub(super) failures: u32,
    /// Calls in the current window.
    pub(super) calls: u32,
    /// Failed calls in the current window.
    pub(super) failed: u32,
    /// Ejections in a row before this one.
    ejections: u32,
}

/// Calls and failed calls since `started` (milliseconds after the
/// endpoint's birth): a fixed window, restarted when it is over. Counts may
/// be off by a call or two under races; the rate it gives need not be exact.
#[derive(Debug, Default)]
struct Window {
    started: AtomicU64,
    calls: AtomicU32,
    failed: AtomicU32,
}

impl Window {
    /// Counts a call; returns the window's calls and failures so far.
    fn add(&self, now: u64, length: u64, failed: bool) -> (u32, u32) {
        let started = self.started.load(Ordering::Relaxed);
        if now.saturating_sub(started) >= length
            && self
                .started
                .compare_exchange(started, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.calls.store(0, Ordering::Relaxed);
            self.failed.store(0, Ordering::Relaxed);
        }
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let failures = if failed {
            self.failed.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.failed.load(Ordering::Relaxed)
        };
        (calls, failures)
    }

    fn restart(&self, now: u64) {
        self.started.store(now, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
    }
}

impl Breaker {
    /// A closed breaker for the endpoint at `endpoint`, its clock starting now.
    pub(super) fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            born: Instant::now(),
            probing: AtomicBool::new(false),
            window: Window::default(),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        // Never 0, which means "not ejected".
        u64::try_from(at.saturating_duration_since(self.born).as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Open: the endpoint is ejected at `now`. The first caller to see an
    /// ejection over clears it and logs that, once.
    pub(super) fn ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if self.millis(now) < until {
            return true;
        }
        // Whoever clears it reports it, once.
        if self
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(endpoint = %self.endpoint, "ejection over; endpoint takes traffic again");
        }
        false
    }

    fn eject(&self, now: Instant, duration: Duration) {
        let until = self
            .millis(now)
            .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until.store(until, Ordering::Relaxed);
    }

    /// Back from an ejection and not yet closed by an answered call.
    pub(super) fn half_open(&self, now: Instant) -> bool {
        self.ejections.load(Ordering::Relaxed) > 0 && !self.ejected(now)
    }

    /// Lets a call through now: not ejected, and not half-open with its
    /// trial call already out.
    pub(super) fn admits(&self, now: Instant) -> bool {
        if self.ejected(now) {
            return false;
        }
        !(self.probing.load(Ordering::Relaxed) && self.half_open(now))
    }

    /// Claims the one trial call of a half-open endpoint; false when
    /// another call holds it.
    pub(super) fn try_probe(&self) -> bool {
        self.probing
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Frees the trial for the next call.
    pub(super) fn end_probe(&self) {
        self.probing.store(false, Ordering::Relaxed);
    }

    /// How long until it takes a call again, when it keeps calls out: the
    /// rest of its ejection, or nothing while its half-open trial call is
    /// out (the trial may close it any moment).
    pub(super) fn reopens_in(&self, now: Instant) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let at = self.millis(now);
        if until > at {
            return Some(Duration::from_millis(until - at));
        }
        (self.probing.load(Ordering::Relaxed) && self.half_open(now)).then_some(Duration::ZERO)
    }

    /// Forgets the failures in a row: the endpoint starts afresh.
    pub(super) fn forget_failures(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Counts a call that ended with `outcome` (`trial` when it was the
    /// half-open trial call). Returns what tripped the breaker when it
    /// should open now; the caller then [`open`](Self::open)s it, or not.
    pub(super) fn record(
        &self,
        outcome: Outcome,
        trial: bool,
        outlier: &OutlierOptions,
        now: Instant,
    ) -> Option<Trip> {
        let window = u64::try_from(outlier.window.as_millis()).unwrap_or(u64::MAX);
        let open = self.ejections.load(Ordering::Relaxed) > 0;
        match outcome {
            Outcome::Neutral => None,
            Outcome::Answered => {
                self.window.add(self.millis(now), window, false);
                if trial || !open {
                    self.failures.store(0, Ordering::Relaxed);
                    // The trial call answered: closed again.
                    self.ejections.store(0, Ordering::Relaxed);
                }
                None
            }
            Outcome::Failed => {
                if open && !trial {
                    // Open or half-open already: only the trial decides.
                    return None;
                }
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let (calls, failed) = self.window.add(self.millis(now), window, true);
                let ejections = self.ejections.load(Ordering::Relaxed);
                let trips = trial
                    || (outlier.consecutive_failures > 0
                        && failures >= outlier.consecutive_failures)
                    || (outlier.failure_rate > 0.0
                        && calls >= outlier.minimum_calls
                        && f64::from(failed) >= outlier.failure_rate * f64::from(calls));
                trips.then_some(Trip {
                    failures,
                    calls,
                    failed,
                    ejections,
                })
            }
        }
    }

    /// Opens the breaker `trip` tripped: ejects the endpoint from `now`
    /// and starts its counts afresh. Returns how long the ejection lasts.
    pub(super) fn open(&self, now: Instant, trip: &Trip, outlier: &OutlierOptions) -> Duration {
        self.failures.store(0, Ordering::Relaxed);
        self.window.restart(self.millis(now));
        // Each ejection in a row lasts twice as long, up to ten times the first.
        let ejection = outlier
            .ejection_time
            .saturating_mul(1 << trip.ejections.min(3))
            .min(outlier.ejection_time.saturating_mul(10));
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.eject(now, ejection);
        ejection
    }
}

#[cfg(test)]
mod tests;
