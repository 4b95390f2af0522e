//! Prometheus metrics, served at `/metrics` in the text exposition format.
//!
//! One [`Metrics`] value lives for the whole process and is handed from
//! gateway to gateway on reload, so counters keep counting. Labels are
//! bounded: routes by their template (never the raw path), HTTP methods
//! folded to the standard ones, backends by name, gRPC codes by name.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http_rule::{ProblemKind, RouteProblem};
use crate::rate_limit::StoreMetrics;
use crate::upstream::{BackendStatus, EndpointState};

/// Labels of an HTTP request. Label values are shared or static, so
/// counting a request copies no text: the route's template is made once
/// per route (its plan's `label`), methods and codes are fixed words.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's template, or `unmatched`.
    pub route: Arc<str>,
    /// The HTTP method (`OTHER` for non-standard ones).
    pub method: &'static str,
    /// The HTTP status.
    pub status: u16,
}

/// Labels of a request's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
    method: &'static str,
}

/// Labels of an upstream call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    backend: Arc<str>,
    code: &'static str,
}

/// The route label of a request that matched no route.
static UNMATCHED: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "unmatched".into());

/// Labels of a backend.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

/// Labels of the bindings left out of the route table.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProblemLabels {
    kind: &'static str,
}

/// Labels of a backend's endpoints in one state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    backend: String,
    state: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The gateway's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<RouteLabels>,
    in_flight: Gauge,
    upstream_calls: Family<UpstreamLabels, Counter>,
    upstream_seconds: Histograms<UpstreamLabels>,
    endpoints: Family<EndpointLabels, Gauge>,
    retries: Family<BackendLabels, Gauge>,
    discovery_connected: Family<BackendLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    route_problems: Family<ProblemLabels, Gauge>,
    reflection_pending: Family<BackendLabels, Gauge>,
    reflection_retries: Family<BackendLabels, Counter>,
    schema_changes: Family<SchemaChangeLabels, Counter>,
    reflection_refreshes: Family<RefreshLabels, Counter>,
    rate_limited: Counter,
    rate_limit_store: StoreMetrics,
    tls_handshake_failures: Counter,
}

/// Labels of a schema change.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemaChangeLabels {
    kind: &'static str,
    backend: String,
}

/// Labels of a reflection refresh.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    backend: String,
    result: &'static str,
}

/// Labels of a reload.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

