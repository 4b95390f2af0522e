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
            route,
        })
    }
}

impl RoutePayload for RoutePlan {
    fn route(&self) -> &Arc<Route> {
        &self.route
    }
}
