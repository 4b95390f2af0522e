//! `auth:` of `gateway.yaml`: the serde mirror and its validated form.
//!
//! Keys and secrets are read here, once, at startup; verifying requests is
//! the `auth` module's job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use serde::Deserialize;

/// `auth:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// JWT providers by name.
    #[serde(default)]
    pub jwt: BTreeMap<String, JwtSection>,
    /// API keys.
    pub api_keys: Option<ApiKeysSection>,
    /// The policy for routes no rule matches.
    pub default: Option<RuleBody>,
    /// Overrides by service, method or route.
    #[serde(default)]
    pub rules: Vec<RuleSection>,
    /// Whether `/healthz`, `/openapi.*` and `/docs` need credentials too.
    #[serde(default)]
    pub protect_gateway_endpoints: bool,
    /// Identity forwarded to backends.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub forward: ForwardSection,
}

/// `auth.jwt.<name>:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values; at least one.
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<String>,
    /// HMAC secret, inline.
    pub secret: Option<String>,
    /// HMAC secret from an environment variable.
    pub secret_env: Option<String>,
    /// A public key in PEM, inline.
    pub public_key_pem: Option<String>,
    /// A public key in PEM, from a file.
    pub public_key_file: Option<PathBuf>,
    /// A JWKS document from a file.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS document fetched over HTTP(S) and cached.
    pub jwks_url: Option<String>,
    /// How often a remote JWKS is refetched when it has no `Cache-Control`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<super::value::DurationText>")]
    #[schemars(extend("default" = "5m"))]
    pub jwks_refresh: Option<Duration>,
    /// Shortest gap between refetches for an unknown `kid`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<super::value::DurationText>")]
    #[schemars(extend("default" = "30s"))]
    pub jwks_min_refresh: Option<Duration>,
    /// Allowed clock difference for `exp` / `nbf`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<super::value::DurationText>")]
    #[schemars(extend("default" = "1m"))]
    pub clock_skew: Option<Duration>,
    /// Where the token is read from.
    #[serde(default)]
    #[schemars(extend("default" = { "header": "authorization" }))]
    pub from: Option<LocationSection>,
    /// Longest accepted token.
    #[schemars(extend("default" = 8192))]
    pub max_token_bytes: Option<usize>,
}

/// Where a credential is read from: exactly one key.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationSection {
    /// A header; `Authorization` means its `Bearer` token.
    pub header: Option<String>,
    /// A cookie.
    pub cookie: Option<String>,
    /// A query parameter.
    pub query: Option<String>,
}

/// `auth.api_keys:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysSection {
    /// Where the key is read from; default header `x-api-key`.
    #[schemars(extend("default" = { "header": "x-api-key" }))]
    pub from: Option<LocationSection>,
    /// Keys inline.
    #[serde(default)]
    pub keys: Vec<ApiKeySection>,
    /// Keys from a YAML file holding a list like `keys`.
    pub file: Option<PathBuf>,
}

/// One API key, by hash.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    /// A name for logs and forwarding.
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// Scopes the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// What a rule requires.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    /// No credentials needed.
    #[serde(default)]
    pub public: bool,
    /// Accepted credentials: JWT provider names and/or `api_key`; empty = any configured.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Scopes that must all be granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims that must hold one of the listed values.
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
}

/// One entry of `auth.rules`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Full service name.
    pub service: Option<String>,
    /// Full method name, `package.Service.Method`.
    pub method: Option<String>,
    /// A binding: `"GET /v1/users/{id}"`, or a template alone for any method.
    pub route: Option<String>,
    /// The requirement.
    #[serde(flatten)]
    pub body: RuleBody,
}

/// `auth.forward:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardSection {
    /// Claim name → metadata name.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Metadata name for the whole verified payload as base64url JSON.
    pub payload: Option<String>,
    /// Metadata name for the API key's name.
    pub api_key_name: Option<String>,
    /// Forward the inbound credential (token or key) itself.
    #[serde(default)]
    pub credentials: bool,
}

/// Where a credential is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A header's whole value (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

/// Validated `auth:`.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// JWT providers in name order.
    pub jwt: Vec<JwtProviderConfig>,
    /// API keys, when configured.
    pub api_keys: Option<ApiKeysConfig>,
    /// The policy for routes no rule matches. Default: any configured credential when
    /// any is configured, else public.
    pub default: RuleBody,
    /// Overrides.
    pub rules: Vec<Rule>,
    /// Whether gateway endpoints need credentials.
    pub protect_gateway_endpoints: bool,
    /// Forwarding to backends.
    pub forward: ForwardConfig,
}

/// Default allowed clock difference for `exp` and `nbf`.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Default longest accepted token.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default refetch period of a remote JWKS without `Cache-Control`.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// Default shortest gap between fetches of a remote JWKS.
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

/// Validated JWT provider.
#[derive(Debug, Clone)]
pub struct JwtProviderConfig {
    /// Its name.
    pub name: String,
    /// Required `iss`.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Where keys come from.
    pub keys: KeySource,
    /// Clock skew. Default 60s.
    pub clock_skew: Duration,
    /// Token location. Default Authorization Bearer.
    pub location: Location,
    /// Longest token. Default 8 KiB.
    pub max_token_bytes: usize,
}

