//! Rate limits: token buckets per caller (JWT subject or API key) and, for
//! anonymous calls, per client address; checked after authentication and
//! before the body is read or any backend is called.
//!
//! governor's keyed GCRA limiters hold one small state per key; keys idle
//! long enough to be full again are dropped now and then, so memory follows
//! the active callers, not every address ever seen.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};

use crate::auth::Principal;
use crate::config::{RateLimitOptions, RateOptions};

type Limiter<K> = RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// The configured limits.
#[derive(Debug)]
pub struct RateLimits {
    by_address: Option<Bucket<IpAddr>>,
    by_caller: Option<Bucket<Arc<str>>>,
    checks: AtomicU64,
}

/// Keyed by what a check has at hand, so a check makes no key: an
/// address, or a caller key made once per API key or verified token.
#[derive(Debug)]
struct Bucket<K: std::hash::Hash + Eq + Clone> {
    limiter: Limiter<K>,
    burst: u32,
    /// One token comes back every this long.
    interval: Duration,
    clock: DefaultClock,
}

/// A request over its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry in {retry_after}s")]
pub struct RateLimited {
    /// Whole seconds until a request would pass.
    pub retry_after: u64,
    /// The bucket's size (`RateLimit-Limit`).
    pub limit: u32,
}

/// A request within its limit: what `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// The bucket's size.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Whole seconds until the bucket is full again.
    pub reset: u64,
}

impl Allowed {
    /// Writes `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
    /// (the IETF RateLimit header fields), so a client sees its budget on
    /// every answer, not only when it is spent.
    pub fn write_headers(&self, headers: &mut http::HeaderMap) {
        headers.insert("ratelimit-limit", http::HeaderValue::from(self.limit));
        headers.insert(
            "ratelimit-remaining",
            http::HeaderValue::from(self.remaining),
        );
        headers.insert("ratelimit-reset", http::HeaderValue::from(self.reset));
    }
}

/// Drop full (idle) buckets every this many checks.
const SWEEP_EVERY: u64 = 4096;

impl<K: std::hash::Hash + Eq + Clone> Bucket<K> {
    fn new(rate: &RateOptions) -> Self {
        // One token every `per / requests`, up to `burst` at once.
        let interval = rate.per / rate.requests.get();
        let quota = Quota::with_period(interval.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(rate.requests))
            .allow_burst(rate.burst);
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            burst: rate.burst.get(),
            interval,
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, key: &K) -> Result<Allowed, RateLimited> {
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let refill = self.interval * self.burst.saturating_sub(remaining);
                Ok(Allowed {
                    limit: self.burst,
                    remaining,
                    reset: refill.as_secs() + u64::from(refill.subsec_nanos() > 0),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(RateLimited {
                    retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                    limit: self.burst,
                })
            }
        }
    }
}

impl RateLimits {
    /// The limiters for `options`; `None` when no limit is configured.
    pub fn build(options: &RateLimitOptions) -> Option<Self> {
        if options.by_address.is_none() && options.by_caller.is_none() {
            return None;
        }
        Some(Self {
            by_address: options.by_address.as_ref().map(Bucket::new),
            by_caller: options.by_caller.as_ref().map(Bucket::new),
            checks: AtomicU64::new(0),
        })
    }

    /// Takes a token for the caller (or, anonymous, the client address).
    ///
    /// # Errors
    /// [`RateLimited`] when the bucket is empty.
    pub fn check(
        &self,
        principal: Option<&Principal>,
        address: Option<IpAddr>,
    ) -> Result<Option<Allowed>, RateLimited> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            if let Some(bucket) = &self.by_address {
                bucket.limiter.retain_recent();
                bucket.limiter.shrink_to_fit();
            }
            if let Some(bucket) = &self.by_caller {
                bucket.limiter.retain_recent();
                bucket.limiter.shrink_to_fit();
            }
        }
        let caller = principal.and_then(caller_key);
        match (caller, &self.by_caller, &self.by_address) {
            (Some(key), Some(bucket), _) => bucket.check(&key).map(Some),
            (None, _, Some(bucket)) => match address {
                Some(ip) => bucket.check(&ip).map(Some),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }
}

/// Who is calling: a token's provider and subject, or an API key's name.
fn caller_key(principal: &Principal) -> Option<Arc<str>> {
    match principal {
        Principal::Jwt { caller, .. } => caller.clone(),
        Principal::ApiKey { key, .. } => Some(key.caller.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(text: &str) -> RateLimitOptions {
        crate::config::for_test("a.B", text).rate_limit
    }

    #[test]
    fn buckets_refill_at_the_configured_rate() {
        let limits = RateLimits::build(&options(
            "rate_limit:\n  by_address: { requests: 2, per: 1h, burst: 3 }\n",
        ))
        .unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let remaining: Vec<u32> = (0..3)
            .map(|_| limits.check(None, Some(ip)).unwrap().unwrap().remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limits.check(None, Some(ip)).unwrap_err();
        assert_eq!(refused.limit, 3);
        // One token per 30 minutes.
        assert!((1790..=1800).contains(&refused.retry_after), "{refused:?}");
        // Other addresses have their own bucket.
        assert!(limits.check(None, Some(other)).is_ok());
        // Unconfigured: nothing to check.
        assert!(RateLimits::build(&options("")).is_none());
    }

    #[test]
    fn callers_are_limited_by_identity_not_address() {
        let limits = RateLimits::build(&options(
            "rate_limit:\n  by_caller: { requests: 1, per: 1h, burst: 1 }\n",
        ))
        .unwrap();
        let key = |name: &str| Principal::ApiKey {
            key: std::sync::Arc::new(crate::auth::api_key::ApiKey {
                name: name.to_owned(),
                scopes: vec![],
                caller: format!("key:{name}").into(),
            }),
            presented: String::new(),
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limits.check(Some(&key("a")), Some(ip)).is_ok());
        assert!(
            limits
                .check(Some(&key("a")), Some("192.0.2.9".parse().unwrap()))
                .is_err()
        );
        assert!(limits.check(Some(&key("b")), Some(ip)).is_ok());
        // Anonymous calls are not limited without by_address.
        assert_eq!(limits.check(None, Some(ip)), Ok(None));
    }
}
