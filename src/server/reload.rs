//! Hot reload: the live gateway and router, swapped as one value.
//!
//! [`Live::reload`] reads the config file again and builds a whole new
//! [`Gateway`] (config, descriptors, reflection, routes, backends) beside the
//! running one; only when that succeeds is it swapped in. Requests in flight
//! hold the value they started with and finish on it. A config that does not
//! load is logged and the old one keeps serving. [`Live::watch`] reloads on
//! SIGHUP and when the config file's bytes change (debounced).
//!
//! The listen address is bound once; a changed `server.listen` needs a restart.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use notify::RecommendedWatcher;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::router;
use crate::config;
use crate::gateway::Gateway;
use crate::watch::{Hangups, Trigger, next_trigger, watch_paths};

/// The gateway being served and its router.
#[derive(Debug)]
pub struct Live {
    active: ArcSwap<Active>,
    /// One reload at a time: a second waits and then builds on the first's result.
    /// What the running gateway was built from ([`fingerprint`]), to skip
    /// reloads that change nothing; held while reloading.
    reloading: Mutex<Option<Vec<u8>>>,
    /// `--listen`, which a reload keeps over the file's `server.listen`.
    listen_override: Option<std::net::SocketAddr>,
    /// Set when the grace period of a shutdown is over: open streams end.
    /// Cancelled when open streams are to end (a shutdown's grace is over);
    /// every request carries a clone as an extension.
    cut: CancellationToken,
    /// Set when a shutdown begins; every router built here reads it.
    draining: Draining,
}

/// Whether the gateway is shutting down, so `/readyz` answers 503 while
/// the listener still accepts (`server.drain_delay`) and load balancers
/// stop sending new traffic before connections are refused. Shared by
/// every router a [`Live`] builds, across reloads.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Whether a shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Active {
    gateway: Gateway,
    router: Router,
}

/// Keeps the file watcher alive; reloading stops when dropped.
#[derive(Debug)]
pub struct Watch {
    _watcher: Option<RecommendedWatcher>,
    task: tokio::task::AbortHandle,
    retry: tokio::task::AbortHandle,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
        self.retry.abort();
    }
}

/// First wait before asking a reflection backend that did not answer again;
/// doubled after each failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two reflection retries.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Asks the reflection backends the running gateway lacks descriptors of
/// again, with exponential backoff; when one answers, reloads, which swaps
/// in its routes as any reload does. Failed fetches are counted in
/// `protogate_reflection_retries` and logged at debug level: the state
/// changes (missing at load, answering again) are logged once each.
async fn retry_reflection(live: Arc<Live>) {
    let mut delay = RETRY_FIRST;
    loop {
        tokio::time::sleep(delay).await;
        let gateway = live.gateway();
        // Cached descriptors may be stale: those backends are asked too.
        let missing = |name: &String| {
            gateway.pending_reflection().contains(name)
                || gateway.cached_reflection().contains(name)
        };
        if !gateway.config().backends.iter().any(|b| missing(&b.name)) {
            delay = RETRY_FIRST;
            continue;
        }
        let mut answered = Vec::new();
        for backend in gateway
            .config()
            .backends
            .iter()
            .filter(|b| missing(&b.name))
        {
            gateway.metrics().reflection_retry(&backend.name);
            match crate::gateway::fetch(backend).await {
                Ok(_) => answered.push(backend.name.clone()),
                Err(cause) => {
                    tracing::debug!(backend = %backend.name, %cause, "reflection still does not answer");
                }
            }
        }
        delay = delay.saturating_mul(2).min(RETRY_MAX);
        if answered.is_empty() {
            continue;
        }
        tracing::info!(backends = ?answered, "reflection answers: loading the routes of its services");
        match live.reload_from_file(false).await {
            Ok(_) => {
                live.gateway().metrics().reload(true);
                delay = RETRY_FIRST;
            }
            Err(e) => {
                live.gateway().metrics().reload(false);
                tracing::error!(
                    "reload after reflection answered failed, still serving the previous config: {e:#}"
                );
            }
        }
    }
}

impl Live {
    /// Starts serving `gateway`.
    pub fn new(gateway: Gateway) -> Arc<Self> {
        Self::with_listen_override(gateway, None)
    }

    /// Starts serving `gateway`, whose listen address came from the command
    /// line (`listen`) rather than the file; reloads keep it.
    pub fn with_listen_override(
        gateway: Gateway,
        listen: Option<std::net::SocketAddr>,
    ) -> Arc<Self> {
        let loaded = std::fs::read(&gateway.config().source)
            .ok()
            .map(|bytes| fingerprint(&bytes, &gateway.config().descriptors));
        let draining = Draining::default();
        Arc::new(Self {
            active: ArcSwap::from_pointee(Active::new(gateway, &draining)),
            reloading: Mutex::new(loaded),
            listen_override: listen,
            cut: CancellationToken::new(),
            draining,
        })
    }

    /// The gateway serving new requests.
    pub fn gateway(&self) -> Gateway {
        self.active.load().gateway.clone()
    }

