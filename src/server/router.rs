//! The axum router: gateway endpoints first, every other request to the transcoding handler.
//!
//! Routing of API calls is the route table's job (the `google.api.http`
//! precedence rules differ from axum's), so they all reach one fallback.
//! `/openapi.json`, `/openapi.yaml` and `/docs` are served when
//! `openapi.enabled` is on; they take precedence over API routes of the same path.

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use super::{docs, handler};
use crate::error::JSON;
use crate::gateway::Gateway;

/// Builds the router for a loaded gateway.
pub fn router(gateway: Gateway) -> Router {
    let mut router = Router::new().route("/healthz", get(healthz));
    if gateway.config().openapi.enabled {
        router = router
            .route("/openapi.json", get(openapi_json))
            .route("/openapi.yaml", get(openapi_yaml))
            .merge(docs::router());
    }
    router.fallback(handler::handle).with_state(gateway)
}

/// Liveness: the process is up and serving HTTP.
async fn healthz() -> impl IntoResponse {
    ([(CONTENT_TYPE, JSON)], r#"{"status":"ok"}"#)
}

// The document only changes with the routes, so clients may cache it briefly.
const DOC_CACHE: HeaderValue = HeaderValue::from_static("public, max-age=60");

async fn openapi_json(State(gw): State<Gateway>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, JSON), (CACHE_CONTROL, DOC_CACHE)],
        gw.openapi().json.clone(),
    )
}

async fn openapi_yaml(State(gw): State<Gateway>) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/yaml")),
            (CACHE_CONTROL, DOC_CACHE),
        ],
        gw.openapi().yaml.clone(),
    )
}
