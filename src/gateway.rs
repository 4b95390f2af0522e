//! The loaded gateway: config, descriptors, routes and channels, built once.
//!
//! Everything per-route is computed here at startup; requests only read it.
//! The whole value sits behind one `Arc`, so a reload swaps it as a unit
//! while requests in flight finish on the value they started with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use bytes::Bytes;
use prost_reflect::DescriptorPool;

use crate::auth::Authenticator;
use crate::config::{Config, ServicePattern};
use crate::descriptor::{self, reflection};
use crate::http_rule::{RoutePayload, RouteProblem, RouteTable};
use crate::metrics::Metrics;
use crate::openapi::{self, Format};
use crate::plan::{Locations, MethodPlan, MethodTable, RoutePlan};
use crate::rate_limit::RateLimits;
use crate::transcode::Transcoder;
use crate::upstream::Upstreams;
use crate::validate::Validation;

/// Shared, immutable gateway state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    pool: DescriptorPool,
    routes: RouteTable<RoutePlan>,
    /// The routed methods by gRPC path, for native gRPC.
    methods: MethodTable,
    upstreams: Upstreams,
    openapi: OpenApiDocs,
    auth: Authenticator,
    loaded_at: SystemTime,
    generation: u64,
    metrics: Metrics,
    rate_limits: Option<RateLimits>,
    /// One permit per request (or open stream) that may be in flight.
    admission: Arc<tokio::sync::Semaphore>,
    /// Reflection backends that did not answer: their services are unknown.
    pending: Vec<String>,
    /// Reflection backends that did not answer, served from the cache.
    cached: Vec<String>,
    /// A digest of each reflection backend's descriptors as loaded.
    digests: BTreeMap<String, String>,
}

/// The OpenAPI documents, rendered once.
#[derive(Debug)]
pub struct OpenApiDocs {
    /// The combined document, all routes.
    pub all: RenderedDoc,
    /// One document per API version (`v1`, `v2beta1`, ...), by version.
    pub versions: BTreeMap<String, RenderedDoc>,
}

/// One document as JSON and YAML.
#[derive(Debug)]
pub struct RenderedDoc {
    /// `.json`.
    pub json: Bytes,
    /// `.yaml`.
    pub yaml: Bytes,
}

impl OpenApiDocs {
    /// Renders the combined document and one per API version.
    ///
    /// # Errors
    /// Serialization errors, which a well-formed document does not produce.
    pub fn build<P: RoutePayload>(
        routes: &RouteTable<P>,
        pool: &DescriptorPool,
        config: &Config,
        auth: &Authenticator,
    ) -> anyhow::Result<Self> {
        let all = RenderedDoc::render(&openapi::document(routes, pool, config, auth))?;
        let mut versions = BTreeMap::new();
        for (version, version_routes) in openapi::versions(routes) {
            // One version holding every route has the combined document; share its bytes.
            let doc = if version_routes.len() == routes.routes().len() {
                RenderedDoc {
                    json: all.json.clone(),
                    yaml: all.yaml.clone(),
                }
            } else {
                RenderedDoc::render(&openapi::document_for(&version_routes, pool, config, auth))?
            };
            versions.insert(version, doc);
        }
        Ok(Self { all, versions })
    }

    fn empty() -> Self {
        Self {
            all: RenderedDoc {
                json: Bytes::new(),
                yaml: Bytes::new(),
            },
            versions: BTreeMap::new(),
        }
    }
}

impl RenderedDoc {
    fn render(document: &utoipa::openapi::OpenApi) -> anyhow::Result<Self> {
        Ok(Self {
            json: openapi::render(document, Format::Json)?.into(),
            yaml: openapi::render(document, Format::Yaml)?.into(),
        })
    }

    /// The text in `format`.
    pub fn get(&self, format: Format) -> &Bytes {
        match format {
            Format::Json => &self.json,
            Format::Yaml => &self.yaml,
        }
    }
}

impl Gateway {
    /// Loads descriptors (fetching them from reflection backends), builds the
    /// route table and connects the backends. Bindings that cannot be routed
    /// are logged, counted in `protogate_route_problems` and left out.
    ///
    /// # Errors
    /// Descriptor, reflection, route or backend errors, with the config file
    /// named; with `descriptors.strict`, any binding that cannot be routed.
    pub async fn load(config: Config) -> anyhow::Result<Self> {
        Self::build(config, None, Answers::default()).await
    }

    /// Builds the gateway for a new `config`, keeping this one's backends
    /// (connections, health state) where their configuration is unchanged.
    ///
    /// # Errors
    /// As [`Gateway::load`]; this gateway is unaffected.
    pub async fn reload(&self, config: Config) -> anyhow::Result<Self> {
        Self::build(config, Some(self), Answers::default()).await
    }

