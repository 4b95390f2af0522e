//! The steps every call kind shares, in order, one way only:
//!
//! 1. [`admit`]: a slot of `server.max_concurrent_requests`, held until the
//!    answer is complete (a stream's or WebSocket's whole life);
//! 2. [`lookup`]: the route and its plan (the WebSocket and `%2F`
//!    fallbacks live in the route table);
//! 3. [`Call::prepare`]: authenticate, rate limit, choose the backend, the
//!    metadata that crosses to it;
//! 4. [`message`]: the request message from path, query and body;
//! 5. the upstream call, timed by an [`UpstreamCall`] for every call kind;
//! 6. [`render_reply`] / [`call_error`]: the reply or the error.
//!
//! Unary calls ([`super::unary`]), HTTP streams ([`super::stream`]) and
//! WebSockets ([`super::websocket`]) are adapters over these steps; they
//! never import from each other or from the dispatcher ([`super::handler`]).

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;

use crate::auth::strip_query;
use crate::error::{GatewayError, JSON, UpstreamStatus};
use crate::gateway::Gateway;
use crate::http_rule::{BodyRule, RouteMatch};
use crate::metrics::{InFlight, Metrics};
use crate::plan::{MethodPlan, RoutePlan};
use crate::rate_limit::Allowed;
use crate::transcode::{self, http_body};
use crate::upstream::metadata::{
    grpc_metadata, parse_grpc_timeout, request_metadata, response_headers,
};
use crate::upstream::{CallError, Target};
use tokio_util::sync::CancellationToken;

/// Largest chunk of a raw upload sent as one message.
pub(super) const MAX_UPLOAD_CHUNK: usize = 1 << 20;

/// A request let in: counted in flight and holding a concurrency slot
/// until dropped, which for a stream is when its last byte is written.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _in_flight: InFlight,
}

/// Lets a request in, or sheds it at once rather than queue it.
///
/// # Errors
/// [`GatewayError::Overloaded`] when every slot is taken.
pub(super) fn admit(gw: &Gateway) -> Result<Admitted, GatewayError> {
    let in_flight = gw.metrics().in_flight();
    let slot = gw
        .admission()
        .clone()
        .try_acquire_owned()
        .map_err(|_| GatewayError::Overloaded)?;
    Ok(Admitted {
        _slot: slot,
        _in_flight: in_flight,
    })
}

/// The route of a request and its plan.
///
/// # Errors
/// No route, wrong method, or a malformed path.
pub(super) fn lookup<'g>(
    gw: &'g Gateway,
    parts: &Parts,
    websocket: bool,
) -> Result<RouteMatch<'g, RoutePlan>, GatewayError> {
    let routes = gw.routes();
    let found = if websocket {
        routes.lookup_websocket(&parts.method, parts.uri.path())
    } else {
        routes.lookup(&parts.method, parts.uri.path())
    }?;
    Ok(found)
}

/// A call that passed auth and the rate limit, with its backend chosen and
/// its metadata built: what every call kind starts from.
#[derive(Debug)]
pub struct Call<'g> {
    /// The route's plan.
    pub plan: &'g RoutePlan,
    /// Captured path values, parallel to the route's path fields.
    pub values: Vec<String>,
    /// The backend chosen for this call.
    pub target: &'g crate::upstream::Target,
    /// The query without credential parameters.
    pub query: Option<String>,
    /// The metadata sent to the backend.
    pub metadata: MetadataMap,
    /// The caller's rate-limit budget, for the `RateLimit-*` headers.
    pub rate: Option<Allowed>,
}

impl<'g> Call<'g> {
    /// Authenticates, rate limits, chooses the backend and builds the
    /// metadata. Credentials first: nothing of an unauthenticated request
    /// is read or parsed.
    ///
    /// # Errors
    /// Missing or invalid credentials, a caller over its limit, an override
    /// header naming no backend, headers that cannot be forwarded.
    pub(super) async fn prepare(
        gw: &'g Gateway,
        parts: &Parts,
        found: RouteMatch<'g, RoutePlan>,
    ) -> Result<Self, GatewayError> {
        let plan = found.route;
        Self::admit_caller(
            gw,
            parts,
            plan,
            found.values,
            std::slice::from_ref(&plan.auth),
            request_metadata,
        )
        .await
    }

