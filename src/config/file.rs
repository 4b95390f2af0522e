//! The serde mirror of `gateway.yaml`: field for field what users write.
//!
//! Nothing here is validated beyond its type; `config::validate` turns this
//! into a [`super::Config`]. Unknown keys are errors so typos never pass silently.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listener settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Where descriptors come from (besides reflection).
    #[serde(default)]
    pub descriptors: DescriptorsSection,
    /// Named backends and the services they serve.
    pub backends: BTreeMap<String, BackendSection>,
    /// Request and response transcoding.
    #[serde(default)]
    pub transcoding: TranscodingSection,
    /// Header ⇄ metadata forwarding.
    #[serde(default)]
    pub metadata: MetadataSection,
    /// Per-method overrides keyed by `package.Service.Method`.
    #[serde(default)]
    pub methods: BTreeMap<String, MethodSection>,
    /// The generated OpenAPI document and docs UI.
    #[serde(default)]
    pub openapi: OpenApiSection,
    /// Authentication and authorization.
    #[serde(default)]
    pub auth: super::auth::AuthSection,
    /// API groups: path prefixes and deprecation per set of services.
    #[serde(default)]
    pub apis: Vec<ApiSection>,
    /// HTTP rules given in config, like a service config's `http.rules`.
    #[serde(default)]
    pub http: HttpSection,
    /// Traffic splitting between backends.
    #[serde(default)]
    pub traffic: TrafficSection,
    /// Hot reload of this file.
    #[serde(default)]
    pub reload: ReloadSection,
    /// Streaming methods over HTTP.
    #[serde(default)]
    pub streaming: StreamingSection,
    /// Cross-origin calls from browsers.
    #[serde(default)]
    pub cors: CorsSection,
    /// Token-bucket rate limits.
    #[serde(default)]
    pub rate_limit: RateLimitSection,
    /// Distributed tracing: OpenTelemetry spans exported over OTLP.
    #[serde(default)]
    pub tracing: TracingSection,
}

/// `tracing:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// OTLP/gRPC collector, `http://host:4317`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: Option<String>,
    /// Share of new traces sampled (a client's sampling decision is kept).
    pub sample_ratio: Option<f64>,
}

/// `rate_limit:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Anonymous calls, per client address.
    pub by_address: Option<RateSection>,
    /// Authenticated calls, per JWT subject or API key.
    pub by_caller: Option<RateSection>,
}

/// One token bucket: `requests` per `per`, at most `burst` at once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSection {
    /// Requests per period.
    pub requests: u32,
    /// The period.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// Requests allowed at once.
    pub burst: Option<u32>,
}

/// How a server stream is written when the client's `Accept` allows any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `application/x-ndjson`: one JSON message per line.
    #[default]
    Ndjson,
    /// `text/event-stream`: Server-Sent Events.
    Sse,
    /// `application/json`: one JSON array, written as messages arrive.
    Json,
}

/// `streaming:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingSection {
    /// Framing for `Accept: */*` or no `Accept`.
    pub default_framing: Option<Framing>,
    /// Longest a stream may stay open.
    #[serde(default, with = "humantime_serde")]
    pub max_duration: Option<Duration>,
    /// Longest a stream may go without a message either way.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Origins (`https://app.example.com`) whose pages may open WebSockets,
    /// besides the gateway's own.
    #[serde(default)]
    pub websocket_origins: Vec<String>,
}

/// `apis[]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Full service names or `package.*` patterns.
    pub services: Vec<String>,
    /// Path prefix the API is mounted under, e.g. `/api`.
    pub prefix: Option<String>,
    /// Marks the API deprecated.
    pub deprecated: Option<DeprecationSection>,
}

/// `apis[].deprecated`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecationSection {
    /// When the API was (or will be) deprecated: `YYYY-MM-DD` or RFC 3339.
    pub since: String,
    /// When it stops answering: `YYYY-MM-DD` or RFC 3339.
    pub sunset: Option<String>,
    /// URL or path of the successor version.
    pub successor: Option<String>,
    /// URL of a page explaining the deprecation.
    pub documentation: Option<String>,
}

/// `http:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Rules by selector; they replace a method's `google.api.http` annotation.
    #[serde(default)]
    pub rules: Vec<HttpRuleSection>,
}