    /// As [`Gateway::reload`], with reflection answers already fetched: a
    /// backend in `answers` (at the same endpoints) is not asked again.
    ///
    /// # Errors
    /// As [`Gateway::load`]; this gateway is unaffected.
    pub async fn reload_with(&self, config: Config, answers: Answers) -> anyhow::Result<Self> {
        Self::build(config, Some(self), answers).await
    }

    async fn build(
        mut config: Config,
        previous: Option<&Gateway>,
        answers: Answers,
    ) -> anyhow::Result<Self> {
        let source = config.source.display().to_string();
        let mut pool = descriptor::load(&config.descriptors)
            .with_context(|| format!("{source}: cannot load descriptors"))?;
        let Reflection {
            pending,
            cached,
            digests,
        } = reflect(&mut config, &mut pool, answers)
            .await
            .with_context(|| format!("{source}: cannot load descriptors by reflection"))?;
        if !pending.is_empty() {
            set_aside_unknown(&mut config, &pool);
        }
        let routes = RouteTable::build(&pool, &config)
            .with_context(|| format!("{source}: invalid routes"))?;
        if config.strict_descriptors {
            refuse_left_out(routes.problems())
                .with_context(|| format!("{source}: invalid routes"))?;
        }
        let transcoder = Transcoder::build(&routes, &config.transcode.json);
        let validation = Validation::build(
            &pool,
            routes.routes().iter().map(|r| {
                let method = &r.route().method;
                (method, config.validation_of(method.full_name()))
            }),
        )
        .with_context(|| format!("{source}: invalid validation rules"))?;
        for rule in &validation.uncovered {
            tracing::warn!(rule = %rule, "validate.rules rule with no protovalidate equivalent is not enforced");
        }
        let auth = Authenticator::build(&config.auth, &routes)
            .await
            .with_context(|| format!("{source}: invalid auth"))?;
        // Not served, not built: the CLI's `openapi` command builds on demand.
        let openapi = if config.openapi.enabled {
            OpenApiDocs::build(&routes, &pool, &config, &auth)?
        } else {
            OpenApiDocs::empty()
        };
        // Counters keep counting across reloads.
        let metrics = previous
            .map(|p| p.inner.metrics.clone())
            .unwrap_or_default();
        let rate_limits = RateLimits::build(
            &config.rate_limit,
            previous.and_then(|p| p.inner.rate_limits.as_ref()),
            metrics.rate_limit_store(),
        )?;
        // Last: nothing above can fail after health checks and DNS tasks start.
        let upstreams = Upstreams::connect(&config, previous.map(|p| &p.inner.upstreams)).await;
        let locations = Locations::build(&routes);
        let routes = routes.map(|route| {
            RoutePlan::compile(
                route,
                &config,
                &auth,
                &transcoder,
                &upstreams,
                &validation,
                &locations,
            )
        })?;
        let methods = MethodTable::build(routes.routes(), &config);
        // Kept across a reload that leaves the limit alone: requests in
        // flight on the old gateway still hold their slots.
        let limit = config
            .edge
            .max_concurrent_requests
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let admission = match previous {
            Some(p)
                if p.inner.config.edge.max_concurrent_requests
                    == config.edge.max_concurrent_requests =>
            {
                p.inner.admission.clone()
            }
            _ => Arc::new(tokio::sync::Semaphore::new(limit)),
        };
        // Reported once nothing can fail: this table is the one to be served.
        report(routes.problems());
        metrics.route_problems(routes.problems());
        metrics.reflection_pending(
            config
                .backends
                .iter()
                .filter(|b| b.reflection)
                .map(|b| b.name.as_str()),
            &pending,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                pool,
                routes,
                methods,
                upstreams,
                openapi,
                auth,
                loaded_at: SystemTime::now(),
                generation: previous.map_or(1, |p| p.inner.generation + 1),
                metrics,
                rate_limits,
                admission,
                pending,
                cached,
                digests,
            }),
        })
    }

    /// The `reflection: true` backends that did not answer when this
    /// gateway was built: their services have no routes until they do.
    pub fn pending_reflection(&self) -> &[String] {
        &self.inner.pending
    }

    /// The `reflection: true` backends that did not answer when this
    /// gateway was built and are served from `descriptors.cache_dir`.
    pub fn cached_reflection(&self) -> &[String] {
        &self.inner.cached
    }

    /// The digest ([`descriptor_digest`]) of the descriptors loaded from
    /// `backend` by reflection, cached ones included.
    pub fn reflection_digest(&self, backend: &str) -> Option<&str> {
        self.inner.digests.get(backend).map(String::as_str)
    }

    /// Rate limits, when configured.
    pub fn rate_limits(&self) -> Option<&RateLimits> {
        self.inner.rate_limits.as_ref()
    }

    /// The concurrency slots of `server.max_concurrent_requests`.
    pub fn admission(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.inner.admission
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// When this configuration was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.inner.loaded_at
    }

    /// 1 for the configuration loaded at startup, then one more per reload.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The descriptor pool every route's types come from.
    pub fn pool(&self) -> &DescriptorPool {
        &self.inner.pool
    }

    /// The route table, each route with its plan.
    pub fn routes(&self) -> &RouteTable<RoutePlan> {
        &self.inner.routes
    }

    /// The routed method at a gRPC path (`/package.Service/Method`) and the
    /// plan of its first route.
    pub fn method(&self, path: &str) -> Option<(&MethodPlan, &RoutePlan)> {
        let method = self.inner.methods.get(path)?;
        let plan = self.inner.routes.routes().get(method.route)?;
        Some((method, plan))
    }

    /// The rendered OpenAPI document.
    pub fn openapi(&self) -> &OpenApiDocs {
        &self.inner.openapi
    }

    /// Authentication state.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// The backend channels.
    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }
}

