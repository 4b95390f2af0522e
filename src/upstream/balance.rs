//! One backend's endpoints and how a call picks one: power of two choices
//! on in-flight calls or round robin, over the endpoints that are healthy
//! (active checks) and not ejected (passive checks); and the weighted pick
//! between the backends of a split route.
//!
//! Health checking and DNS refresh run in background tasks ([`super::health`],
//! [`super::resolve`]) that only update the state kept here.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Uri;
use serde::Serialize;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tower::retry::budget::{Budget, TpsBudget};

use crate::config::{BackendConfig, Balance};

/// A backend: its endpoints (replaced whole when DNS answers change) and
/// the background tasks that watch them, stopped when it is dropped.
#[derive(Debug)]
pub struct Backend {
    /// The configuration it was built from; a reload keeps the backend (and
    /// its connections and health state) when this is unchanged.
    pub config: BackendConfig,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    next: AtomicUsize,
    ejecting: Mutex<()>,
    tasks: Mutex<Vec<AbortHandle>>,
    /// Retries allowed as a share of calls.
    budget: TpsBudget,
    /// Retries made, for `/metrics` and `/readyz`.
    retries: std::sync::atomic::AtomicU64,
}

/// One instance of a backend: a channel to one address and its health.
#[derive(Debug)]
pub struct Endpoint {
    /// `http://ip:port`.
    pub address: String,
    /// The configured address it came from (a host name resolves to several).
    pub origin: Uri,
    channel: Channel,
    in_flight: AtomicUsize,
    /// Set by active health checks; true until a check says otherwise.
    healthy: AtomicBool,
    /// Passive failures in a row.
    failures: AtomicU32,
    /// Ejections in a row with no answered call between them.
    ejections: AtomicU32,
    /// End of the current ejection in milliseconds after `born`; 0 when not ejected.
    /// An atomic, not a lock: every pick reads it.
    ejected_until: AtomicU64,
    born: Instant,
    /// Consecutive active check results: positive passes, negative failures.
    pub(super) streak: Mutex<i64>,
    /// A half-open endpoint's one trial call is in flight.
    probing: AtomicBool,
    /// Calls and failures in the current failure-rate window.
    window: Window,
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

/// What an endpoint looks like from `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Takes traffic.
    Healthy,
    /// Failed its active health checks.
    Unhealthy,
    /// Taken out for a while after failing calls (the breaker is open).
    Ejected,
    /// Back from an ejection, taking one trial call at a time until one
    /// answers (the breaker is half-open).
    HalfOpen,
}

/// One endpoint in `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// Its address.
    pub address: String,
    /// Its state.
    pub state: EndpointState,
    /// Calls in flight.
    pub in_flight: usize,
}

/// One backend in `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    /// The backend's name.
    pub name: String,
    /// Whether readiness waits for it.
    pub required: bool,
    /// Whether calls can be made: some endpoint passes its health checks
    /// and is not ejected ([`Backend::is_available`]).
    pub available: bool,
    /// Its endpoints.
    pub endpoints: Vec<EndpointStatus>,
    /// Retries made so far.
    pub retries: u64,
}

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

/// A call's claim on an endpoint: counts it in flight until dropped.
#[derive(Debug)]
pub struct Lease {
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
    /// This is a half-open endpoint's trial call, not yet decided.
    probe: AtomicBool,
}

impl Lease {
    fn new(endpoint: &Arc<Endpoint>, probe: bool) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            endpoint: endpoint.clone(),
            probe: AtomicBool::new(probe),
        }
    }

    /// Ends the trial, if this is one; true when it was.
    fn settle(&self) -> bool {
        let was = self.probe.swap(false, Ordering::Relaxed);
        if was {
            self.endpoint.probing.store(false, Ordering::Relaxed);
        }
        was
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        // A trial that ended undecided (a client gone) lets the next call try.
        self.settle();
    }
}

