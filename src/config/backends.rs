//! `backends:`: where services are served, how endpoints are chosen,
//! checked, ejected and retried.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use http::Uri;
use serde::Deserialize;

use super::backend_tls::{BackendTls, BackendTlsSection};
use super::discovery::{DiscoverySection, EtcdDiscovery};
use super::service_pattern::{ServicePattern, service_patterns};
use super::value::{Between, NonZeroDuration, Positive, Ratio, Weight};

/// Default upstream deadline when neither the method, the backend nor the client sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout to a backend.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest reply message from a backend (gRPC's usual limit).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Default interval between re-resolutions of backend host names.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);
/// Largest `backends.<name>.weight`.
pub const MAX_WEIGHT: u32 = 10_000;

/// `backends.<name>:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `http://host:port` of the gRPC server.
    pub address: Option<String>,
    /// Several `http://host:port` instances of it.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Instances read from a registry (etcd) instead of `address`/`endpoints`.
    pub discovery: Option<DiscoverySection>,
    /// Full service names, or `package.*` for every service of a package.
    #[serde(default)]
    pub services: Vec<String>,
    /// Read descriptors from the backend by gRPC server reflection.
    #[serde(default)]
    pub reflection: bool,
    /// Ask the backend's reflection again on this period (default: only at
    /// load, reload and SIGHUP).
    pub reflection_refresh: Option<NonZeroDuration>,
    /// Share of a split service's traffic.
    pub weight: Option<Weight>,
    /// How requests are spread over endpoints.
    #[schemars(extend("default" = "p2c"))]
    pub balance: Option<Balance>,
    /// How often host names are resolved again.
    #[schemars(extend("default" = "30s"))]
    pub dns_refresh: Option<NonZeroDuration>,
    /// Active health checks with `grpc.health.v1`.
    pub health_check: Option<HealthCheckSection>,
    /// Passive health: ejection of endpoints that keep failing.
    #[schemars(extend("default" = {}))]
    pub outlier_detection: Option<OutlierSection>,
    /// Whether `/readyz` waits for this backend.
    #[schemars(extend("default" = false))]
    pub required: Option<bool>,
    /// Retries of idempotent methods.
    pub retry: Option<RetrySection>,
    /// Default deadline for calls to this backend.
    #[schemars(extend("default" = "30s"))]
    pub timeout: Option<NonZeroDuration>,
    /// Timeout for establishing a connection.
    #[schemars(extend("default" = "5s"))]
    pub connect_timeout: Option<NonZeroDuration>,
    /// Largest reply message accepted, in bytes.
    #[schemars(extend("default" = 4194304))]
    pub max_response_bytes: Option<Positive<usize>>,
    /// TLS settings for `https://` addresses.
    pub tls: Option<BackendTlsSection>,
}

/// Endpoint choice within a backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Power of two choices on in-flight requests (the default).
    #[default]
    P2c,
    /// Each endpoint in turn.
    RoundRobin,
}

/// `backends.<name>.health_check:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// Time between checks.
    #[schemars(extend("default" = "5s"))]
    pub interval: Option<NonZeroDuration>,
    /// Deadline of one check.
    #[schemars(extend("default" = "1s"))]
    pub timeout: Option<NonZeroDuration>,
    /// Service name sent in `HealthCheckRequest` ("" is the whole server).
    #[schemars(extend("default" = ""))]
    pub service: Option<String>,
    /// Failed checks in a row before an endpoint is unhealthy.
    #[schemars(extend("default" = 2))]
    pub unhealthy_threshold: Option<Positive<u32>>,
    /// Passed checks in a row before it is healthy again.
    #[schemars(extend("default" = 1))]
    pub healthy_threshold: Option<Positive<u32>>,
}

/// `backends.<name>.retry:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts in all, the first included.
    #[schemars(extend("default" = 3))]
    pub attempts: Option<Between<u32, 1, 10>>,
    /// Backoff before the first retry; doubled for each next one.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<super::value::DurationText>")]
    #[schemars(extend("default" = "25ms"))]
    pub backoff: Option<Duration>,
    /// Longest backoff.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<super::value::DurationText>")]
    #[schemars(extend("default" = "250ms"))]
    pub max_backoff: Option<Duration>,
    /// Retries allowed as a share of requests (0.2: one in five).
    #[schemars(extend("default" = 0.2))]
    pub budget: Option<Ratio>,
}