    /// The service that hands each request to the router current when it arrives.
    pub fn service(
        self: Arc<Self>,
    ) -> impl tower::Service<
        Request,
        Response = Response,
        Error = Infallible,
        Future = impl Future<Output = Result<Response, Infallible>> + Send,
    > + Clone
    + Send
    + Sync
    + 'static {
        tower::service_fn(move |mut request: Request| {
            request.extensions_mut().insert(self.cut.clone());
            let router = self.active.load().router.clone();
            router.oneshot(request)
        })
    }

    /// Begins a shutdown: `/readyz` answers 503 from now on, while
    /// requests are still served.
    pub fn drain(&self) {
        self.draining.start();
    }

    /// Whether [`Live::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.is_draining()
    }

    /// Ends every open stream (with an UNAVAILABLE error line or close):
    /// the end of a shutdown's grace period.
    pub fn cut_streams(&self) {
        self.cut.cancel();
    }

    /// Reads the config file again and swaps in the gateway built from it.
    ///
    /// # Errors
    /// The new config, its descriptors or its backends do not load; the
    /// running gateway is unchanged.
    pub async fn reload(&self) -> anyhow::Result<Gateway> {
        self.reload_from_file(false)
            .await
            .map(|g| g.unwrap_or_else(|| self.gateway()))
    }

    /// Reloads; with `only_if_changed`, not when the file holds what was last
    /// loaded (returning `None`).
    async fn reload_from_file(&self, only_if_changed: bool) -> anyhow::Result<Option<Gateway>> {
        let mut loaded = self.reloading.lock().await;
        let current = self.gateway();
        let path = current.config().source.clone();
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let text = String::from_utf8(bytes.clone())
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        let mut config = config::parse(&text, &path)?;
        let seen = fingerprint(&bytes, &config.descriptors);
        if only_if_changed && loaded.as_deref() == Some(seen.as_slice()) {
            tracing::info!("config and descriptor files are the running ones; not reloading");
            return Ok(None);
        }
        match self.listen_override {
            Some(listen) => config.listen = listen,
            None if config.listen != current.config().listen => {
                tracing::warn!(
                    from = %current.config().listen,
                    to = %config.listen,
                    "server.listen changed; restart protogate to listen on the new address"
                );
                config.listen = current.config().listen;
            }
            None => {}
        }
        // The listener's TLS setup and span export are fixed at startup too.
        if config.tls != current.config().tls {
            tracing::warn!(
                "server.tls changed; restart protogate to use it (changed certificate files are reloaded by themselves)"
            );
            config.tls = current.config().tls.clone();
        }
        if config.tracing != current.config().tracing {
            tracing::warn!("tracing changed; restart protogate to use it");
            config.tracing = current.config().tracing.clone();
        }
        let next = current.reload(config).await?;
        self.active
            .store(Arc::new(Active::new(next.clone(), &self.draining)));
        *loaded = Some(seen);
        tracing::info!(
            generation = next.generation(),
            routes = next.routes().routes().len(),
            "configuration reloaded"
        );
        Ok(Some(next))
    }

    /// Reloads on SIGHUP and, when `reload.watch` is on, when the config
    /// file changes (after `reload.debounce` of quiet), and when a
    /// reflection backend that did not answer at load answers. Failed
    /// reloads are logged; the running gateway keeps serving.
    ///
    /// # Errors
    /// The file watcher cannot be started.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<Watch> {
        let changed = Arc::new(Notify::new());
        let gateway = self.gateway();
        let options = gateway.config().reload.clone();
        let watcher = if options.watch {
            // The config and the proto files and descriptor sets it names.
            let files = gateway.config().descriptors.files();
            let paths: Vec<&Path> = std::iter::once(gateway.config().source.as_path())
                .chain(files.iter().map(PathBuf::as_path))
                .collect();
            Some(watch_paths(&paths, changed.clone())?)
        } else {
            None
        };
        let live = self.clone();
        // Registered before returning: a SIGHUP from now on reloads, never kills.
        let mut hangups = Hangups::listen();
        let task = tokio::spawn(async move {
            loop {
                let only_if_changed =
                    match next_trigger(&changed, &mut hangups, options.debounce).await {
                        Trigger::FileChanged => true,
                        Trigger::Hangup => {
                            tracing::info!("SIGHUP: reloading configuration");
                            false
                        }
                    };
                let result = live.reload_from_file(only_if_changed).await;
                match &result {
                    Ok(Some(_)) => live.gateway().metrics().reload(true),
                    Err(_) => live.gateway().metrics().reload(false),
                    Ok(None) => {}
                }
                if let Err(e) = result {
                    tracing::error!(
                        generation = live.gateway().generation(),
                        "configuration reload failed, still serving the previous one: {e:#}"
                    );
                }
            }
        });
        let retry = tokio::spawn(retry_reflection(self.clone()));
        Ok(Watch {
            _watcher: watcher,
            task: task.abort_handle(),
            retry: retry.abort_handle(),
        })
    }
}

impl Active {
    fn new(gateway: Gateway, draining: &Draining) -> Self {
        Self {
            router: router::router(gateway.clone(), draining.clone()),
            gateway,
        }
    }
}

/// A digest of the config file's bytes and of the descriptor files it
/// names: a reload on a file event happens only when one of them changed.
fn fingerprint(config: &[u8], descriptors: &config::DescriptorSources) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(config);
    for file in descriptors.files() {
        digest.update(file.as_os_str().as_encoded_bytes());
        // Unreadable now: a change all the same, which the reload reports.
        digest.update(std::fs::read(&file).unwrap_or_default());
    }
    digest.finalize().to_vec()
}
