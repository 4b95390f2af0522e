//! The edge layers every request passes, outermost first:
//!
//! 1. request id: `X-Request-Id` kept when the client sent one, generated
//!    (a UUID) otherwise, echoed on the response and forwarded to backends;
//! 2. size limits: request target and headers (414, 431), before anything
//!    else looks at them;
//! 3. CORS, preflights included, when `cors` is configured;
//! 4. response compression (gzip, br), but never of streams: compressing
//!    would hold messages back;
//! 5. compressed request bodies (gzip, br), decompressed as they are read,
//!    so body limits count decompressed bytes.
//!
//! Load shedding sits on the API handler alone ([`shed`]), so health checks
//! and docs answer under load.

use std::convert::Infallible;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::{CorsOptions, EdgeOptions};
use crate::error::GatewayError;

/// `X-Request-Id`.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the edge layers.
pub fn apply(router: Router, edge: &EdgeOptions, cors: Option<&CorsOptions>) -> Router {
    let mut router = router.layer(RequestDecompressionLayer::new().gzip(true).br(true));
    if edge.compression {
        // Streams mark themselves with `X-Accel-Buffering: no`; SSE is
        // excluded by the default predicate, NDJSON here.
        let predicate = DefaultPredicate::new()
            .and(NotForContentType::new("application/x-ndjson"))
            .and(
                |_: StatusCode, _: http::Version, headers: &HeaderMap, _: &http::Extensions| {
                    headers.get("x-accel-buffering").is_none()
                },
            );
        router = router.layer(
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .compress_when(predicate),
        );
    }
    if let Some(cors) = cors {
        router = router.layer(cors_layer(cors));
    }
    let limits = (edge.max_uri_bytes, edge.max_header_bytes);
    router
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            check_sizes(request, next, limits)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The API handler behind a concurrency limit: a request over it is
/// answered 503 with `Retry-After` at once rather than queued.
pub fn shed<S>(
    handler: S,
    limit: usize,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static
where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .concurrency_limit(limit)
        .service(handler)
}

async fn overloaded(_: tower::BoxError) -> Response {
    tracing::warn!("request shed: too many requests in flight");
    let mut response = GatewayError::Overloaded.into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn check_sizes(
    request: Request,
    next: Next,
    (max_uri, max_headers): (usize, usize),
) -> Response {
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri > max_uri {
        return GatewayError::UriTooLong { limit: max_uri }.into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > max_headers {
        return GatewayError::HeadersTooLarge { limit: max_headers }.into_response();
    }
    next.run(request).await
}

fn cors_layer(options: &CorsOptions) -> CorsLayer {
    let origins = match &options.allowed_origins {
        None => AllowOrigin::any(),
        Some(list) => AllowOrigin::list(list.iter().cloned()),
    };
    let mut expose = options.expose_headers.clone();
    // Scripts may read the request id and a deprecated API's notices.
    for always in [
        REQUEST_ID,
        HeaderName::from_static("deprecation"),
        HeaderName::from_static("sunset"),
    ] {
        if !expose.contains(&always) {
            expose.push(always);
        }
    }
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(options.allowed_methods.clone())
        .allow_headers(options.allowed_headers.clone())
        .expose_headers(expose)
        .allow_credentials(options.allow_credentials)
        .max_age(options.max_age)
}
