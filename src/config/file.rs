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
    /// Where descriptors come from.
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
}

/// `backends.<name>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `http://host:port` of the gRPC server.
    pub address: String,
    /// Full service names, or `package.*` for every service of a package.
    pub services: Vec<String>,
    /// Default deadline for calls to this backend.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Timeout for establishing a connection.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// Largest reply message accepted, in bytes.
    pub max_response_bytes: Option<usize>,
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
    /// Query parameters that name no field.
    #[serde(default)]
    pub unknown_query_parameters: UnknownFields,
    /// JSON body fields that name no field.
    #[serde(default)]
    pub unknown_json_fields: UnknownFields,
    /// Largest accepted request body.
    pub max_body_bytes: Option<usize>,
    /// Retry an unmatched path with `%2F` decoded to `/`.
    pub match_encoded_slashes: Option<bool>,
    /// Pass `google.rpc.DebugInfo` error details on to clients.
    #[serde(default)]
    pub forward_debug_info: bool,
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
}