/// `http.rules[]`, mirroring `google.api.HttpRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRuleSection {
    /// `package.Service.Method` (only in top-level rules).
    #[serde(default)]
    pub selector: String,
    /// `GET` template.
    pub get: Option<String>,
    /// `PUT` template.
    pub put: Option<String>,
    /// `POST` template.
    pub post: Option<String>,
    /// `DELETE` template.
    pub delete: Option<String>,
    /// `PATCH` template.
    pub patch: Option<String>,
    /// Any other method.
    pub custom: Option<CustomPatternSection>,
    /// Request field bound to the body, `*`, or none.
    #[serde(default)]
    pub body: String,
    /// Response field used as the body.
    #[serde(default)]
    pub response_body: String,
    /// Further bindings.
    #[serde(default)]
    pub additional_bindings: Vec<HttpRuleSection>,
}

/// `custom: { kind, path }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPatternSection {
    /// HTTP method name, or `*`.
    pub kind: String,
    /// Path template.
    pub path: String,
}

/// `traffic:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSection {
    /// Request header naming the backend to use among a service's split backends.
    pub override_header: Option<String>,
}

/// `reload:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSection {
    /// Reload when the file changes.
    pub watch: Option<bool>,
    /// Quiet time after the last change before reloading.
    #[serde(default, with = "humantime_serde")]
    pub debounce: Option<Duration>,
}

/// `openapi:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiSection {
    /// Serve `/openapi.json`, `/openapi.yaml` and `/docs`.
    pub enabled: Option<bool>,
    /// `info.title`.
    pub title: Option<String>,
    /// `info.version`.
    pub version: Option<String>,
    /// `info.description`.
    pub description: Option<String>,
    /// `servers[].url`; none means the page's own origin.
    #[serde(default)]
    pub servers: Vec<String>,
}

/// `server:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `host:port` to listen on.
    pub listen: Option<String>,
    /// Largest `Grpc-Timeout` a client may ask for.
    #[serde(default, with = "humantime_serde")]
    pub max_grpc_timeout: Option<Duration>,
    /// How long a stopping gateway keeps accepting connections, answering
    /// `/readyz` with 503, before it closes its listener.
    #[serde(default, with = "humantime_serde")]
    pub drain_delay: Option<Duration>,
    /// How long a stopping gateway waits for requests and streams in flight.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    /// Longest a client may take to send a request's headers.
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    /// Longest a connection may stay open without a request in flight.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Longest request target (path and query), in bytes.
    pub max_uri_bytes: Option<usize>,
    /// Largest total size of the request headers, in bytes.
    pub max_header_bytes: Option<usize>,
    /// API requests handled at once; more are refused with 503.
    pub max_concurrent_requests: Option<usize>,
    /// Compress responses (gzip, br) for clients that accept it.
    pub compression: Option<bool>,
    /// HTTPS termination.
    pub tls: Option<ServerTlsSection>,
}

/// `server.tls:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSection {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: whether clients may connect without a certificate.
    pub client_cert_optional: Option<bool>,
}

/// `backends.<name>.tls:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTlsSection {
    /// PEM CA certificates to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS.
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key: Option<PathBuf>,
    /// The name the backend's certificate must carry, when not the address's host.
    pub server_name: Option<String>,
}

/// `cors:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    /// Origins allowed to call the API from a browser, or `["*"]`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Methods allowed in cross-origin calls.
    #[serde(default)]
    pub allowed_methods: Vec<String>,
    /// Request headers allowed in cross-origin calls.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and credentials.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

/// `descriptors:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorsSection {
    /// Include directories for `.proto` imports.
    #[serde(default)]
    pub include: Vec<PathBuf>,
    /// `.proto` files to compile, relative to an include directory.
    #[serde(default)]
    pub protos: Vec<PathBuf>,
    /// Binary `FileDescriptorSet` files.
    #[serde(default)]
    pub descriptor_sets: Vec<PathBuf>,
    /// Refuse to load when a binding cannot be routed.
    #[serde(default)]
    pub strict: bool,
    /// Where the last descriptors fetched by reflection are kept.
    pub cache_dir: Option<PathBuf>,
}

/// `backends.<name>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `http://host:port` of the gRPC server.
    pub address: Option<String>,
    /// Several `http://host:port` instances of it.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Full service names, or `package.*` for every service of a package.
    #[serde(default)]
    pub services: Vec<String>,
    /// Read descriptors from the backend by gRPC server reflection.
    #[serde(default)]
    pub reflection: bool,
    /// Share of a split service's traffic.
    pub weight: Option<u32>,
    /// How requests are spread over endpoints.
    pub balance: Option<Balance>,
    /// How often host names are resolved again.
    #[serde(default, with = "humantime_serde")]
    pub dns_refresh: Option<Duration>,
    /// Active health checks with `grpc.health.v1`.
    pub health_check: Option<HealthCheckSection>,
    /// Passive health: ejection of endpoints that keep failing.
    pub outlier_detection: Option<OutlierSection>,
    /// Whether `/readyz` waits for this backend.
    pub required: Option<bool>,
    /// Retries of idempotent methods.
    pub retry: Option<RetrySection>,
    /// Default deadline for calls to this backend.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Timeout for establishing a connection.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// Largest reply message accepted, in bytes.
    pub max_response_bytes: Option<usize>,
    /// TLS settings for `https://` addresses.
    pub tls: Option<BackendTlsSection>,
}

