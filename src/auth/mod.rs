//! Authentication and authorization at the edge, before a body is read.
//!
//! [`Authenticator::build`] turns `auth:` into one precomputed
//! [`Requirement`] per route (route rule, else method, else service, else
//! the default). [`Authenticator::authenticate`] checks the credentials a
//! request presents against its route's requirement and yields a
//! [`Principal`]; [`Authenticator::forward`] puts the verified identity into
//! the backend's metadata and removes anything a client sent under the same
//! names. Token checks live in [`jwt`], key checks in [`api_key`].

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod token;

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tonic::metadata::{MetadataMap, MetadataValue};

use self::api_key::{ApiKey, ApiKeys};
use self::jwt::{Claims, Provider};
use crate::config::auth::{API_KEY, AuthConfig, ForwardConfig, Location, RuleBody, RuleTarget};
use crate::http_rule::{Route, RouteTable};

/// Installs rustls' ring provider for outgoing TLS (JWKS over HTTPS); idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A credential a requirement accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    /// A JWT from the provider at this index.
    Jwt(usize),
    /// An API key.
    ApiKey,
}

/// What a route requires, resolved at startup.
#[derive(Debug, Clone, Default)]
pub struct Requirement {
    /// No credentials needed.
    pub public: bool,
    /// Accepted credentials, resolved at startup (never empty unless public).
    allow: Vec<Credential>,
    /// `allow` in words, for the error when none is presented.
    accepts: Arc<str>,
    /// Scopes that must all be granted.
    pub scopes: Vec<String>,
    claims: Vec<(String, Vec<String>)>,
}

impl Requirement {
    /// The accepted credentials in words (`a bearer token from dev`, ...).
    pub fn accepts(&self) -> &str {
        &self.accepts
    }

    /// Claims that must hold, each with its accepted values.
    pub fn claims(&self) -> &[(String, Vec<String>)] {
        &self.claims
    }
}

/// Who made the request, verified.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A verified token.
    Jwt {
        /// The provider that verified it.
        provider: Arc<str>,
        /// Its claims.
        claims: Arc<Claims>,
        /// Its rate-limit key (`jwt:<provider>:<sub>`), when it has a subject.
        caller: Option<Arc<str>>,
        /// The verified token, forwarded only with `auth.forward.credentials`.
        token: String,
    },
    /// A known API key.
    ApiKey {
        /// The key's entry.
        key: Arc<ApiKey>,
        /// The verified key, forwarded only with `auth.forward.credentials`.
        presented: String,
    },
}

/// Where `credential` ("a token", "an API key") of `source` (a provider's
/// name) is read, in words.
fn describe_location(location: &Location, credential: &str, source: &str) -> String {
    match location {
        Location::Bearer => format!("{credential} ({source}) as Authorization: Bearer"),
        Location::Header(h) => format!("{credential} ({source}) in header {h}"),
        Location::Cookie(c) => format!("{credential} ({source}) in cookie {c}"),
        Location::Query(q) => format!("{credential} ({source}) in query parameter {q}"),
    }
}

/// Why a request was refused. Messages name the problem, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential the route accepts was presented.
    #[error("missing credentials: this route accepts {accepts}")]
    Missing {
        /// `WWW-Authenticate` scheme to offer.
        bearer: bool,
        /// What the route accepts, e.g. "a bearer token (shop-dev)".
        accepts: Arc<str>,
    },
    /// A token was presented but does not verify.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// Why the token was rejected.
        reason: String,
    },
    /// An API key was presented but is not known.
    #[error("invalid API key")]
    InvalidApiKey,
    /// The credential is valid but lacks scopes.
    #[error("insufficient scope: requires {}", .scopes.join(" "))]
    InsufficientScope {
        /// Required scopes the credential was not granted.
        scopes: Vec<String>,
    },
    /// The credential is valid but a claim does not allow access.
    #[error("access denied: claim {claim:?} does not allow this operation")]
    ClaimMismatch {
        /// Name of the claim that did not allow access.
        claim: String,
    },
}

