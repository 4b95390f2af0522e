//! A remote JWKS: fetched at startup, cached, refreshed in the background.
//!
//! The refresh period is the response's `Cache-Control: max-age` (clamped
//! to `[min_refresh, 24h]`), else the configured period. A token with an
//! unknown `kid` triggers a refetch, at most once per `min_refresh`, so key
//! rotation is picked up at once and junk `kid`s cannot hammer the issuer.
//! When the endpoint is down the last good keys keep serving.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use super::keys::KeySet;

const MAX_AGE_CAP: Duration = Duration::from_secs(24 * 3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// A cached remote key set.
pub struct RemoteJwks {
    inner: Arc<Inner>,
    refresher: tokio::task::JoinHandle<()>,
}

struct Inner {
    provider: String,
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    min_refresh: Duration,
    keys: RwLock<KeySet>,
    /// When the last fetch started; also the single-flight lock.
    last_fetch: Mutex<Option<Instant>>,
}

impl Drop for RemoteJwks {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl RemoteJwks {
    /// Fetches the set once and starts the background refresh. A failed first
    /// fetch is logged, not fatal: tokens are refused until keys arrive.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub async fn start(
        provider: String,
        url: String,
        refresh: Duration,
        min_refresh: Duration,
    ) -> anyhow::Result<Self> {
        super::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // A redirect could downgrade to plain HTTP or point anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                anyhow::anyhow!("auth.jwt.{provider}: cannot build the JWKS client: {e}")
            })?;
        let inner = Arc::new(Inner {
            provider,
            url,
            client,
            refresh,
            min_refresh,
            keys: RwLock::new(KeySet::default()),
            last_fetch: Mutex::new(None),
        });
        let first = inner.fetch().await;
        let refresher = tokio::spawn(refresh_loop(Arc::clone(&inner), first));
        Ok(Self { inner, refresher })
    }

    /// The key for `kid`, refetching the set (rate-limited) when it is unknown.
    pub async fn find(&self, kid: Option<&str>) -> Option<(DecodingKey, Option<Algorithm>)> {
        if let Some(found) = self.inner.keys.read().await.find(kid) {
            return Some(found.clone());
        }
        // Boxed: every authenticated call's future would otherwise carry a fetch's state.
        Box::pin(self.inner.fetch_if_allowed()).await;
        self.inner.keys.read().await.find(kid).cloned()
    }
}

async fn refresh_loop(inner: Arc<Inner>, mut next: Duration) {
    loop {
        tokio::time::sleep(next).await;
        next = inner.fetch().await;
    }
}

impl Inner {
    /// Fetches now unless a fetch started less than `min_refresh` ago.
    async fn fetch_if_allowed(&self) {
        let recent = self
            .last_fetch
            .lock()
            .await
            .is_some_and(|at| at.elapsed() < self.min_refresh);
        if !recent {
            self.fetch().await;
        }
    }

    /// Fetches and swaps in the set; returns how long until the next refresh.
    async fn fetch(&self) -> Duration {
        let mut last = self.last_fetch.lock().await;
        // Another caller may have fetched while we waited for the lock.
        if last.is_some_and(|at| at.elapsed() < Duration::from_millis(100)) {
            return self.refresh;
        }
        *last = Some(Instant::now());
        match self.get().await {
            Ok((set, max_age)) => {
                tracing::info!(provider = %self.provider, keys = set.len(), "JWKS fetched");
                *self.keys.write().await = set;
                max_age.map_or(self.refresh, |age| age.clamp(self.min_refresh, MAX_AGE_CAP))
            }
            Err(e) => {
                tracing::warn!(provider = %self.provider, url = %self.url, error = %e, "JWKS fetch failed; keeping the cached keys");
                self.min_refresh
            }
        }
    }

    async fn get(&self) -> anyhow::Result<(KeySet, Option<Duration>)> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?;
        let max_age = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            anyhow::bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                anyhow::bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
            }
        }
        let text = String::from_utf8(body)?;
        let set = KeySet::parse(&text, &self.url)?;
        if set.is_empty() {
            anyhow::bail!("the JWKS has no usable keys");
        }
        Ok((set, max_age))
    }
}

/// `max-age` from a `Cache-Control` value; `no-store`/`no-cache` mean zero.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|directive| {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        lower
            .strip_prefix("max-age=")
            .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        for (value, want) in [
            ("max-age=300", Some(300)),
            ("public, max-age=60, must-revalidate", Some(60)),
            ("no-store", Some(0)),
            ("private", None),
            ("max-age=abc", None),
        ] {
            assert_eq!(max_age(value), want.map(Duration::from_secs), "{value}");
        }
    }
}
