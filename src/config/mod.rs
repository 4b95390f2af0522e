//! Configuration: `gateway.yaml` read, checked and given defaults.
//!
//! [`load`] parses the file into [`FileConfig`], its serde mirror, and
//! validates that into a [`Config`] whose every field is ready to use. Each
//! section has its own module holding its mirror (`*Section`), its validated
//! options and their defaults. Values with a rule of their own (durations
//! above zero, ratios, ranges; see [`value`]) check it while they are read,
//! so the message names the key path and the line; what one value cannot
//! check alone is validated after. Errors name the file, the key and what is
//! wrong. Relative paths are relative to the file's directory.
//!
//! This module imports nothing else of the crate: everything else depends
//! on it.

pub mod admin;
pub mod apis;
pub mod auth;
pub mod backend_tls;
pub mod backends;
pub mod cors;
pub mod descriptors;
pub mod discovery;
pub mod effective;
pub mod http_rules;
pub mod mcp;
pub mod metadata;
pub mod methods;
pub mod openapi;
pub mod pem;
pub mod protocols;
pub mod rate_limit;
#[cfg(test)]
mod readme_tests;
pub mod reload;
pub mod server;
pub mod service_pattern;
pub mod streaming;
pub mod tracing;
pub mod traffic;
pub mod transcoding;
pub mod validation;
pub mod value;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

pub use self::tracing::TracingOptions;
pub use apis::{ApiConfig, Deprecation};
pub use backend_tls::{BackendTls, ClientIdentity};
pub use backends::{
    BackendConfig, Balance, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DNS_REFRESH,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, HealthCheckOptions, MAX_WEIGHT, OutlierOptions,
    RetryOptions,
};
pub use cors::CorsOptions;
pub use descriptors::{DESCRIPTOR_CACHE_ENV, DescriptorSources};
pub use discovery::EtcdDiscovery;
pub use http_rules::HttpRuleSection;
pub use metadata::{MetadataOptions, is_reserved};
pub use methods::MethodOverrides;
pub use openapi::OpenApiOptions;
pub use pem::{PemFile, parse_certs, parse_key, read_certs_pem, read_key_pem};
pub use rate_limit::{OnStoreError, RateLimitOptions, RateOptions, RedisStore};
pub use reload::{DEFAULT_RELOAD_DEBOUNCE, ReloadOptions};
pub use server::{
    DEFAULT_LISTEN, DEFAULT_MAX_GRPC_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, EdgeOptions, ServerTls,
};
pub use service_pattern::ServicePattern;
pub use streaming::{Framing, StreamingOptions};
pub use traffic::TrafficOptions;
pub use transcoding::{DEFAULT_MAX_BODY_BYTES, JsonOptions, TranscodeOptions, UnknownFields};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages).
    pub source: PathBuf,
    /// The file as written, as JSON, secrets redacted: what the admin
    /// API's `/config` starts from (not the file now on disk, which may
    /// have changed since).
    pub written: std::sync::Arc<serde_json::Value>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Descriptor sources, paths made absolute.
    pub descriptors: DescriptorSources,
    /// `descriptors.strict`: a binding that cannot be routed (see
    /// `http_rule::RouteProblem`; duplicates aside) fails startup
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
    /// The admin API's listener. Read at startup. Default none: off.
    pub admin: admin::AdminOptions,
    /// gRPC server reflection of the routed services on the main listener.
    /// Default true.
    pub reflection_server: bool,
    /// The client surfaces served besides REST/JSON.
    pub protocols: protocols::ProtocolOptions,
    /// The MCP endpoint. Default off.
    pub mcp: mcp::McpOptions,
    /// The schema's rules enforced before a call (`validation:`), before
    /// `methods.<name>.validation` applies.
    pub validation: validation::ValidationOptions,
}

impl Config {
    /// The validation policy of `method` (`package.Service.Method`):
    /// `validation:` with its `methods.<name>.validation` applied.
    pub fn validation_of(&self, method: &str) -> validation::ValidationOptions {
        match self.methods.get(method).and_then(|m| m.validation.as_ref()) {
            Some(section) => self.validation.with(section),
            None => self.validation,
        }
    }
}