impl AuthError {
    /// Whether this is 403 (authenticated but not allowed) rather than 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Self::InsufficientScope { .. } | Self::ClaimMismatch { .. }
        )
    }

    /// The `WWW-Authenticate` value (RFC 6750 for bearer tokens).
    pub fn challenge(&self) -> String {
        const REALM: &str = "realm=\"protogate\"";
        match self {
            Self::Missing { bearer: true, .. } => format!("Bearer {REALM}"),
            Self::Missing { bearer: false, .. } | Self::InvalidApiKey => format!("ApiKey {REALM}"),
            Self::InvalidToken { reason } => {
                format!("Bearer {REALM}, error=\"invalid_token\", error_description=\"{reason}\"")
            }
            Self::InsufficientScope { scopes } => {
                format!(
                    "Bearer {REALM}, error=\"insufficient_scope\", scope=\"{}\"",
                    scopes.join(" ")
                )
            }
            Self::ClaimMismatch { .. } => format!("Bearer {REALM}, error=\"insufficient_scope\""),
        }
    }
}

/// The auth state of a loaded gateway.
#[derive(Debug)]
pub struct Authenticator {
    providers: Vec<Provider>,
    api_keys: Option<ApiKeys>,
    /// Each `auth.rules` entry's target and resolved requirement, in order.
    rules: Vec<(RuleTarget, Arc<Requirement>)>,
    /// `auth.default`, resolved.
    default: Arc<Requirement>,
    gateway_endpoints: Requirement,
    forward: ForwardConfig,
    /// Client headers that never reach a backend on an authenticated
    /// route: the names only the gateway sets (identity) and every header
    /// that carries credentials.
    withheld: Vec<HeaderName>,
    /// The same on a route the gateway does not authenticate: the client's
    /// `Authorization` may pass there, for a backend that checks it, unless
    /// `auth.forward.credentials` makes `authorization` mean "verified".
    withheld_public: Vec<HeaderName>,
    credential_query_params: Vec<String>,
}

