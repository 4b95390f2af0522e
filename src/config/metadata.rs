//! `metadata:`: which request headers reach backends as gRPC metadata, and
//! the names no list may forward.

use anyhow::bail;
use http::HeaderName;
use serde::Deserialize;

use super::auth;

/// `metadata:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataSection {
    /// Request headers forwarded to backends as gRPC metadata under the same name.
    #[serde(default)]
    pub forward_request_headers: Vec<String>,
    /// Append to a client's `X-Forwarded-For` rather than replace it.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Forward a client's `Authorization` on routes the gateway does not
    /// authenticate.
    #[schemars(extend("default" = true))]
    pub forward_authorization: Option<bool>,
    /// Set `X-Forwarded-For` and `X-Forwarded-Host` for backends.
    #[schemars(extend("default" = true))]
    pub forwarded: Option<bool>,
}

/// Header ⇄ metadata forwarding.
#[derive(Debug, Clone)]
pub struct MetadataOptions {
    /// Request headers forwarded as metadata of the same name (besides
    /// `Grpc-Metadata-*`). Default none.
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
    /// Set `X-Forwarded-For` (the client's address) and `X-Forwarded-Host`
    /// on calls to backends. Default true.
    pub forwarded: bool,
    /// Forward `X-Request-Id` (`server.request_id`). Default true.
    pub request_id: bool,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        Self {
            forward_request_headers: Vec::new(),
            trust_forwarded_for: false,
            forward_authorization: true,
            forwarded: true,
            request_id: true,
        }
    }
}

/// Whether gRPC or HTTP/2 owns this name, so it must not be copied.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("grpc-")
        || name.starts_with(':')
        || matches!(
            name,
            "content-type"
                | "content-length"
                | "te"
                | "host"
                | "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "upgrade"
                | "trailer"
                | "proxy-connection"
                | "user-agent"
                // HTTP's own response headers, set by the backend's server, not metadata.
                | "date"
                | "server"
        )
}

impl MetadataSection {
    /// The options; `auth` tells which headers carry checked credentials.
    pub(super) fn validate(
        self,
        auth: &auth::AuthConfig,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<MetadataOptions> {
        let d = MetadataOptions::default();
        let forward_request_headers = self
            .forward_request_headers
            .iter()
            .map(|h| {
                let key = "metadata.forward_request_headers";
                let name = HeaderName::try_from(h.to_ascii_lowercase())
                    .map_err(|_| err(key, format!("{h:?} is not a valid header name")))?;
                if is_reserved(name.as_str()) {
                    return Err(err(
                        key,
                        format!("{h:?} is reserved by HTTP or gRPC and cannot be forwarded"),
                    ));
                }
                Ok(name)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        check_credential_headers(&forward_request_headers, auth, err)?;
        Ok(MetadataOptions {
            forward_request_headers,
            trust_forwarded_for: self.trust_forwarded_for,
            forward_authorization: self
                .forward_authorization
                .unwrap_or(d.forward_authorization),
            forwarded: self.forwarded.unwrap_or(d.forwarded),
            // Set from `server.request_id` by the caller.
            request_id: d.request_id,
        })
    }
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
