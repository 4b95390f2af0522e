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

use std::collections::{HashMap, HashSet};
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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::router;
use crate::config;
use crate::gateway::Gateway;
use crate::schema::{self, History};
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
    /// Shared by every router built here.
    shared: Shared,
    /// Notified after every swap.
    swapped: Notify,
}

/// A swap refused for breaking changes (`reload.refuse_breaking`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// What every router a [`Live`] builds shares, across reloads.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Set when a shutdown begins.
    pub draining: Draining,
    /// The schema swaps and their diffs.
    pub schema: Arc<History>,
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
    refresh: tokio::task::AbortHandle,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
        self.retry.abort();
        self.refresh.abort();
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
        let mut answers = crate::gateway::Answers::default();
        for backend in gateway
            .config()
            .backends
            .iter()
            .filter(|b| missing(&b.name))
        {
            gateway.metrics().reflection_retry(&backend.name);
            match crate::gateway::fetch(backend).await {
                Ok(found) => {
                    answered.push(backend.name.clone());
                    answers.insert(backend, found);
                }
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
        match live
            .reload_from_file(false, "reflection answered", answers)
            .await
        {
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

/// `backends.<name>.reflection_refresh`: asks those backends' reflection
/// again, each on its period. An answer whose descriptors differ from those
/// serving ([`crate::gateway::descriptor_digest`]) reloads, which swaps them
/// in with a schema diff like any reload; an unchanged answer changes and
/// logs nothing. A refused swap is not asked for again until the backend's
/// answer changes once more. A backend that stops answering keeps its
/// descriptors; that is logged once, and again when it answers. Backends
/// without descriptors or on cached ones are [`retry_reflection`]'s.
async fn refresh_reflection(live: Arc<Live>) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut asked: HashMap<String, String> = HashMap::new();
    let mut failing: HashSet<String> = HashSet::new();
    loop {
        // Enabled before reading the gateway: a swap from now on wakes the wait.
        let swapped = live.swapped.notified();
        tokio::pin!(swapped);
        swapped.as_mut().enable();
        let gateway = live.gateway();
        let now = Instant::now();
        let refreshed: Vec<(&crate::config::BackendConfig, Duration)> = gateway
            .config()
            .backends
            .iter()
            .filter(|b| b.reflection)
            .filter_map(|b| Some((b, b.reflection_refresh?)))
            .collect();
        due.retain(|name, _| refreshed.iter().any(|(b, _)| &b.name == name));
        let mut changed = Vec::new();
        let mut answers = crate::gateway::Answers::default();
        for &(backend, period) in &refreshed {
            let at = *due.entry(backend.name.clone()).or_insert(now + period);
            if at > now {
                continue;
            }
            due.insert(backend.name.clone(), now + period);
            let name = &backend.name;
            if gateway.pending_reflection().contains(name)
                || gateway.cached_reflection().contains(name)
            {
                continue;
            }
            match crate::gateway::fetch(backend).await {
                Ok(found) => {
                    if failing.remove(name) {
                        tracing::info!(backend = %name, "reflection refresh: the backend answers again");
                    }
                    let digest = crate::gateway::descriptor_digest(&found.files);
                    if gateway.reflection_digest(name) == Some(digest.as_str()) {
                        gateway.metrics().reflection_refresh(name, "unchanged");
                        // Back to the schema serving: what was refused is no longer offered.
                        if asked.remove(name).is_some() {
                            live.shared.schema.settled();
                        }
                        continue;
                    }
                    if asked.get(name) == Some(&digest) {
                        gateway.metrics().reflection_refresh(name, "unchanged");
                        continue;
                    }
                    gateway.metrics().reflection_refresh(name, "changed");
                    asked.insert(name.clone(), digest);
                    changed.push(name.clone());
                    answers.insert(backend, found);
                }
                Err(cause) => {
                    gateway.metrics().reflection_refresh(name, "failed");
                    if failing.insert(name.clone()) {
                        tracing::warn!(backend = %name, %cause, "reflection refresh: the backend does not answer; serving the descriptors it gave before");
                    } else {
                        tracing::debug!(backend = %name, %cause, "reflection refresh: still no answer");
                    }
                }
            }
        }
        if !changed.is_empty() {
            tracing::info!(backends = ?changed, "reflection refresh: descriptors changed; reloading");
            let result = live
                .reload_from_file(false, "reflection refresh", answers)
                .await;
            live.gateway().metrics().reload(result.is_ok());
            match result {
                // Refused: not asked for again until the answer changes.
                Err(e) if e.is::<Refused>() => {
                    tracing::error!("reflection refresh: {e:#}");
                }
                // Served, or failed for another reason (asked again next time).
                result => {
                    for name in &changed {
                        asked.remove(name);
                    }
                    if let Err(e) = result {
                        tracing::error!(
                            "reload after a reflection refresh failed, still serving the previous schema: {e:#}"
                        );
                    }
                }
            }
            continue;
        }
        match due.values().min() {
            Some(&at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = &mut swapped => {}
                }
            }
            None => swapped.await,
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
        let shared = Shared::default();
        Arc::new(Self {
            active: ArcSwap::from_pointee(Active::new(gateway, &shared)),
            reloading: Mutex::new(loaded),
            listen_override: listen,
            cut: CancellationToken::new(),
            shared,
            swapped: Notify::new(),
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
        self.shared.draining.start();
    }

    /// Whether [`Live::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.is_draining()
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
        self.reload_from_file(false, "reload", crate::gateway::Answers::default())
            .await
            .map(|g| g.unwrap_or_else(|| self.gateway()))
    }

    /// The schema swaps seen, with their diffs.
    pub fn schema_history(&self) -> &History {
        &self.shared.schema
    }

    /// Reloads; with `only_if_changed`, not when the file holds what was last
    /// loaded (returning `None`). `cause` names the trigger in the schema
    /// history; `answers` are reflection answers just fetched, not asked for
    /// again.
    ///
    /// The new gateway's routes are compared with the running ones
    /// ([`crate::schema::diff`]); the diff is logged, counted and kept, and
    /// with `reload.refuse_breaking` a breaking one is refused: an error,
    /// and the running gateway keeps serving.
    async fn reload_from_file(
        &self,
        only_if_changed: bool,
        cause: &str,
        answers: crate::gateway::Answers,
    ) -> anyhow::Result<Option<Gateway>> {
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
        if config.admin != current.config().admin {
            tracing::warn!("admin changed; restart protogate to use it");
            config.admin = current.config().admin.clone();
        }
        if config.tracing != current.config().tracing {
            tracing::warn!("tracing changed; restart protogate to use it");
            config.tracing = current.config().tracing.clone();
        }
        let next = current.reload_with(config, answers).await?;
        let diff = schema::diff(
            &schema::Surface::of(current.routes()),
            &schema::Surface::of(next.routes()),
        );
        let refused = diff.is_breaking() && next.config().reload.refuse_breaking;
        diff.log(cause, !refused);
        for change in &diff.changes {
            next.metrics()
                .schema_change(change.severity.as_str(), &change.backend);
        }
        if diff.is_empty() {
            self.shared.schema.settled();
        } else {
            let to = if refused {
                current.generation()
            } else {
                next.generation()
            };
            self.shared.schema.record(schema::Swap::new(
                cause,
                current.generation(),
                to,
                !refused,
                &diff,
            ));
        }
        if refused {
            let first = diff
                .changes
                .iter()
                .find(|c| c.severity == schema::Severity::Breaking)
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(Refused(format!(
                "the new schema has {} breaking change(s) and reload.refuse_breaking is on (the first: {first}); keeping generation {}",
                diff.count(schema::Severity::Breaking),
                current.generation()
            ))
            .into());
        }
        self.active
            .store(Arc::new(Active::new(next.clone(), &self.shared)));
        self.swapped.notify_waiters();
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
                let (only_if_changed, cause) =
                    match next_trigger(&changed, &mut hangups, options.debounce).await {
                        Trigger::FileChanged => (true, "file changed"),
                        Trigger::Hangup => {
                            tracing::info!("SIGHUP: reloading configuration");
                            (false, "sighup")
                        }
                    };
                let result = live
                    .reload_from_file(only_if_changed, cause, crate::gateway::Answers::default())
                    .await;
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
        let refresh = tokio::spawn(refresh_reflection(self.clone()));
        Ok(Watch {
            _watcher: watcher,
            task: task.abort_handle(),
            retry: retry.abort_handle(),
            refresh: refresh.abort_handle(),
        })
    }
}

impl Active {
    fn new(gateway: Gateway, shared: &Shared) -> Self {
        Self {
            router: router::router(gateway.clone(), shared.clone()),
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