impl Authenticator {
    /// Builds providers, keys and the per-route requirements.
    ///
    /// # Errors
    /// Keys that do not parse, or rules that match no route.
    pub async fn build(config: &AuthConfig, routes: &RouteTable) -> anyhow::Result<Self> {
        let mut providers = Vec::new();
        for p in &config.jwt {
            providers.push(Provider::build(p).await?);
        }
        let api_keys = config.api_keys.as_ref().map(ApiKeys::new);
        // Resolved once here: an empty `allow` means every configured credential.
        let every: Vec<Credential> = (0..providers.len())
            .map(Credential::Jwt)
            .chain(api_keys.as_ref().map(|_| Credential::ApiKey))
            .collect();
        let resolve = |body: &RuleBody| -> Requirement {
            let allow = if body.allow.is_empty() {
                every.clone()
            } else {
                body.allow
                    .iter()
                    .filter_map(|name| {
                        if name == API_KEY {
                            Some(Credential::ApiKey)
                        } else {
                            providers
                                .iter()
                                .position(|p| *p.name == **name)
                                .map(Credential::Jwt)
                        }
                    })
                    .collect()
            };
            let accepts = allow
                .iter()
                .filter_map(|c| match *c {
                    Credential::Jwt(i) => providers
                        .get(i)
                        .map(|p| describe_location(&p.location, "a token", &p.name)),
                    Credential::ApiKey => api_keys
                        .as_ref()
                        .map(|k| describe_location(&k.location, "an API key", API_KEY)),
                })
                .collect::<Vec<_>>()
                .join(" or ");
            Requirement {
                public: body.public,
                allow,
                accepts: accepts.into(),
                scopes: body.scopes.clone(),
                claims: body
                    .claims
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        };
        if let Some(unused) = config.rules.iter().find(|rule| {
            !routes
                .routes()
                .iter()
                .any(|r| rule_matches(&rule.target, r))
        }) {
            anyhow::bail!("{}: matches no route", unused.key);
        }
        let rules = config
            .rules
            .iter()
            .map(|rule| (rule.target.clone(), Arc::new(resolve(&rule.body))))
            .collect();
        let default = resolve(&config.default);
        let route_default = Arc::new(default.clone());
        let gateway_endpoints = if config.protect_gateway_endpoints {
            default
        } else {
            Requirement {
                public: true,
                ..Requirement::default()
            }
        };

        let mut targets: Vec<HeaderName> = config
            .forward
            .claims
            .iter()
            .map(|(_, h)| h.clone())
            .collect();
        targets.extend(config.forward.payload.clone());
        targets.extend(config.forward.api_key_name.clone());
        let mut credential_headers = vec![AUTHORIZATION];
        let mut credential_query_params = Vec::new();
        let locations = providers
            .iter()
            .map(|p| &p.location)
            .chain(api_keys.as_ref().map(|k| &k.location));
        for location in locations {
            match location {
                Location::Bearer => {}
                Location::Header(h) => {
                    credential_headers.extend(HeaderName::try_from(h.as_str()).ok())
                }
                Location::Cookie(_) => credential_headers.push(COOKIE),
                Location::Query(q) => credential_query_params.push(q.clone()),
            }
        }
        let mut withheld = targets;
        withheld.extend(credential_headers);
        let withheld_public = withheld
            .iter()
            .filter(|name| config.forward.credentials || **name != AUTHORIZATION)
            .cloned()
            .collect();
        Ok(Self {
            providers,
            api_keys,
            rules,
            default: route_default,
            gateway_endpoints,
            forward: config.forward.clone(),
            withheld,
            withheld_public,
            credential_query_params,
        })
    }

    /// The requirement of `route`: the first rule naming its route, else
    /// its method, else its service, else `auth.default`. Resolved when the
    /// gateway is built; requests read it from their route's plan.
    pub fn requirement(&self, route: &Route) -> Arc<Requirement> {
        let pick = |f: &dyn Fn(&RuleTarget) -> bool| self.rules.iter().find(|(t, _)| f(t));
        let method = route.method.full_name();
        let service = route.method.parent_service();
        pick(&|t| matches_route(t, route))
            .or_else(|| pick(&|t| matches!(t, RuleTarget::Method(m) if m == method)))
            .or_else(|| pick(&|t| matches!(t, RuleTarget::Service(s) if s == service.full_name())))
            .map_or_else(|| self.default.clone(), |(_, r)| r.clone())
    }

    /// The requirement of `/healthz`, `/openapi.*` and `/docs`.
    pub fn gateway_endpoints(&self) -> &Requirement {
        &self.gateway_endpoints
    }

    /// The client headers kept from the backend of a call by `principal`
    /// (`None`: a route the gateway does not authenticate). The metadata
    /// step leaves them out; [`Authenticator::forward`] then adds what the
    /// gateway vouches for.
    pub fn withheld(&self, principal: Option<&Principal>) -> &[HeaderName] {
        match principal {
            Some(_) => &self.withheld,
            None => &self.withheld_public,
        }
    }

    /// Query parameters that carry credentials, to keep out of message building.
    pub fn credential_query_params(&self) -> &[String] {
        &self.credential_query_params
    }

    /// The JWT providers, in config order.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The API keys, if configured.
    pub fn api_keys(&self) -> Option<&ApiKeys> {
        self.api_keys.as_ref()
    }

    /// The credentials a requirement accepts, as (JWT provider index | API key).
    pub fn accepted<'a>(
        &'a self,
        req: &'a Requirement,
    ) -> impl Iterator<Item = Result<&'a Provider, &'a ApiKeys>> + 'a {
        req.allow.iter().filter_map(move |c| match *c {
            Credential::Jwt(i) => self.providers.get(i).map(Ok),
            Credential::ApiKey => self.api_keys.as_ref().map(Err),
        })
    }

    /// Checks a request's credentials against `req`. `Ok(None)` for public routes.
    ///
    /// # Errors
    /// [`AuthError`]: 401 kinds for missing or invalid credentials, 403 kinds
    /// for valid credentials that lack scopes or claims.
    pub async fn authenticate(
        &self,
        req: &Requirement,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Principal>, AuthError> {
        if req.public {
            return Ok(None);
        }
        let mut invalid: Option<AuthError> = None;
        let mut denied: Option<AuthError> = None;
        let mut bearer = false;
        for &credential in &req.allow {
            let principal = match credential {
                Credential::Jwt(i) => {
                    let Some(provider) = self.providers.get(i) else {
                        continue;
                    };
                    bearer |= provider.location == Location::Bearer;
                    let Some(token) = extract(&provider.location, headers, query) else {
                        continue;
                    };
                    match provider.verify(&token).await {
                        Ok(verified) => Principal::Jwt {
                            provider: provider.name.clone(),
                            claims: verified.claims,
                            caller: verified.caller,
                            token: token.into_owned(),
                        },
                        Err(e) => {
                            // Prefer the complaint of the provider the token claims to come from.
                            if invalid.is_none()
                                || issuer_of(&token).as_deref() == Some(provider.issuer.as_str())
                            {
                                invalid = Some(AuthError::InvalidToken { reason: e.0 });
                            }
                            continue;
                        }
                    }
                }
                Credential::ApiKey => {
                    let Some(keys) = &self.api_keys else { continue };
                    let Some(presented) = extract(&keys.location, headers, query) else {
                        continue;
                    };
                    match keys.check(&presented) {
                        Some(key) => Principal::ApiKey {
                            key: key.clone(),
                            presented: presented.into_owned(),
                        },
                        None => {
                            invalid.get_or_insert(AuthError::InvalidApiKey);
                            continue;
                        }
                    }
                }
            };
            match authorize(req, &principal) {
                Ok(()) => return Ok(Some(principal)),
                Err(e) => {
                    denied.get_or_insert(e);
                }
            }
        }
        Err(denied.or(invalid).unwrap_or_else(|| AuthError::Missing {
            bearer,
            accepts: req.accepts.clone(),
        }))
    }

    /// Puts what the gateway vouches for into `metadata`, which holds none
    /// of the client's [`Authenticator::withheld`] headers: the verified
    /// credential (with `auth.forward.credentials`) and the identity
    /// (claims, payload, API key name) under the names the gateway sets.
    pub fn forward(&self, principal: Option<&Principal>, metadata: &mut MetadataMap) {
        let mut map = std::mem::take(metadata).into_headers();
        // Only the credential that was verified, never whatever else the client sent.
        if self.forward.credentials {
            let verified = match principal {
                Some(Principal::Jwt { token, .. }) => {
                    http::HeaderValue::from_str(&format!("Bearer {token}"))
                        .ok()
                        .map(|v| (AUTHORIZATION, v))
                }
                Some(Principal::ApiKey { presented, .. }) => {
                    let name = match self.api_keys.as_ref().map(|k| &k.location) {
                        Some(Location::Header(h)) => HeaderName::try_from(h.as_str()).ok(),
                        _ => Some(HeaderName::from_static("x-api-key")),
                    };
                    name.zip(http::HeaderValue::from_str(presented).ok())
                }
                None => None,
            };
            if let Some((name, value)) = verified {
                map.insert(name, value);
            }
        }
        *metadata = MetadataMap::from_headers(map);
        let Some(principal) = principal else { return };
        match principal {
            Principal::Jwt { claims, .. } => {
                for (claim, target) in &self.forward.claims {
                    let text = match claims.get(claim) {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => continue,
                    };
                    if let Ok(v) = MetadataValue::try_from(text.as_str()) {
                        metadata.insert(target_key(target), v);
                    }
                }
                if let Some(target) = &self.forward.payload
                    && let Ok(json) = serde_json::to_vec(&**claims)
                    && let Ok(v) = MetadataValue::try_from(URL_SAFE_NO_PAD.encode(json).as_str())
                {
                    metadata.insert(target_key(target), v);
                }
            }
            Principal::ApiKey { key, .. } => {
                if let Some(target) = &self.forward.api_key_name
                    && let Ok(v) = MetadataValue::try_from(key.name.as_str())
                {
                    metadata.insert(target_key(target), v);
                }
            }
        }
    }
}

