//! Buckets shared by every replica, in Redis (`rate_limit.store.redis`).
//!
//! One check is one script call (GCRA, as Envoy's and redis-cell's global
//! limiters do): Redis runs the script atomically with its own clock, so
//! replicas on different machines neither race on a read-then-write nor
//! need synchronised clocks. A bucket is one key holding its theoretical
//! arrival time, expiring once the bucket is full again.
//!
//! A check waits at most the store's `timeout`. The first failure marks the
//! store down: later checks do not wait at all but go to `on_store_error`
//! at once, while a background task reconnects with backoff and marks it
//! up again. State changes are logged once and shown in `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::{Allowed, RateLimited, StoreMetrics};
use crate::config::{RateOptions, RedisStore};

/// GCRA over one key. KEYS[1]: the bucket. ARGV[1]: microseconds between
/// tokens; ARGV[2]: the burst. Returns {allowed, remaining, retry_after_us,
/// reset_us}. Times are microseconds of Redis's clock (`TIME`), well
/// within a Lua number's exact integers.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
";

/// First wait before reconnecting; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The shared store: a multiplexed connection while Redis answers.
#[derive(Debug)]
pub struct Store {
    inner: Arc<Inner>,
    task: AbortHandle,
}

#[derive(Debug)]
struct Inner {
    options: RedisStore,
    script: redis::Script,
    /// Set while Redis answers; checks go to the fallback while it is empty.
    connection: ArcSwapOption<MultiplexedConnection>,
    /// Whether the store was last seen up (for logging state changes once).
    up: AtomicBool,
    /// Wakes the reconnecting task after a failure.
    lost: Notify,
    metrics: StoreMetrics,
}

/// Why a check got no answer from the store.
#[derive(Debug)]
pub struct StoreError;

impl Store {
    /// A store for `options`, connecting in the background; until it is
    /// connected, checks go to the fallback.
    ///
    /// # Errors
    /// A URL the Redis client refuses (config validation checks it first).
    pub fn start(options: &RedisStore, metrics: &StoreMetrics) -> anyhow::Result<Self> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(options.url.as_str())?;
        if let Some(password) = &options.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)?;
        metrics.up.set(0);
        let inner = Arc::new(Inner {
            options: options.clone(),
            script: redis::Script::new(GCRA),
            connection: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            lost: Notify::new(),
            metrics: metrics.clone(),
        });
        let task = tokio::spawn(connect_loop(Arc::downgrade(&inner), client)).abort_handle();
        Ok(Self { inner, task })
    }

    /// The options it was started with (a reload keeps it when unchanged).
    pub fn options(&self) -> &RedisStore {
        &self.inner.options
    }

    /// Whether checks are answered by Redis now.
    pub fn is_up(&self) -> bool {
        self.inner.connection.load().is_some()
    }

    /// Takes a token from the bucket `key` (under the key prefix) for `rate`.
    ///
    /// # Errors
    /// [`StoreError`] when Redis is down, fails or does not answer within
    /// the store's timeout.
    pub async fn take(
        &self,
        key: &[u8],
        rate: &RateOptions,
    ) -> Result<Result<Allowed, RateLimited>, StoreError> {
        let Some(connection) = self.inner.connection.load_full() else {
            return Err(StoreError);
        };
        let mut connection = (*connection).clone();
        let interval = rate.per / rate.requests.get();
        let interval_us = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut bucket = Vec::with_capacity(self.inner.options.key_prefix.len() + key.len());
        bucket.extend_from_slice(self.inner.options.key_prefix.as_bytes());
        bucket.extend_from_slice(key);
        let mut invocation = self.inner.script.key(bucket);
        invocation.arg(interval_us).arg(rate.burst.get());
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection);
        let answer = match tokio::time::timeout(self.inner.options.timeout, call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                self.inner.failed(&crate::cause::chain(&e));
                return Err(StoreError);
            }
            Err(_) => {
                self.inner.failed(&format!(
                    "no answer within {:?}",
                    self.inner.options.timeout
                ));
                return Err(StoreError);
            }
        };
        let (allowed, remaining, retry_us, reset_us) = answer;
        let limit = rate.burst.get();
        let whole_seconds = |us: i64| u64::try_from(us).unwrap_or(0).div_ceil(1_000_000);
        Ok(if allowed == 1 {
            Ok(Allowed {
                limit,
                remaining: u32::try_from(remaining).unwrap_or(0).min(limit),
                reset: whole_seconds(reset_us),
            })
        } else {
            Err(RateLimited {
                retry_after: whole_seconds(retry_us).max(1),
                limit,
            })
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    /// Marks the store down after a failed check; logged once per outage.
    fn failed(&self, error: &str) {
        self.connection.store(None);
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(url = %redact(&self.options.url), %error, "rate limit store down; on_store_error decides until it is back");
            self.metrics.up.set(0);
        }
        self.metrics.errors.inc();
        self.lost.notify_one();
    }
}

/// Connects (and reconnects after each failure) until the store is dropped.
async fn connect_loop(inner: std::sync::Weak<Inner>, client: redis::Client) {
    let mut backoff = FIRST_BACKOFF;
    let mut logged_down = false;
    loop {
        let Some(store) = inner.upgrade() else {
            return;
        };
        if store.connection.load().is_some() {
            // Up: wait for a check to report a failure (the store's drop
            // aborts this task, so holding it here keeps nothing alive).
            store.lost.notified().await;
            continue;
        }
        let wait = store.options.timeout.max(Duration::from_secs(1));
        let url = redact(&store.options.url);
        drop(store);
        match connect(&client, wait).await {
            Ok(connection) => {
                let Some(store) = inner.upgrade() else {
                    return;
                };
                store.connection.store(Some(Arc::new(connection)));
                store.up.store(true, Ordering::Relaxed);
                store.metrics.up.set(1);
                tracing::info!(%url, "rate limit store connected; limits are shared");
                backoff = FIRST_BACKOFF;
                logged_down = false;
            }
            Err(error) => {
                if !logged_down {
                    tracing::warn!(%url, %error, "cannot reach the rate limit store; retrying");
                    logged_down = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A connection that answered a `PING` within `wait`.
async fn connect(client: &redis::Client, wait: Duration) -> Result<MultiplexedConnection, String> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(wait))
        .set_response_timeout(None);
    let attempt = async {
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await?;
        Ok::<_, redis::RedisError>(connection)
    };
    match tokio::time::timeout(wait, attempt).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(crate::cause::chain(&e)),
        Err(_) => Err(format!("no answer within {wait:?}")),
    }
}

/// The URL without a password in it, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_logged_without_credentials() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://user:secret@redis:6379"),
            "redis://<redacted>@redis:6379"
        );
    }
}