/// How to connect to `uri` (an address of `origin`): its connect timeout
/// and, for `https://`, TLS verified against `origin`'s host (or the
/// configured server name), so resolved IPs still check the right name.
pub fn connection(uri: Uri, origin: &Uri, config: &BackendConfig) -> TonicEndpoint {
    let endpoint = TonicEndpoint::from(uri)
        .origin(origin.clone())
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true);
    let Some(tls) = &config.tls else {
        return endpoint;
    };
    let host = origin.host().unwrap_or_default();
    // The host without IPv6 brackets, as certificates name it.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let settings = crate::tls::client_config(tls, host).timeout(config.connect_timeout);
    match endpoint.clone().tls_config(settings) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            // Every call then fails as unreachable, with this in the log.
            tracing::error!(backend = %config.name, error = %e, "cannot set up TLS to the backend");
            endpoint
        }
    }
}

impl Endpoint {
    /// A lazily connecting channel to `uri`; `origin` is the configured
    /// address, sent as `:authority` when `uri` is a resolved IP.
    pub fn new(uri: Uri, origin: &Uri, config: &BackendConfig) -> Arc<Self> {
        let channel = connection(uri.clone(), origin, config)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Arc::new(Self {
            address: uri.to_string().trim_end_matches('/').to_owned(),
            origin: origin.clone(),
            channel,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            born: Instant::now(),
            streak: Mutex::new(0),
            probing: AtomicBool::new(false),
            window: Window::default(),
        })
    }

    /// The channel to this endpoint.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    fn millis(&self, at: Instant) -> u64 {
        // Never 0, which means "not ejected".
        u64::try_from(at.saturating_duration_since(self.born).as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn ejected(&self, now: Instant) -> bool {
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
            tracing::info!(endpoint = %self.address, "ejection over; endpoint takes traffic again");
        }
        false
    }

    fn eject(&self, now: Instant, duration: Duration) {
        let until = self
            .millis(now)
            .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until.store(until, Ordering::Relaxed);
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Back from an ejection and not yet closed by an answered call.
    fn half_open(&self, now: Instant) -> bool {
        self.ejections.load(Ordering::Relaxed) > 0 && !self.ejected(now)
    }

    /// Takes traffic now: healthy, not ejected, and not half-open with its
    /// trial call already out.
    fn available(&self, now: Instant) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && !self.ejected(now)
            && !(self.probing.load(Ordering::Relaxed) && self.half_open(now))
    }

    /// Claims the one trial call of a half-open endpoint.
    fn try_probe(&self) -> bool {
        self.probing
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// How long until it takes a call again, when its breaker keeps calls
    /// out: the rest of its ejection, or nothing while its half-open trial
    /// call is out (the trial may close it any moment).
    fn reopens_in(&self, now: Instant) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let at = self.millis(now);
        if until > at {
            return Some(Duration::from_millis(until - at));
        }
        (self.probing.load(Ordering::Relaxed) && self.half_open(now)).then_some(Duration::ZERO)
    }

    fn state(&self, now: Instant) -> EndpointState {
        if !self.healthy.load(Ordering::Relaxed) {
            EndpointState::Unhealthy
        } else if self.ejected(now) {
            EndpointState::Ejected
        } else if self.half_open(now) {
            EndpointState::HalfOpen
        } else {
            EndpointState::Healthy
        }
    }

    /// Records an active check's verdict once it has held `threshold` times in a row.
    pub(super) fn set_healthy(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(endpoint = %self.address, "endpoint passed its health checks");
                // A fresh start: old passive failures say nothing now.
                self.failures.store(0, Ordering::Relaxed);
            } else {
                tracing::warn!(endpoint = %self.address, "endpoint failed its health checks");
            }
        }
    }
}

