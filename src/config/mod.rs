//! Configuration: `gateway.yaml` read, checked and given defaults.
//!
//! [`load`] parses the file ([`file`] mirrors it) and validates it into a
//! [`Config`] whose every field is ready to use. Errors name the file, the key
//! and what is wrong. Relative paths are relative to the file's directory.

pub mod auth;
pub mod file;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use http::HeaderName;
use http::Uri;

use crate::tls::PemFile;
pub use file::{Balance, Framing, HttpRuleSection, UnknownFields};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default upstream deadline when neither the method, the backend nor the client sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on a client's `Grpc-Timeout`.
pub const DEFAULT_MAX_GRPC_TIMEOUT: Duration = Duration::from_secs(300);
/// Default largest request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default largest reply message from a backend (gRPC's usual limit).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Default connect timeout to a backend.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a stopping gateway waits for requests in flight.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Largest `backends.<name>.weight`.
pub const MAX_WEIGHT: u32 = 10_000;
/// Default interval between re-resolutions of backend host names.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);
/// Default quiet time after a change of the config file before it is reloaded.
pub const DEFAULT_RELOAD_DEBOUNCE: Duration = Duration::from_millis(500);

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages).
    pub source: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Descriptor sources, paths made absolute.
    pub descriptors: DescriptorSources,
    /// `descriptors.strict`: a binding that cannot be routed (see
    /// [`crate::http_rule::RouteProblem`]; duplicates aside) fails startup
    /// and reload instead of being left out. Default false.
    pub strict_descriptors: bool,
    /// `descriptors.cache_dir` (relative to the config file), or
    /// `PROTOGATE_DESCRIPTOR_CACHE`: the last descriptors each reflection
    /// backend sent, used when it does not answer. Default none.
    pub descriptor_cache: Option<PathBuf>,
    /// Backends in file order (sorted by name).
    pub backends: Vec<BackendConfig>,
    /// Transcoding options.
    pub transcode: TranscodeOptions,
    /// Metadata forwarding.
    pub metadata: MetadataOptions,
    /// Per-method overrides keyed by `package.Service.Method`.
    pub methods: HashMap<String, MethodOverrides>,
    /// Cap on a client's `Grpc-Timeout`. Default 300s.
    pub max_grpc_timeout: Duration,
    /// How long a stopping gateway goes on accepting and serving, with
    /// `/readyz` answering 503, so load balancers stop sending it new
    /// connections before its listener closes. Default 0: the listener
    /// closes at once.
    pub drain_delay: Duration,
    /// How long a stopping gateway lets requests and streams in flight
    /// finish before it closes their connections. Default 30s.
    pub shutdown_grace: Duration,
    /// The OpenAPI document and docs UI.
    pub openapi: OpenApiOptions,
    /// Authentication and authorization.
    pub auth: auth::AuthConfig,
    /// API groups: prefixes and deprecation, in file order.
    pub apis: Vec<ApiConfig>,
    /// HTTP rules from config, selectors checked for form; they replace annotations.
    pub http_rules: Vec<HttpRuleSection>,
    /// Traffic splitting.
    pub traffic: TrafficOptions,
    /// Hot reload.
    pub reload: ReloadOptions,
    /// Streaming methods.
    pub streaming: StreamingOptions,
    /// Request size limits, load shedding and compression at the edge.
    pub edge: EdgeOptions,
    /// Cross-origin calls. Default none: browsers on other origins cannot call.
    pub cors: Option<CorsOptions>,
    /// Rate limits. Default none.
    pub rate_limit: RateLimitOptions,
    /// HTTPS termination. Default none: plain HTTP, for local use or
    /// behind a proxy that terminates TLS.
    pub tls: Option<ServerTls>,
    /// Span export. Read at startup.
    pub tracing: TracingOptions,
}

/// OpenTelemetry span export.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingOptions {
    /// OTLP/gRPC collector. Default none: no spans are exported, and W3C
    /// trace context is forwarded to backends unchanged.
    pub otlp_endpoint: Option<String>,
    /// `service.name`. Default `protogate`.
    pub service_name: String,
    /// Share of new traces sampled; requests that carry a `traceparent`
    /// follow its sampled flag. Default 1.
    pub sample_ratio: f64,
}

/// HTTPS on the listener. Read at startup (like the listen address); the
/// files it names are reloaded when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// CA certificates for client certificates; set, clients must present
    /// one it signed (mutual TLS). Default none.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`, clients without a certificate are let in too.
    /// The certificate is not passed to the auth rules. Default false.
    pub client_cert_optional: bool,
}

/// TLS to a backend (its addresses are `https://`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTls {
    /// CA certificates to trust. Default: the system's roots.
    pub ca: Option<PemFile>,
    /// Client certificate and key for mutual TLS. Default none.
    pub identity: Option<ClientIdentity>,
    /// The name the backend's certificate must carry. Default: the host of
    /// the configured address.
    pub server_name: Option<String>,
}

/// A client certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM certificate chain.
    pub cert: PemFile,
    /// PEM private key.
    pub key: PemFile,
}

/// Token-bucket rate limits.
#[derive(Debug, Clone, Default)]
pub struct RateLimitOptions {
    /// Anonymous calls, per client address. Default none.
    pub by_address: Option<RateOptions>,
    /// Authenticated calls, per JWT subject or API key. Default none.
    pub by_caller: Option<RateOptions>,
}

/// One bucket's size and refill.
#[derive(Debug, Clone)]
pub struct RateOptions {
    /// Requests per `per`.
    pub requests: std::num::NonZeroU32,
    /// The period.
    pub per: Duration,
    /// Requests allowed at once. Default `requests`.
    pub burst: std::num::NonZeroU32,
}

/// Limits and protocol handling applied to every request.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Longest a client may take to send a request's headers, so slow
    /// clients (slowloris) cannot hold connections. Default 10s.
    pub header_read_timeout: Duration,
    /// Longest a connection (HTTP/1 keep-alive or HTTP/2) stays open with no
    /// request in flight; then it is closed gracefully. Default 5m.
    pub idle_timeout: Duration,
    /// Longest request target (path and query); 414 above it. Default 8 KiB.
    pub max_uri_bytes: usize,
    /// Largest total size of request header names and values; 431 above it.
    /// Default 16 KiB.
    pub max_header_bytes: usize,
    /// API requests handled at once; more get 503 with `Retry-After` at once
    /// instead of queueing. Gateway endpoints (health, docs) are not
    /// counted. Default 1024.
    pub max_concurrent_requests: usize,
    /// Compress responses with gzip or br when the client accepts it
    /// (streams excepted: compression would hold messages back). Default true.
    pub compression: bool,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_concurrent_requests: 1024,
            compression: true,
        }
    }
}