/// `descriptors.strict`: every binding left out of the table is an error.
fn refuse_left_out(problems: &[RouteProblem]) -> anyhow::Result<()> {
    let left_out: Vec<String> = problems
        .iter()
        .filter(|p| p.kind.is_error())
        .map(ToString::to_string)
        .collect();
    anyhow::ensure!(
        left_out.is_empty(),
        "descriptors.strict is on and these bindings cannot be routed:\n  {}",
        left_out.join("\n  ")
    );
    Ok(())
}

/// Logs each binding left out (an error) or routed once (a warning).
fn report(problems: &[RouteProblem]) {
    for p in problems {
        if p.kind.is_error() {
            tracing::error!(
                method = %p.method,
                rule = %p.rule,
                kind = %p.kind,
                reason = %p.reason,
                "binding left out of the route table"
            );
        } else {
            tracing::warn!(
                method = %p.method,
                rule = %p.rule,
                reason = %p.reason,
                "duplicate binding routed once"
            );
        }
    }
}

/// Adds the descriptors of every `reflection: true` backend to `pool`, asking
/// its endpoints in turn until one answers. A backend that lists no services
/// in the config serves every service it reports but the `grpc.*` ones
/// (health, reflection, channelz, admin).
///
/// A backend none of whose endpoints answers is left without descriptors
/// (a warning) and named in the result: the gateway serves the others, and
/// the server retries it in the background.
///
/// # Errors
/// Descriptors that were fetched but do not fit the pool.
async fn reflect(
    config: &mut Config,
    pool: &mut DescriptorPool,
    mut answers: Answers,
) -> anyhow::Result<Reflection> {
    let mut outcome = Reflection::default();
    let cache = config.descriptor_cache.clone();
    for backend in config.backends.iter_mut().filter(|b| b.reflection) {
        let answered = answers.take(backend);
        let fetched = match answered {
            Some(found) => Ok(found),
            None => fetch(backend).await,
        };
        let found = match fetched {
            Ok(found) => {
                if let Some(dir) = &cache
                    && let Err(e) = descriptor::cache::store(dir, &backend.name, &found)
                {
                    tracing::warn!(backend = %backend.name, dir = %dir.display(), error = %e, "cannot keep the descriptors in the cache");
                }
                found
            }
            Err(cause) => match cached(cache.as_deref(), &backend.name) {
                Some(found) => {
                    tracing::warn!(
                        backend = %backend.name,
                        %cause,
                        fetched_at = %humantime::format_rfc3339_seconds(found.fetched_at),
                        "reflection does not answer: serving the cached descriptors until it does"
                    );
                    outcome.cached.push(backend.name.clone());
                    found.reflected
                }
                None => {
                    tracing::warn!(
                        backend = %backend.name,
                        %cause,
                        "reflection does not answer: serving without this backend's services until it does"
                    );
                    // Its services are unknown: none is routed, none is checked.
                    backend.services.clear();
                    outcome.pending.push(backend.name.clone());
                    continue;
                }
            },
        };
        reflection::add_to_pool(pool, &found.files)
            .with_context(|| format!("backend {}", backend.name))?;
        outcome
            .digests
            .insert(backend.name.clone(), descriptor_digest(&found.files));
        tracing::info!(
            backend = %backend.name,
            services = ?found.services,
            files = found.files.len(),
            "descriptors loaded by reflection"
        );
        if backend.services.is_empty() {
            // grpc.* are infrastructure (health, reflection, channelz, admin),
            // never API; sorted so an unchanged backend compares equal on reload.
            let mut services: Vec<String> = found
                .services
                .into_iter()
                .filter(|s| !s.starts_with("grpc."))
                .collect();
            services.sort();
            backend.services = services.into_iter().map(ServicePattern::Exact).collect();
        }
    }
    Ok(outcome)
}