    /// As [`Call::prepare`], for a call that names its method rather than a
    /// path (native gRPC): every requirement of the method's routes must be
    /// met, and the caller's metadata crosses as it was sent.
    ///
    /// # Errors
    /// As [`Call::prepare`].
    pub(super) async fn prepare_method(
        gw: &'g Gateway,
        parts: &Parts,
        method: &MethodPlan,
        plan: &'g RoutePlan,
    ) -> Result<Self, GatewayError> {
        Self::admit_caller(gw, parts, plan, Vec::new(), &method.auth, grpc_metadata).await
    }

    /// As [`Call::prepare_method`], for an HTTP client that names a
    /// method (an MCP tool call): its headers cross as a REST call's do,
    /// by the allowlist.
    ///
    /// # Errors
    /// As [`Call::prepare`].
    pub(super) async fn prepare_tool(
        gw: &'g Gateway,
        parts: &Parts,
        method: &MethodPlan,
        plan: &'g RoutePlan,
    ) -> Result<Self, GatewayError> {
        Self::admit_caller(gw, parts, plan, Vec::new(), &method.auth, request_metadata).await
    }

    async fn admit_caller(
        gw: &'g Gateway,
        parts: &Parts,
        plan: &'g RoutePlan,
        values: Vec<String>,
        requirements: &[std::sync::Arc<crate::auth::Requirement>],
        metadata_of: MetadataBuilder,
    ) -> Result<Self, GatewayError> {
        let principal = match requirements {
            [one] => {
                gw.auth()
                    .authenticate(one, &parts.headers, parts.uri.query())
                    .await?
            }
            // Boxed: a method whose routes differ in auth is rare, and the
            // loop's state would grow every call's future.
            all => Box::pin(authenticate_all(gw, all, parts)).await?,
        };
        let peer = parts.extensions.get::<super::connection::Peer>();
        // After auth, so a caller is limited by identity; before the body is read.
        let rate = match gw.rate_limits() {
            Some(limits) => limits
                .check(principal.as_ref(), peer.map(|p| p.addr.ip()))
                .await
                .inspect_err(|refused| {
                    if matches!(refused, crate::rate_limit::Refused::Limited(_)) {
                        gw.metrics().rate_limited();
                    }
                })?,
            None => None,
        };
        let target = plan.backends.select(&parts.headers)?;
        tracing::Span::current().record("upstream", &*target.name);
        let query = strip_query(parts.uri.query(), gw.auth().credential_query_params())
            .map(std::borrow::Cow::into_owned);
        let client_cert = parts
            .extensions
            .get::<crate::tls::ClientCert>()
            .map(|c| &c.0);
        let mut metadata = metadata_of(
            &parts.headers,
            parts.uri.authority().map(|a| a.as_str()),
            &gw.config().metadata,
            peer.map(|p| &p.ip),
            client_cert,
            gw.auth().withheld(principal.as_ref()),
        )?;
        gw.auth().forward(principal.as_ref(), &mut metadata);
        Ok(Self {
            plan,
            values,
            target,
            query,
            metadata,
            rate,
        })
    }
}

/// Every requirement met, or the first refusal; the last principal verified.
async fn authenticate_all(
    gw: &Gateway,
    requirements: &[std::sync::Arc<crate::auth::Requirement>],
    parts: &Parts,
) -> Result<Option<crate::auth::Principal>, crate::auth::AuthError> {
    let mut principal = None;
    for requirement in requirements {
        let verified = gw
            .auth()
            .authenticate(requirement, &parts.headers, parts.uri.query())
            .await?;
        principal = verified.or(principal);
    }
    Ok(principal)
}

/// Builds the metadata a call sends: from a REST request's headers, or a
/// gRPC client's own metadata.
type MetadataBuilder = fn(
    &HeaderMap,
    Option<&str>,
    &crate::config::MetadataOptions,
    Option<&HeaderValue>,
    Option<&HeaderValue>,
    &[http::HeaderName],
) -> Result<MetadataMap, crate::upstream::metadata::BadBinaryHeader>;

