//! The docs UI at `/docs`: Swagger UI over `/openapi.json` (and, when
//! several API versions are served, a document per version to pick from),
//! with its assets compiled into the binary (utoipa-swagger-ui's `vendored`
//! feature), so the page works with no internet access.

use axum::Router;
use utoipa_swagger_ui::{Config, SwaggerUi, Url};

use crate::gateway::Gateway;

/// Routes for `/docs` and its assets; `versions` are the per-version documents.
pub fn router(versions: &[String]) -> Router<Gateway> {
    let mut urls = vec![Url::with_primary("all", "/openapi.json", true)];
    // A picker only when there is something to pick; each entry is named by its URL.
    if versions.len() > 1 {
        urls.extend(
            versions
                .iter()
                .map(|v| Url::from(format!("/openapi/{v}.json"))),
        );
    }
    let config = Config::new(urls)
        // The public validator badge would call out to the internet.
        .validator_url("none")
        .try_it_out_enabled(true)
        .display_operation_id(true)
        .filter(true);
    SwaggerUi::new("/docs").config(config).into()
}