fn latency() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("protogate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        let request_seconds: Histograms<RouteLabels> = Family::new_with_constructor(latency);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by route template and method",
            request_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled",
            in_flight.clone(),
        );
        let upstream_calls = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_calls",
            "Calls to backends by backend and gRPC status code",
            upstream_calls.clone(),
        );
        let upstream_seconds: Histograms<UpstreamLabels> = Family::new_with_constructor(latency);
        registry.register(
            "upstream_call_duration_seconds",
            "Duration of unary backend calls by backend and gRPC status code",
            upstream_seconds.clone(),
        );
        let endpoints = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "backend_endpoints",
            "Endpoints of each backend by state (healthy, unhealthy, ejected)",
            endpoints.clone(),
        );
        let retries = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "upstream_retries",
            "Retries of idempotent calls made by each backend since it was configured",
            retries.clone(),
        );
        let discovery_connected = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "discovery_connected",
            "Whether the registry (etcd) of a discovered backend answers and is watched (1) or not (0)",
            discovery_connected.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (ok, failed)",
            reloads.clone(),
        );
        // A gauge set at each load, not a counter: the registry outlives
        // reloads, and a fixed annotation must bring the value back to 0.
        let route_problems = Family::<ProblemLabels, Gauge>::default();
        registry.register(
            "route_problems",
            "Bindings left out of the running route table, by kind (rule, template, field, conflict)",
            route_problems.clone(),
        );
        let reflection_pending = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "reflection_pending",
            "Reflection backends without descriptors in the running config (1) or with them (0)",
            reflection_pending.clone(),
        );
        let reflection_retries = Family::<BackendLabels, Counter>::default();
        registry.register(
            "reflection_retries",
            "Background reflection fetches of a backend that did not answer at load, by backend",
            reflection_retries.clone(),
        );
        let schema_changes = Family::<SchemaChangeLabels, Counter>::default();
        registry.register(
            "schema_changes",
            "Changes of the served schema found at swaps, by kind (compatible, breaking) and backend",
            schema_changes.clone(),
        );
        let reflection_refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "reflection_refreshes",
            "Periodic reflection fetches (reflection_refresh) by backend and result (unchanged, changed, failed)",
            reflection_refreshes.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused with 429 by a rate limit",
            rate_limited.clone(),
        );
        let rate_limit_store = StoreMetrics::default();
        registry.register(
            "rate_limit_store_up",
            "Whether the shared rate-limit store (Redis) answers checks (1) or on_store_error decides (0)",
            rate_limit_store.up.clone(),
        );
        registry.register(
            "rate_limit_store_errors",
            "Rate-limit checks the shared store failed or did not answer in time",
            rate_limit_store.errors.clone(),
        );
        registry.register(
            "rate_limit_store_fallbacks",
            "Rate-limit checks decided by on_store_error while the store was down, by policy",
            rate_limit_store.fallbacks.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes with clients that failed or timed out",
            tls_handshake_failures.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                tls_handshake_failures,
                registry,
                requests,
                request_seconds,
                in_flight,
                upstream_calls,
                upstream_seconds,
                endpoints,
                retries,
                discovery_connected,
                reloads,
                route_problems,
                reflection_pending,
                reflection_retries,
                schema_changes,
                reflection_refreshes,
                rate_limited,
                rate_limit_store,
            }),
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.inner.in_flight.inc();
        InFlight {
            gauge: self.inner.in_flight.clone(),
        }
    }

    /// Records a finished request.
    pub fn request(
        &self,
        route: Option<&Arc<str>>,
        method: &http::Method,
        status: u16,
        took: Duration,
    ) {
        let route = route.unwrap_or(&UNMATCHED).clone();
        let method = method_label(method);
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method,
                status,
            })
            .inc();
        self.inner
            .request_seconds
            .get_or_create(&RouteLabels { route, method })
            .observe(took.as_secs_f64());
    }

    /// Records a backend call and its gRPC code.
    pub fn upstream(&self, backend: &Arc<str>, code: tonic::Code, took: Option<Duration>) {
        let labels = UpstreamLabels {
            backend: backend.clone(),
            code: code_label(code),
        };
        self.inner.upstream_calls.get_or_create(&labels).inc();
        if let Some(took) = took {
            self.inner
                .upstream_seconds
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
        }
    }

    /// Counts a request refused by a rate limit.
    pub fn rate_limited(&self) {
        self.inner.rate_limited.inc();
    }

    /// The shared rate-limit store's metrics, handed to the limiter.
    pub fn rate_limit_store(&self) -> &StoreMetrics {
        &self.inner.rate_limit_store
    }

    /// Counts a failed TLS handshake.
    pub fn tls_handshake_failed(&self) {
        self.inner.tls_handshake_failures.inc();
    }

    /// Records a reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.inner
            .reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Sets the bindings left out of the route table now serving, every
    /// kind (0 included); duplicates routed once are not counted.
    pub fn route_problems(&self, problems: &[RouteProblem]) {
        for kind in ProblemKind::LEFT_OUT {
            let count = problems.iter().filter(|p| p.kind == kind).count();
            self.inner
                .route_problems
                .get_or_create(&ProblemLabels {
                    kind: kind.as_str(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Sets, for each reflection backend, whether its descriptors are
    /// missing from the running config (`pending`).
    pub fn reflection_pending<'a>(
        &self,
        backends: impl Iterator<Item = &'a str>,
        pending: &[String],
    ) {
        self.inner.reflection_pending.clear();
        for backend in backends {
            self.inner
                .reflection_pending
                .get_or_create(&BackendLabels {
                    backend: backend.to_owned(),
                })
                .set(i64::from(pending.iter().any(|p| p == backend)));
        }
    }

    /// Counts one background reflection fetch of `backend`.
    pub fn reflection_retry(&self, backend: &str) {
        self.inner
            .reflection_retries
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// Counts one schema change of `kind` (`compatible`, `breaking`) in
    /// `backend`'s services.
    pub fn schema_change(&self, kind: &'static str, backend: &str) {
        self.inner
            .schema_changes
            .get_or_create(&SchemaChangeLabels {
                kind,
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// Counts one periodic reflection fetch of `backend` with `result`
    /// (`unchanged`, `changed`, `failed`).
    pub fn reflection_refresh(&self, backend: &str, result: &'static str) {
        self.inner
            .reflection_refreshes
            .get_or_create(&RefreshLabels {
                backend: backend.to_owned(),
                result,
            })
            .inc();
    }

    /// The text exposition, with endpoint states as of now.
    pub fn render(&self, backends: &[BackendStatus]) -> String {
        self.inner.endpoints.clear();
        self.inner.retries.clear();
        self.inner.discovery_connected.clear();
        for backend in backends {
            if let Some(discovery) = &backend.discovery {
                self.inner
                    .discovery_connected
                    .get_or_create(&BackendLabels {
                        backend: backend.name.clone(),
                    })
                    .set(i64::from(
                        discovery.state == crate::upstream::DiscoveryState::Connected,
                    ));
            }
            self.inner
                .retries
                .get_or_create(&BackendLabels {
                    backend: backend.name.clone(),
                })
                .set(i64::try_from(backend.retries).unwrap_or(i64::MAX));
            for (state, name) in [
                (EndpointState::Healthy, "healthy"),
                (EndpointState::Unhealthy, "unhealthy"),
                (EndpointState::Ejected, "ejected"),
                (EndpointState::HalfOpen, "half_open"),
            ] {
                let count = backend
                    .endpoints
                    .iter()
                    .filter(|e| e.state == state)
                    .count();
                let state = name;
                self.inner
                    .endpoints
                    .get_or_create(&EndpointLabels {
                        backend: backend.name.clone(),
                        state: state.to_owned(),
                    })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.inner.registry).is_err() {
            tracing::warn!("cannot encode metrics");
        }
        out
    }
}

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Standard methods by name, anything else as `OTHER`: a client cannot
/// invent label values.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A gRPC code's name as the label spells it (`Ok`, `DeadlineExceeded`).
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: ProblemKind) -> RouteProblem {
        RouteProblem {
            kind,
            method: "a.B.C".into(),
            rule: "GET /x".into(),
            reason: "why".into(),
        }
    }

    #[test]
    fn code_labels_are_the_codes_debug_names() {
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            assert_eq!(code_label(code), format!("{code:?}"), "{n}");
        }
    }

    #[test]
    fn route_problems_are_set_at_each_load() {
        let metrics = Metrics::new();
        for (problems, want) in [
            (
                vec![
                    problem(ProblemKind::Field),
                    problem(ProblemKind::Field),
                    problem(ProblemKind::Conflict),
                    problem(ProblemKind::Duplicate),
                ],
                [("rule", 0), ("template", 0), ("field", 2), ("conflict", 1)],
            ),
            // A reload without the problems brings every kind back to 0.
            (
                vec![problem(ProblemKind::Duplicate)],
                [("rule", 0), ("template", 0), ("field", 0), ("conflict", 0)],
            ),
        ] {
            metrics.route_problems(&problems);
            let text = metrics.render(&[]);
            for (kind, n) in want {
                let line = format!("protogate_route_problems{{kind=\"{kind}\"}} {n}\n");
                assert!(text.contains(&line), "want {line:?} in\n{text}");
            }
            assert!(!text.contains("duplicate"), "{text}");
        }
    }
}
