//! The docs UI at `/docs`: Swagger UI over `/openapi.json`, with its assets
//! compiled into the binary (utoipa-swagger-ui's `vendored` feature), so the
//! page works with no internet access.

use axum::Router;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::gateway::Gateway;

/// Routes for `/docs` and its assets.
pub fn router() -> Router<Gateway> {
    let config = Config::new(["/openapi.json"])
        // The public validator badge would call out to the internet.
        .validator_url("none")
        .try_it_out_enabled(true)
        .display_operation_id(true)
        .filter(true);
    SwaggerUi::new("/docs").config(config).into()
}