/// `backends.<name>.outlier_detection:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutlierSection {
    /// Failed calls in a row before an endpoint is ejected; 0 turns ejection off.
    #[schemars(extend("default" = 5))]
    pub consecutive_failures: Option<u32>,
    /// How long an ejected endpoint stays out.
    #[schemars(extend("default" = "10s"))]
    pub ejection_time: Option<NonZeroDuration>,
    /// Share of failed calls in a window that ejects an endpoint; 0 turns it off.
    #[schemars(extend("default" = 0.5))]
    pub failure_rate: Option<Ratio>,
    /// Calls a window needs before its failure rate counts.
    #[schemars(extend("default" = 20))]
    pub minimum_calls: Option<Positive<u32>>,
    /// Length of the failure rate's window.
    #[schemars(extend("default" = "10s"))]
    pub window: Option<NonZeroDuration>,
    /// When every endpoint is ejected, send calls to them anyway instead of answering 503.
    #[schemars(extend("default" = false))]
    pub fail_open: Option<bool>,
}

/// One backend: a gRPC service deployment of one or more endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// The name used in `gateway.yaml`.
    pub name: String,
    /// `http://host:port` of each instance; a host name stands for every
    /// address it resolves to.
    /// Empty with `discovery`.
    pub endpoints: Vec<Uri>,
    /// Endpoints read from etcd and kept up to date by a watch. Default
    /// none: `endpoints` are the instances.
    pub discovery: Option<EtcdDiscovery>,
    /// Which services it serves. Empty with `reflection`: every service the
    /// backend lists.
    pub services: Vec<ServicePattern>,
    /// Descriptors come from the backend by gRPC server reflection. Default false.
    pub reflection: bool,
    /// With `reflection`: how often its descriptors are fetched again and,
    /// when they changed, swapped in. `None`: only at load and reload.
    pub reflection_refresh: Option<Duration>,
    /// Share of traffic when several backends serve one service. Several
    /// backends may serve a service only when each sets a weight. Default none.
    pub weight: Option<u32>,
    /// Endpoint choice. Default power of two choices.
    pub balance: Balance,
    /// Interval between re-resolutions of host names. Default 30s.
    pub dns_refresh: Duration,
    /// Active health checks. Default none (the defaults when `required`):
    /// endpoints count as healthy until passive checks eject them.
    pub health_check: Option<HealthCheckOptions>,
    /// Passive health checks.
    pub outlier: OutlierOptions,
    /// Retries of idempotent methods. Default [`RetryOptions::none`]: only
    /// a refused connection moves a call to another endpoint.
    pub retry: RetryOptions,
    /// `/readyz` needs a healthy endpoint of this backend. Default false: a
    /// readiness probe failing on one backend's outage would take every
    /// replica, and so every API, out of service. When true and
    /// `health_check` is not set, the default health checks are on.
    pub required: bool,
    /// Default deadline. Default 30s.
    pub timeout: Duration,
    /// Connect timeout. Default 5s.
    pub connect_timeout: Duration,
    /// Largest reply message accepted. Default 4 MiB.
    pub max_response_bytes: usize,
    /// TLS for `https://` addresses; the file bytes are part of the value,
    /// so a reload with a new certificate makes new connections.
    pub tls: Option<BackendTls>,
}

impl BackendConfig {
    /// Whether `other` has the same endpoints, connections and health
    /// settings, so a reload can keep this backend's connections and health
    /// state. Per-call settings (timeouts, weight, services) may differ.
    pub fn same_endpoints(&self, other: &Self) -> bool {
        self.name == other.name
            && self.endpoints == other.endpoints
            && self.discovery == other.discovery
            && self.connect_timeout == other.connect_timeout
            && self.balance == other.balance
            && self.dns_refresh == other.dns_refresh
            && self.health_check == other.health_check
            && self.outlier == other.outlier
            && self.retry == other.retry
            && self.required == other.required
            && self.tls == other.tls
    }
}

/// When and how often a failed call is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryOptions {
    /// Attempts in all. Default 3 (without a `retry` section, 1: see
    /// [`RetryOptions::none`]).
    pub attempts: u32,
    /// Backoff before the first retry, doubled each time, with full jitter.
    /// Default 25ms.
    pub backoff: Duration,
    /// Longest backoff. Default 250ms.
    pub max_backoff: Duration,
    /// Retries as a share of calls over the last 10s, so retries cannot
    /// multiply the load of a backend in trouble. Default 0.2.
    pub budget: f32,
}

