//! JWT verification for one provider: issuer, audiences, algorithms, keys.
//!
//! A verified token is remembered (up to [`CACHE_TOKENS`] per provider, each
//! for at most [`CACHE_MAX_AGE`] and never past its `exp`), so a client
//! that sends the same token with every call pays for one signature check,
//! not one per call; a cached answer is what verifying again would give,
//! except that a key withdrawn from a remote JWKS stops counting only when
//! the entry ages out. Only tokens that verified are remembered.
//!
//! Keys come from a secret, a PEM, a JWKS file, or a remote JWKS
//! ([`super::jwks::RemoteJwks`]). The algorithm allowlist is the provider's,
//! never the token's: `alg: none` and HMAC-with-a-public-key tokens fail
//! before any key is used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::jwks::RemoteJwks;
use super::keys::KeySet;
use crate::config::auth::{JwtProviderConfig, KeySource, Location};

/// Verified claims.
pub type Claims = Map<String, Value>;

/// Verified tokens remembered per provider.
pub const CACHE_TOKENS: usize = 4096;
/// How long a verified token is remembered at most.
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(300);

/// A verified token: its claims and the caller key rate limits count it by.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its claims.
    pub claims: Arc<Claims>,
    /// `jwt:<provider>:<sub>`, when it has a subject.
    pub caller: Option<Arc<str>>,
}

#[derive(Clone)]
pub(super) struct Cached {
    pub(super) verified: Verified,
    /// Unix seconds after which it has expired (its `exp` plus the leeway).
    pub(super) expires: u64,
    pub(super) stored: tokio::time::Instant,
}

/// A provider ready to verify tokens.
pub struct Provider {
    /// Its name.
    pub name: Arc<str>,
    /// Required `iss`.
    pub issuer: String,
    /// Where its token is read from.
    pub location: Location,
    max_token_bytes: usize,
    /// One validation per allowed algorithm: jsonwebtoken wants every
    /// algorithm of a validation to fit the key, and a JWKS may mix families.
    validations: HashMap<Algorithm, Validation>,
    keys: Keys,
    leeway: u64,
    pub(super) verified: quick_cache::sync::Cache<String, Cached>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

enum Keys {
    /// One key for every token.
    Single(DecodingKey),
    /// Keys by `kid`, plus those without one.
    Set(KeySet),
    /// A remote JWKS.
    Remote(RemoteJwks),
}

/// Why a token was refused; the text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

impl Provider {
    /// Builds a provider; remote JWKS are fetched once now and refreshed in the background.
    ///
    /// # Errors
    /// Keys that do not parse.
    pub async fn build(config: &JwtProviderConfig) -> anyhow::Result<Self> {
        let key = format!("auth.jwt.{}", config.name);
        let family_pem = |pem: &str| -> anyhow::Result<DecodingKey> {
            let first = config
                .algorithms
                .first()
                .copied()
                .unwrap_or(Algorithm::RS256);
            let decoded = match first {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem.as_bytes()),
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                _ => anyhow::bail!("{key}: a PEM key needs a public-key algorithm"),
            };
            decoded.map_err(|e| {
                anyhow::anyhow!("{key}: cannot read the public key for {first:?}: {e}")
            })
        };
        let keys = match &config.keys {
            KeySource::Secret(secret) => Keys::Single(DecodingKey::from_secret(secret)),
            KeySource::Pem(pem) => Keys::Single(family_pem(pem)?),
            KeySource::JwksFile(text) => {
                let set = KeySet::parse(text, &key)?;
                if set.is_empty() {
                    anyhow::bail!("{key}.jwks_file: no usable keys");
                }
                Keys::Set(set)
            }
            KeySource::JwksUrl {
                url,
                refresh,
                min_refresh,
            } => Keys::Remote(
                RemoteJwks::start(config.name.clone(), url.clone(), *refresh, *min_refresh).await?,
            ),
        };
        let validations = config
            .algorithms
            .iter()
            .map(|&alg| {
                let mut validation = Validation::new(alg);
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&config.audiences);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                validation.leeway = config.clock_skew.as_secs();
                validation.validate_nbf = true;
                (alg, validation)
            })
            .collect();
        Ok(Self {
            name: config.name.as_str().into(),
            issuer: config.issuer.clone(),
            location: config.location.clone(),
            max_token_bytes: config.max_token_bytes,
            validations,
            keys,
            leeway: config.clock_skew.as_secs(),
            verified: quick_cache::sync::Cache::new(CACHE_TOKENS),
        })
    }

    /// Longest accepted token.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Verifies a token and returns its claims.
    ///
    /// # Errors
    /// A [`TokenError`] saying what is wrong, without key material.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError("token too large".to_owned()));
        }
        let now = unix_now();
        if let Some(hit) = self.verified.get(token) {
            if now <= hit.expires && hit.stored.elapsed() < CACHE_MAX_AGE {
                return Ok(hit.verified);
            }
            self.verified.remove(token);
        }
        let claims = self.check_signature_and_claims(token).await?;
        let caller = claims
            .get("sub")
            .and_then(Value::as_str)
            .map(|sub| Arc::from(format!("jwt:{}:{sub}", self.name)));
        let verified = Verified {
            claims: Arc::new(claims),
            caller,
        };
        // `exp` is required, so every verified token has one.
        if let Some(exp) = verified.claims.get("exp").and_then(Value::as_f64) {
            self.verified.insert(
                token.to_owned(),
                Cached {
                    verified: verified.clone(),
                    expires: (exp.max(0.0) as u64).saturating_add(self.leeway),
                    stored: tokio::time::Instant::now(),
                },
            );
        }
        Ok(verified)
    }

    async fn check_signature_and_claims(&self, token: &str) -> Result<Claims, TokenError> {
        let bad = |why: &str| TokenError(why.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed token"))?;
        let validation = self
            .validations
            .get(&header.alg)
            .ok_or_else(|| bad("token algorithm not allowed"))?;
        // RFC 7515 4.1.11: extensions we do not understand must not be ignored.
        if header.crit.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(bad("token has critical header extensions"));
        }
        let found;
        let key = match &self.keys {
            Keys::Single(key) => key,
            Keys::Set(set) => {
                let (key, alg) = set
                    .find(header.kid.as_deref())
                    .ok_or_else(|| bad("unknown signing key"))?;
                if alg.is_some_and(|a| a != header.alg) {
                    return Err(bad("token algorithm does not match its key"));
                }
                key
            }
            Keys::Remote(remote) => {
                let (key, alg) = remote
                    .find(header.kid.as_deref())
                    .await
                    .ok_or_else(|| bad("unknown signing key"))?;
                if alg.is_some_and(|a| a != header.alg) {
                    return Err(bad("token algorithm does not match its key"));
                }
                found = key;
                &found
            }
        };
        match jsonwebtoken::decode::<Claims>(token, key, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(bad(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::ImmatureSignature => "token not yet valid",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::MissingRequiredClaim(_) => {
                    "token lacks a required claim (exp, iss, aud)"
                }
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::UnsupportedAlgorithm => "token algorithm not allowed",
                _ => "malformed token",
            })),
        }
    }
}

/// Seconds since the Unix epoch, as `exp` counts them.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
