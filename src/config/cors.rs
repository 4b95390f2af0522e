//! `cors:`: cross-origin calls from browsers.

use std::time::Duration;

use anyhow::bail;
use http::HeaderName;
use serde::Deserialize;

use super::value::HeaderNameText;

/// Default preflight cache time.
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Default allowed methods.
pub const DEFAULT_CORS_METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::PATCH,
    http::Method::DELETE,
];
/// Default allowed request headers.
pub const DEFAULT_CORS_HEADERS: [HeaderName; 2] =
    [http::header::AUTHORIZATION, http::header::CONTENT_TYPE];

/// `cors:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    /// Origins allowed to call the API from a browser, or `["*"]`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Methods allowed in cross-origin calls.
    #[serde(default)]
    #[schemars(extend("default" = ["GET", "POST", "PUT", "PATCH", "DELETE"]))]
    pub allowed_methods: Vec<String>,
    /// Request headers allowed in cross-origin calls.
    #[serde(default)]
    #[schemars(extend("default" = ["authorization", "content-type"]))]
    pub allowed_headers: Vec<HeaderNameText>,
    /// Response headers scripts may read.
    #[serde(default)]
    pub expose_headers: Vec<HeaderNameText>,
    /// Allow cookies and credentials.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<super::value::DurationText>")]
    #[schemars(extend("default" = "1h"))]
    pub max_age: Option<Duration>,
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
    /// Response headers scripts may read besides the request id and a
    /// deprecated API's notices, which the CORS layer always exposes.
    /// Default none.
    pub expose_headers: Vec<HeaderName>,
    /// Send `Access-Control-Allow-Credentials: true`. Default false.
    pub allow_credentials: bool,
    /// Preflight cache time. Default 1h.
    pub max_age: Duration,
}

/// Validates `cors:`; no `allowed_origins` turns CORS off.
pub(super) fn cors(
    raw: CorsSection,
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
    let allowed_methods = if raw.allowed_methods.is_empty() {
        DEFAULT_CORS_METHODS.to_vec()
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
        DEFAULT_CORS_HEADERS.to_vec()
    } else {
        raw.allowed_headers.into_iter().map(Into::into).collect()
    };
    Ok(Some(CorsOptions {
        allowed_origins,
        allowed_methods,
        allowed_headers,
        expose_headers: raw.expose_headers.into_iter().map(Into::into).collect(),
        allow_credentials: raw.allow_credentials,
        max_age: raw.max_age.unwrap_or(DEFAULT_CORS_MAX_AGE),
    }))
}