/// A `retry:` section's defaults.
impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(250),
            budget: 0.2,
        }
    }
}

impl RetryOptions {
    /// A backend without a `retry` section: one attempt.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }
}

/// Active `grpc.health.v1` checks of each endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckOptions {
    /// Time between checks. Default 5s.
    pub interval: Duration,
    /// Deadline of one check. Default 1s.
    pub timeout: Duration,
    /// `HealthCheckRequest.service`. Default "" (the whole server).
    pub service: String,
    /// Failed checks in a row that make an endpoint unhealthy. Default 2.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that make it healthy again. Default 1.
    pub healthy_threshold: u32,
}

impl Default for HealthCheckOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            service: String::new(),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }
}

/// A circuit breaker per endpoint: ejection of endpoints whose calls fail
/// with UNAVAILABLE or get no answer.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierOptions {
    /// Failures in a row that eject; 0 turns this trigger off. Default 5.
    pub consecutive_failures: u32,
    /// Share of failed calls within `window` that ejects (once the window
    /// has `minimum_calls`); 0 turns this trigger off. Default 0.5.
    pub failure_rate: f64,
    /// Calls a window needs before its failure rate counts. Default 20.
    pub minimum_calls: u32,
    /// The failure rate's window. Default 10s.
    pub window: Duration,
    /// How long a first ejection lasts; each further one in a row lasts
    /// twice as long, up to ten times this. Default 10s.
    pub ejection_time: Duration,
    /// When every endpoint is ejected, keep sending calls to them (and
    /// never eject the last one) instead of answering 503 at once, as Envoy's
    /// panic routing does. Default false: fail fast, so a backend in trouble
    /// is given room to recover.
    pub fail_open: bool,
}

impl Default for OutlierOptions {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            minimum_calls: 20,
            window: Duration::from_secs(10),
            ejection_time: Duration::from_secs(10),
            fail_open: false,
        }
    }
}

impl From<HealthCheckSection> for HealthCheckOptions {
    fn from(h: HealthCheckSection) -> Self {
        let d = Self::default();
        Self {
            interval: h.interval.map_or(d.interval, NonZeroDuration::get),
            timeout: h.timeout.map_or(d.timeout, NonZeroDuration::get),
            service: h.service.unwrap_or(d.service),
            unhealthy_threshold: h
                .unhealthy_threshold
                .map_or(d.unhealthy_threshold, Positive::get),
            healthy_threshold: h
                .healthy_threshold
                .map_or(d.healthy_threshold, Positive::get),
        }
    }
}

impl From<OutlierSection> for OutlierOptions {
    fn from(o: OutlierSection) -> Self {
        let d = Self::default();
        Self {
            consecutive_failures: o.consecutive_failures.unwrap_or(d.consecutive_failures),
            failure_rate: o.failure_rate.map_or(d.failure_rate, Ratio::get),
            minimum_calls: o.minimum_calls.map_or(d.minimum_calls, Positive::get),
            window: o.window.map_or(d.window, NonZeroDuration::get),
            ejection_time: o
                .ejection_time
                .map_or(d.ejection_time, NonZeroDuration::get),
            fail_open: o.fail_open.unwrap_or(d.fail_open),
        }
    }
}

impl From<RetrySection> for RetryOptions {
    fn from(r: RetrySection) -> Self {
        let d = Self::default();
        Self {
            attempts: r.attempts.map_or(d.attempts, Between::get),
            backoff: r.backoff.unwrap_or(d.backoff),
            max_backoff: r.max_backoff.unwrap_or(d.max_backoff),
            // A ratio between 0 and 1 fits an f32.
            #[allow(clippy::cast_possible_truncation)]
            budget: r.budget.map_or(d.budget, |b| b.get() as f32),
        }
    }
}

