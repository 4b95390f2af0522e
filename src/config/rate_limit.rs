//! `rate_limit:`: token buckets per client address and per caller, kept
//! by each replica or shared by all of them in Redis.

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::value::{NonZeroDuration, Positive};

/// `rate_limit:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Anonymous calls, per client address.
    pub by_address: Option<RateSection>,
    /// Authenticated calls, per JWT subject or API key.
    pub by_caller: Option<RateSection>,
    /// Where the buckets are kept: by each replica (the default), or in
    /// Redis, shared by every replica.
    pub store: Option<StoreSection>,
    /// What a check does when the store does not answer in time.
    #[schemars(extend("default" = "local"))]
    pub on_store_error: Option<OnStoreError>,
}

/// `rate_limit.store:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Buckets in Redis: one atomic script call per check.
    pub redis: RedisSection,
}

/// `rate_limit.store.redis:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Environment variable holding the password (`AUTH`), kept out of the file.
    pub password_env: Option<String>,
    /// Prefix of the bucket keys, so several gateways can share one Redis.
    #[schemars(extend("default" = "protogate:rl:"))]
    pub key_prefix: Option<String>,
    /// Longest a check waits for Redis before `on_store_error` decides.
    #[schemars(extend("default" = "50ms"))]
    pub timeout: Option<NonZeroDuration>,
}

/// What a rate-limit check does when its store fails or is too slow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Let the request through unlimited.
    Allow,
    /// Refuse the request (503): no request passes unchecked.
    Deny,
    /// Check the replica's own buckets instead (the default): each replica
    /// then enforces the whole limit by itself until the store is back.
    #[default]
    Local,
}

/// One token bucket as written: `requests` per `per`, at most `burst` at once.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateSection {
    /// Requests per period.
    pub requests: Positive<u32>,
    /// The period.
    pub per: NonZeroDuration,
    /// Requests allowed at once.
    pub burst: Option<Positive<u32>>,
}

/// Token-bucket rate limits.
#[derive(Debug, Clone, Default)]
pub struct RateLimitOptions {
    /// Anonymous calls, per client address. Default none.
    pub by_address: Option<RateOptions>,
    /// Authenticated calls, per JWT subject or API key. Default none.
    pub by_caller: Option<RateOptions>,
    /// Buckets shared in Redis. Default none: each replica keeps its own.
    pub store: Option<RedisStore>,
    /// What a check does when the store fails. Default [`OnStoreError::Local`].
    pub on_store_error: OnStoreError,
}

/// Default prefix of the bucket keys in Redis.
pub const DEFAULT_KEY_PREFIX: &str = "protogate:rl:";
/// Default deadline of one Redis check.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(50);

/// Buckets kept in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    /// The server's URL.
    pub url: String,
    /// The password, read from the environment at load. Default none.
    pub password: Option<String>,
    /// Prefix of every key. Default `protogate:rl:`.
    pub key_prefix: String,
    /// Longest a check waits. Default 50ms.
    pub timeout: Duration,
}

/// One bucket's size and refill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateOptions {
    /// Requests per `per`.
    pub requests: NonZeroU32,
    /// The period.
    pub per: Duration,
    /// Requests allowed at once. Default `requests`.
    pub burst: NonZeroU32,
}

impl RateLimitSection {
    /// Checks the section.
    pub(super) fn validate(
        self,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<RateLimitOptions> {
        let store = self.store.map(|s| s.redis.validate(err)).transpose()?;
        Ok(RateLimitOptions {
            by_address: self.by_address.map(Into::into),
            by_caller: self.by_caller.map(Into::into),
            store,
            on_store_error: self.on_store_error.unwrap_or_default(),
        })
    }
}

impl RedisSection {
    fn validate(self, err: &impl Fn(&str, String) -> anyhow::Error) -> anyhow::Result<RedisStore> {
        use redis::IntoConnectionInfo as _;
        let key = "rate_limit.store.redis";
        if !self.url.starts_with("redis://") {
            bail!(err(
                &format!("{key}.url"),
                format!("{:?} must look like redis://host:port", self.url)
            ));
        }
        if let Err(e) = self.url.as_str().into_connection_info() {
            bail!(err(&format!("{key}.url"), format!("{:?}: {e}", self.url)));
        }
        let password = match self.password_env {
            Some(var) => Some(std::env::var(&var).map_err(|_| {
                err(
                    &format!("{key}.password_env"),
                    format!("environment variable {var} is not set"),
                )
            })?),
            None => None,
        };
        Ok(RedisStore {
            url: self.url,
            password,
            key_prefix: self
                .key_prefix
                .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned()),
            timeout: self
                .timeout
                .map_or(DEFAULT_STORE_TIMEOUT, NonZeroDuration::get),
        })
    }
}

impl From<RateSection> for RateOptions {
    fn from(r: RateSection) -> Self {
        let requests = nonzero(r.requests);
        Self {
            requests,
            per: r.per.get(),
            burst: r.burst.map_or(requests, nonzero),
        }
    }
}

fn nonzero(n: Positive<u32>) -> NonZeroU32 {
    NonZeroU32::new(n.get()).expect("a Positive is above zero")
}
