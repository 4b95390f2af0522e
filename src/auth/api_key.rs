//! API keys, configured by SHA-256 hash so no key sits in the config in clear.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::auth::{ApiKeysConfig, Location};

/// A key that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its configured name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its rate-limit key, made once.
    pub caller: Arc<str>,
}

/// The configured keys, by hash.
#[derive(Debug)]
pub struct ApiKeys {
    /// Where the key is read from.
    pub location: Location,
    by_hash: HashMap<[u8; 32], Arc<ApiKey>>,
}

impl ApiKeys {
    /// Indexes the configured keys.
    pub fn new(config: &ApiKeysConfig) -> Self {
        let by_hash = config
            .keys
            .iter()
            .map(|k| {
                (
                    k.sha256,
                    Arc::new(ApiKey {
                        name: k.name.clone(),
                        scopes: k.scopes.clone(),
                        caller: format!("key:{}", k.name).into(),
                    }),
                )
            })
            .collect();
        Self {
            location: config.location.clone(),
            by_hash,
        }
    }

    /// The key's entry, if the presented key is one of ours. Looking up the
    /// digest rather than comparing keys leaks nothing useful through timing.
    pub fn check(&self, presented: &str) -> Option<&Arc<ApiKey>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.by_hash.get(&digest)
    }
}

/// Hex SHA-256 of a key, as `gateway.yaml` wants it.
pub fn hash_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