/// Endpoint choice within a backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Power of two choices on in-flight requests (the default).
    #[default]
    P2c,
    /// Each endpoint in turn.
    RoundRobin,
}

/// `backends.<name>.health_check:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// Time between checks.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Deadline of one check.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Service name sent in `HealthCheckRequest` ("" is the whole server).
    pub service: Option<String>,
    /// Failed checks in a row before an endpoint is unhealthy.
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks in a row before it is healthy again.
    pub healthy_threshold: Option<u32>,
}

/// `backends.<name>.retry:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts in all, the first included.
    pub attempts: Option<u32>,
    /// Backoff before the first retry; doubled for each next one.
    #[serde(default, with = "humantime_serde")]
    pub backoff: Option<Duration>,
    /// Longest backoff.
    #[serde(default, with = "humantime_serde")]
    pub max_backoff: Option<Duration>,
    /// Retries allowed as a share of requests (0.2: one in five).
    pub budget: Option<f32>,
}

/// `backends.<name>.outlier_detection:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSection {
    /// Failed calls in a row before an endpoint is ejected; 0 turns ejection off.
    pub consecutive_failures: Option<u32>,
    /// How long an ejected endpoint stays out.
    #[serde(default, with = "humantime_serde")]
    pub ejection_time: Option<Duration>,
    /// Share of failed calls in a window that ejects an endpoint; 0 turns it off.
    pub failure_rate: Option<f64>,
    /// Calls a window needs before its failure rate counts.
    pub minimum_calls: Option<u32>,
    /// Length of the failure rate's window.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// When every endpoint is ejected, send calls to them anyway instead of answering 503.
    pub fail_open: Option<bool>,
}

/// What to do with request input that matches no field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Answer 400 naming the parameter or field (the default: fail closed).
    #[default]
    Reject,
    /// Drop it silently, as grpc-gateway does.
    Ignore,
}

/// `transcoding:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodingSection {
    /// JSON output options.
    #[serde(default)]
    pub json: JsonSection,
    /// Query parameters that name no field, or one the path or body binds.
    #[serde(default)]
    pub unknown_query_parameters: UnknownFields,
    /// JSON body fields that name no field (and bodies on bindings without `body`).
    #[serde(default)]
    pub unknown_json_fields: UnknownFields,
    /// Largest accepted request body.
    pub max_body_bytes: Option<usize>,
    /// Retry an unmatched path with `%2F` decoded to `/`.
    pub match_encoded_slashes: Option<bool>,
    /// Pass `google.rpc.DebugInfo` error details on to clients.
    #[serde(default)]
    pub forward_debug_info: bool,
    /// `POST /package.Service/Method` for methods without an HTTP rule.
    #[serde(default)]
    pub fallback_routes: bool,
}

/// `transcoding.json:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSection {
    /// Write fields that hold their default value.
    #[serde(default)]
    pub emit_unpopulated: bool,
    /// Use `snake_case` proto field names instead of `lowerCamelCase` JSON names.
    #[serde(default)]
    pub use_proto_names: bool,
    /// Write enums as numbers instead of names.
    #[serde(default)]
    pub enums_as_ints: bool,
}

/// `metadata:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSection {
    /// Request headers forwarded to backends as gRPC metadata under the same name.
    #[serde(default)]
    pub forward_request_headers: Vec<String>,
    /// Append to a client's `X-Forwarded-For` rather than replace it.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Forward a client's `Authorization` on routes the gateway does not
    /// authenticate. Default true.
    pub forward_authorization: Option<bool>,
}

/// `methods.<package.Service.Method>:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSection {
    /// Deadline for this method.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Overrides `transcoding.unknown_query_parameters`.
    pub unknown_query_parameters: Option<UnknownFields>,
    /// Overrides `transcoding.unknown_json_fields`.
    pub unknown_json_fields: Option<UnknownFields>,
    /// The method may run twice: retried when its backend has a `retry` policy.
    #[serde(default)]
    pub idempotent: bool,
}
