//! The axum router: gateway endpoints first, every other request to the transcoding handler.
//!
//! Routing of API calls is the route table's job (the `google.api.http`
//! precedence rules differ from axum's), so they all reach one fallback.

use axum::Router;
use axum::routing::get;
use http::header::CONTENT_TYPE;

use super::handler;
use crate::error::JSON;
use crate::gateway::Gateway;

/// Builds the router for a loaded gateway.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .fallback(handler::handle)
        .with_state(gateway)
}

/// Liveness: the process is up and serving HTTP.
async fn healthz() -> impl axum::response::IntoResponse {
    ([(CONTENT_TYPE, JSON)], r#"{"status":"ok"}"#)
}
