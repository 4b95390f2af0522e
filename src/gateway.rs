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
use crate::http_rule::{RouteProblem, RouteTable};
use crate::metrics::Metrics;
use crate::openapi::{self, Format};
use crate::rate_limit::RateLimits;
use crate::transcode::Codec;
use crate::upstream::Upstreams;

/// Shared, immutable gateway state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    pool: DescriptorPool,
    routes: RouteTable,
    upstreams: Upstreams,
    openapi: OpenApiDocs,
    auth: Authenticator,
    codec: Codec,
    loaded_at: SystemTime,
    generation: u64,
    metrics: Metrics,
    rate_limits: Option<RateLimits>,
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
    pub fn build(
        routes: &RouteTable,
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
        Self::build(config, None).await
    }

    /// Builds the gateway for a new `config`, keeping this one's backends
    /// (connections, health state) where their configuration is unchanged.
    ///
    /// # Errors
    /// As [`Gateway::load`]; this gateway is unaffected.
    pub async fn reload(&self, config: Config) -> anyhow::Result<Self> {
        Self::build(config, Some(self)).await
    }

    async fn build(mut config: Config, previous: Option<&Gateway>) -> anyhow::Result<Self> {
        let source = config.source.display().to_string();
        let mut pool = descriptor::load(&config.descriptors)
            .with_context(|| format!("{source}: cannot load descriptors"))?;
        reflect(&mut config, &mut pool)
            .await
            .with_context(|| format!("{source}: cannot load descriptors by reflection"))?;
        let routes = RouteTable::build(&pool, &config)
            .with_context(|| format!("{source}: invalid routes"))?;
        if config.strict_descriptors {
            refuse_left_out(routes.problems())
                .with_context(|| format!("{source}: invalid routes"))?;
        }
        let codec = Codec::build(&routes, &config.transcode.json);
        let auth = Authenticator::build(&config.auth, &routes)
            .await
            .with_context(|| format!("{source}: invalid auth"))?;
        // Not served, not built: the CLI's `openapi` command builds on demand.
        let openapi = if config.openapi.enabled {
            OpenApiDocs::build(&routes, &pool, &config, &auth)?
        } else {
            OpenApiDocs::empty()
        };
        // Last: nothing above can fail after health checks and DNS tasks start.
        let upstreams = Upstreams::connect(&config, previous.map(|p| &p.inner.upstreams)).await;
        let rate_limits = RateLimits::build(&config.rate_limit);
        // Counters keep counting across reloads.
        let metrics = previous
            .map(|p| p.inner.metrics.clone())
            .unwrap_or_default();
        // Reported once nothing can fail: this table is the one to be served.
        report(routes.problems());
        metrics.route_problems(routes.problems());
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                pool,
                routes,
                upstreams,
                openapi,
                auth,
                codec,
                loaded_at: SystemTime::now(),
                generation: previous.map_or(1, |p| p.inner.generation + 1),
                metrics,
                rate_limits,
            }),
        })
    }

    /// Rate limits, when configured.
    pub fn rate_limits(&self) -> Option<&RateLimits> {
        self.inner.rate_limits.as_ref()
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

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.inner.routes
    }

    /// The rendered OpenAPI document.
    pub fn openapi(&self) -> &OpenApiDocs {
        &self.inner.openapi
    }

    /// The reply codec.
    pub fn codec(&self) -> &Codec {
        &self.inner.codec
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
async fn reflect(config: &mut Config, pool: &mut DescriptorPool) -> anyhow::Result<()> {
    for backend in config.backends.iter_mut().filter(|b| b.reflection) {
        let mut failures = Vec::new();
        let mut answer = None;
        for endpoint in &backend.endpoints {
            let connection =
                crate::upstream::balance::connection(endpoint.clone(), endpoint, backend);
            match reflection::fetch(connection, backend.timeout).await {
                Ok(found) => {
                    answer = Some(found);
                    break;
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        let Some(found) = answer else {
            anyhow::bail!("backend {}: {}", backend.name, failures.join("; "));
        };
        reflection::add_to_pool(pool, &found.files)
            .with_context(|| format!("backend {}", backend.name))?;
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
    Ok(())
}