/// Validates `backends:`, in name order.
pub(super) fn backends(
    raw: BTreeMap<String, BackendSection>,
    anchor: &impl Fn(&PathBuf) -> PathBuf,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Vec<BackendConfig>> {
    if raw.is_empty() {
        bail!(err("backends", "define at least one backend".into()));
    }
    raw.into_iter()
        .map(|(name, b)| b.validate(name, anchor, err))
        .collect()
}

impl BackendSection {
    fn validate(
        self,
        name: String,
        anchor: &impl Fn(&PathBuf) -> PathBuf,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<BackendConfig> {
        let key = format!("backends.{name}");
        let endpoints = self.endpoints(&key, err)?;
        let discovery = self
            .discovery
            .map(|d| d.validate(&key, anchor, err))
            .transpose()?;
        if self.services.is_empty() && !self.reflection {
            bail!(err(
                &format!("{key}.services"),
                "list at least one service (or set `reflection: true` to serve every service the backend lists)".into()
            ));
        }
        if self.reflection_refresh.is_some() && !self.reflection {
            bail!(err(
                &format!("{key}.reflection_refresh"),
                "only a backend with `reflection: true` is refreshed".into()
            ));
        }
        let services = service_patterns(&self.services, &format!("{key}.services"), err)?;
        // Readiness waits for a required backend's health checks: without
        // them an endpoint would count as healthy until calls to it fail.
        let required = self.required.unwrap_or(false);
        let health_check = match self.health_check {
            Some(h) => Some(h.into()),
            None => required.then(HealthCheckOptions::default),
        };
        let tls = match (self.tls, endpoints.first()) {
            (Some(raw), first) => {
                // Discovered instances are checked against their own host
                // (or `server_name`); any name will do for the check at load.
                let host = first.and_then(Uri::host).unwrap_or("localhost");
                Some(raw.validate(&key, host, anchor, err)?)
            }
            (None, Some(first)) if first.scheme_str() == Some("https") => {
                Some(BackendTls::default())
            }
            (None, _) => None,
        };
        Ok(BackendConfig {
            services,
            reflection: self.reflection,
            reflection_refresh: self.reflection_refresh.map(NonZeroDuration::get),
            weight: self.weight.map(Between::get),
            balance: self.balance.unwrap_or_default(),
            dns_refresh: self
                .dns_refresh
                .map_or(DEFAULT_DNS_REFRESH, NonZeroDuration::get),
            health_check,
            outlier: self.outlier_detection.map(Into::into).unwrap_or_default(),
            required,
            retry: self.retry.map_or_else(RetryOptions::none, Into::into),
            timeout: self.timeout.map_or(DEFAULT_TIMEOUT, NonZeroDuration::get),
            connect_timeout: self
                .connect_timeout
                .map_or(DEFAULT_CONNECT_TIMEOUT, NonZeroDuration::get),
            max_response_bytes: self
                .max_response_bytes
                .map_or(DEFAULT_MAX_RESPONSE_BYTES, Positive::get),
            tls,
            endpoints,
            discovery,
            name,
        })
    }

    /// `address` or `endpoints`, one scheme for all, none twice; none
    /// with `discovery`.
    fn endpoints(
        &self,
        key: &str,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<Vec<Uri>> {
        let listed = self.address.is_some() || !self.endpoints.is_empty();
        match (self.discovery.is_some(), listed) {
            (true, true) => bail!(err(
                key,
                "give `discovery` or `address`/`endpoints`, not both".into()
            )),
            (true, false) => return Ok(Vec::new()),
            (false, _) => {}
        }
        let (field, addresses) = match (&self.address, self.endpoints.is_empty()) {
            (Some(a), true) => (format!("{key}.address"), std::slice::from_ref(a)),
            (None, false) => (format!("{key}.endpoints"), self.endpoints.as_slice()),
            (Some(_), false) => bail!(err(key, "give `address` or `endpoints`, not both".into())),
            (None, true) => bail!(err(
                key,
                "give an `address`, `endpoints` or `discovery`".into()
            )),
        };
        let mut endpoints: Vec<Uri> = Vec::new();
        for text in addresses {
            let address: Uri = text
                .parse()
                .map_err(|e| err(&field, format!("{text:?} is not a URL ({e})")))?;
            let has_port = address.authority().is_some_and(|a| a.port().is_some());
            match address.scheme_str() {
                Some("http") if has_port && self.tls.is_some() => bail!(err(
                    &field,
                    format!("{text:?} is plain HTTP but `tls` is set; use https://")
                )),
                Some("http" | "https") if has_port => {}
                _ => bail!(err(
                    &field,
                    format!("{text:?} must look like http://host:port or https://host:port")
                )),
            }
            if endpoints
                .first()
                .is_some_and(|first| first.scheme() != address.scheme())
            {
                bail!(err(&field, "mixes http:// and https:// addresses".into()));
            }
            if endpoints.contains(&address) {
                bail!(err(&field, format!("{text:?} is listed twice")));
            }
            endpoints.push(address);
        }
        Ok(endpoints)
    }
}