/// One backend call, counted in `protogate_upstream_calls_total` and timed
/// in `protogate_upstream_call_seconds` when it ends, whatever the call
/// kind. A call dropped before [`UpstreamCall::finish`] (the client went
/// away) counts as `Cancelled`.
#[derive(Debug)]
pub struct UpstreamCall {
    metrics: Metrics,
    backend: std::sync::Arc<str>,
    started: Instant,
    code: Option<tonic::Code>,
    /// A stream's client span, kept open as long as the stream.
    span: Option<tracing::Span>,
}

impl UpstreamCall {
    /// Starts timing a call to `target`.
    pub(super) fn start(gw: &Gateway, target: &Target) -> Self {
        Self {
            metrics: gw.metrics().clone(),
            backend: target.name.clone(),
            started: Instant::now(),
            code: None,
            span: None,
        }
    }

    /// Keeps a stream's client span open until the call ends.
    pub(super) fn keep_span(&mut self, span: tracing::Span) {
        self.span = Some(span);
    }

    /// The call ended with `code`; the first end reported counts.
    pub(super) fn finish(&mut self, code: tonic::Code) {
        if self.code.is_none() {
            self.code = Some(code);
            if let Some(span) = &self.span {
                crate::telemetry::upstream_done(span, code);
            }
        }
    }
}

impl Drop for UpstreamCall {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        self.metrics
            .upstream(&self.backend, code, Some(self.started.elapsed()));
    }
}

/// The call's time: the client's `Grpc-Timeout` (capped), else the route's default.
///
/// # Errors
/// A `Grpc-Timeout` that does not parse.
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

/// The whole request body within the call's deadline: a client trickling
/// its body spends the time the backend call would have had.
///
/// # Errors
/// As [`read_body`], and [`GatewayError::BodyTimeout`] when the deadline passes first.
pub(super) async fn read_body_within(
    parts: &Parts,
    body: Body,
    limit: usize,
    deadline: &crate::upstream::Deadline,
) -> Result<Bytes, GatewayError> {
    tokio::time::timeout_at(deadline.at, read_body(parts, body, limit))
        .await
        .map_err(|_| GatewayError::BodyTimeout {
            timeout: deadline.timeout,
        })?
}

/// One request message from the path values, the query and the body: JSON
/// by the route's body rule, or the raw body as a `google.api.HttpBody`;
/// then checked against the route's validation rules.
///
/// # Errors
/// A body or parameter that does not fit the message, a content type
/// that is not JSON, or a message that breaks the rules.
pub(super) fn message(
    call: &Call<'_>,
    parts: &Parts,
    body: Bytes,
) -> Result<Vec<u8>, GatewayError> {
    // `Bytes` clones share the buffer: the body stays readable for naming violations.
    let mut input = build_message(call, parts, body.clone())?;
    if let Some(at) = &call.plan.codec.etag().request
        && let Some(etag) = super::conditional::if_match(parts)
    {
        transcode::etag::write(at, &etag, &mut input);
    }
    let Some(rules) = &call.plan.validation else {
        return Ok(input);
    };
    let route = &call.plan.route;
    let json = !route.raw_request && !is_protobuf(essence(content_type(parts)));
    let written = crate::validate::Written {
        body: json.then_some((&body[..], route.body.field().map(|f| f.dotted()))),
        path_fields: &route.path_fields,
        query: call.query.as_deref(),
        proto_names: !json,
    };
    Ok(rules.check(&input, &written)?.unwrap_or(input))
}

/// One message of a client stream (an NDJSON line, a WebSocket text frame)
/// checked against the route's rules; a violation is the line's error.
///
/// # Errors
/// [`GatewayError::BadLine`] naming the line and every violation.
pub(super) fn checked_line(
    plan: &RoutePlan,
    line: usize,
    json: &[u8],
    values_query: Option<&str>,
    message: Vec<u8>,
) -> Result<Vec<u8>, GatewayError> {
    let Some(rules) = &plan.validation else {
        return Ok(message);
    };
    let route = &plan.route;
    let written = crate::validate::Written {
        body: Some((json, route.body.field().map(|f| f.dotted()))),
        path_fields: &route.path_fields,
        query: values_query,
        proto_names: false,
    };
    match rules.check(&message, &written) {
        Ok(cleared) => Ok(cleared.unwrap_or(message)),
        Err(invalid) => Err(GatewayError::BadLine {
            line,
            message: invalid.to_string(),
            cause: None,
        }),
    }
}

