//! The axum router: gateway endpoints first, every other request to the transcoding handler.
//!
//! Routing of API calls is the route table's job (the `google.api.http`
//! precedence rules differ from axum's), so they all reach one fallback.
//! `/healthz` (liveness), `/readyz` (readiness, 503 from the start of a
//! shutdown) and `/metrics` (Prometheus) are always served;
//! `/openapi.json`, `/openapi.yaml` and `/docs` are served when
//! `openapi.enabled` is on; they take precedence over API routes of the same path.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use super::reload::Shared;
use super::{docs, handler, layers};
use crate::error::{GatewayError, JSON};
use crate::gateway::Gateway;
use crate::http_rule::LookupError;
use crate::openapi::Format;

/// Builds the router for a loaded gateway; `/readyz` answers 503 once
/// `shared.draining` is set, and shows a schema swap refused as breaking.
pub fn router(gateway: Gateway, shared: Shared) -> Router {
    let mut endpoints = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(move |state: State<Gateway>| readyz(state, shared.clone())),
        )
        .route("/metrics", get(metrics));
    if gateway.config().reflection_server {
        let reflection = super::reflection::Reflection::new(&gateway);
        endpoints = endpoints
            .route_service(super::reflection::PATHS[0], reflection.v1())
            .route_service(super::reflection::PATHS[1], reflection.v1alpha());
    }
    if gateway.config().openapi.enabled {
        let versions: Vec<String> = gateway.openapi().versions.keys().cloned().collect();
        endpoints = endpoints
            .route("/openapi.json", get(openapi_json))
            .route("/openapi.yaml", get(openapi_yaml))
            .route("/openapi/{file}", get(openapi_version))
            .merge(docs::router(&versions));
    }
    if !gateway.auth().gateway_endpoints().public {
        // route_layer: only matched gateway endpoints are checked; API calls
        // reach the fallback, which checks their own route's requirement.
        endpoints = endpoints.route_layer(middleware::from_fn_with_state(gateway.clone(), protect));
    }
    // After the protection above: tools/call checks each method's own rules,
    // tools/list the gateway endpoints' requirement.
    if gateway.config().mcp.enabled {
        let tools = std::sync::Arc::new(super::mcp::Tools::build(&gateway));
        tracing::info!(tools = tools.len(), path = %gateway.config().mcp.path, "MCP endpoint");
        let not_allowed = || async { StatusCode::METHOD_NOT_ALLOWED };
        endpoints = endpoints.route(
            &gateway.config().mcp.path,
            axum::routing::post(move |State(gw): State<Gateway>, request: Request| {
                super::mcp::handle(gw, tools.clone(), request)
            })
            .get(not_allowed)
            .delete(not_allowed),
        );
    }
    let edge = gateway.config().edge.clone();
    let cors = gateway.config().cors.clone();
    let router = endpoints.fallback(handler::handle).with_state(gateway);
    layers::apply(router, &edge, cors.as_ref())
}

/// `auth.protect_gateway_endpoints`: the default requirement for health and docs.
async fn protect(State(gw): State<Gateway>, request: Request, next: Next) -> Response {
    let auth = gw.auth();
    match auth
        .authenticate(
            auth.gateway_endpoints(),
            request.headers(),
            request.uri().query(),
        )
        .await
    {
        Ok(_) => next.run(request).await,
        Err(e) => {
            let (parts, _) = request.into_parts();
            // The gateway's reflection is called by gRPC clients: they get a gRPC status.
            match super::grpc::Wire::of(&parts) {
                Some(wire) => super::grpc::error_response(&GatewayError::from(e), &parts, wire),
                None => GatewayError::from(e).into_response(),
            }
        }
    }
}

/// Liveness: the process is up and serving HTTP.
async fn healthz() -> impl IntoResponse {
    ([(CONTENT_TYPE, JSON)], r#"{"status":"ok"}"#)
}

/// Readiness: the gateway is not shutting down, and every required
/// backend has an endpoint that passes its health checks and is not
/// ejected and, with `reflection`, its descriptors. 200 when ready, 503
/// when not (`status` says `not_ready` or `draining`); the body lists each
/// backend's endpoints and their state either way.
async fn readyz(State(gw): State<Gateway>, shared: Shared) -> Response {
    #[derive(serde::Serialize)]
    struct Ready<'a> {
        status: &'a str,
        config: ConfigState,
        backends: Vec<crate::upstream::BackendStatus>,
        /// Reflection backends whose descriptors have not been fetched yet.
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        pending_reflection: &'a [String],
        /// Reflection backends served from the descriptor cache meanwhile.
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        cached_reflection: &'a [String],
        /// The last schema swap, refused for breaking changes
        /// (`reload.refuse_breaking`): the schema served is the one before it.
        #[serde(skip_serializing_if = "Option::is_none")]
        schema_refused: Option<crate::schema::Swap>,
    }
    #[derive(serde::Serialize)]
    struct ConfigState {
        source: String,
        generation: u64,
        loaded_at: String,
        routes: usize,
    }
    let backends = gw.upstreams().status();
    let pending = gw.pending_reflection();
    let draining = shared.draining.is_draining();
    // A required backend needs its routes as well as an endpoint.
    let ready = !draining
        && backends
            .iter()
            .all(|b| !b.required || (b.available && !pending.contains(&b.name)));
    let body = Ready {
        status: match (draining, ready) {
            (true, _) => "draining",
            (false, true) => "ready",
            (false, false) => "not_ready",
        },
        config: ConfigState {
            source: gw.config().source.display().to_string(),
            generation: gw.generation(),
            loaded_at: humantime::format_rfc3339_seconds(gw.loaded_at()).to_string(),
            routes: gw.routes().routes().len(),
        },
        backends,
        pending_reflection: pending,
        cached_reflection: gw.cached_reflection(),
        schema_refused: shared.schema.refused(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    match serde_json::to_vec(&body) {
        Ok(json) => (status, [(CONTENT_TYPE, JSON)], json).into_response(),
        Err(e) => GatewayError::Internal(e.to_string()).into_response(),
    }
}

/// Prometheus metrics in the OpenMetrics text format.
async fn metrics(State(gw): State<Gateway>) -> Response {
    let text = gw.metrics().render(&gw.upstreams().status());
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

// The document only changes with the routes, so clients may cache it briefly.
const DOC_CACHE: HeaderValue = HeaderValue::from_static("public, max-age=60");

async fn openapi_json(State(gw): State<Gateway>) -> Response {
    document(gw.openapi().all.get(Format::Json), Format::Json)
}

async fn openapi_yaml(State(gw): State<Gateway>) -> Response {
    document(gw.openapi().all.get(Format::Yaml), Format::Yaml)
}

/// `/openapi/v1.json`, `/openapi/v2.yaml`: one API version's document.
async fn openapi_version(State(gw): State<Gateway>, Path(file): Path<String>) -> Response {
    let format = match file.rsplit_once('.') {
        Some((v, "json")) => Some((v, Format::Json)),
        Some((v, "yaml")) => Some((v, Format::Yaml)),
        _ => None,
    };
    match format.and_then(|(v, f)| Some((gw.openapi().versions.get(v)?, f))) {
        Some((doc, format)) => document(doc.get(format), format),
        None => GatewayError::Route(LookupError::NotFound {
            path: format!("/openapi/{file}"),
        })
        .into_response(),
    }
}

fn document(text: &Bytes, format: Format) -> Response {
    let content_type = match format {
        Format::Json => JSON,
        Format::Yaml => HeaderValue::from_static("application/yaml"),
    };
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, DOC_CACHE)],
        text.clone(),
    )
        .into_response()
}
