//! `rate_limit:`: token buckets per client address and per caller.

use std::num::NonZeroU32;
use std::time::Duration;

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
}

/// One bucket's size and refill.
#[derive(Debug, Clone)]
pub struct RateOptions {
    /// Requests per `per`.
    pub requests: NonZeroU32,
    /// The period.
    pub per: Duration,
    /// Requests allowed at once. Default `requests`.
    pub burst: NonZeroU32,
}

impl From<RateLimitSection> for RateLimitOptions {
    fn from(r: RateLimitSection) -> Self {
        Self {
            by_address: r.by_address.map(Into::into),
            by_caller: r.by_caller.map(Into::into),
        }
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