/// Cross-origin resource sharing, for browsers.
#[derive(Debug, Clone)]
pub struct CorsOptions {
    /// Allowed origins; `None` means any (`*`).
    pub allowed_origins: Option<Vec<http::HeaderValue>>,
    /// Allowed methods. Default GET, POST, PUT, PATCH, DELETE.
    pub allowed_methods: Vec<http::Method>,
    /// Allowed request headers. Default authorization, content-type.
    pub allowed_headers: Vec<HeaderName>,
    /// Response headers scripts may read. Default none.
    pub expose_headers: Vec<HeaderName>,
    /// Send `Access-Control-Allow-Credentials: true`. Default false.
    pub allow_credentials: bool,
    /// Preflight cache time. Default 1h.
    pub max_age: Duration,
}

/// Streaming methods over HTTP.
#[derive(Debug, Clone)]
pub struct StreamingOptions {
    /// Framing of a server stream when `Accept` allows any. Default NDJSON.
    pub default_framing: Framing,
    /// Longest a stream may stay open; sent to the backend as its deadline.
    /// Default 1h.
    pub max_duration: Duration,
    /// Longest a stream may go without a message from the backend (or, on
    /// a client stream, from the client). Default 5m.
    pub idle_timeout: Duration,
    /// Origins besides the gateway's own whose pages may open WebSockets,
    /// lower-cased, without a trailing slash. Default none: a browser page
    /// of another site cannot use a visitor's cookies to open a stream.
    pub websocket_origins: Vec<String>,
}

impl Default for StreamingOptions {
    fn default() -> Self {
        Self {
            default_framing: Framing::Ndjson,
            max_duration: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(300),
            websocket_origins: Vec::new(),
        }
    }
}

/// A group of services sharing a path prefix and a lifecycle.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The services in the group.
    pub services: Vec<ServicePattern>,
    /// Literal path prefix every route of the group is mounted under
    /// (`/api`), without a trailing slash. Default none.
    pub prefix: Option<String>,
    /// Set when the group is deprecated. Default none.
    pub deprecation: Option<Deprecation>,
}

/// A deprecated API's dates and links (RFC 9745, RFC 8594).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// Sent as `Deprecation: @<unix seconds>`.
    pub since: SystemTime,
    /// Sent as `Sunset: <HTTP-date>`, when set.
    pub sunset: Option<SystemTime>,
    /// Sent as `Link: <...>; rel="successor-version"`, when set.
    pub successor: Option<String>,
    /// Sent as `Link: <...>; rel="deprecation"`, when set.
    pub documentation: Option<String>,
}

/// Weighted traffic splitting between backends that serve the same service.
#[derive(Debug, Clone, Default)]
pub struct TrafficOptions {
    /// A request header that names one of the split backends to use instead
    /// of a weighted pick. Default none: clients cannot choose.
    pub override_header: Option<HeaderName>,
}

/// Hot reload of the config file.
#[derive(Debug, Clone)]
pub struct ReloadOptions {
    /// Reload when the file changes (SIGHUP always reloads). Default true.
    pub watch: bool,
    /// Quiet time after the last change before reloading. Default 500ms.
    pub debounce: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: DEFAULT_RELOAD_DEBOUNCE,
        }
    }
}

/// OpenAPI document options.
#[derive(Debug, Clone)]
pub struct OpenApiOptions {
    /// Serve `/openapi.json`, `/openapi.yaml` and `/docs`. Default true.
    pub enabled: bool,
    /// `info.title`. Default "protogate".
    pub title: String,
    /// `info.version`. Default "1.0.0".
    pub version: String,
    /// `info.description`. Default none.
    pub description: Option<String>,
    /// `servers[].url`. Default none: clients use the page's own origin.
    pub servers: Vec<String>,
}

impl Default for OpenApiOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            title: "protogate".to_owned(),
            version: "1.0.0".to_owned(),
            description: None,
            servers: Vec::new(),
        }
    }
}

/// Where descriptors are loaded from.
#[derive(Debug, Clone, Default)]
pub struct DescriptorSources {
    /// Include directories, searched in order.
    pub include: Vec<PathBuf>,
    /// Proto files, relative to an include directory.
    pub protos: Vec<PathBuf>,
    /// Binary `FileDescriptorSet` files.
    pub descriptor_sets: Vec<PathBuf>,
}

impl DescriptorSources {
    /// The files named: each proto where the include directories find it
    /// first, and the descriptor sets. Imports are not followed.
    pub fn files(&self) -> Vec<PathBuf> {
        self.protos
            .iter()
            .filter_map(|proto| {
                self.include
                    .iter()
                    .map(|dir| dir.join(proto))
                    .find(|path| path.is_file())
            })
            .chain(self.descriptor_sets.iter().cloned())
            .collect()
    }
}

/// One backend: a gRPC service deployment of one or more endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// The name used in `gateway.yaml`.
    pub name: String,
    /// `http://host:port` of each instance; a host name stands for every
    /// address it resolves to.
    pub endpoints: Vec<Uri>,
    /// Which services it serves. Empty with `reflection`: every service the
    /// backend lists.
    pub services: Vec<ServicePattern>,
    /// Descriptors come from the backend by gRPC server reflection. Default false.
    pub reflection: bool,
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
    /// Retries of idempotent methods. Default: none (only a refused
    /// connection moves a call to another endpoint).
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
    /// Attempts in all. Default 1: no retries.
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

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            attempts: 1,
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(250),
            budget: 0.2,
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

/// A service selector from `backends.<name>.services`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServicePattern {
    /// A full service name.
    Exact(String),
    /// `pkg.*`: every service in `pkg` and its sub-packages.
    Package(String),
}

impl ServicePattern {
    fn parse(s: &str) -> Option<Self> {
        let valid = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        };
        match s.strip_suffix(".*") {
            Some(pkg) if valid(pkg) => Some(Self::Package(pkg.to_owned())),
            None if valid(s) => Some(Self::Exact(s.to_owned())),
            _ => None,
        }
    }

    /// Whether the full service name matches.
    pub fn matches(&self, service: &str) -> bool {
        match self {
            Self::Exact(name) => name == service,
            Self::Package(pkg) => service
                .strip_prefix(pkg.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
        }
    }
}

impl std::fmt::Display for ServicePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(s) => f.write_str(s),
            Self::Package(p) => write!(f, "{p}.*"),
        }
    }
}

