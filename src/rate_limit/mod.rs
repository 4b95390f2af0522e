//! Rate limits: token buckets per caller (JWT subject or API key) and, for
//! anonymous calls, per client address; checked after authentication and
//! before the body is read or any backend is called.
//!
//! Each replica keeps its own buckets by default: governor's keyed GCRA
//! limiters hold one small state per key; keys idle long enough to be full
//! again are dropped now and then, so memory follows the active callers,
//! not every address ever seen. With `rate_limit.store.redis` the buckets
//! live in Redis ([`redis`]), shared by every replica, and the local ones
//! are the fallback `on_store_error: local` uses.

pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};

use crate::auth::Principal;
use crate::config::{OnStoreError, RateLimitOptions, RateOptions};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

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
    shared: Option<Shared>,
}

/// Buckets in Redis, and what to do when it fails.
#[derive(Debug)]
struct Shared {
    /// Kept across reloads that leave the store's settings alone.
    store: Arc<redis::Store>,
    by_address: Option<RateOptions>,
    by_caller: Option<RateOptions>,
    policy: OnStoreError,
    metrics: StoreMetrics,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Over its limit.
    Limited(RateLimited),
    /// The shared store did not answer and `on_store_error` is `deny`.
    StoreDown,
}

/// The shared store's metrics: made and registered by the gateway's
/// metrics, counted here.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// 1 while Redis answers checks.
    pub up: Gauge,
    /// Checks Redis failed or did not answer in time.
    pub errors: Counter,
    /// Checks decided by `on_store_error`, by policy.
    pub fallbacks: Family<PolicyLabels, Counter>,
}

/// Labels of a check decided by `on_store_error`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// `allow`, `deny` or `local`.
    pub policy: &'static str,
}

impl StoreMetrics {
    fn fallback(&self, policy: OnStoreError) {
        let policy = match policy {
            OnStoreError::Allow => "allow",
            OnStoreError::Deny => "deny",
            OnStoreError::Local => "local",
        };
        self.fallbacks.get_or_create(&PolicyLabels { policy }).inc();
    }
}

/// Whose bucket a request takes from.
enum Subject {
    Caller(Arc<str>),
    Address(IpAddr),
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
    /// The limiters for `options`; `None` when no limit is configured. A
    /// Redis store of `previous` with the same settings is kept, with its
    /// connection.
    ///
    /// # Errors
    /// A Redis URL the client refuses.
    pub fn build(
        options: &RateLimitOptions,
        previous: Option<&RateLimits>,
        metrics: &StoreMetrics,
    ) -> anyhow::Result<Option<Self>> {
        if options.by_address.is_none() && options.by_caller.is_none() {
            return Ok(None);
        }
        let shared = match &options.store {
            Some(wanted) => {
                let kept = previous
                    .and_then(|p| p.shared.as_ref())
                    .map(|s| &s.store)
                    .filter(|s| s.options() == wanted)
                    .cloned();
                let store = match kept {
                    Some(store) => store,
                    None => Arc::new(redis::Store::start(wanted, metrics)?),
                };
                Some(Shared {
                    store,
                    by_address: options.by_address.clone(),
                    by_caller: options.by_caller.clone(),
                    policy: options.on_store_error,
                    metrics: metrics.clone(),
                })
            }
            None => None,
        };
        Ok(Some(Self {
            by_address: options.by_address.as_ref().map(Bucket::new),
            by_caller: options.by_caller.as_ref().map(Bucket::new),
            checks: AtomicU64::new(0),
            shared,
        }))
    }

