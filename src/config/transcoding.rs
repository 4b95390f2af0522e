//! `transcoding:`: JSON output, what to do with input that names no field,
//! body size, and the routes beyond the HTTP rules.

use serde::Deserialize;

use super::value::Positive;

/// Default largest request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// `transcoding:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscodingSection {
    /// JSON output options.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub json: JsonOptions,
    /// Query parameters that name no field, or one the path or body binds.
    #[serde(default)]
    #[schemars(extend("default" = "reject"))]
    pub unknown_query_parameters: UnknownFields,
    /// JSON body fields that name no field (and bodies on bindings without `body`).
    #[serde(default)]
    #[schemars(extend("default" = "reject"))]
    pub unknown_json_fields: UnknownFields,
    /// Largest accepted request body.
    #[schemars(extend("default" = 4194304))]
    pub max_body_bytes: Option<Positive<usize>>,
    /// Retry an unmatched path with `%2F` decoded to `/`.
    #[serde(default)]
    pub match_encoded_slashes: bool,
    /// Pass `google.rpc.DebugInfo` error details on to clients.
    #[serde(default)]
    pub forward_debug_info: bool,
    /// `POST /package.Service/Method` for methods without an HTTP rule.
    #[serde(default)]
    pub fallback_routes: bool,
    /// Success statuses by convention: `201 Created` (with `Location`) for
    /// `Create*` methods on POST, `204 No Content` for a
    /// `google.protobuf.Empty` reply, `202 Accepted` for a
    /// `google.longrunning.Operation`. Off: every success is `200`.
    #[schemars(extend("default" = true))]
    pub conventional_status: Option<bool>,
}

/// What to do with request input that matches no field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Answer 400 naming the parameter or field (the default: fail closed).
    #[default]
    Reject,
    /// Drop it silently, as grpc-gateway does.
    Ignore,
}

/// JSON output options (`transcoding.json:`, read as written).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
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
    /// Success statuses by convention (201, 204, 202) rather than always
    /// 200; `methods.<name>.status` overrides either. Default true.
    pub conventional_status: bool,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        TranscodingSection::default().into()
    }
}

impl From<TranscodingSection> for TranscodeOptions {
    fn from(t: TranscodingSection) -> Self {
        Self {
            json: t.json,
            unknown_query_parameters: t.unknown_query_parameters,
            unknown_json_fields: t.unknown_json_fields,
            max_body_bytes: t
                .max_body_bytes
                .map_or(DEFAULT_MAX_BODY_BYTES, Positive::get),
            match_encoded_slashes: t.match_encoded_slashes,
            forward_debug_info: t.forward_debug_info,
            fallback_routes: t.fallback_routes,
            conventional_status: t.conventional_status.unwrap_or(true),
        }
    }
}