/// JSON output options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// Write default-valued fields. Default false.
    pub emit_unpopulated: bool,
    /// Use proto field names. Default false (lowerCamelCase JSON names).
    pub use_proto_names: bool,
    /// Enums as numbers. Default false (names).
    pub enums_as_ints: bool,
}

/// Request/response transcoding options.
#[derive(Debug, Clone, Copy)]
pub struct TranscodeOptions {
    /// JSON output.
    pub json: JsonOptions,
    /// Query parameters naming no field, or a field the path or body
    /// binds. Default reject.
    pub unknown_query_parameters: UnknownFields,
    /// JSON fields naming no field, and JSON bodies other than `{}` or
    /// `null` sent to bindings without `body`. Default reject.
    pub unknown_json_fields: UnknownFields,
    /// Largest request body. Default 4 MiB.
    pub max_body_bytes: usize,
    /// When no route matches a path containing `%2F`, retry with it decoded
    /// to `/`. OpenAPI clients such as Swagger UI encode the slashes of
    /// multi-segment path parameters (`users/1/orders/2`). Default false:
    /// per `http.proto` an encoded slash belongs to its segment.
    pub match_encoded_slashes: bool,
    /// Pass `google.rpc.DebugInfo` error details on to clients. Default false.
    pub forward_debug_info: bool,
    /// Route `POST /package.Service/Method` (body: the whole request message)
    /// to methods that have no HTTP rule. Default false: only annotated or
    /// configured methods are exposed.
    pub fallback_routes: bool,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            json: JsonOptions::default(),
            unknown_query_parameters: UnknownFields::Reject,
            unknown_json_fields: UnknownFields::Reject,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            match_encoded_slashes: false,
            forward_debug_info: false,
            fallback_routes: false,
        }
    }
}

/// Header ⇄ metadata forwarding.
#[derive(Debug, Clone, Default)]
pub struct MetadataOptions {
    /// Request headers forwarded as metadata of the same name (besides `Grpc-Metadata-*`).
    pub forward_request_headers: Vec<HeaderName>,
    /// Append to the client's `X-Forwarded-For` instead of replacing it.
    /// Default false: only behind a proxy that sets it is it trustworthy.
    pub trust_forwarded_for: bool,
    /// Send a client's `Authorization` header as `authorization` metadata
    /// on routes the gateway does not authenticate (no `auth`, or a
    /// `public` rule), for backends that check callers themselves, as
    /// grpc-gateway and Envoy do. Default true; never with
    /// `auth.forward.credentials`, whose `authorization` is verified.
    pub forward_authorization: bool,
}

/// Per-method overrides.
#[derive(Debug, Clone, Default)]
pub struct MethodOverrides {
    /// Deadline.
    pub timeout: Option<Duration>,
    /// Overrides the global policy for query parameters.
    pub unknown_query_parameters: Option<UnknownFields>,
    /// Overrides the global policy for JSON fields.
    pub unknown_json_fields: Option<UnknownFields>,
    /// The method may run twice. Default false.
    pub idempotent: bool,
}

/// Credentials never go through `metadata.forward_request_headers`: listing
/// one would do nothing (the rules below decide), so it is an error that
/// says what to use instead.
fn check_credential_headers(
    listed: &[HeaderName],
    auth: &auth::AuthConfig,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<()> {
    let key = "metadata.forward_request_headers";
    let checked: Vec<String> = auth
        .jwt
        .iter()
        .map(|p| &p.location)
        .chain(auth.api_keys.as_ref().map(|k| &k.location))
        .filter_map(|l| match l {
            auth::Location::Header(h) => Some(h.to_ascii_lowercase()),
            auth::Location::Cookie(_) => Some("cookie".to_owned()),
            _ => None,
        })
        .collect();
    for name in listed {
        let name = name.as_str();
        if name == "authorization" {
            bail!(err(
                key,
                "\"authorization\" is not forwarded by this list: on routes the gateway does not \
                 authenticate it is forwarded by default (metadata.forward_authorization), on \
                 routes it authenticates only as the verified credential (auth.forward.credentials)"
                    .into()
            ));
        }
        if checked.iter().any(|c| c == name) {
            bail!(err(
                key,
                format!(
                    "{name:?} carries a credential the gateway checks: it reaches backends only \
                     as the verified credential, with auth.forward.credentials"
                )
            ));
        }
    }
    Ok(())
}

/// Overrides `descriptors.cache_dir` (the Docker image sets it).
pub const DESCRIPTOR_CACHE_ENV: &str = "PROTOGATE_DESCRIPTOR_CACHE";

/// Reads and validates a config file.
///
/// # Errors
/// A message naming the file, the key and the problem.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse(&text, path)
}

/// Parses and validates config text; `path` names it in errors and anchors relative paths.
///
/// # Errors
/// A message naming the file, the key and the problem.
pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
    // serde_norway's messages already start with the key path and end with the line.
    let raw: file::FileConfig =
        serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    validate(raw, path)
}