impl Backend {
    /// A backend over `endpoints`, with no background tasks yet.
    pub fn new(config: BackendConfig, endpoints: Vec<Arc<Endpoint>>) -> Arc<Self> {
        // Over the last 10s, at least one retry a second.
        let budget = TpsBudget::new(Duration::from_secs(10), 1, config.retry.budget);
        Arc::new(Self {
            config,
            endpoints: ArcSwap::from_pointee(endpoints),
            next: AtomicUsize::new(0),
            ejecting: Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            budget,
            retries: std::sync::atomic::AtomicU64::new(0),
        })
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
        let allowed = |e: &Arc<Endpoint>| !exclude.iter().any(|x| Arc::ptr_eq(x, e));
        let chosen = match endpoints.as_slice() {
            // The common case: one endpoint, nothing excluded.
            [only] if exclude.is_empty() => only.available(now).then_some(only),
            all => self.choose(all, |e| allowed(e) && e.available(now)),
        };
        if let Some(chosen) = chosen {
            if !chosen.half_open(now) {
                return Some(Lease::new(chosen, false));
            }
            if chosen.try_probe() {
                return Some(Lease::new(chosen, true));
            }
            // Another call took the trial meanwhile: any closed endpoint.
            if let Some(closed) = self.choose(&endpoints, |e| {
                allowed(e) && e.available(now) && !e.half_open(now)
            }) {
                return Some(Lease::new(closed, false));
            }
        }
        // Every breaker is open. Fail fast, or (fail_open) use the actively
        // healthy endpoints anyway.
        if !self.config.outlier.fail_open {
            return None;
        }
        self.choose(&endpoints, |e| allowed(e) && e.is_healthy())
            .map(|e| Lease::new(e, false))
    }

    /// When no endpoint takes calls because every healthy one's breaker is
    /// open: how long until the first one half-opens. `None` when some
    /// endpoint is not ejected, or none passes its health checks.
    pub fn reopens_in(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut soonest: Option<Duration> = None;
        for endpoint in self.endpoints.load().iter().filter(|e| e.is_healthy()) {
            // One that takes calls: the failure was not its breaker's doing.
            let wait = endpoint.reopens_in(now)?;
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        soonest
    }

    /// One of the endpoints that are `usable`, by the backend's policy.
    /// Health may change while choosing; then any usable one will do.
    fn choose<'e>(
        &self,
        endpoints: &'e [Arc<Endpoint>],
        usable: impl Fn(&Arc<Endpoint>) -> bool,
    ) -> Option<&'e Arc<Endpoint>> {
        let count = endpoints.iter().filter(|e| usable(e)).count();
        let nth = |n: usize| endpoints.iter().filter(|e| usable(e)).nth(n);
        let first = || nth(0);
        match count {
            0 => None,
            1 => first(),
            _ => match self.config.balance {
                Balance::RoundRobin => {
                    nth(self.next.fetch_add(1, Ordering::Relaxed) % count).or_else(first)
                }
                Balance::P2c => {
                    // Two distinct random candidates; the less busy one wins.
                    let a = fastrand::usize(..count);
                    let b = (a + 1 + fastrand::usize(..count - 1)) % count;
                    match (nth(a), nth(b)) {
                        (Some(x), Some(y)) => Some(
                            if y.in_flight.load(Ordering::Relaxed)
                                < x.in_flight.load(Ordering::Relaxed)
                            {
                                y
                            } else {
                                x
                            },
                        ),
                        (x, y) => x.or(y).or_else(first),
                    }
                }
            },
        }
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
            .any(|e| e.is_healthy() && (fail_open || !e.ejected(now)))
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