fn target_key(name: &HeaderName) -> tonic::metadata::MetadataKey<tonic::metadata::Ascii> {
    tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
        .unwrap_or_else(|_| tonic::metadata::MetadataKey::from_static("x-invalid-forward-target"))
}

/// Whether a rule names this route at any level.
fn rule_matches(target: &RuleTarget, route: &Route) -> bool {
    match target {
        RuleTarget::Route { .. } => matches_route(target, route),
        RuleTarget::Method(m) => m == route.method.full_name(),
        RuleTarget::Service(s) => s == route.method.parent_service().full_name(),
    }
}

fn matches_route(target: &RuleTarget, route: &Route) -> bool {
    match target {
        RuleTarget::Route { method, template } => {
            template == &route.template.source
                && method
                    .as_deref()
                    .is_none_or(|m| m == route.http_method.to_string())
        }
        _ => false,
    }
}

/// The token's unverified `iss`, only to pick which provider's complaint to report.
fn issuer_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// Reads a credential from its location.
fn extract<'a>(
    location: &Location,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    match location {
        Location::Bearer => {
            let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| Cow::Borrowed(token.trim()))
        }
        Location::Header(name) => headers
            .get(name.as_str())?
            .to_str()
            .ok()
            .map(|v| Cow::Borrowed(v.trim())),
        Location::Cookie(name) => headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Cow::Borrowed(v))
            }),
        Location::Query(name) => query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            // Decoded names, as message building decodes them: `api%5Fkey` is `api_key`.
            (form_decode(k)?.as_ref() == name.as_str()).then(|| form_decode(v))?
        }),
    }
    .filter(|c| !c.is_empty())
}