fn validate(raw: file::FileConfig, path: &Path) -> anyhow::Result<Config> {
    let err = |key: &str, msg: String| anyhow::anyhow!("{}: {key}: {msg}", path.display());
    let base = path.parent().unwrap_or(Path::new("."));
    let anchor = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };

    let listen_text = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().map_err(|e| {
        err(
            "server.listen",
            format!("{listen_text:?} is not host:port ({e})"),
        )
    })?;

    if raw.backends.is_empty() {
        bail!(err("backends", "define at least one backend".into()));
    }
    let mut backends = Vec::new();
    for (name, b) in raw.backends {
        backends.push(backend(name, b, &anchor, &err)?);
    }

    let d = raw.descriptors;
    if d.protos.is_empty() && d.descriptor_sets.is_empty() && !backends.iter().any(|b| b.reflection)
    {
        bail!(err(
            "descriptors",
            "name at least one file in `protos` or `descriptor_sets`, or set `reflection: true` on a backend".into()
        ));
    }
    let descriptors = DescriptorSources {
        include: d.include.iter().map(anchor).collect(),
        protos: d.protos,
        descriptor_sets: d.descriptor_sets.iter().map(anchor).collect(),
    };

    let t = raw.transcoding;
    let max_body_bytes = t.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        bail!(err(
            "transcoding.max_body_bytes",
            "must be greater than 0".into()
        ));
    }
    let transcode = TranscodeOptions {
        json: JsonOptions {
            emit_unpopulated: t.json.emit_unpopulated,
            use_proto_names: t.json.use_proto_names,
            enums_as_ints: t.json.enums_as_ints,
        },
        unknown_query_parameters: t.unknown_query_parameters,
        unknown_json_fields: t.unknown_json_fields,
        max_body_bytes,
        match_encoded_slashes: t.match_encoded_slashes.unwrap_or(false),
        forward_debug_info: t.forward_debug_info,
        fallback_routes: t.fallback_routes,
    };

    let forward_request_headers = raw
        .metadata
        .forward_request_headers
        .iter()
        .map(|h| {
            let key = "metadata.forward_request_headers";
            let name = HeaderName::try_from(h.to_ascii_lowercase())
                .map_err(|_| err(key, format!("{h:?} is not a valid header name")))?;
            if crate::upstream::metadata::is_reserved(name.as_str()) {
                return Err(err(
                    key,
                    format!("{h:?} is reserved by HTTP or gRPC and cannot be forwarded"),
                ));
            }
            Ok(name)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut methods = HashMap::new();
    for (name, m) in raw.methods {
        let key = format!("methods.{name}");
        // Accept the gRPC path form too: package.Service/Method.
        let full = name.trim_start_matches('/').replace('/', ".");
        if full.split('.').count() < 2 || full.split('.').any(str::is_empty) {
            bail!(err(
                &key,
                "expected a method name like package.Service.Method".into()
            ));
        }
        methods.insert(
            full,
            MethodOverrides {
                timeout: nonzero(m.timeout, &format!("{key}.timeout"), &err)?,
                unknown_query_parameters: m.unknown_query_parameters,
                unknown_json_fields: m.unknown_json_fields,
                idempotent: m.idempotent,
            },
        );
    }

    Ok(Config {
        source: path.to_owned(),
        listen,
        descriptors,
        strict_descriptors: d.strict,
        // The environment wins, so an image can set a writable place for
        // any config mounted into it.
        descriptor_cache: std::env::var_os(DESCRIPTOR_CACHE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| d.cache_dir.as_ref().map(anchor)),
        backends,
        transcode,
        metadata: MetadataOptions {
            forward_request_headers: forward_request_headers.clone(),
            trust_forwarded_for: raw.metadata.trust_forwarded_for,
            forward_authorization: raw.metadata.forward_authorization.unwrap_or(true),
        },
        methods,
        max_grpc_timeout: nonzero(raw.server.max_grpc_timeout, "server.max_grpc_timeout", &err)?
            .unwrap_or(DEFAULT_MAX_GRPC_TIMEOUT),
        drain_delay: raw.server.drain_delay.unwrap_or_default(),
        shutdown_grace: raw.server.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        openapi: openapi(raw.openapi, &err)?,
        auth: {
            let auth = auth::validate(raw.auth, base, &err)?;
            check_credential_headers(&forward_request_headers, &auth, &err)?;
            auth
        },
        apis: apis(raw.apis, &err)?,
        http_rules: http_rules(raw.http, &err)?,
        traffic: TrafficOptions {
            override_header: raw
                .traffic
                .override_header
                .map(|h| {
                    HeaderName::try_from(h.to_ascii_lowercase()).map_err(|_| {
                        err(
                            "traffic.override_header",
                            format!("{h:?} is not a valid header name"),
                        )
                    })
                })
                .transpose()?,
        },
        edge: {
            let d = EdgeOptions::default();
            let positive = |v: Option<usize>, key: &str, default: usize| match v {
                Some(0) => Err(err(key, "must be greater than 0".into())),
                other => Ok(other.unwrap_or(default)),
            };
            EdgeOptions {
                header_read_timeout: nonzero(
                    raw.server.header_read_timeout,
                    "server.header_read_timeout",
                    &err,
                )?
                .unwrap_or(d.header_read_timeout),
                idle_timeout: nonzero(raw.server.idle_timeout, "server.idle_timeout", &err)?
                    .unwrap_or(d.idle_timeout),
                max_uri_bytes: positive(
                    raw.server.max_uri_bytes,
                    "server.max_uri_bytes",
                    d.max_uri_bytes,
                )?,
                max_header_bytes: positive(
                    raw.server.max_header_bytes,
                    "server.max_header_bytes",
                    d.max_header_bytes,
                )?,
                max_concurrent_requests: positive(
                    raw.server.max_concurrent_requests,
                    "server.max_concurrent_requests",
                    d.max_concurrent_requests,
                )?,
                compression: raw.server.compression.unwrap_or(d.compression),
            }
        },
        cors: cors(raw.cors, &err)?,
        tls: server_tls(raw.server.tls, &anchor, &err)?,
        tracing: TracingOptions {
            otlp_endpoint: match raw.tracing.otlp_endpoint {
                Some(endpoint) => match endpoint.parse::<Uri>() {
                    Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {
                        Some(endpoint)
                    }
                    _ => bail!(err(
                        "tracing.otlp_endpoint",
                        format!("{endpoint:?} must look like http://host:4317")
                    )),
                },
                None => None,
            },
            service_name: raw
                .tracing
                .service_name
                .unwrap_or_else(|| "protogate".to_owned()),
            sample_ratio: match raw.tracing.sample_ratio {
                Some(r) if !(0.0..=1.0).contains(&r) => bail!(err(
                    "tracing.sample_ratio",
                    "must be between 0 and 1".into()
                )),
                other => other.unwrap_or(1.0),
            },
        },
        rate_limit: RateLimitOptions {
            by_address: rate(raw.rate_limit.by_address, "rate_limit.by_address", &err)?,
            by_caller: rate(raw.rate_limit.by_caller, "rate_limit.by_caller", &err)?,
        },
        streaming: {
            let d = StreamingOptions::default();
            StreamingOptions {
                default_framing: raw.streaming.default_framing.unwrap_or(d.default_framing),
                max_duration: nonzero(raw.streaming.max_duration, "streaming.max_duration", &err)?
                    .unwrap_or(d.max_duration),
                idle_timeout: nonzero(raw.streaming.idle_timeout, "streaming.idle_timeout", &err)?
                    .unwrap_or(d.idle_timeout),
                websocket_origins: raw
                    .streaming
                    .websocket_origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            }
        },
        reload: ReloadOptions {
            watch: raw.reload.watch.unwrap_or(true),
            debounce: nonzero(raw.reload.debounce, "reload.debounce", &err)?
                .unwrap_or(DEFAULT_RELOAD_DEBOUNCE),
        },
    })
}

fn server_tls(
    raw: Option<file::ServerTlsSection>,
    anchor: &impl Fn(&PathBuf) -> PathBuf,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Option<ServerTls>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.client_cert_optional.is_some() && raw.client_ca.is_none() {
        bail!(err(
            "server.tls.client_cert_optional",
            "needs `client_ca`".into()
        ));
    }
    let tls = ServerTls {
        cert: anchor(&raw.cert),
        key: anchor(&raw.key),
        client_ca: raw.client_ca.as_ref().map(anchor),
        client_cert_optional: raw.client_cert_optional.unwrap_or(false),
    };
    // The files are read at startup and by `protogate check`, not here: a
    // reload does not change the listener, and must not fail because a
    // certificate rotation is half done.
    Ok(Some(tls))
}

fn backend_tls(
    raw: file::BackendTlsSection,
    key: &str,
    anchor: &impl Fn(&PathBuf) -> PathBuf,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<BackendTls> {
    let pem = |path: &PathBuf, field: &str, read: fn(&Path) -> anyhow::Result<Vec<u8>>| {
        let path = anchor(path);
        read(&path)
            .map(|pem| PemFile {
                path: path.clone(),
                pem,
            })
            .map_err(|e| err(&format!("{key}.tls.{field}"), format!("{e:#}")))
    };
    let identity = match (&raw.cert, &raw.key) {
        (Some(cert), Some(k)) => Some(ClientIdentity {
            cert: pem(cert, "cert", crate::tls::read_certs_pem)?,
            key: pem(k, "key", crate::tls::read_key_pem)?,
        }),
        (None, None) => None,
        _ => bail!(err(
            &format!("{key}.tls"),
            "give `cert` and `key` together".into()
        )),
    };
    Ok(BackendTls {
        ca: raw
            .ca
            .as_ref()
            .map(|ca| pem(ca, "ca", crate::tls::read_certs_pem))
            .transpose()?,
        identity,
        server_name: raw.server_name,
    })
}

fn backend(
    name: String,
    b: file::BackendSection,
    anchor: &impl Fn(&PathBuf) -> PathBuf,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<BackendConfig> {
    let key = format!("backends.{name}");
    let addresses: Vec<&String> = match (&b.address, b.endpoints.is_empty()) {
        (Some(a), true) => vec![a],
        (None, false) => b.endpoints.iter().collect(),
        (Some(_), false) => bail!(err(&key, "give `address` or `endpoints`, not both".into())),
        (None, true) => bail!(err(&key, "give an `address` or `endpoints`".into())),
    };
    let mut endpoints = Vec::new();
    for text in addresses {
        let field = if b.address.is_some() {
            format!("{key}.address")
        } else {
            format!("{key}.endpoints")
        };
        let address: Uri = text
            .parse()
            .map_err(|e| err(&field, format!("{text:?} is not a URL ({e})")))?;
        let has_port = address.authority().is_some_and(|a| a.port().is_some());
        match address.scheme_str() {
            Some("http") if has_port && b.tls.is_some() => bail!(err(
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
            .is_some_and(|first: &Uri| first.scheme() != address.scheme())
        {
            bail!(err(&field, "mixes http:// and https:// addresses".into()));
        }
        if endpoints.contains(&address) {
            bail!(err(&field, format!("{text:?} is listed twice")));
        }
        endpoints.push(address);
    }
    if b.services.is_empty() && !b.reflection {
        bail!(err(
            &format!("{key}.services"),
            "list at least one service (or set `reflection: true` to serve every service the backend lists)".into()
        ));
    }
    let services = service_patterns(&b.services, &format!("{key}.services"), err)?;
    // Readiness waits for a required backend's health checks: without
    // them an endpoint would count as healthy until calls to it fail.
    let required = b.required.unwrap_or(false);
    let health_check = match b
        .health_check
        .or_else(|| required.then(file::HealthCheckSection::default))
    {
        None => None,
        Some(h) => {
            let threshold = |v: Option<u32>, field: &str, default: u32| match v {
                Some(0) => Err(err(
                    &format!("{key}.health_check.{field}"),
                    "must be greater than 0".into(),
                )),
                other => Ok(other.unwrap_or(default)),
            };
            Some(HealthCheckOptions {
                interval: nonzero(h.interval, &format!("{key}.health_check.interval"), err)?
                    .unwrap_or(Duration::from_secs(5)),
                timeout: nonzero(h.timeout, &format!("{key}.health_check.timeout"), err)?
                    .unwrap_or(Duration::from_secs(1)),
                service: h.service.unwrap_or_default(),
                unhealthy_threshold: threshold(h.unhealthy_threshold, "unhealthy_threshold", 2)?,
                healthy_threshold: threshold(h.healthy_threshold, "healthy_threshold", 1)?,
            })
        }
    };
    let outlier_defaults = OutlierOptions::default();
    let outlier = match b.outlier_detection {
        None => outlier_defaults,
        Some(o) => OutlierOptions {
            consecutive_failures: o
                .consecutive_failures
                .unwrap_or(outlier_defaults.consecutive_failures),
            ejection_time: nonzero(
                o.ejection_time,
                &format!("{key}.outlier_detection.ejection_time"),
                err,
            )?
            .unwrap_or(outlier_defaults.ejection_time),
            failure_rate: match o.failure_rate {
                Some(rate) if !(0.0..=1.0).contains(&rate) => bail!(err(
                    &format!("{key}.outlier_detection.failure_rate"),
                    "must be between 0 and 1".into()
                )),
                other => other.unwrap_or(outlier_defaults.failure_rate),
            },
            minimum_calls: match o.minimum_calls {
                Some(0) => bail!(err(
                    &format!("{key}.outlier_detection.minimum_calls"),
                    "must be greater than 0".into()
                )),
                other => other.unwrap_or(outlier_defaults.minimum_calls),
            },
            window: nonzero(o.window, &format!("{key}.outlier_detection.window"), err)?
                .unwrap_or(outlier_defaults.window),
            fail_open: o.fail_open.unwrap_or(outlier_defaults.fail_open),
        },
    };
    if let Some(w) = b.weight
        && !(1..=MAX_WEIGHT).contains(&w)
    {
        bail!(err(
            &format!("{key}.weight"),
            format!("must be between 1 and {MAX_WEIGHT}")
        ));
    }
    Ok(BackendConfig {
        services,
        reflection: b.reflection,
        weight: b.weight,
        balance: b.balance.unwrap_or_default(),
        dns_refresh: nonzero(b.dns_refresh, &format!("{key}.dns_refresh"), err)?
            .unwrap_or(DEFAULT_DNS_REFRESH),
        health_check,
        outlier,
        required,
        retry: match b.retry {
            None => RetryOptions::default(),
            Some(r) => {
                let d = RetryOptions::default();
                let attempts = r.attempts.unwrap_or(3);
                if !(1..=10).contains(&attempts) {
                    bail!(err(
                        &format!("{key}.retry.attempts"),
                        "must be between 1 and 10".into()
                    ));
                }
                let budget = r.budget.unwrap_or(d.budget);
                if !(0.0..=1.0).contains(&budget) {
                    bail!(err(
                        &format!("{key}.retry.budget"),
                        "must be between 0 and 1".into()
                    ));
                }
                RetryOptions {
                    attempts,
                    backoff: r.backoff.unwrap_or(d.backoff),
                    max_backoff: r.max_backoff.unwrap_or(d.max_backoff),
                    budget,
                }
            }
        },
        timeout: nonzero(b.timeout, &format!("{key}.timeout"), err)?.unwrap_or(DEFAULT_TIMEOUT),
        connect_timeout: nonzero(b.connect_timeout, &format!("{key}.connect_timeout"), err)?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        max_response_bytes: match b.max_response_bytes {
            Some(0) => bail!(err(
                &format!("{key}.max_response_bytes"),
                "must be greater than 0".into()
            )),
            Some(n) => n,
            None => DEFAULT_MAX_RESPONSE_BYTES,
        },
        tls: match (b.tls, endpoints.first()) {
            (Some(raw), first) => {
                let tls = backend_tls(raw, &key, anchor, err)?;
                // Built once now, so what tonic would refuse at the first
                // call (a bad name, a key that does not fit) fails the load.
                let host = first.and_then(Uri::host).unwrap_or_default();
                crate::tls::check_client(&tls, host)
                    .map_err(|e| err(&format!("{key}.tls"), format!("{e:#}")))?;
                Some(tls)
            }
            (None, Some(first)) if first.scheme_str() == Some("https") => {
                Some(BackendTls::default())
            }
            (None, _) => None,
        },
        endpoints,
        name,
    })
}

fn apis(
    raw: Vec<file::ApiSection>,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Vec<ApiConfig>> {
    let mut out = Vec::new();
    for (i, api) in raw.into_iter().enumerate() {
        let key = format!("apis[{i}]");
        if api.services.is_empty() {
            bail!(err(
                &format!("{key}.services"),
                "list at least one service".into()
            ));
        }
        let services = service_patterns(&api.services, &format!("{key}.services"), err)?;
        let prefix = match api.prefix.as_deref().map(|p| p.trim_end_matches('/')) {
            None | Some("") => None,
            Some(p) => {
                let valid = p.starts_with('/')
                    && p[1..].split('/').all(|seg| {
                        !seg.is_empty()
                            && seg != "."
                            && seg != ".."
                            && seg
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
                    });
                if !valid {
                    bail!(err(
                        &format!("{key}.prefix"),
                        format!("{p:?} must be literal path segments like /api or /shop/api")
                    ));
                }
                Some(p.to_owned())
            }
        };
        let deprecation = match api.deprecated {
            None => None,
            Some(d) => {
                let date = |text: &str, field: &str| {
                    parse_date(text).ok_or_else(|| {
                        err(
                            &format!("{key}.deprecated.{field}"),
                            format!(
                                "{text:?} is not a date like 2027-06-30 or 2027-06-30T00:00:00Z"
                            ),
                        )
                    })
                };
                let since = date(&d.since, "since")?;
                let sunset = d.sunset.as_deref().map(|s| date(s, "sunset")).transpose()?;
                if sunset.is_some_and(|s| s < since) {
                    bail!(err(
                        &format!("{key}.deprecated.sunset"),
                        "comes before `since`".into()
                    ));
                }
                for (field, link) in [
                    ("successor", &d.successor),
                    ("documentation", &d.documentation),
                ] {
                    if let Some(link) = link
                        && (link.contains(['<', '>', '"', ' ']) || link.is_empty())
                    {
                        bail!(err(
                            &format!("{key}.deprecated.{field}"),
                            format!("{link:?} is not a URL or path")
                        ));
                    }
                }
                Some(Deprecation {
                    since,
                    sunset,
                    successor: d.successor,
                    documentation: d.documentation,
                })
            }
        };
        out.push(ApiConfig {
            services,
            prefix,
            deprecation,
        });
    }
    Ok(out)
}

fn rate(
    raw: Option<file::RateSection>,
    key: &str,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Option<RateOptions>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let requests = std::num::NonZeroU32::new(raw.requests)
        .ok_or_else(|| err(&format!("{key}.requests"), "must be greater than 0".into()))?;
    if raw.per.is_zero() {
        bail!(err(&format!("{key}.per"), "must be greater than 0".into()));
    }
    let burst = match raw.burst {
        None => requests,
        Some(b) => std::num::NonZeroU32::new(b)
            .ok_or_else(|| err(&format!("{key}.burst"), "must be greater than 0".into()))?,
    };
    Ok(Some(RateOptions {
        requests,
        per: raw.per,
        burst,
    }))
}

fn cors(
    raw: file::CorsSection,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Option<CorsOptions>> {
    if raw.allowed_origins.is_empty() {
        return Ok(None);
    }
    let allowed_origins = if raw.allowed_origins.iter().any(|o| o == "*") {
        if raw.allow_credentials {
            bail!(err(
                "cors.allowed_origins",
                "\"*\" cannot be combined with allow_credentials; list the origins".into()
            ));
        }
        None
    } else {
        Some(
            raw.allowed_origins
                .iter()
                .map(|o| {
                    let o = o.trim_end_matches('/');
                    if !(o.starts_with("http://") || o.starts_with("https://")) {
                        return Err(err(
                            "cors.allowed_origins",
                            format!("{o:?} must look like https://host[:port]"),
                        ));
                    }
                    http::HeaderValue::from_str(o).map_err(|_| {
                        err(
                            "cors.allowed_origins",
                            format!("{o:?} is not a valid origin"),
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let header_names = |list: &[String], key: &str| {
        list.iter()
            .map(|h| {
                HeaderName::try_from(h.to_ascii_lowercase())
                    .map_err(|_| err(key, format!("{h:?} is not a valid header name")))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let allowed_methods = if raw.allowed_methods.is_empty() {
        ["GET", "POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .map(|m| http::Method::from_bytes(m.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("cors.allowed_methods", e.to_string()))?
    } else {
        raw.allowed_methods
            .iter()
            .map(|m| {
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| err("cors.allowed_methods", format!("{m:?} is not a method")))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let allowed_headers = if raw.allowed_headers.is_empty() {
        vec![http::header::AUTHORIZATION, http::header::CONTENT_TYPE]
    } else {
        header_names(&raw.allowed_headers, "cors.allowed_headers")?
    };
    Ok(Some(CorsOptions {
        allowed_origins,
        allowed_methods,
        allowed_headers,
        expose_headers: header_names(&raw.expose_headers, "cors.expose_headers")?,
        allow_credentials: raw.allow_credentials,
        max_age: raw.max_age.unwrap_or(Duration::from_secs(3600)),
    }))
}

fn service_patterns(
    names: &[String],
    key: &str,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Vec<ServicePattern>> {
    names
        .iter()
        .map(|s| {
            ServicePattern::parse(s)
                .ok_or_else(|| err(key, format!("{s:?} is not a service name or `package.*`")))
        })
        .collect()
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339 in UTC.
fn parse_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.len() == 10 {
        humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).ok()
    } else {
        humantime::parse_rfc3339(text).ok()
    }
}

fn http_rules(
    raw: file::HttpSection,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Vec<HttpRuleSection>> {
    let mut seen = std::collections::HashSet::new();
    for (i, rule) in raw.rules.iter().enumerate() {
        let key = format!("http.rules[{i}].selector");
        let valid = rule.selector.split('.').count() >= 2
            && rule
                .selector
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            bail!(err(
                &key,
                format!(
                    "{:?} is not a method name like package.Service.Method",
                    rule.selector
                )
            ));
        }
        if !seen.insert(rule.selector.clone()) {
            bail!(err(&key, format!("{} has two rules", rule.selector)));
        }
    }
    Ok(raw.rules)
}

fn openapi(
    raw: file::OpenApiSection,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<OpenApiOptions> {
    let defaults = OpenApiOptions::default();
    for (i, server) in raw.servers.iter().enumerate() {
        if !(server.starts_with('/')
            || server.starts_with("http://")
            || server.starts_with("https://"))
        {
            return Err(err(
                &format!("openapi.servers[{i}]"),
                format!("{server:?} must be an http(s) URL or a path starting with '/'"),
            ));
        }
    }
    Ok(OpenApiOptions {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        title: raw.title.unwrap_or(defaults.title),
        version: raw.version.unwrap_or(defaults.version),
        description: raw.description,
        servers: raw.servers,
    })
}

fn nonzero(
    d: Option<Duration>,
    key: &str,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Option<Duration>> {
    match d {
        Some(d) if d.is_zero() => Err(err(key, "must be greater than 0".into())),
        other => Ok(other),
    }
}

/// A config with one backend `b` serving `services`, plus `extra` YAML, for unit tests.
#[cfg(test)]
pub fn for_test(services: &str, extra: &str) -> Config {
    let text = format!(
        "descriptors:\n  protos: [x.proto]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [{services}]\n{extra}"
    );
    parse(&text, Path::new("gateway.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
descriptors:
  include: [protos]
  protos: [a.proto]
backends:
  users:
    address: http://127.0.0.1:50051
    services: [shop.user.v1.UserService]
";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL, Path::new("/etc/pg/gateway.yaml")).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.descriptors.include, vec![PathBuf::from("/etc/pg/protos")]);
        assert_eq!(c.backends[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.transcode.unknown_query_parameters, UnknownFields::Reject);
        assert_eq!(c.transcode.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(!c.strict_descriptors);
    }

    #[test]
    fn descriptors_strict_is_read() {
        for (strict, want) in [("true", true), ("false", false)] {
            let text = MINIMAL.replace(
                "  protos: [a.proto]\n",
                &format!("  protos: [a.proto]\n  strict: {strict}\n"),
            );
            let c = parse(&text, Path::new("gateway.yaml")).unwrap();
            assert_eq!(c.strict_descriptors, want, "strict: {strict}");
        }
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        for (text, want) in [
            (
                MINIMAL.replace("address:", "adress:"),
                "gateway.yaml: backends.users: unknown field `adress`",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:50051", "127.0.0.1:50051"),
                "gateway.yaml: backends.users.address: \"127.0.0.1:50051\" must look like http://host:port",
            ),
            (
                format!("{MINIMAL}server:\n  listen: nowhere\n"),
                "gateway.yaml: server.listen: \"nowhere\" is not host:port",
            ),
            (
                format!("{MINIMAL}transcoding:\n  unknown_query_parameters: maybe\n"),
                "gateway.yaml: transcoding.unknown_query_parameters: unknown variant `maybe`",
            ),
            (
                MINIMAL.replace("shop.user.v1.UserService", "shop..User"),
                "gateway.yaml: backends.users.services: \"shop..User\" is not a service name",
            ),
            (
                format!(
                    "{MINIMAL}  orders:\n    address: http://127.0.0.1:1\n    services: [a.B]\n    timeout: 0s\n"
                ),
                "gateway.yaml: backends.orders.timeout: must be greater than 0",
            ),
            (
                format!("{MINIMAL}methods:\n  a.B.C:\n    timeout: soon\n"),
                "gateway.yaml: methods.a.B.C.timeout:",
            ),
            (
                format!("{MINIMAL}metadata:\n  forward_request_headers: [Content-Type]\n"),
                "gateway.yaml: metadata.forward_request_headers: \"Content-Type\" is reserved",
            ),
            (
                format!("{MINIMAL}metadata:\n  forward_request_headers: [Authorization]\n"),
                "gateway.yaml: metadata.forward_request_headers: \"authorization\" is not forwarded by this list: on routes the gateway does not authenticate it is forwarded by default (metadata.forward_authorization)",
            ),
            (
                format!(
                    "{MINIMAL}metadata:\n  forward_request_headers: [x-api-key]\nauth:\n  api_keys:\n    from: {{ header: x-api-key }}\n    keys: [{{ name: a, sha256: c8508ef6b8945d666ebda9da5ac196d24548fc98ba6eac51b11805cd15a6d4c8 }}]\n"
                ),
                "gateway.yaml: metadata.forward_request_headers: \"x-api-key\" carries a credential the gateway checks: it reaches backends only as the verified credential, with auth.forward.credentials",
            ),
            (
                "backends: {}\ndescriptors:\n  protos: [a.proto]\n".to_owned(),
                "gateway.yaml: backends: define at least one backend",
            ),
            (
                MINIMAL.replace(
                    "address: http://127.0.0.1:50051",
                    "address: http://127.0.0.1:50051\n    endpoints: [http://127.0.0.1:1]",
                ),
                "gateway.yaml: backends.users: give `address` or `endpoints`, not both",
            ),
            (
                MINIMAL.replace(
                    "address: http://127.0.0.1:50051",
                    "endpoints: [http://127.0.0.1:1, http://127.0.0.1:1]",
                ),
                "gateway.yaml: backends.users.endpoints: \"http://127.0.0.1:1\" is listed twice",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:50051", "http://users.internal"),
                "gateway.yaml: backends.users.address: \"http://users.internal\" must look like http://host:port",
            ),
            (
                MINIMAL.replace("services: [shop.user.v1.UserService]", "services: []"),
                "gateway.yaml: backends.users.services: list at least one service (or set `reflection: true`",
            ),
            (
                format!("{MINIMAL}    weight: 0\n"),
                "gateway.yaml: backends.users.weight: must be between 1 and 10000",
            ),
            (
                format!("{MINIMAL}    balance: random\n"),
                "gateway.yaml: backends.users.balance: unknown variant `random`",
            ),
            (
                format!("{MINIMAL}    health_check: {{ unhealthy_threshold: 0 }}\n"),
                "gateway.yaml: backends.users.health_check.unhealthy_threshold: must be greater than 0",
            ),
            (
                format!("{MINIMAL}apis:\n  - services: [shop.*]\n    prefix: api\n"),
                "gateway.yaml: apis[0].prefix: \"api\" must be literal path segments",
            ),
            (
                format!("{MINIMAL}apis:\n  - services: [shop.*]\n    prefix: /a/{{x}}\n"),
                "gateway.yaml: apis[0].prefix: \"/a/{x}\" must be literal path segments",
            ),
            (
                format!(
                    "{MINIMAL}apis:\n  - services: [shop.*]\n    deprecated: {{ since: soon }}\n"
                ),
                "gateway.yaml: apis[0].deprecated.since: \"soon\" is not a date",
            ),
            (
                format!(
                    "{MINIMAL}apis:\n  - services: [shop.*]\n    deprecated: {{ since: 2027-01-01, sunset: 2026-01-01 }}\n"
                ),
                "gateway.yaml: apis[0].deprecated.sunset: comes before `since`",
            ),
            (
                format!(
                    "{MINIMAL}apis:\n  - services: [shop.*]\n    deprecated: {{ since: 2027-01-01, successor: \"<x>\" }}\n"
                ),
                "gateway.yaml: apis[0].deprecated.successor: \"<x>\" is not a URL or path",
            ),
            (
                format!("{MINIMAL}http:\n  rules:\n    - selector: Get\n      get: /x\n"),
                "gateway.yaml: http.rules[0].selector: \"Get\" is not a method name",
            ),
            (
                format!(
                    "{MINIMAL}http:\n  rules:\n    - {{ selector: a.B.C, get: /x }}\n    - {{ selector: a.B.C, get: /y }}\n"
                ),
                "gateway.yaml: http.rules[1].selector: a.B.C has two rules",
            ),
            (
                format!("{MINIMAL}traffic:\n  override_header: \"bad header\"\n"),
                "gateway.yaml: traffic.override_header: \"bad header\" is not a valid header name",
            ),
        ] {
            let got = parse(&text, Path::new("gateway.yaml"))
                .unwrap_err()
                .to_string();
            assert!(got.starts_with(want), "got {got:?}\nwant prefix {want:?}");
        }
    }

    #[test]
    fn reflection_backends_need_no_protos_or_services() {
        let text = "backends:\n  users:\n    endpoints: [http://127.0.0.1:1, http://localhost:2]\n    reflection: true\n";
        let c = parse(text, Path::new("gateway.yaml")).unwrap();
        let users = &c.backends[0];
        assert!(users.reflection && users.services.is_empty());
        assert_eq!(users.endpoints.len(), 2);
        assert_eq!(users.balance, Balance::P2c);
        assert!(!users.required && users.health_check.is_none());
        assert_eq!(users.outlier, OutlierOptions::default());
        let err = parse(
            &text.replace("reflection: true", "services: [a.B]"),
            Path::new("gateway.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("gateway.yaml: descriptors:"), "{err}");
    }

    #[test]
    fn required_backends_get_the_default_health_checks() {
        let backend =
            "backends:\n  users:\n    address: http://127.0.0.1:1\n    reflection: true\n";
        for (extra, want) in [
            ("", None),
            ("    required: false\n", None),
            ("    required: true\n", Some((Duration::from_secs(5), 2))),
            (
                "    required: true\n    health_check: { interval: 1s, unhealthy_threshold: 3 }\n",
                Some((Duration::from_secs(1), 3)),
            ),
        ] {
            let c = parse(&format!("{backend}{extra}"), Path::new("gateway.yaml")).unwrap();
            let got = c.backends[0]
                .health_check
                .as_ref()
                .map(|h| (h.interval, h.unhealthy_threshold));
            assert_eq!(got, want, "{extra:?}");
        }
    }

    #[test]
    fn drain_delay_defaults_to_zero() {
        for (server, want) in [
            ("", Duration::ZERO),
            ("server:\n  drain_delay: 5s\n", Duration::from_secs(5)),
            ("server:\n  drain_delay: 0s\n", Duration::ZERO),
        ] {
            let text = format!(
                "{server}backends:\n  users:\n    address: http://127.0.0.1:1\n    reflection: true\n"
            );
            let c = parse(&text, Path::new("gateway.yaml")).unwrap();
            assert_eq!(c.drain_delay, want, "{server:?}");
        }
    }

    #[test]
    fn dates_are_days_or_utc_timestamps() {
        for (text, want) in [
            ("2026-11-01", Some(1_793_491_200)),
            ("2026-11-01T12:00:00Z", Some(1_793_534_400)),
            ("2026-13-01", None),
            ("01.11.2026", None),
            ("", None),
        ] {
            let got = parse_date(text)
                .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn service_patterns_match() {
        for (pattern, service, want) in [
            ("shop.user.v1.UserService", "shop.user.v1.UserService", true),
            (
                "shop.user.v1.UserService",
                "shop.user.v1.UserServiceX",
                false,
            ),
            ("shop.user.v1.*", "shop.user.v1.UserService", true),
            ("shop.*", "shop.user.v1.UserService", true),
            ("shop.*", "shopping.Cart", false),
        ] {
            let p = ServicePattern::parse(pattern).unwrap();
            assert_eq!(p.matches(service), want, "{pattern} vs {service}");
        }
        for bad in ["", "*", "a..b", "a.*.b", "a b"] {
            assert!(ServicePattern::parse(bad).is_none(), "{bad:?}");
        }
    }
}
