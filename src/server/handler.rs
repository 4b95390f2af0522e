//! The request pipeline, top to bottom: route match → auth → backend →
//! deadline → body → message building → upstream call → response JSON.
//! Streaming methods leave after the backend is chosen, for [`stream`].
//!
//! Each step hands its result to the next; any failure becomes a
//! [`GatewayError`] rendered in one place and logged with the route.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Instant;
use tracing::Instrument;

use super::{layers, stream, websocket};
use crate::auth::strip_query;
use crate::error::{GatewayError, JSON, UpstreamStatus};
use crate::gateway::Gateway;
use crate::http_rule::Route;
use crate::transcode::{self, http_body};
use crate::upstream::metadata::{parse_grpc_timeout, request_metadata, response_headers};
use crate::upstream::{CallError, Deadline};

/// Handles every request that is not a gateway endpoint.
pub async fn handle(State(gw): State<Gateway>, request: Request) -> Response {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = crate::telemetry::request_span(&parts.method, request_id, &parts.headers);
    async move {
        let in_flight = gw.metrics().start(gw.config().edge.max_concurrent_requests);
        let mut matched: Option<Arc<Route>> = None;
        // Over the concurrency limit, shed at once rather than queue.
        let result = match in_flight {
            Some(_) => match layers::check_sizes(&parts, &gw.config().edge) {
                Ok(()) => pipeline(&gw, &mut parts, body, &mut matched).await,
                Err(e) => Err(e),
            },
            None => {
                tracing::warn!("request shed: too many requests in flight");
                Err(GatewayError::Overloaded)
            }
        };
        // Microseconds are plenty in a log line.
        let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let mut response = match result {
            Ok(response) => {
                tracing::Span::current().record("grpc_code", 0);
                tracing::info!(status = response.status().as_u16(), latency_ms, "request done");
                response
            }
            Err(error) => {
                let status = error.status();
                tracing::Span::current().record("grpc_code", error.code() as i32);
                if status.is_server_error() {
                    tracing::warn!(status = status.as_u16(), latency_ms, cause = %error.log_cause(), "request failed");
                } else {
                    tracing::info!(status = status.as_u16(), latency_ms, cause = %error.log_cause(), "request rejected");
                }
                error.into_response()
            }
        };
        crate::telemetry::answered(&tracing::Span::current(), response.status());
        // A deprecated API says so on every answer, errors included.
        if let Some(headers) = matched.as_ref().and_then(|r| r.deprecation.as_ref()) {
            response
                .headers_mut()
                .extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        gw.metrics().request(
            matched.as_ref().map(|r| r.template.source.as_str()),
            &parts.method,
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    }
    .instrument(span)
    .await
}

async fn pipeline(
    gw: &Gateway,
    parts: &mut Parts,
    body: Body,
    matched: &mut Option<Arc<Route>>,
) -> Result<Response, GatewayError> {
    let websocket = websocket::is_websocket(parts);
    let found = match gw.routes().lookup(&parts.method, parts.uri.path()) {
        Ok(found) if !websocket || found.route.is_streaming() => found,
        // A WebSocket opens with a GET; a stream is usually bound to POST.
        other if websocket => gw
            .routes()
            .lookup(&http::Method::POST, parts.uri.path())
            .ok()
            .filter(|f| f.route.is_streaming())
            .map_or(other, Ok)?,
        other => other?,
    };
    let route = found.route;
    *matched = Some(route.clone());
    let span = tracing::Span::current();
    crate::telemetry::route_matched(&span, &parts.method, &route.template.source);
    // Credentials first: nothing of an unauthenticated request is read or parsed.
    let requirement = gw
        .auth()
        .requirement(route.index)
        .ok_or_else(|| GatewayError::Internal("route without an auth requirement".to_owned()))?;
    let principal = gw
        .auth()
        .authenticate(requirement, &parts.headers, parts.uri.query())
        .await?;
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // After auth, so a caller is limited by identity; before the body is read.
    if let Some(limits) = gw.rate_limits()
        && let Err(limited) = limits.check(principal.as_ref(), client.map(|c| c.ip()))
    {
        gw.metrics().rate_limited();
        return Err(limited.into());
    }
    let target = gw.upstreams().select(route, &parts.headers)?;
    span.record("upstream", target.name.as_str());
    let query = strip_query(parts.uri.query(), gw.auth().credential_query_params());
    let authority = parts.uri.authority().map(|a| a.as_str());
    let client_cert = parts
        .extensions
        .get::<crate::tls::ClientCert>()
        .map(|c| &c.0);
    let mut metadata = request_metadata(
        &parts.headers,
        authority,
        &gw.config().metadata,
        client,
        client_cert,
    )?;
    gw.auth().forward(principal.as_ref(), &mut metadata);
    if route.is_streaming() {
        let query = query.map(std::borrow::Cow::into_owned);
        if websocket {
            return websocket::websocket(gw, parts, &found, target, query, metadata).await;
        }
        return stream::call(gw, parts, body, &found, target, query, metadata).await;
    }
    // One deadline for the whole request: a client trickling its body spends
    // the time the backend call would have had.
    let deadline = Deadline::after(timeout(
        parts,
        target.timeout,
        gw.config().max_grpc_timeout,
    )?);
    let body = tokio::time::timeout_at(
        deadline.at,
        read_body(parts, body, gw.config().transcode.max_body_bytes),
    )
    .await
    .map_err(|_| GatewayError::BodyTimeout {
        timeout: deadline.timeout,
    })??;
    let input = message(gw, parts, route, &found.values, query.as_deref(), body)?;
    let calling = Instant::now();
    let reply = gw
        .upstreams()
        .unary(target, route, Bytes::from(input), metadata, deadline)
        .await;
    let code = match &reply {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    };
    gw.metrics()
        .upstream(&target.name, code, Some(calling.elapsed()));
    let reply = reply.map_err(|e| call_error(gw, &target.name, e))?;
    let headers = response_headers(&reply.headers, reply.trailers.as_ref());
    render_reply(gw, route, &target.name, &reply.message, headers)
}

/// One request message from the path values, the query and the body: JSON
/// by the route's body rule, or the raw body as a `google.api.HttpBody`.
pub(super) fn message(
    gw: &Gateway,
    parts: &Parts,
    route: &Route,
    values: &[String],
    query: Option<&str>,
    body: Bytes,
) -> Result<Vec<u8>, GatewayError> {
    if route.raw_request {
        let mut input = gw.codec().request(route, values, query, b"")?;
        http_body::append(&mut input, route.body.field(), content_type(parts), body);
        return Ok(input);
    }
    check_content_type(parts, &body)?;
    gw.codec()
        .request(route, values, query, &body)
        .map_err(|e| not_json(parts, &body).unwrap_or_else(|| e.into()))
}

/// A form or text body (accepted so `curl -d '{...}'` works) that is not
/// JSON at all: the media type is the problem, not a JSON syntax error.
/// Checked only once building the message failed.
fn not_json(parts: &Parts, body: &[u8]) -> Option<GatewayError> {
    let content_type = content_type(parts);
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let lenient = essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        || essence.eq_ignore_ascii_case("text/plain");
    (lenient && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()).then(|| {
        GatewayError::UnsupportedMediaType {
            content_type: content_type.to_owned(),
        }
    })
}

/// The request's `Content-Type`, or "" without one.
pub(super) fn content_type(parts: &Parts) -> &str {
    parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// One reply message as the response: proto3 JSON, or a `google.api.HttpBody`'s
/// content type and bytes.
pub(super) fn render_reply(
    gw: &Gateway,
    route: &Route,
    backend: &str,
    reply: &[u8],
    mut headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let bad = |cause: String| GatewayError::BadBackend {
        backend: backend.to_owned(),
        cause,
    };
    if route.raw_response {
        let body = http_body::decode(reply).map_err(|e| bad(e.to_string()))?;
        let content_type = HeaderValue::from_str(&body.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_TYPE, content_type);
        return Ok((StatusCode::OK, headers, body.data).into_response());
    }
    let json = gw
        .codec()
        .response(route, reply)
        .map_err(|e| bad(e.to_string()))?;
    headers.insert(CONTENT_TYPE, JSON);
    Ok((StatusCode::OK, headers, json).into_response())
}

/// The call's time: the client's `Grpc-Timeout` (capped), else the route's default.
pub(super) fn timeout(
    parts: &Parts,
    default: Duration,
    cap: Duration,
) -> Result<Duration, GatewayError> {
    let Some(value) = parts.headers.get("grpc-timeout") else {
        return Ok(default);
    };
    let bad = |reason: String| GatewayError::BadHeader {
        header: "Grpc-Timeout",
        reason,
    };
    let text = value.to_str().map_err(|_| bad("not ASCII".to_owned()))?;
    let asked = parse_grpc_timeout(text).map_err(bad)?;
    Ok(asked.min(cap))
}

/// A body must be JSON. Besides `application/json` and `+json` types, the
/// types curl and HTML forms send by default (`-d` sends form encoding) are
/// read as JSON too, so `curl -d '{...}'` works; anything else is a 415. An
/// empty `Content-Type` (Go's `http.Post(url, "", body)` sends one) counts
/// as none.
pub(super) fn check_content_type(parts: &Parts, body: &[u8]) -> Result<(), GatewayError> {
    if body.trim_ascii().is_empty() {
        return Ok(());
    }
    let Some(value) = parts.headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    if value.as_bytes().trim_ascii().is_empty() {
        return Ok(());
    }
    let text = value.to_str().unwrap_or_default();
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let accepted = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
        || essence == "application/x-www-form-urlencoded"
        || essence == "text/plain";
    if accepted {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType {
            content_type: text.to_owned(),
        })
    }
}

pub(super) async fn read_body(
    parts: &Parts,
    body: Body,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

pub(super) fn call_error(gw: &Gateway, backend: &str, error: CallError) -> GatewayError {
    match error {
        CallError::Status { status, headers } => {
            let details = (!status.details().is_empty())
                .then(|| {
                    transcode::status::details(
                        gw.pool(),
                        status.details(),
                        &gw.config().transcode.json,
                        gw.config().transcode.forward_debug_info,
                    )
                })
                .flatten();
            GatewayError::Upstream(Box::new(UpstreamStatus {
                code: status.code(),
                message: status.message().to_owned(),
                details,
                // As for a reply: header metadata, then the trailers.
                headers: response_headers(&headers, Some(status.metadata())),
            }))
        }
        CallError::Unreachable(cause) => GatewayError::Unavailable {
            backend: backend.to_owned(),
            cause,
        },
        CallError::NoEndpoint(Some(reopens_in)) => GatewayError::CircuitOpen {
            backend: backend.to_owned(),
            retry_after: reopens_in.as_secs_f64().ceil().max(1.0) as u64,
        },
        CallError::NoEndpoint(None) => GatewayError::Unavailable {
            backend: backend.to_owned(),
            cause: "no healthy endpoint".to_owned(),
        },
        CallError::Protocol(cause) => GatewayError::BadBackend {
            backend: backend.to_owned(),
            cause,
        },
        CallError::Timeout(timeout) => GatewayError::DeadlineExceeded {
            backend: backend.to_owned(),
            timeout,
        },
    }
}