    /// Passive health, a circuit breaker per endpoint. It opens (ejects the
    /// endpoint) after `consecutive_failures` failed calls in a row, or when
    /// the failed share of a window's calls reaches `failure_rate`. When
    /// the ejection ends it is half-open: one trial call at a time; an
    /// answer closes it, a failure opens it again for twice as long (up to
    /// ten times `ejection_time`). With `fail_open`, the last endpoint
    /// taking traffic is never ejected.
    ///
    /// While an endpoint is ejected or half-open, only its trial call
    /// decides: calls sent before it opened may end any time and say little
    /// about it now. The trial is over once recorded, even while its stream
    /// goes on.
    pub fn record(&self, lease: &Lease, outcome: Outcome) {
        let endpoint = lease.endpoint.as_ref();
        let trial = lease.settle();
        let outlier = &self.config.outlier;
        let now = Instant::now();
        let window = u64::try_from(outlier.window.as_millis()).unwrap_or(u64::MAX);
        let open = endpoint.ejections.load(Ordering::Relaxed) > 0;
        match outcome {
            Outcome::Neutral => {}
            Outcome::Answered => {
                endpoint.window.add(endpoint.millis(now), window, false);
                if trial || !open {
                    endpoint.failures.store(0, Ordering::Relaxed);
                    // The trial call answered: closed again.
                    endpoint.ejections.store(0, Ordering::Relaxed);
                }
            }
            Outcome::Failed => {
                if open && !trial {
                    // Open or half-open already: only the trial decides.
                    return;
                }
                let failures = endpoint.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let (calls, failed) = endpoint.window.add(endpoint.millis(now), window, true);
                let ejections = endpoint.ejections.load(Ordering::Relaxed);
                let trips = trial
                    || (outlier.consecutive_failures > 0
                        && failures >= outlier.consecutive_failures)
                    || (outlier.failure_rate > 0.0
                        && calls >= outlier.minimum_calls
                        && f64::from(failed) >= outlier.failure_rate * f64::from(calls));
                if !trips {
                    return;
                }
                // One ejection at a time, so two endpoints failing together
                // cannot both see the other as the one left.
                let _one = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
                if endpoint.ejected(now) {
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
                endpoint.failures.store(0, Ordering::Relaxed);
                endpoint.window.restart(endpoint.millis(now));
                // Each ejection in a row lasts twice as long, up to ten times the first.
                let ejection = outlier
                    .ejection_time
                    .saturating_mul(1 << ejections.min(3))
                    .min(outlier.ejection_time.saturating_mul(10));
                endpoint.ejections.fetch_add(1, Ordering::Relaxed);
                endpoint.eject(now, ejection);
                tracing::warn!(
                    backend = %self.config.name,
                    endpoint = %endpoint.address,
                    failures,
                    window_calls = calls,
                    window_failures = failed,
                    ?ejection,
                    "endpoint ejected after failed calls"
                );
            }
        }
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
                in_flight: e.in_flight.load(Ordering::Relaxed),
            })
            .collect();
        BackendStatus {
            retries: self.retries.load(Ordering::Relaxed),
            name: self.config.name.clone(),
            required: self.config.required,
            available: self.is_available(),
            endpoints,
        }
    }
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
mod tests {
    use super::*;
    use crate::config;

    /// An ordinary call's lease.
    fn lease(endpoint: &Arc<Endpoint>) -> Lease {
        Lease::new(endpoint, false)
    }

    /// A half-open endpoint's trial call.
    fn trial(endpoint: &Arc<Endpoint>) -> Lease {
        assert!(endpoint.try_probe(), "no other trial is out");
        Lease::new(endpoint, true)
    }

    fn backend(n: usize, extra: &str) -> Arc<Backend> {
        let endpoints: Vec<String> = (1..=n).map(|i| format!("http://127.0.0.{i}:1")).collect();
        let text = format!(
            "descriptors:\n  protos: [x.proto]\nbackends:\n  b:\n    endpoints: [{}]\n    services: [a.B]\n{extra}",
            endpoints.join(", ")
        );
        let config = config::parse(&text, std::path::Path::new("gateway.yaml"))
            .unwrap()
            .backends
            .remove(0);
        let eps = config
            .endpoints
            .iter()
            .map(|uri| Endpoint::new(uri.clone(), uri, &config))
            .collect();
        Backend::new(config, eps)
    }

    fn counts(backend: &Backend, picks: usize) -> Vec<usize> {
        let endpoints = backend.endpoints();
        let mut counts = vec![0; endpoints.len()];
        for _ in 0..picks {
            let lease = backend.pick(&[]).unwrap();
            let i = endpoints
                .iter()
                .position(|e| Arc::ptr_eq(e, &lease.endpoint))
                .unwrap();
            counts[i] += 1;
        }
        counts
    }

    #[tokio::test]
    async fn round_robin_takes_turns() {
        let b = backend(3, "    balance: round_robin\n");
        assert_eq!(counts(&b, 9), [3, 3, 3]);
    }