/// One decoded query component (`+` is a space); `None` when not UTF-8.
fn form_decode(raw: &str) -> Option<Cow<'_, str>> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| Cow::Owned(c.into_owned()))
}

/// Removes credential parameters from a query string.
pub fn strip_query<'a>(query: Option<&'a str>, names: &[String]) -> Option<Cow<'a, str>> {
    let query = query?;
    if names.is_empty() {
        return Some(Cow::Borrowed(query));
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            // Compare decoded names, as message building will: `api%5Fkey` is `api_key`.
            let key = form_decode(key).unwrap_or(Cow::Borrowed(key));
            !names.iter().any(|n| n.as_str() == key.as_ref())
        })
        .collect();
    Some(Cow::Owned(kept.join("&")))
}

/// Checks scopes and claims of a verified principal.
fn authorize(req: &Requirement, principal: &Principal) -> Result<(), AuthError> {
    let granted: Vec<String> = match principal {
        Principal::Jwt { claims, .. } => scopes_of(claims),
        Principal::ApiKey { key, .. } => key.scopes.clone(),
    };
    let missing: Vec<String> = req
        .scopes
        .iter()
        .filter(|s| !granted.contains(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(AuthError::InsufficientScope { scopes: missing });
    }
    for (claim, allowed) in &req.claims {
        let ok = match principal {
            Principal::Jwt { claims, .. } => {
                claims.get(claim).is_some_and(|v| claim_matches(v, allowed))
            }
            Principal::ApiKey { .. } => false,
        };
        if !ok {
            return Err(AuthError::ClaimMismatch {
                claim: claim.clone(),
            });
        }
    }
    Ok(())
}

/// Scopes from `scope` (space-separated) or `scp` (array or string).
fn scopes_of(claims: &Claims) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(items)) => {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    out
}

fn claim_matches(value: &Value, allowed: &[String]) -> bool {
    match value {
        Value::String(s) => allowed.contains(s),
        Value::Array(items) => items.iter().any(|i| claim_matches(i, allowed)),
        Value::Null | Value::Object(_) => false,
        other => allowed.contains(&other.to_string()),
    }
}

#[cfg(test)]
mod tests;
