//! The dispatcher: admits a request, runs the shared front of the
//! [`pipeline`] (route match → auth → rate limit → backend → metadata) and
//! hands the call to its adapter: [`unary`], [`stream`], [`websocket`] or,
//! for native gRPC, [`grpc`]. Any failure becomes a [`GatewayError`] rendered
//! in one place, in the client's protocol, and logged with the route
//! template; every answer is counted by route.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use tokio::time::Instant;
use tracing::Instrument;

use super::pipeline::{self, Admitted, Call};
use super::{connect, grpc, layers, stream, unary, websocket};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::http_rule::Route;
use crate::rate_limit::Allowed;

/// Handles every request that is not a gateway endpoint.
pub async fn handle(State(gw): State<Gateway>, request: Request) -> Response {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    // Taken by the call once the caller is let in; still here on a refusal.
    let mut body = Some(body);
    let span = crate::telemetry::request_span(&parts.method, &parts.headers);
    let surface = Surface::of(&parts);
    async move {
        let mut seen = Seen::default();
        let result = match pipeline::admit(&gw) {
            Ok(admitted) => match layers::check_sizes(&parts, &gw.config().edge) {
                Ok(()) => {
                    dispatch(&gw, surface, &mut parts, &mut body, &mut seen, admitted).await
                }
                Err(e) => Err(e),
            },
            Err(e) => {
                tracing::warn!("request shed: too many requests in flight");
                Err(e)
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
                match surface {
                    Surface::Rest => error.into_response(),
                    Surface::Grpc(wire) => grpc::error_response(&error, &parts, wire),
                    Surface::Connect(connect::Kind::Stream) => {
                        grpc::error_response(&error, &parts, grpc::Wire::Connect)
                    }
                    Surface::Connect(_) => connect::error_response(&error),
                }
            }
        };
        if let Some(unread) = body.take() {
            // Boxed: only refusals take this path.
            Box::pin(drain(&parts, unread)).await;
        }
        crate::telemetry::answered(&tracing::Span::current(), response.status());
        // A deprecated API says so on every answer, errors included.
        if let Some(headers) = seen.route.as_ref().and_then(|r| r.deprecation.as_ref()) {
            response
                .headers_mut()
                .extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        // So is a limited caller's budget.
        if let Some(rate) = &seen.rate {
            rate.write_headers(response.headers_mut());
        }
        gw.metrics().request(
            seen.label.as_ref(),
            &parts.method,
            surface.status(&response),
            started.elapsed(),
        );
        response
    }
    .instrument(span)
    .await
}

/// A small request body that a refusal left unread, read before the answer
/// goes out, so the client can finish sending: over HTTP/1.1 a client still
/// writing (Node's `http` sends the body after the headers) would find the
/// connection closed under it, over HTTP/2 its stream reset (curl reports
/// that as a failure). Only a declared length up to 64 KiB (or HTTP/1.1
/// chunks, up to as much), within a second: a stream of unknown length is
/// never waited for.
async fn drain(parts: &Parts, body: Body) {
    const MAX: usize = 64 * 1024;
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(1);
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = parts.version < http::Version::HTTP_2
        && parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    if !(chunked || declared.is_some_and(|n| n > 0 && n <= MAX as u64)) {
        return;
    }
    let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX));
    let _ = tokio::time::timeout(WITHIN, read).await;
}

/// How the client speaks, which decides how errors are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// REST/JSON and its streams: errors in the gateway's JSON shape.
    Rest,
    /// Native gRPC and gRPC-Web: errors as trailers-only statuses.
    Grpc(grpc::Wire),
    /// Connect: unary errors as its JSON, stream errors in the last message.
    Connect(connect::Kind),
}

impl Surface {
    fn of(parts: &Parts) -> Self {
        if let Some(wire) = grpc::Wire::of(parts) {
            return Self::Grpc(wire);
        }
        connect::Kind::of(parts).map_or(Self::Rest, Self::Connect)
    }

    /// The `status` label of the request's metrics: the HTTP status, or
    /// for gRPC the one its status code maps to, so refusals count alike
    /// whichever way a client calls.
    fn status(self, response: &Response) -> u16 {
        match self {
            Self::Rest | Self::Connect(_) => response.status().as_u16(),
            Self::Grpc(_) => response.headers().get("grpc-status").map_or(200, |v| {
                crate::error::http_status(super::envelope::code_of(v)).as_u16()
            }),
        }
    }
}

/// What the dispatcher learnt of a request, for every answer it gets.
#[derive(Default)]
struct Seen {
    /// The matched route, for its deprecation headers.
    route: Option<Arc<Route>>,
    /// Its template as the metrics' route label.
    label: Option<Arc<str>>,
    /// The caller's rate-limit budget.
    rate: Option<Allowed>,
}

/// Runs the shared front of the pipeline and the call's adapter. `admitted`
/// goes with the call: a stream or WebSocket holds it until it ends.
async fn dispatch(
    gw: &Gateway,
    surface: Surface,
    parts: &mut Parts,
    body: &mut Option<Body>,
    seen: &mut Seen,
    admitted: Admitted,
) -> Result<Response, GatewayError> {
    // The protocols that name a method: the gRPC family (Connect streams
    // among it) and Connect's unary calls, one front for all.
    let named = match surface {
        Surface::Rest => None,
        Surface::Grpc(wire) => Some((wire, None)),
        Surface::Connect(connect::Kind::Stream) => Some((grpc::Wire::Connect, None)),
        Surface::Connect(kind) => Some((grpc::Wire::Connect, Some(kind))),
    };
    if let Some((wire, unary)) = named {
        let (method, plan) = grpc::lookup(gw, parts, wire)?;
        seen.label = Some(method.label.clone());
        crate::telemetry::route_matched(&tracing::Span::current(), &parts.method, &method.label);
        let call = Call::prepare_method(gw, parts, method, plan).await?;
        seen.rate = call.rate;
        let body = body.take().unwrap_or_default();
        let Some(kind) = unary else {
            return Box::pin(grpc::call(gw, parts, body, call, method, wire, admitted)).await;
        };
        let response = Box::pin(connect::unary(gw, parts, body, call, method, kind)).await;
        drop(admitted);
        return response;
    }
    let websocket = websocket::is_websocket(parts);
    let found = pipeline::lookup(gw, parts, websocket)?;
    let route = &found.route.route;
    seen.route = Some(route.clone());
    seen.label = Some(found.route.label.clone());
    crate::telemetry::route_matched(
        &tracing::Span::current(),
        &parts.method,
        &route.template.source,
    );
    let streaming = route.is_streaming();
    let call = Call::prepare(gw, parts, found).await?;
    seen.rate = call.rate;
    let body = body.take().unwrap_or_default();
    // Boxed: a unary call's future need not carry a stream's state.
    if websocket {
        return Box::pin(websocket::websocket(gw, parts, call, admitted)).await;
    }
    if streaming {
        return Box::pin(stream::call(gw, parts, body, call, admitted)).await;
    }
    let response = unary::call(gw, parts, body, call).await;
    drop(admitted);
    response
}
