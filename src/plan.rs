//! One plan per route: everything a request on the route needs, compiled
//! once when the gateway is built, so the request path looks nothing up.
//!
//! `http_rule` builds the routes; this module joins each with what the
//! other modules resolved for it: its auth requirement (`auth`), its
//! transcoding plans (`transcode`), its backends with their handles
//! (`upstream`) and the limits that apply to it. A new per-route feature
//! is one more field here, filled in [`RoutePlan::compile`].

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Authenticator, Requirement};
use crate::config::Config;
use crate::http_rule::{Route, RoutePayload};
use crate::transcode::{RouteCodec, Transcoder};
use crate::upstream::{Split, Upstreams};
use crate::validate::{MethodRules, Validation};

/// What a request on one route needs.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The route: its gRPC method, template and bindings.
    pub route: Arc<Route>,
    /// Who may call it.
    pub auth: Arc<Requirement>,
    /// JSON ⇄ protobuf for its messages.
    pub codec: RouteCodec,
    /// The backends it calls.
    pub backends: Split,
    /// Its size and time limits.
    pub limits: Limits,
    /// Its template, as the `route` label of its metrics: made once here,
    /// so counting a request copies no text.
    pub label: Arc<str>,
    /// The rules its request is checked against; `None` when its input has none.
    pub validation: Option<Arc<MethodRules>>,
    /// `methods.<name>.cache_control`: what its GET answers carry.
    pub cache_control: Option<http::HeaderValue>,
    /// The status of its successful answers, and where a created resource is.
    pub success: Success,
}

/// What a successful REST answer of a route says besides its body.
#[derive(Debug, Clone)]
pub struct Success {
    /// 200, or by convention or config 201, 202 or 204.
    pub status: http::StatusCode,
    /// For 201: the reply field naming the resource and the service's GET
    /// template that serves it, for `Location`.
    pub location: Option<Arc<Location>>,
}

/// How a `Location` is made from a reply (AIP-133).
#[derive(Debug)]
pub struct Location {
    /// The reply's field naming the created resource.
    pub field: prost_reflect::FieldDescriptor,
    /// The GET template's text before and after its one variable.
    pub before: String,
    /// See `before`.
    pub after: String,
}

/// The GET routes that bind one reply field, by service and field name:
/// where a created resource can be read back.
#[derive(Debug, Default)]
pub struct Locations {
    by_field: std::collections::HashMap<(String, String), (String, String)>,
}

impl Locations {
    /// Indexes the GET routes of `routes` whose template has one variable.
    pub fn build<P: RoutePayload>(routes: &crate::http_rule::RouteTable<P>) -> Self {
        let mut by_field = std::collections::HashMap::new();
        for route in routes.routes().iter().map(RoutePayload::route) {
            let get = matches!(&route.http_method, crate::http_rule::MethodMatch::Exact(m) if m == http::Method::GET);
            let [field] = route.path_fields.as_slice() else {
                continue;
            };
            if !get || field.fields().len() != 1 {
                continue;
            }
            let source = route.template.source.as_str();
            let (Some(open), Some(close)) = (source.find('{'), source.find('}')) else {
                continue;
            };
            by_field
                .entry((
                    route.method.parent_service().full_name().to_owned(),
                    field.leaf().name().to_owned(),
                ))
                .or_insert_with(|| (source[..open].to_owned(), source[close + 1..].to_owned()));
        }
        Self { by_field }
    }
}

impl Success {
    /// The success of `route` under `config`.
    fn of(route: &Route, config: &Config, locations: &Locations) -> Self {
        let overrides = config.methods.get(route.method.full_name());
        let output = route.method.output();
        let status = route.success_status;
        let location = (status == http::StatusCode::CREATED)
            .then(|| {
                let service = route.method.parent_service().full_name().to_owned();
                let named = overrides.and_then(|m| m.location_field.clone());
                let candidates: Vec<String> = match named {
                    Some(name) => vec![name],
                    None => std::iter::once("name".to_owned())
                        .chain(output.fields().map(|f| f.name().to_owned()))
                        .collect(),
                };
                candidates.into_iter().find_map(|name| {
                    let field = output.get_field_by_name(&name)?;
                    let (before, after) = locations.by_field.get(&(service.clone(), name))?;
                    (!field.is_list() && !field.is_map()).then(|| {
                        Arc::new(Location {
                            field,
                            before: before.clone(),
                            after: after.clone(),
                        })
                    })
                })
            })
            .flatten();
        Self { status, location }
    }
}

