//! A backend: its endpoints (replaced whole when DNS answers change), the
//! background tasks that watch them, its retry budget, and what spans its
//! endpoints: picking one for a call, opening a tripped breaker (one
//! ejection at a time; with `fail_open` never the last endpoint taking
//! traffic), whether it takes calls, and its `/readyz` view.
//!
//! Health checking, DNS refresh and etcd discovery run in background tasks
//! ([`super::health`], [`super::resolve`], [`super::discovery`]) that only
//! update the state kept here. How an endpoint
//! is chosen is [`super::pick`]'s, how one endpoint's breaker counts
//! [`super::breaker`]'s; the weighted choice between the backends of a
//! split route is [`super::split`]'s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

use super::breaker::Outcome;
use super::endpoint::{Endpoint, Lease};
use super::pick::Picker;
use super::status::{BackendStatus, DiscoveryState, DiscoveryStatus, EndpointStatus};
use crate::config::BackendConfig;

/// A backend: its endpoints (replaced whole when DNS answers change) and
/// the background tasks that watch them, stopped when it is dropped.
#[derive(Debug)]
pub struct Backend {
    /// The configuration it was built from; a reload keeps the backend (and
    /// its connections and health state) when this is unchanged.
    pub config: BackendConfig,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    picker: Picker,
    ejecting: Mutex<()>,
    tasks: Mutex<Vec<AbortHandle>>,
    /// Retries allowed as a share of calls.
    budget: TpsBudget,
    /// Retries made, for `/metrics` and `/readyz`.
    retries: AtomicU64,
    /// The registry's state, for a backend discovered in etcd.
    discovery: Mutex<Option<DiscoveryStatus>>,
}

impl Backend {
    /// A backend over `endpoints`, with no background tasks yet.
    pub fn new(config: BackendConfig, endpoints: Vec<Arc<Endpoint>>) -> Arc<Self> {
        // Over the last 10s, at least one retry a second.
        let budget = TpsBudget::new(Duration::from_secs(10), 1, config.retry.budget);
        Arc::new(Self {
            picker: Picker::new(&config),
            config,
            endpoints: ArcSwap::from_pointee(endpoints),
            ejecting: Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            budget,
            retries: AtomicU64::new(0),
            discovery: Mutex::new(None),
        })
    }

    /// Sets the registry's state (discovered backends).
    pub(super) fn set_discovery(&self, status: DiscoveryStatus) {
        *self
            .discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(status);
    }

