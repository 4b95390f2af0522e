//! Minting tokens for local development (`protogate token`).
//!
//! Signs with an HMAC secret or a private key in PEM; never used on the
//! request path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

/// What to put in a token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// Signing algorithm.
    pub algorithm: Algorithm,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `sub`.
    pub subject: String,
    /// `scope`, space-separated.
    pub scope: Option<String>,
    /// Lifetime from now.
    pub ttl: Duration,
    /// `kid` header.
    pub key_id: Option<String>,
    /// Extra claims; they override the ones above.
    pub claims: Map<String, Value>,
}

/// Signing material.
pub enum SigningKey {
    /// An HMAC secret.
    Secret(Vec<u8>),
    /// A private key in PEM.
    Pem(String),
}

/// Signs a token.
///
/// # Errors
/// A key that does not fit the algorithm.
pub fn mint(spec: &TokenSpec, key: &SigningKey) -> anyhow::Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = Map::new();
    claims.insert("iss".into(), spec.issuer.clone().into());
    claims.insert("aud".into(), spec.audience.clone().into());
    claims.insert("sub".into(), spec.subject.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + spec.ttl.as_secs()).into());
    if let Some(scope) = &spec.scope {
        claims.insert("scope".into(), scope.clone().into());
    }
    // Extra claims last, so they can override the defaults (e.g. an `exp` in the past).
    claims.extend(spec.claims.clone());
    let encoding = match key {
        SigningKey::Secret(secret) => EncodingKey::from_secret(secret),
        SigningKey::Pem(pem) => match spec.algorithm {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => anyhow::bail!("HMAC algorithms sign with --secret"),
        }
        .with_context(|| format!("the private key does not fit {:?}", spec.algorithm))?,
    };
    let mut header = Header::new(spec.algorithm);
    header.kid = spec.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &encoding).context("cannot sign the token")
}