/// `gateway.yaml` as written: one field per section. Unknown keys are
/// errors so typos never pass silently.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listener settings.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub server: server::ServerSection,
    /// Where descriptors come from (besides reflection).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub descriptors: descriptors::DescriptorsSection,
    /// Named backends and the services they serve.
    pub backends: BTreeMap<String, backends::BackendSection>,
    /// Request and response transcoding.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub transcoding: transcoding::TranscodingSection,
    /// Header ⇄ metadata forwarding.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub metadata: metadata::MetadataSection,
    /// Per-method overrides keyed by `package.Service.Method`.
    #[serde(default)]
    pub methods: BTreeMap<String, methods::MethodSection>,
    /// The generated OpenAPI document and docs UI.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub openapi: openapi::OpenApiSection,
    /// Authentication and authorization.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub auth: auth::AuthSection,
    /// API groups: path prefixes and deprecation per set of services.
    #[serde(default)]
    pub apis: Vec<apis::ApiSection>,
    /// HTTP rules given in config, like a service config's `http.rules`.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub http: http_rules::HttpSection,
    /// Traffic splitting between backends.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub traffic: traffic::TrafficSection,
    /// Hot reload of this file.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub reload: reload::ReloadSection,
    /// Streaming methods over HTTP.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub streaming: streaming::StreamingSection,
    /// Cross-origin calls from browsers.
    #[serde(default)]
    pub cors: cors::CorsSection,
    /// Token-bucket rate limits.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub rate_limit: rate_limit::RateLimitSection,
    /// Distributed tracing: OpenTelemetry spans exported over OTLP.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub tracing: self::tracing::TracingSection,
    /// The operator's admin API.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub admin: admin::AdminSection,
    /// Serve gRPC server reflection of the routed services.
    #[schemars(extend("default" = true))]
    pub reflection_server: Option<bool>,
    /// Client surfaces besides REST/JSON: native gRPC, ...
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub protocols: protocols::ProtocolsSection,
    /// The Model Context Protocol endpoint: routed methods as tools.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub mcp: mcp::McpSection,
    /// Request validation from the schema's rules (protovalidate,
    /// protoc-gen-validate, `google.api.field_behavior`).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub validation: validation::ValidationSection,
}

/// The JSON Schema (2020-12) of `gateway.yaml`, generated from the types
/// it is read into: descriptions from their doc comments. What the schema
/// cannot say (rules across values, reachable files) is checked at load.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(FileConfig);
    schema.insert("title".into(), "protogate gateway.yaml".into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

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
    let raw: FileConfig =
        serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut config = validate(raw, path)?;
    // It parsed as `FileConfig`, so it parses as a value.
    let mut written: serde_json::Value = serde_norway::from_str(text).unwrap_or_default();
    effective::redact(&mut written);
    config.written = std::sync::Arc::new(written);
    Ok(config)
}

/// What serde cannot check: rules across values, and values of a form
/// (URLs, names, dates) checked with words of their own.
fn validate(raw: FileConfig, path: &Path) -> anyhow::Result<Config> {
    let err = |key: &str, msg: String| anyhow::anyhow!("{}: {key}: {msg}", path.display());
    let base = path.parent().unwrap_or(Path::new("."));
    let anchor = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let listen = raw.server.listen(&err)?;
    let backends = backends::backends(raw.backends, &anchor, &err)?;
    if raw.descriptors.is_empty() && !backends.iter().any(|b| b.reflection) {
        bail!(err(
            "descriptors",
            "name at least one file in `protos` or `descriptor_sets`, or set `reflection: true` on a backend".into()
        ));
    }
    let auth = auth::validate(raw.auth, base, &err)?;
    Ok(Config {
        source: path.to_owned(),
        written: std::sync::Arc::default(),
        listen,
        descriptors: raw.descriptors.sources(&anchor),
        strict_descriptors: raw.descriptors.strict,
        descriptor_cache: raw.descriptors.cache(&anchor),
        backends,
        transcode: raw.transcoding.into(),
        metadata: {
            let mut metadata = raw.metadata.validate(&auth, &err)?;
            metadata.request_id = raw.server.edge().request_id;
            metadata
        },
        methods: methods::methods(raw.methods, &err)?,
        max_grpc_timeout: raw
            .server
            .max_grpc_timeout
            .map_or(DEFAULT_MAX_GRPC_TIMEOUT, value::NonZeroDuration::get),
        drain_delay: raw.server.drain_delay.unwrap_or_default(),
        shutdown_grace: raw.server.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        openapi: raw.openapi.validate(&err)?,
        auth,
        apis: apis::apis(raw.apis, &err)?,
        http_rules: http_rules::http_rules(raw.http, &err)?,
        traffic: raw.traffic.into(),
        edge: raw.server.edge(),
        cors: cors::cors(raw.cors, &err)?,
        tls: raw
            .server
            .tls
            .map(|tls| tls.validate(&anchor, &err))
            .transpose()?,
        tracing: raw.tracing.validate(&err)?,
        admin: raw.admin.validate(&err)?,
        reflection_server: raw.reflection_server.unwrap_or(true),
        protocols: raw.protocols.into(),
        mcp: raw.mcp.validate(&err)?,
        validation: validation::ValidationOptions::default().with(&raw.validation),
        rate_limit: raw.rate_limit.validate(&err)?,
        streaming: raw.streaming.into(),
        reload: raw.reload.into(),
    })
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
mod tests;