/// The limits of one route.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body read (`transcoding.max_body_bytes`).
    pub max_body_bytes: usize,
    /// The cap on a client's `Grpc-Timeout` (`server.max_grpc_timeout`).
    pub max_grpc_timeout: Duration,
    /// Longest a stream may stay open (`streaming.max_duration`).
    pub stream_max_duration: Duration,
    /// Longest a stream may go without a message (`streaming.idle_timeout`).
    pub stream_idle_timeout: Duration,
}

impl RoutePlan {
    /// Compiles the plan of `route` from what the gateway built.
    ///
    /// # Errors
    /// The route names a backend that is not configured (the route table
    /// never builds one).
    pub fn compile(
        route: Arc<Route>,
        config: &Config,
        auth: &Authenticator,
        transcoder: &Arc<Transcoder>,
        upstreams: &Upstreams,
        validation: &Validation,
        locations: &Locations,
    ) -> anyhow::Result<Self> {
        let backends = upstreams.split(&route).ok_or_else(|| {
            anyhow::anyhow!(
                "route {} {} names a backend that is not configured",
                route.http_method,
                route.template.source
            )
        })?;
        Ok(Self {
            auth: auth.requirement(&route),
            codec: transcoder.route(&route),
            backends,
            limits: Limits {
                max_body_bytes: config.transcode.max_body_bytes,
                max_grpc_timeout: config.max_grpc_timeout,
                stream_max_duration: config.streaming.max_duration,
                stream_idle_timeout: config.streaming.idle_timeout,
            },
            label: route.template.source.as_str().into(),
            success: Success::of(&route, config, locations),
            cache_control: config
                .methods
                .get(route.method.full_name())
                .and_then(|m| m.cache_control.clone()),
            validation: validation.method(
                &route.method,
                &config.validation_of(route.method.full_name()),
                &route.path_fields,
            ),
            route,
        })
    }
}

impl RoutePayload for RoutePlan {
    fn route(&self) -> &Arc<Route> {
        &self.route
    }
}

/// What a call of one gRPC method needs on the surfaces that name methods
/// rather than paths (native gRPC): the method's routes decide its policy.
#[derive(Debug, Clone)]
pub struct MethodPlan {
    /// Index of the method's first route, whose backends and limits it uses.
    pub route: usize,
    /// The distinct requirements of the method's routes: a caller must meet
    /// every one, so no surface is more open than the method's strictest route.
    pub auth: Vec<Arc<Requirement>>,
    /// `/package.Service/Method`, the `route` label of its metrics.
    pub label: Arc<str>,
    /// The client sends a stream of messages.
    pub client_streaming: bool,
    /// The backend sends a stream of messages.
    pub server_streaming: bool,
    /// `idempotency_level = NO_SIDE_EFFECTS`: Connect clients may call it with GET.
    pub no_side_effects: bool,
    /// `methods.<name>.cache_control`: what its Connect GET answers carry.
    pub cache_control: Option<http::HeaderValue>,
}

/// Routed methods by gRPC path (`/package.Service/Method`), built once with
/// the route table. `grpc.*` services are never in it.
#[derive(Debug, Default)]
pub struct MethodTable {
    by_path: std::collections::HashMap<Box<str>, MethodPlan>,
}

impl MethodTable {
    /// Indexes every routed method of `routes`.
    pub fn build(routes: &[RoutePlan], config: &Config) -> Self {
        let mut by_path: std::collections::HashMap<Box<str>, MethodPlan> =
            std::collections::HashMap::new();
        for (i, plan) in routes.iter().enumerate() {
            let method = &plan.route.method;
            if method.parent_service().full_name().starts_with("grpc.") {
                continue;
            }
            let path = plan.route.grpc_path.path();
            match by_path.get_mut(path) {
                Some(known) => {
                    if !known.auth.iter().any(|r| Arc::ptr_eq(r, &plan.auth)) {
                        known.auth.push(plan.auth.clone());
                    }
                }
                None => {
                    by_path.insert(
                        path.into(),
                        MethodPlan {
                            route: i,
                            auth: vec![plan.auth.clone()],
                            label: path.into(),
                            client_streaming: method.is_client_streaming(),
                            server_streaming: method.is_server_streaming(),
                            no_side_effects: method
                                .method_descriptor_proto()
                                .options
                                .as_ref()
                                .and_then(|o| o.idempotency_level)
                                == Some(
                                    prost_types::method_options::IdempotencyLevel::NoSideEffects
                                        as i32,
                                ),
                            cache_control: config
                                .methods
                                .get(method.full_name())
                                .and_then(|m| m.cache_control.clone()),
                        },
                    );
                }
            }
        }
        Self { by_path }
    }

    /// The method at `path`, if it is routed.
    pub fn get(&self, path: &str) -> Option<&MethodPlan> {
        self.by_path.get(path)
    }
}
