//! A JWKS document's keys, by `kid`: what a provider verifies with,
//! whether the document came from a file or from a remote JWKS (which
//! refetches and replaces it). Parsing and lookup only; no fetching, no
//! token checks.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

/// Keys from a JWKS document.
#[derive(Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    unnamed: Vec<(DecodingKey, Option<Algorithm>)>,
}

impl KeySet {
    /// Parses a JWKS document; keys that do not decode are skipped with a warning.
    ///
    /// # Errors
    /// When the document is not a JWKS.
    pub fn parse(text: &str, source: &str) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{source}: not a JWKS document: {e}"))?;
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => match &jwk.common.key_id {
                    Some(kid) => {
                        keys.by_kid.insert(kid.clone(), (key, alg));
                    }
                    None => keys.unnamed.push((key, alg)),
                },
                Err(e) => {
                    tracing::warn!(source, kid = ?jwk.common.key_id, error = %e, "skipping a JWKS key that does not decode")
                }
            }
        }
        Ok(keys)
    }

    /// The key for `kid`; without a kid, the only unnamed key.
    pub fn find(&self, kid: Option<&str>) -> Option<&(DecodingKey, Option<Algorithm>)> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None if self.unnamed.len() == 1 => self.unnamed.first(),
            None if self.unnamed.is_empty() && self.by_kid.len() == 1 => {
                self.by_kid.values().next()
            }
            None => None,
        }
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
