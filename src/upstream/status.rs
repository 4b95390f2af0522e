//! The readiness view of the backends, as `/readyz` and `/metrics` show
//! them: each backend, whether it can take calls, and its endpoints' states.
//!
//! Plain values, built by [`Backend::status`](super::Backend::status); the
//! states themselves are kept by the endpoints ([`super::endpoint`],
//! [`super::breaker`]), not here.

use serde::Serialize;

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
    /// and is not ejected ([`Backend::is_available`](super::Backend::is_available)).
    pub available: bool,
    /// Its endpoints.
    pub endpoints: Vec<EndpointStatus>,
    /// Retries made so far.
    pub retries: u64,
    /// Where its endpoints come from, when a registry (etcd) lists them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryStatus>,
}

/// Whether the registry a backend's endpoints come from answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryState {
    /// Not listed yet.
    Connecting,
    /// Listed and watched: changes arrive as they happen.
    Connected,
    /// Lost or never reached: the last known endpoints stay, and the
    /// gateway keeps trying.
    Unreachable,
}

/// A discovered backend's registry, in `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveryStatus {
    /// The registry: `etcd`.
    pub registry: &'static str,
    /// The key prefix watched.
    pub prefix: String,
    /// Whether it answers.
    pub state: DiscoveryState,
    /// Instances registered under the prefix (before the metadata filter).
    pub instances: usize,
    /// The etcd revision the endpoints are as of.
    pub revision: i64,
    /// Why it is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DiscoveryStatus {
    /// The state before the first listing.
    pub fn new(etcd: &crate::config::EtcdDiscovery) -> Self {
        Self {
            registry: "etcd",
            prefix: etcd.prefix.clone(),
            state: DiscoveryState::Connecting,
            instances: 0,
            revision: 0,
            error: None,
        }
    }
}
