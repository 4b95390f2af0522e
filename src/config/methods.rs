//! `methods:`: per-method deadlines, input policies and idempotency.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::transcoding::UnknownFields;
use super::value::NonZeroDuration;

/// `methods.<package.Service.Method>:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodSection {
    /// Deadline for this method.
    pub timeout: Option<NonZeroDuration>,
    /// Overrides `transcoding.unknown_query_parameters`.
    pub unknown_query_parameters: Option<UnknownFields>,
    /// Overrides `transcoding.unknown_json_fields`.
    pub unknown_json_fields: Option<UnknownFields>,
    /// The method may run twice: retried when its backend has a `retry`
    /// policy. Default: what the proto says, true for an `idempotency_level`
    /// of `IDEMPOTENT` or `NO_SIDE_EFFECTS`; `false` here overrides it.
    pub idempotent: Option<bool>,
    /// `Cache-Control` of its Connect GET answers (e.g. `public, max-age=60`),
    /// which also get an `ETag`. Default none.
    pub cache_control: Option<String>,
    /// Overrides `validation:` for this method.
    #[serde(default)]
    pub validation: Option<super::validation::ValidationSection>,
    /// On a PATCH with a body field whose request has a
    /// `google.protobuf.FieldMask update_mask`, fill the mask from the
    /// body's keys when the client sends none (AIP-134). Default true.
    #[schemars(extend("default" = true))]
    pub patch_update_mask: Option<bool>,
    /// The HTTP status of a successful REST call: 200, 201, 202 or 204.
    /// Default: by convention (see `transcoding.conventional_status`).
    pub status: Option<u16>,
    /// The reply field a `201 Created` answer's `Location` is built from,
    /// through the service's GET route that binds it. Default `name`, else
    /// the field the service's GET route binds.
    pub location_field: Option<String>,
}

/// Per-method overrides.
#[derive(Debug, Clone, Default)]
pub struct MethodOverrides {
    /// Deadline. Default: the backend's.
    pub timeout: Option<Duration>,
    /// Overrides the global policy for query parameters.
    pub unknown_query_parameters: Option<UnknownFields>,
    /// Overrides the global policy for JSON fields.
    pub unknown_json_fields: Option<UnknownFields>,
    /// The method may run twice. Default (`None`): its `idempotency_level`.
    pub idempotent: Option<bool>,
    /// `Cache-Control` (and an `ETag`) of its Connect GET answers. Default none.
    pub cache_control: Option<http::HeaderValue>,
    /// Overrides `validation:` for this method.
    pub validation: Option<super::validation::ValidationSection>,
    /// Fill a PATCH's empty `update_mask` from the body's keys. Default (`None`): true.
    pub patch_update_mask: Option<bool>,
    /// The success status. Default (`None`): by convention.
    pub status: Option<http::StatusCode>,
    /// The reply field `Location` is built from. Default (`None`): `name`,
    /// else the field the service's GET route binds.
    pub location_field: Option<String>,
}

/// Validates `methods:`, keyed by `package.Service.Method`.
pub(super) fn methods(
    raw: BTreeMap<String, MethodSection>,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<HashMap<String, MethodOverrides>> {
    let mut methods = HashMap::new();
    for (name, m) in raw {
        // Accept the gRPC path form too: package.Service/Method.
        let full = name.trim_start_matches('/').replace('/', ".");
        if full.split('.').count() < 2 || full.split('.').any(str::is_empty) {
            bail!(err(
                &format!("methods.{name}"),
                "expected a method name like package.Service.Method".into()
            ));
        }
        let cache_control = m
            .cache_control
            .map(|v| {
                http::HeaderValue::from_str(&v).map_err(|_| {
                    err(
                        &format!("methods.{name}.cache_control"),
                        format!("{v:?} is not a header value"),
                    )
                })
            })
            .transpose()?;
        let status = match m.status {
            None => None,
            Some(code @ (200 | 201 | 202 | 204)) => http::StatusCode::from_u16(code).ok(),
            Some(code) => bail!(err(
                &format!("methods.{name}.status"),
                format!(
                    "{code} is not a success status the gateway answers with: use 200, 201, 202 or 204"
                )
            )),
        };
        methods.insert(
            full,
            MethodOverrides {
                cache_control,
                timeout: m.timeout.map(NonZeroDuration::get),
                unknown_query_parameters: m.unknown_query_parameters,
                unknown_json_fields: m.unknown_json_fields,
                idempotent: m.idempotent,
                validation: m.validation,
                // Only `false` says anything: absent and `true` are the default.
                patch_update_mask: m.patch_update_mask.filter(|on| !on),
                status,
                location_field: m.location_field,
            },
        );
    }
    Ok(methods)
}
