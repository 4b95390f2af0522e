//! One instance of a backend: its connections to one address, its calls in
//! flight, its active health verdict and its breaker; and [`Lease`], a
//! call's claim on it.
//!
//! It does not choose among endpoints ([`super::pick`]), set up the
//! connection ([`mod@super::connection`]) or run health checks
//! ([`super::health`]); how its breaker opens and closes is
//! [`super::breaker`]'s.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::Uri;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::breaker::Breaker;
use super::connection;
use super::status::EndpointState;
use crate::config::BackendConfig;

/// One instance of a backend: a channel to one address and its health.
#[derive(Debug)]
pub struct Endpoint {
    /// `http://ip:port`.
    pub address: String,
    /// The configured address it came from (a host name resolves to several).
    pub origin: Uri,
    /// Streams, health checks and reflection.
    channel: Channel,
    /// Unary calls.
    http2: super::http2::Http2,
    in_flight: AtomicUsize,
    /// Set by active health checks; true until a check says otherwise.
    healthy: AtomicBool,
    /// Consecutive active check results: positive passes, negative failures.
    pub(super) streak: Mutex<i64>,
    /// Passive health: its circuit breaker.
    pub(super) breaker: Breaker,
}

impl Endpoint {
    /// A lazily connecting channel to `uri`; `origin` is the configured
    /// address, sent as `:authority` when `uri` is a resolved IP.
    pub fn new(uri: Uri, origin: &Uri, config: &BackendConfig) -> Arc<Self> {
        let channel = connection::channel(uri.clone(), origin, config);
        let http2 = super::http2::Http2::new(&uri, origin, config);
        let address = uri.to_string().trim_end_matches('/').to_owned();
        Arc::new(Self {
            breaker: Breaker::new(&address),
            address,
            origin: origin.clone(),
            channel,
            http2,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            streak: Mutex::new(0),
        })
    }

    /// The endpoint of `current` at `uri`'s address, with its connection
    /// and health state, else a new one.
    pub(super) fn reuse_or_new(
        current: &[Arc<Self>],
        uri: Uri,
        origin: &Uri,
        config: &BackendConfig,
    ) -> Arc<Self> {
        let address = uri.to_string();
        let address = address.trim_end_matches('/');
        current
            .iter()
            .find(|c| c.address == address)
            .cloned()
            .unwrap_or_else(|| Self::new(uri, origin, config))
    }

    /// The channel to this endpoint, for streams, health checks and reflection.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The connection unary calls take.
    pub fn http2(&self) -> &super::http2::Http2 {
        &self.http2
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether it passes its active health checks (true without them).
    pub(super) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Takes traffic now: healthy, and its breaker lets the call through
    /// (not ejected, and not half-open with its trial call already out).
    pub(super) fn available(&self, now: Instant) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.breaker.admits(now)
    }

    /// Its state as `/readyz` shows it.
    pub(super) fn state(&self, now: Instant) -> EndpointState {
        if !self.healthy.load(Ordering::Relaxed) {
            EndpointState::Unhealthy
        } else if self.breaker.ejected(now) {
            EndpointState::Ejected
        } else if self.breaker.half_open(now) {
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
                self.breaker.forget_failures();
            } else {
                tracing::warn!(endpoint = %self.address, "endpoint failed its health checks");
            }
        }
    }
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
    /// Claims `endpoint` for a call; `probe` when the call is its
    /// half-open trial (already claimed with [`Breaker::try_probe`]).
    pub(super) fn new(endpoint: &Arc<Endpoint>, probe: bool) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            endpoint: endpoint.clone(),
            probe: AtomicBool::new(probe),
        }
    }

    /// Ends the trial, if this is one; true when it was.
    pub(super) fn settle(&self) -> bool {
        let was = self.probe.swap(false, Ordering::Relaxed);
        if was {
            self.endpoint.breaker.end_probe();
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