    /// Takes a token for the caller (or, anonymous, the client address):
    /// from Redis when a store is configured and answers, else as
    /// `on_store_error` says; from this replica's buckets otherwise.
    ///
    /// # Errors
    /// [`Refused::Limited`] when the bucket is empty, [`Refused::StoreDown`]
    /// when the store failed and the policy is `deny`.
    pub async fn check(
        &self,
        principal: Option<&Principal>,
        address: Option<IpAddr>,
    ) -> Result<Option<Allowed>, Refused> {
        if let Some(shared) = &self.shared {
            let subject = subject(principal, address, shared.by_caller.is_some());
            let (key, rate) = match (&subject, &shared.by_caller, &shared.by_address) {
                (Some(Subject::Caller(caller)), Some(rate), _) => {
                    ([b"c:", caller.as_bytes()].concat(), rate)
                }
                (Some(Subject::Address(ip)), _, Some(rate)) => {
                    ([b"a:", ip.to_string().as_bytes()].concat(), rate)
                }
                _ => return Ok(None),
            };
            match shared.store.take(&key, rate).await {
                Ok(answer) => return answer.map(Some).map_err(Refused::Limited),
                Err(redis::StoreError) => {
                    shared.metrics.fallback(shared.policy);
                    match shared.policy {
                        OnStoreError::Allow => return Ok(None),
                        OnStoreError::Deny => return Err(Refused::StoreDown),
                        OnStoreError::Local => {}
                    }
                }
            }
        }
        self.check_local(principal, address)
            .map_err(Refused::Limited)
    }

    /// Takes a token from this replica's buckets.
    fn check_local(
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
        match (
            subject(principal, address, self.by_caller.is_some()),
            &self.by_caller,
            &self.by_address,
        ) {
            (Some(Subject::Caller(key)), Some(bucket), _) => bucket.check(&key).map(Some),
            (Some(Subject::Address(ip)), _, Some(bucket)) => bucket.check(&ip).map(Some),
            _ => Ok(None),
        }
    }
}

/// The bucket's owner: the caller when callers are limited and the call
/// has one, else the client address. A caller without a caller limit is
/// not limited by address either.
fn subject(
    principal: Option<&Principal>,
    address: Option<IpAddr>,
    callers_limited: bool,
) -> Option<Subject> {
    match principal.and_then(caller_key) {
        Some(caller) if callers_limited => Some(Subject::Caller(caller)),
        Some(_) => None,
        None => address.map(Subject::Address),
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

    fn build(text: &str) -> RateLimits {
        RateLimits::build(&options(text), None, &StoreMetrics::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn buckets_refill_at_the_configured_rate() {
        let limits = build("rate_limit:\n  by_address: { requests: 2, per: 1h, burst: 3 }\n");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let remaining: Vec<u32> = (0..3)
            .map(|_| {
                limits
                    .check_local(None, Some(ip))
                    .unwrap()
                    .unwrap()
                    .remaining
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limits.check_local(None, Some(ip)).unwrap_err();
        assert_eq!(refused.limit, 3);
        // One token per 30 minutes.
        assert!((1790..=1800).contains(&refused.retry_after), "{refused:?}");
        // Other addresses have their own bucket.
        assert!(limits.check_local(None, Some(other)).is_ok());
        // Unconfigured: nothing to check.
        assert!(
            RateLimits::build(&options(""), None, &StoreMetrics::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn callers_are_limited_by_identity_not_address() {
        let limits = build("rate_limit:\n  by_caller: { requests: 1, per: 1h, burst: 1 }\n");
        let key = |name: &str| Principal::ApiKey {
            key: std::sync::Arc::new(crate::auth::api_key::ApiKey {
                name: name.to_owned(),
                scopes: vec![],
                caller: format!("key:{name}").into(),
            }),
            presented: String::new(),
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limits.check_local(Some(&key("a")), Some(ip)).is_ok());
        assert!(
            limits
                .check_local(Some(&key("a")), Some("192.0.2.9".parse().unwrap()))
                .is_err()
        );
        assert!(limits.check_local(Some(&key("b")), Some(ip)).is_ok());
        // Anonymous calls are not limited without by_address.
        assert_eq!(limits.check_local(None, Some(ip)), Ok(None));
    }
}