    /// Changes the registry's state, once set.
    pub(super) fn update_discovery(&self, change: impl FnOnce(&mut DiscoveryStatus)) {
        if let Some(status) = self
            .discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            change(status);
        }
    }

    /// Whether the registry answers, for a discovered backend.
    pub fn discovery_state(&self) -> Option<DiscoveryState> {
        self.discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|s| s.state)
    }

    /// Counts a call toward the retry budget.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Takes a retry from the budget; false when the budget is spent.
    pub fn withdraw(&self) -> bool {
        let ok = self.budget.withdraw();
        if ok {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The current endpoints.
    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Replaces the endpoints (after a DNS change).
    pub(super) fn set_endpoints(&self, endpoints: Vec<Arc<Endpoint>>) {
        self.endpoints.store(Arc::new(endpoints));
    }

    /// Ties a background task's life to this backend's.
    pub(super) fn adopt(&self, task: AbortHandle) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Picks an endpoint for a call, skipping `exclude` (endpoints that
    /// just refused a connection), and counts the call in flight.
    pub fn pick(&self, exclude: &[Arc<Endpoint>]) -> Option<Lease> {
        let endpoints = self.endpoints.load();
        let now = Instant::now();
        self.picker.pick(&endpoints, exclude, now)
    }

    /// When no endpoint takes calls because every healthy one's breaker is
    /// open: how long until the first one half-opens. `None` when some
    /// endpoint is not ejected, or none passes its health checks.
    pub fn reopens_in(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut soonest: Option<Duration> = None;
        for endpoint in self.endpoints.load().iter().filter(|e| e.is_healthy()) {
            // One that takes calls: the failure was not its breaker's doing.
            let wait = endpoint.breaker.reopens_in(now)?;
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        soonest
    }

    /// Whether calls can be made, as `/readyz` tells it: some endpoint
    /// passes its health checks and its breaker is not open (half-open
    /// counts: it takes a call at a time). With `fail_open`, any healthy
    /// endpoint, since calls then go to ejected ones too.
    pub fn is_available(&self) -> bool {
        let now = Instant::now();
        let fail_open = self.config.outlier.fail_open;
        self.endpoints
            .load()
            .iter()
            .any(|e| e.is_healthy() && (fail_open || !e.breaker.ejected(now)))
    }

    /// Whether a call would be sent now: some endpoint passes its health
    /// checks and its breaker lets calls through (with `fail_open`, any
    /// healthy endpoint).
    pub fn takes_calls(&self) -> bool {
        let now = Instant::now();
        let fail_open = self.config.outlier.fail_open;
        self.endpoints
            .load()
            .iter()
            .any(|e| e.available(now) || (fail_open && e.is_healthy()))
    }

    /// Passive health: counts how the call on `lease` ended toward its
    /// endpoint's circuit breaker ([`super::breaker`]), and opens the
    /// breaker (ejects the endpoint) when it trips, unless another
    /// ejection got there first or, with `fail_open`, this is the last
    /// endpoint taking traffic. The trial call of a half-open endpoint is
    /// over once recorded, even while its stream goes on.
    pub fn record(&self, lease: &Lease, outcome: Outcome) {
        let endpoint = lease.endpoint.as_ref();
        let trial = lease.settle();
        let outlier = &self.config.outlier;
        let now = Instant::now();
        let Some(trip) = endpoint.breaker.record(outcome, trial, outlier, now) else {
            return;
        };
        // One ejection at a time, so two endpoints failing together
        // cannot both see the other as the one left.
        let _one = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        if endpoint.breaker.ejected(now) {
            return;
        }
        if outlier.fail_open
            && !self
                .endpoints
                .load()
                .iter()
                .any(|e| !std::ptr::eq(e.as_ref(), endpoint) && e.available(now))
        {
            // fail_open: ejecting the last endpoint would turn a
            // flaky backend into a dead one.
            return;
        }
        let ejection = endpoint.breaker.open(now, &trip, outlier);
        tracing::warn!(
            backend = %self.config.name,
            endpoint = %endpoint.address,
            failures = trip.failures,
            window_calls = trip.calls,
            window_failures = trip.failed,
            ?ejection,
            "endpoint ejected after failed calls"
        );
    }

    /// The backend as `/readyz` shows it.
    pub fn status(&self) -> BackendStatus {
        let now = Instant::now();
        let endpoints: Vec<EndpointStatus> = self
            .endpoints
            .load()
            .iter()
            .map(|e| EndpointStatus {
                address: e.address.clone(),
                state: e.state(now),
                in_flight: e.in_flight(),
            })
            .collect();
        BackendStatus {
            retries: self.retries.load(Ordering::Relaxed),
            name: self.config.name.clone(),
            required: self.config.required,
            available: self.is_available(),
            endpoints,
            discovery: self
                .discovery
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Makes `fresh` the endpoints of `backend` (whose endpoints were
/// `current`) when they differ: endpoints new to it are health-checked
/// first, and the change is logged as `why`. False when the backend is gone.
pub(super) async fn swap_in(
    backend: &Weak<Backend>,
    current: &[Arc<Endpoint>],
    fresh: Vec<Arc<Endpoint>>,
    why: &str,
) -> bool {
    let added: Vec<Arc<Endpoint>> = fresh
        .iter()
        .filter(|f| !current.iter().any(|c| Arc::ptr_eq(c, f)))
        .cloned()
        .collect();
    if added.is_empty() && fresh.len() == current.len() {
        return backend.strong_count() > 0;
    }
    let Some(health_check) = backend.upgrade().map(|b| b.config.health_check.clone()) else {
        return false;
    };
    if let Some(options) = &health_check {
        super::health::check_all(&added, options, true).await;
    }
    let Some(backend) = backend.upgrade() else {
        return false;
    };
    tracing::info!(
        backend = %backend.config.name,
        endpoints = ?fresh.iter().map(|e| e.address.as_str()).collect::<Vec<_>>(),
        "{why}"
    );
    backend.set_endpoints(fresh);
    true
}

impl Drop for Backend {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