/// [`message`] before validation.
fn build_message(call: &Call<'_>, parts: &Parts, body: Bytes) -> Result<Vec<u8>, GatewayError> {
    let codec = &call.plan.codec;
    let query = call.query.as_deref();
    if call.plan.route.raw_request {
        let mut input = codec.request(&call.values, query, b"")?;
        http_body::append(
            &mut input,
            call.plan.route.body.field(),
            content_type(parts),
            body,
        );
        return Ok(input);
    }
    if is_protobuf(essence(content_type(parts))) {
        return protobuf_message(call, body);
    }
    check_content_type(parts, &body)?;
    codec
        .request(&call.values, query, &body)
        .map_err(|e| not_json(parts, &body).unwrap_or_else(|| e.into()))
}

/// The media types of binary protobuf bodies and replies on REST routes.
pub const PROTOBUF: [&str; 3] = [
    "application/x-protobuf",
    "application/protobuf",
    "application/proto",
];

fn is_protobuf(essence: &str) -> bool {
    PROTOBUF.iter().any(|t| essence.eq_ignore_ascii_case(t))
}

/// A media type without its parameters.
fn essence(value: &str) -> &str {
    value.split(';').next().unwrap_or_default().trim()
}

/// The request message from a binary body: the body message (the whole
/// input, or the `body` field's message), checked at the edge, then the path
/// values and the query written after it, so they win as over JSON.
fn protobuf_message(call: &Call<'_>, body: Bytes) -> Result<Vec<u8>, GatewayError> {
    use prost_reflect::Kind;
    let route = &call.plan.route;
    let invalid = |desc: &prost_reflect::MessageDescriptor, e: prost::DecodeError| {
        GatewayError::Transcode(transcode::TranscodeError::InvalidBody {
            field: None,
            reason: format!("not a valid {} message: {e}", desc.full_name()),
        })
    };
    let mut out = Vec::with_capacity(body.len() + 32);
    match &route.body {
        BodyRule::None if body.is_empty() => {}
        BodyRule::None => return Err(transcode::TranscodeError::UnexpectedBody.into()),
        BodyRule::Whole => {
            let desc = route.method.input();
            prost_reflect::DynamicMessage::decode(desc.clone(), &body[..])
                .map_err(|e| invalid(&desc, e))?;
            out.extend_from_slice(&body);
        }
        BodyRule::Field(path) => {
            let leaf = path.leaf();
            let Kind::Message(desc) = leaf.kind() else {
                return Err(GatewayError::UnsupportedMediaType {
                    content_type: format!(
                        "protobuf for a body field of a scalar type ({})",
                        leaf.name()
                    ),
                });
            };
            if leaf.is_list() || leaf.is_map() {
                return Err(GatewayError::UnsupportedMediaType {
                    content_type: format!("protobuf for a repeated body field ({})", leaf.name()),
                });
            }
            prost_reflect::DynamicMessage::decode(desc.clone(), &body[..])
                .map_err(|e| invalid(&desc, e))?;
            transcode::fast::request::put_nested(path.parents(), &mut out, |out| {
                prost::encoding::encode_key(
                    leaf.number(),
                    prost::encoding::WireType::LengthDelimited,
                    out,
                );
                prost::encoding::encode_varint(body.len() as u64, out);
                out.extend_from_slice(&body);
            });
        }
    }
    let rest = call
        .plan
        .codec
        .request(&call.values, call.query.as_deref(), b"")?;
    out.extend_from_slice(&rest);
    Ok(out)
}

/// The reply type a unary call answers with, by `Accept`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyType {
    /// proto3 JSON: without `Accept`, and whenever JSON is acceptable at
    /// least as much as protobuf.
    Json,
    /// The binary reply message, as the named protobuf type.
    Protobuf(&'static str),
}