/// Which reflection backends did not answer at a load.
#[derive(Debug, Default)]
struct Reflection {
    /// Without descriptors: their services have no routes.
    pending: Vec<String>,
    /// Served from `descriptors.cache_dir`.
    cached: Vec<String>,
    /// Of each backend's descriptors.
    digests: BTreeMap<String, String>,
}

/// A digest of serialized file descriptors (SHA-256, hex) that does not
/// depend on the order a reflection server lists them in.
pub fn descriptor_digest(files: &[Bytes]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&Bytes> = files.iter().collect();
    sorted.sort();
    let mut digest = Sha256::new();
    for file in sorted {
        digest.update(u64::try_from(file.len()).unwrap_or(u64::MAX).to_be_bytes());
        digest.update(file);
    }
    format!("{:x}", digest.finalize())
}

/// The cached descriptors of `backend`; a cache file that cannot be used is
/// a warning.
fn cached(dir: Option<&std::path::Path>, backend: &str) -> Option<descriptor::cache::Cached> {
    match descriptor::cache::load(dir?, backend) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(backend, error = %e, "ignoring the descriptor cache");
            None
        }
    }
}

/// Reflection answers fetched before a reload (by the background retry and
/// refresh), so that the reload does not ask the same backends again.
#[derive(Debug, Default)]
pub struct Answers(BTreeMap<String, (Vec<http::Uri>, reflection::Reflected)>);

impl Answers {
    /// Keeps `found`, the answer of `backend` as configured now.
    pub fn insert(&mut self, backend: &crate::config::BackendConfig, found: reflection::Reflected) {
        self.0
            .insert(backend.name.clone(), (backend.endpoints.clone(), found));
    }

    /// The answer kept for `backend`, if it was asked at the endpoints it
    /// has now (a reloaded file may point it elsewhere).
    fn take(&mut self, backend: &crate::config::BackendConfig) -> Option<reflection::Reflected> {
        let (endpoints, found) = self.0.remove(&backend.name)?;
        (endpoints == backend.endpoints).then_some(found)
    }
}

/// One reflection answer from `backend`, asking its endpoints in turn.
///
/// # Errors
/// Every endpoint's failure, joined.
pub async fn fetch(
    backend: &crate::config::BackendConfig,
) -> Result<reflection::Reflected, String> {
    let mut failures = Vec::new();
    // A discovered backend is asked at the instances etcd lists now.
    let endpoints = crate::upstream::discovery::addresses(backend).await?;
    if endpoints.is_empty() {
        return Err("no instance is registered".to_owned());
    }
    for endpoint in &endpoints {
        let connection = crate::upstream::connection(endpoint.clone(), endpoint, backend);
        match reflection::fetch(connection, backend.timeout).await {
            Ok(found) => return Ok(found),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(failures.join("; "))
}

/// While a reflection backend is pending, the config may name its services'
/// methods (`http.rules`, `methods`, auth rules): those entries wait with it,
/// rather than failing the whole load as unknown names.
fn set_aside_unknown(config: &mut Config, pool: &DescriptorPool) {
    let method_known = |name: &str| {
        name.rsplit_once('.')
            .and_then(|(service, method)| pool.get_service_by_name(service).map(|s| (s, method)))
            .is_some_and(|(s, m)| s.methods().any(|x| x.name() == m))
    };
    let service_known = |name: &str| pool.get_service_by_name(name).is_some();
    config.http_rules.retain(|rule| {
        let known = method_known(&rule.selector);
        if !known {
            tracing::debug!(selector = %rule.selector, "http rule waits for its reflection backend");
        }
        known
    });
    config.methods.retain(|name, _| method_known(name));
    config.auth.rules.retain(|rule| match &rule.target {
        crate::config::auth::RuleTarget::Service(s) => service_known(s),
        crate::config::auth::RuleTarget::Method(m) => method_known(m),
        // A route may be one of the pending backend's: it waits as well.
        crate::config::auth::RuleTarget::Route { .. } => true,
    });
}