/// Where a provider's verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// An HMAC secret.
    Secret(Vec<u8>),
    /// A public key in PEM.
    Pem(String),
    /// A JWKS document read at startup.
    JwksFile(String),
    /// A JWKS document fetched and cached.
    JwksUrl {
        /// The URL.
        url: String,
        /// Refresh period without `Cache-Control`. Default 5m.
        refresh: Duration,
        /// Shortest gap between fetches. Default 30s.
        min_refresh: Duration,
    },
}

/// Validated API keys.
#[derive(Debug, Clone)]
pub struct ApiKeysConfig {
    /// Where the key is read from.
    pub location: Location,
    /// The keys.
    pub keys: Vec<ApiKeyEntry>,
}

/// One API key.
#[derive(Debug, Clone)]
pub struct ApiKeyEntry {
    /// Its name.
    pub name: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTarget {
    /// A service.
    Service(String),
    /// A method.
    Method(String),
    /// A binding: optional HTTP method and a template as written.
    Route {
        /// HTTP method in upper case, or any method if absent.
        method: Option<String>,
        /// The path template as written.
        template: String,
    },
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What it matches.
    pub target: RuleTarget,
    /// What it requires.
    pub body: RuleBody,
    /// Its key, for messages.
    pub key: String,
}

/// Validated forwarding.
#[derive(Debug, Clone, Default)]
pub struct ForwardConfig {
    /// Claim → metadata name.
    pub claims: Vec<(String, http::HeaderName)>,
    /// Metadata for the whole payload.
    pub payload: Option<http::HeaderName>,
    /// Metadata for the API key name.
    pub api_key_name: Option<http::HeaderName>,
    /// Forward the credential itself.
    pub credentials: bool,
}

/// The name rules use for API keys in `allow`.
pub const API_KEY: &str = "api_key";

/// Validates `auth:`; `base` anchors relative paths; `err(key, msg)` builds errors.
pub fn validate(
    raw: AuthSection,
    base: &Path,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<AuthConfig> {
    let anchor = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let mut jwt = Vec::new();
    for (name, p) in raw.jwt {
        let key = format!("auth.jwt.{name}");
        if name == API_KEY {
            return Err(err(&key, format!("{API_KEY:?} is reserved for API keys")));
        }
        if p.audiences.is_empty() {
            return Err(err(
                &format!("{key}.audiences"),
                "list at least one audience".into(),
            ));
        }
        if p.algorithms.is_empty() {
            return Err(err(
                &format!("{key}.algorithms"),
                "list at least one algorithm".into(),
            ));
        }
        let mut algorithms = Vec::new();
        for a in &p.algorithms {
            let alg: jsonwebtoken::Algorithm = a.parse().map_err(|_| {
                err(
                    &format!("{key}.algorithms"),
                    format!("{a:?} is not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"),
                )
            })?;
            algorithms.push(alg);
        }
        let is_hmac = |a: &jsonwebtoken::Algorithm| {
            matches!(
                a,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            )
        };
        let hmac = algorithms.iter().any(is_hmac);
        if hmac && !algorithms.iter().all(is_hmac) {
            // One provider, one key family: mixing them is how algorithm confusion starts.
            return Err(err(
                &format!("{key}.algorithms"),
                "do not mix HMAC and public-key algorithms in one provider".into(),
            ));
        }
        let sources = [
            p.secret.is_some(),
            p.secret_env.is_some(),
            p.public_key_pem.is_some(),
            p.public_key_file.is_some(),
            p.jwks_file.is_some(),
            p.jwks_url.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(err(&key, "set exactly one of secret, secret_env, public_key_pem, public_key_file, jwks_file, jwks_url".into()));
        }
        let keys = if let Some(secret) = p.secret {
            KeySource::Secret(secret.into_bytes())
        } else if let Some(var) = p.secret_env {
            let secret = std::env::var(&var).map_err(|_| {
                err(
                    &format!("{key}.secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            KeySource::Secret(secret.into_bytes())
        } else if let Some(pem) = p.public_key_pem {
            KeySource::Pem(pem)
        } else if let Some(file) = p.public_key_file {
            let path = anchor(&file);
            KeySource::Pem(std::fs::read_to_string(&path).map_err(|e| {
                err(
                    &format!("{key}.public_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?)
        } else if let Some(file) = p.jwks_file {
            let path = anchor(&file);
            KeySource::JwksFile(std::fs::read_to_string(&path).map_err(|e| {
                err(
                    &format!("{key}.jwks_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?)
        } else if let Some(url) = p.jwks_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(err(
                    &format!("{key}.jwks_url"),
                    format!("{url:?} must be an http(s) URL"),
                ));
            }
            KeySource::JwksUrl {
                url,
                refresh: p.jwks_refresh.unwrap_or(DEFAULT_JWKS_REFRESH),
                min_refresh: p.jwks_min_refresh.unwrap_or(DEFAULT_JWKS_MIN_REFRESH),
            }
        } else {
            return Err(err(&key, "no key source".into()));
        };
        if matches!(keys, KeySource::Secret(_)) != hmac {
            return Err(err(
                &key,
                "HMAC algorithms need a secret, and a secret only works with HMAC algorithms"
                    .into(),
            ));
        }
        jwt.push(JwtProviderConfig {
            issuer: p.issuer,
            audiences: p.audiences,
            algorithms,
            keys,
            clock_skew: p.clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW),
            location: location(p.from, Location::Bearer, &format!("{key}.from"), err)?,
            max_token_bytes: p.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES),
            name,
        });
    }

    let api_keys = match raw.api_keys {
        None => None,
        Some(a) => {
            let mut entries = a.keys;
            if let Some(file) = &a.file {
                let path = anchor(file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    err(
                        "auth.api_keys.file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let more: Vec<ApiKeySection> = serde_norway::from_str(&text)
                    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
                entries.extend(more);
            }
            let mut keys = Vec::new();
            for (i, k) in entries.into_iter().enumerate() {
                let hex = k.sha256.trim().trim_start_matches("sha256:");
                let sha256 = decode_sha256(hex).ok_or_else(|| {
                    err(&format!("auth.api_keys.keys[{i}].sha256"), format!("key {:?}: expected 64 hex digits of a SHA-256 hash (echo -n KEY | sha256sum)", k.name))
                })?;
                keys.push(ApiKeyEntry {
                    name: k.name,
                    sha256,
                    scopes: k.scopes,
                });
            }
            Some(ApiKeysConfig {
                location: location(
                    a.from,
                    Location::Header("x-api-key".into()),
                    "auth.api_keys.from",
                    err,
                )?,
                keys,
            })
        }
    };

    let known =
        |name: &str| name == API_KEY && api_keys.is_some() || jwt.iter().any(|p| p.name == name);
    let check_body = |body: &RuleBody, key: &str| -> anyhow::Result<()> {
        for name in &body.allow {
            if !known(name) {
                return Err(err(
                    &format!("{key}.allow"),
                    format!(
                        "{name:?} is neither a JWT provider nor {API_KEY:?} with api_keys configured"
                    ),
                ));
            }
        }
        if body.public
            && (!body.allow.is_empty() || !body.scopes.is_empty() || !body.claims.is_empty())
        {
            return Err(err(
                key,
                "a public rule cannot also require credentials, scopes or claims".into(),
            ));
        }
        Ok(())
    };
    let any_credentials = !jwt.is_empty() || api_keys.is_some();
    let default = match raw.default {
        Some(body) => {
            check_body(&body, "auth.default")?;
            body
        }
        None => RuleBody {
            public: !any_credentials,
            ..RuleBody::default()
        },
    };
    if !default.public && !any_credentials {
        return Err(err(
            "auth.default",
            "requires credentials, but no JWT provider or API key is configured".into(),
        ));
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = format!("auth.rules[{i}]");
        let target = match (r.service, r.method, r.route) {
            (Some(s), None, None) => RuleTarget::Service(s),
            (None, Some(m), None) => RuleTarget::Method(m.replace('/', ".")),
            (None, None, Some(route)) => match route.split_once(' ') {
                Some((m, t)) => RuleTarget::Route {
                    method: Some(m.to_ascii_uppercase()),
                    template: t.trim().to_owned(),
                },
                None => RuleTarget::Route {
                    method: None,
                    template: route,
                },
            },
            _ => {
                return Err(err(
                    &key,
                    "set exactly one of service, method, route".into(),
                ));
            }
        };
        check_body(&r.body, &key)?;
        rules.push(Rule {
            target,
            body: r.body,
            key,
        });
    }

    let header = |name: &str, key: &str| {
        http::HeaderName::try_from(name.to_ascii_lowercase())
            .map_err(|_| err(key, format!("{name:?} is not a valid header name")))
    };
    let mut claims = Vec::new();
    for (claim, target) in raw.forward.claims {
        claims.push((
            claim.clone(),
            header(&target, &format!("auth.forward.claims.{claim}"))?,
        ));
    }
    let forward = ForwardConfig {
        claims,
        payload: raw
            .forward
            .payload
            .as_deref()
            .map(|h| header(h, "auth.forward.payload"))
            .transpose()?,
        api_key_name: raw
            .forward
            .api_key_name
            .as_deref()
            .map(|h| header(h, "auth.forward.api_key_name"))
            .transpose()?,
        credentials: raw.forward.credentials,
    };

    Ok(AuthConfig {
        jwt,
        api_keys,
        default,
        rules,
        protect_gateway_endpoints: raw.protect_gateway_endpoints,
        forward,
    })
}

fn location(
    raw: Option<LocationSection>,
    default: Location,
    key: &str,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Location> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match (raw.header, raw.cookie, raw.query) {
        (Some(h), None, None) if h.eq_ignore_ascii_case("authorization") => Ok(Location::Bearer),
        (Some(h), None, None) => Ok(Location::Header(h.to_ascii_lowercase())),
        (None, Some(c), None) => Ok(Location::Cookie(c)),
        (None, None, Some(q)) => Ok(Location::Query(q)),
        _ => Err(err(key, "set exactly one of header, cookie, query".into())),
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