    #[tokio::test]
    async fn p2c_avoids_the_busy_endpoint() {
        let b = backend(3, "");
        // Hold 50 calls on the first endpoint: every pair including it prefers the other.
        let busy = b.endpoints()[0].clone();
        let held: Vec<Lease> = (0..50)
            .map(|_| {
                busy.in_flight.fetch_add(1, Ordering::Relaxed);
                Lease {
                    endpoint: busy.clone(),
                    probe: AtomicBool::new(false),
                }
            })
            .collect();
        let mut got = vec![0; 3];
        for _ in 0..300 {
            // Released at once, so the others stay at zero in flight.
            let lease = b.pick(&[]).unwrap();
            let i = b
                .endpoints()
                .iter()
                .position(|e| Arc::ptr_eq(e, &lease.endpoint))
                .unwrap();
            got[i] += 1;
        }
        assert_eq!(got[0], 0, "{got:?}");
        assert!(got[1] > 100 && got[2] > 100, "{got:?}");
        drop(held);
        assert_eq!(busy.in_flight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn every_breaker_open_fails_fast() {
        let b = backend(
            2,
            "    outlier_detection: { consecutive_failures: 2, ejection_time: 1h }\n",
        );
        let [first, second] = [b.endpoints()[0].clone(), b.endpoints()[1].clone()];
        assert_eq!(b.reopens_in(), None);
        for endpoint in [&first, &second] {
            b.record(&lease(endpoint), Outcome::Failed);
            b.record(&lease(endpoint), Outcome::Failed);
        }
        assert_eq!(second.state(Instant::now()), EndpointState::Ejected);
        assert!(b.pick(&[]).is_none(), "no call while every breaker is open");
        let reopens = b.reopens_in().unwrap();
        assert!(
            reopens > Duration::from_secs(3590) && reopens <= Duration::from_secs(3600),
            "{reopens:?}"
        );
        // Not available, though the endpoints pass their health checks:
        // no call would be sent.
        assert!(!b.status().available);
    }

    #[tokio::test]
    async fn failure_rate_opens_the_breaker() {
        let b = backend(
            2,
            "    outlier_detection: { consecutive_failures: 0, failure_rate: 0.5, minimum_calls: 10, window: 1h }\n",
        );
        let first = b.endpoints()[0].clone();
        // 4 of 9 failed, alternating: no streak, too few calls.
        for i in 0..9 {
            let outcome = if i % 2 == 1 {
                Outcome::Failed
            } else {
                Outcome::Answered
            };
            b.record(&lease(&first), outcome);
        }
        assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
        // The 10th call fails: 5 of 10.
        b.record(&lease(&first), Outcome::Failed);
        assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_counts_within_its_window() {
        let b = backend(
            2,
            "    outlier_detection: { consecutive_failures: 0, failure_rate: 0.5, minimum_calls: 4, window: 200ms }\n",
        );
        let first = b.endpoints()[0].clone();
        for _ in 0..3 {
            b.record(&lease(&first), Outcome::Failed);
        }
        tokio::time::advance(Duration::from_millis(250)).await;
        // A new window: the old failures are gone.
        b.record(&lease(&first), Outcome::Answered);
        b.record(&lease(&first), Outcome::Answered);
        b.record(&lease(&first), Outcome::Answered);
        b.record(&lease(&first), Outcome::Failed);
        assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_takes_one_trial_call_at_a_time() {
        let b = backend(
            1,
            "    outlier_detection: { consecutive_failures: 1, ejection_time: 100ms }\n",
        );
        let only = b.endpoints()[0].clone();
        b.record(&lease(&only), Outcome::Failed);
        assert!(b.pick(&[]).is_none());
        tokio::time::advance(Duration::from_millis(150)).await;
        assert_eq!(only.state(Instant::now()), EndpointState::HalfOpen);
        let trial = b.pick(&[]).expect("the trial call");
        assert!(b.pick(&[]).is_none(), "one trial at a time");
        assert_eq!(b.reopens_in(), Some(Duration::ZERO), "fail fast meanwhile");
        drop(trial);
        // A trial that ended without a verdict lets the next call try.
        let next = b.pick(&[]).expect("the next trial");
        // Calls sent before the ejection decide nothing now.
        b.record(&lease(&only), Outcome::Answered);
        assert_eq!(only.state(Instant::now()), EndpointState::HalfOpen);
        b.record(&lease(&only), Outcome::Failed);
        assert_eq!(only.state(Instant::now()), EndpointState::HalfOpen);
        // The trial's answer closes it, even while its lease lives on (a stream).
        b.record(&next, Outcome::Answered);
        assert_eq!(only.state(Instant::now()), EndpointState::Healthy);
        assert!(!only.probing.load(Ordering::Relaxed));
        let (one, two) = (b.pick(&[]), b.pick(&[]));
        assert!(one.is_some() && two.is_some(), "closed: no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_never_count_not_even_for_a_trial() {
        let b = backend(
            2,
            "    outlier_detection: { consecutive_failures: 1, ejection_time: 100ms }\n",
        );
        let first = b.endpoints()[0].clone();
        for _ in 0..10 {
            b.record(&lease(&first), Outcome::Neutral);
        }
        assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
        b.record(&lease(&first), Outcome::Failed);
        tokio::time::advance(Duration::from_millis(150)).await;
        assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
        b.record(&trial(&first), Outcome::Neutral);
        assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
        // The trial is free again for the next call.
        let next = trial(&first);
        b.record(&next, Outcome::Answered);
        assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
    }

    #[tokio::test]
    async fn fail_open_never_ejects_the_last_endpoint() {
        let b = backend(
            2,
            "    outlier_detection: { consecutive_failures: 2, ejection_time: 1h, fail_open: true }\n",
        );
        let [first, second] = [b.endpoints()[0].clone(), b.endpoints()[1].clone()];
        b.record(&lease(&first), Outcome::Failed);
        b.record(&lease(&first), Outcome::Answered);
        b.record(&lease(&first), Outcome::Failed);
        assert_eq!(
            first.state(Instant::now()),
            EndpointState::Healthy,
            "a success resets the count"
        );
        b.record(&lease(&first), Outcome::Failed);
        assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
        assert_eq!(counts(&b, 10), [0, 10]);
        for _ in 0..5 {
            b.record(&lease(&second), Outcome::Failed);
        }
        assert_eq!(
            second.state(Instant::now()),
            EndpointState::Healthy,
            "the last endpoint stays"
        );
        let status = b.status();
        assert!(status.available);
        assert_eq!(status.endpoints[0].state, EndpointState::Ejected);
        // Only the ejected one is left: it takes traffic rather than none.
        second.set_healthy(false);
        assert_eq!(counts(&b, 4), [4, 0]);
        first.set_healthy(false);
        assert!(b.pick(&[]).is_none());
        assert!(!b.status().available);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_ends_by_itself() {
        let b = backend(
            2,
            "    balance: round_robin\n    outlier_detection: { consecutive_failures: 1, ejection_time: 300ms }\n",
        );
        let first = b.endpoints()[0].clone();
        b.record(&lease(&first), Outcome::Failed);
        assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
        assert_eq!(counts(&b, 10).iter().filter(|&&n| n > 0).count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn back_from_ejection_one_failure_ejects_again_for_longer() {
        let b = backend(
            2,
            "    balance: round_robin\n    outlier_detection: { consecutive_failures: 3, ejection_time: 200ms }\n",
        );
        let first = b.endpoints()[0].clone();
        for _ in 0..3 {
            b.record(&lease(&first), Outcome::Failed);
        }
        assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
        // Half-open: a failed trial, and out for 400ms this time.
        b.record(&trial(&first), Outcome::Failed);
        assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(
            first.state(Instant::now()),
            EndpointState::Ejected,
            "doubled"
        );
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
        // The trial answers and closes it: back to three failures.
        b.record(&trial(&first), Outcome::Answered);
        b.record(&lease(&first), Outcome::Failed);
        b.record(&lease(&first), Outcome::Failed);
        assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
    }

    #[tokio::test]
    async fn excluded_endpoints_are_skipped() {
        let b = backend(3, "");
        let refused = vec![b.endpoints()[0].clone(), b.endpoints()[2].clone()];
        for _ in 0..20 {
            let lease = b.pick(&refused).unwrap();
            assert!(Arc::ptr_eq(&lease.endpoint, &b.endpoints()[1]));
        }
        let all = b.endpoints().to_vec();
        assert!(b.pick(&all).is_none());
    }
}