/// Chooses JSON or protobuf for a unary reply: the protobuf type the
/// client prefers (named exactly, with a higher `q` than any range JSON
/// matches), else JSON when acceptable.
///
/// # Errors
/// [`GatewayError::NotAcceptableReply`] when neither is acceptable.
pub fn reply_type(parts: &Parts) -> Result<ReplyType, GatewayError> {
    let Some(accept) = parts.headers.get(http::header::ACCEPT) else {
        return Ok(ReplyType::Json);
    };
    let text = accept.to_str().unwrap_or_default();
    let (mut json, mut proto): (f32, Option<(f32, &'static str)>) = (-1.0, None);
    for range in text.split(',') {
        let mut pieces = range.split(';');
        let media = pieces.next().unwrap_or_default().trim();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media.is_empty() {
            continue;
        }
        if let Some(t) = PROTOBUF.iter().find(|t| media.eq_ignore_ascii_case(t)) {
            if proto.is_none_or(|(best, _)| q > best) {
                proto = Some((q, t));
            }
        } else if media.eq_ignore_ascii_case("application/json")
            || media == "*/*"
            || media.eq_ignore_ascii_case("application/*")
            || (media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case("+json"))
        {
            json = json.max(q);
        }
    }
    match proto {
        Some((q, t)) if q > 0.0 && q > json => Ok(ReplyType::Protobuf(t)),
        _ if json > 0.0 => Ok(ReplyType::Json),
        Some((q, t)) if q > 0.0 => Ok(ReplyType::Protobuf(t)),
        _ => Err(GatewayError::NotAcceptableReply {
            accept: text.to_owned(),
        }),
    }
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

/// A body must be JSON. Besides `application/json` and `+json` types, the
/// types curl and HTML forms send by default (`-d` sends form encoding) are
/// read as JSON too, so `curl -d '{...}'` works; anything else is a 415. An
/// empty `Content-Type` (Go's `http.Post(url, "", body)` sends one) counts
/// as none.
fn check_content_type(parts: &Parts, body: &[u8]) -> Result<(), GatewayError> {
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

/// The whole request body, up to `limit` bytes.
///
/// # Errors
/// [`GatewayError::BodyTooLarge`] over the limit (declared or sent),
/// [`GatewayError::BodyRead`] when the body breaks off.
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

/// One reply message as the response: proto3 JSON, or a `google.api.HttpBody`'s
/// content type and bytes.
///
/// # Errors
/// [`GatewayError::BadBackend`] for a reply that does not decode.
pub(super) fn render_reply(
    parts: &Parts,
    plan: &RoutePlan,
    backend: &str,
    reply: &[u8],
    mut headers: HeaderMap,
    reply_type: &ReplyType,
) -> Result<Response, GatewayError> {
    let bad = |cause: String| GatewayError::BadBackend {
        backend: backend.to_owned(),
        cause,
    };
    let etag = plan
        .codec
        .etag()
        .reply
        .and_then(|number| transcode::etag::read(reply, number));
    let success = &plan.success;
    let answer = |mut headers: HeaderMap, mut body: Bytes| {
        if success.status == StatusCode::NO_CONTENT {
            headers.remove(CONTENT_TYPE);
            body = Bytes::new();
        }
        if let Some(location) = success.location.as_deref().and_then(|l| location(l, reply)) {
            headers.insert(http::header::LOCATION, location);
        }
        super::conditional::answer(
            parts,
            success.status,
            headers,
            body,
            etag.clone(),
            plan.cache_control.as_ref(),
        )
    };
    if let ReplyType::Protobuf(media) = reply_type
        && !plan.route.raw_response
    {
        let body = match &plan.route.response_body {
            None => Bytes::copy_from_slice(reply),
            Some(path) => response_field(plan, reply, path).map_err(bad)?,
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(media));
        return Ok(answer(headers, body));
    }
    if plan.route.raw_response {
        let body = http_body::decode(reply).map_err(|e| bad(e.to_string()))?;
        let content_type = HeaderValue::from_str(&body.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_TYPE, content_type);
        return Ok((StatusCode::OK, headers, body.data).into_response());
    }
    let json = plan.codec.response(reply).map_err(|e| bad(e.to_string()))?;
    headers.insert(CONTENT_TYPE, JSON);
    Ok(answer(headers, Bytes::from(json)))
}

/// Where a created resource is (AIP-133): the reply's naming field through
/// the service's GET template; `None` when the field is empty.
fn location(location: &crate::plan::Location, reply: &[u8]) -> Option<HeaderValue> {
    const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let value = transcode::etag::read_scalar(reply, &location.field)?;
    let value = percent_encoding::utf8_percent_encode(&value, PATH);
    HeaderValue::from_str(&format!("{}{value}{}", location.before, location.after)).ok()
}

/// A backend's refusal of a write that carried `If-Match` into the
/// request's etag field: `412 Precondition Failed` (AIP-154) when it is
/// `FAILED_PRECONDITION` or `ABORTED`; any other error as it is.
pub(super) fn precondition(error: GatewayError, parts: &Parts, plan: &RoutePlan) -> GatewayError {
    match error {
        GatewayError::Upstream(status)
            if matches!(
                status.code,
                tonic::Code::FailedPrecondition | tonic::Code::Aborted
            ) && plan.codec.etag().request.is_some()
                && super::conditional::if_match(parts).is_some() =>
        {
            GatewayError::PreconditionFailed(status)
        }
        other => other,
    }
}

/// The `response_body` field's message of a reply, encoded; its default
/// (empty) when unset.
fn response_field(
    plan: &RoutePlan,
    reply: &[u8],
    path: &crate::http_rule::FieldPath,
) -> Result<Bytes, String> {
    use prost::Message;
    let mut current = prost_reflect::DynamicMessage::decode(plan.route.method.output(), reply)
        .map_err(|e| e.to_string())?;
    for field in path.fields() {
        current = match current.get_field(field).into_owned() {
            prost_reflect::Value::Message(m) => m,
            _ => return Err(format!("{} is not a message", field.name())),
        };
    }
    Ok(Bytes::from(current.encode_to_vec()))
}

/// A failed backend call as the gateway's error.
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
            // As for a reply: header metadata, then the trailers.
            let mut headers = response_headers(&headers, Some(status.metadata()));
            // A backend that says when to come back: RFC 9110's header for it.
            if matches!(
                status.code(),
                tonic::Code::ResourceExhausted | tonic::Code::Unavailable
            ) && let Some(seconds) = transcode::status::retry_after(status.details())
            {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            GatewayError::Upstream(Box::new(UpstreamStatus {
                code: status.code(),
                message: status.message().to_owned(),
                details,
                headers,
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
        CallError::Aborted(cause) => GatewayError::BodyRead(cause),
        CallError::Timeout(timeout) => GatewayError::DeadlineExceeded {
            backend: backend.to_owned(),
            timeout,
        },
    }
}

/// Resolves when the gateway ends open streams at shutdown; never without a signal.
pub(super) async fn ended(cut: &mut Option<CancellationToken>) {
    match cut.as_mut() {
        Some(cut) => cut.cancelled().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_json_unless_protobuf_is_preferred() {
        let proto = |t: &'static str| Ok(ReplyType::Protobuf(t));
        for (accept, want) in [
            (None, Ok(ReplyType::Json)),
            (Some("application/json"), Ok(ReplyType::Json)),
            (Some("*/*"), Ok(ReplyType::Json)),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                Ok(ReplyType::Json),
            ),
            (
                Some("application/x-protobuf"),
                proto("application/x-protobuf"),
            ),
            (Some("application/protobuf"), proto("application/protobuf")),
            (Some("application/proto"), proto("application/proto")),
            (
                Some("application/x-protobuf, application/json;q=0.5"),
                proto("application/x-protobuf"),
            ),
            (
                Some("application/x-protobuf;q=0.5, application/json"),
                Ok(ReplyType::Json),
            ),
            // A wildcard prefers JSON; a named protobuf type above it wins.
            (
                Some("application/x-protobuf, */*;q=0.1"),
                proto("application/x-protobuf"),
            ),
            (Some("application/problem+json"), Ok(ReplyType::Json)),
            (Some("application/x-protobuf;q=0, */*"), Ok(ReplyType::Json)),
            (Some("text/html"), Err(())),
            (Some("application/json;q=0"), Err(())),
        ] {
            let mut request = http::Request::builder().uri("/v1/x");
            if let Some(accept) = accept {
                request = request.header(http::header::ACCEPT, accept);
            }
            let (parts, ()) = request.body(()).unwrap().into_parts();
            let got = reply_type(&parts).map_err(|e| {
                assert!(matches!(e, GatewayError::NotAcceptableReply { .. }), "{e}");
            });
            assert_eq!(got, want, "{accept:?}");
        }
    }
}
