//! Native gRPC and gRPC-Web on the main listener: a call of a routed method
//! (`content-type: application/grpc` or `application/grpc-web`,
//! `POST /package.Service/Method`) goes
//! through the same front of the pipeline as a REST call of that method
//! (auth with credentials from the metadata, the rate limit, the backend
//! choice, the deadline from `grpc-timeout`, capped) and is then passed to
//! the backend frame for frame ([`crate::upstream::passthrough`]). A
//! gRPC-Web call is a native one to the backend; only its answer's framing
//! differs ([`super::grpc_web`]): the status in a last frame of the body,
//! and for `-text` the body in base64.
//!
//! Every answer is gRPC: the gateway's own errors are trailers-only
//! statuses ([`error_response`]), a backend that breaks off mid-reply ends
//! the call with a status in trailers, never with a reset stream or an
//! HTTP error page. The relayed reply is bounded as REST streams are: the
//! deadline, `streaming.idle_timeout` (no frame either way), and the
//! gateway's shutdown.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Code;

use super::envelope::{self, code_of, status_headers};
use super::pipeline::{self, Admitted, Call, UpstreamCall};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::plan::MethodPlan;
use crate::upstream::passthrough::{Inbound, Outbound};
use crate::upstream::{CallError, Deadline, Lease};

const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
/// Sent on to the backend: the message codec and the compression of both
/// directions are between client and backend.
const CARRIED: [HeaderName; 3] = [
    CONTENT_TYPE,
    HeaderName::from_static("grpc-encoding"),
    HeaderName::from_static("grpc-accept-encoding"),
];
/// Bytes of a gRPC message's prefix: the compressed flag and the length.
const PREFIX: usize = 5;

/// How a client of the gRPC family frames its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// `application/grpc[+codec]`: HTTP/2, the status in trailers.
    Native,
    /// `application/grpc-web[+codec]`: the status in the body's last frame.
    Web,
    /// `application/grpc-web-text[+codec]`: as `Web`, in base64.
    WebText,
    /// `application/connect+proto`: Connect's stream envelopes, whose last
    /// carries the status as JSON ([`super::connect`] tells these calls).
    Connect,
}

impl Wire {
    /// The wire of a request, if it is a gRPC-family call: a POST with one
    /// of the content types. Other requests skip the header look-up.
    pub(super) fn of(parts: &Parts) -> Option<Self> {
        if parts.method != http::Method::POST {
            return None;
        }
        let value = parts.headers.get(CONTENT_TYPE)?.as_bytes();
        let rest = value.strip_prefix(b"application/grpc")?;
        if rest.starts_with(b"-web-text") {
            Some(Self::WebText)
        } else if rest.starts_with(b"-web") {
            Some(Self::Web)
        } else if rest.is_empty() || rest[0] == b'+' || rest[0] == b';' {
            Some(Self::Native)
        } else {
            None
        }
    }

    /// The content type the backend is sent: native gRPC, same codec.
    fn backend_content_type(self, parts: &Parts) -> Option<HeaderValue> {
        let value = parts.headers.get(CONTENT_TYPE)?;
        let prefix: &[u8] = match self {
            Self::Native => return Some(value.clone()),
            Self::Web => b"application/grpc-web",
            Self::WebText => b"application/grpc-web-text",
            Self::Connect => b"application/connect",
        };
        let codec = value.as_bytes().get(prefix.len()..).unwrap_or_default();
        let mut native = b"application/grpc".to_vec();
        native.extend_from_slice(codec);
        HeaderValue::from_bytes(&native).ok()
    }
}

/// The routed method a gRPC-family call names.
///
/// # Errors
/// [`GatewayError::NotServed`] (UNIMPLEMENTED) for a path that is no routed
/// method, and for every method while the wire's protocol is off
/// (`protocols.grpc`, `protocols.grpc_web`, `protocols.connect`).
pub(super) fn lookup<'g>(
    gw: &'g Gateway,
    parts: &Parts,
    wire: Wire,
) -> Result<(&'g MethodPlan, &'g crate::plan::RoutePlan), GatewayError> {
    let path = parts.uri.path();
    let protocols = &gw.config().protocols;
    let on = match wire {
        Wire::Native => protocols.grpc,
        Wire::Web | Wire::WebText => protocols.grpc_web,
        Wire::Connect => protocols.connect,
    };
    on.then(|| gw.method(path))
        .flatten()
        .ok_or_else(|| GatewayError::NotServed {
            path: path.to_owned(),
        })
}

/// Passes one call through and relays the backend's answer.
///
/// # Errors
/// The request's deadline or framing, a body over the limit, and a backend
/// that could not be called; a backend's own status is its answer.
pub(super) async fn call(
    gw: &Gateway,
    parts: &Parts,
    body: Body,
    call: Call<'_>,
    method: &MethodPlan,
    wire: Wire,
    admitted: Admitted,
) -> Result<Response, GatewayError> {
    let plan = call.plan;
    let target = call.target;
    let limits = plan.limits;
    let streaming = method.client_streaming || method.server_streaming;
    let default = if streaming {
        limits.stream_max_duration
    } else {
        target.timeout
    };
    let deadline = Deadline::after(match wire {
        Wire::Connect => envelope::timeout(parts, default, limits.max_grpc_timeout)?,
        _ => pipeline::timeout(parts, default, limits.max_grpc_timeout)?,
    });
    let mut headers = call.metadata.into_headers();
    for name in CARRIED {
        if let Some(value) = parts.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    if wire != Wire::Native {
        if let Some(native) = wire.backend_content_type(parts) {
            headers.insert(CONTENT_TYPE, native);
        }
        // A browser's, not the call's.
        for name in ["x-grpc-web", "x-user-agent"] {
            headers.remove(name);
        }
    }
    if wire == Wire::Connect {
        let encodings = [
            ("connect-content-encoding", "grpc-encoding"),
            ("connect-accept-encoding", "grpc-accept-encoding"),
        ];
        for (connect, grpc) in encodings {
            if let Some(value) = parts.headers.get(connect) {
                headers.insert(grpc, value.clone());
            }
        }
        envelope::strip_protocol_headers(&mut headers);
    }
    // Only a stream needs these: a unary call allocates neither.
    let activity = streaming.then(|| Arc::new(Activity::new()));
    let failure: Option<Failure> = method
        .client_streaming
        .then(|| Arc::new(std::sync::Mutex::new(None)));
    let json = is_json(parts);
    if json {
        // The backend speaks protobuf, uncompressed, so its replies can be converted.
        headers.insert(CONTENT_TYPE, GRPC);
        headers.remove("grpc-encoding");
        headers.remove("grpc-accept-encoding");
    }
    let route = &plan.route;
    let to_proto = || {
        super::reframe::Reframer::new(
            super::reframe::Convert::ToProto(route.method.input(), route.unknown_json_fields),
            limits.max_body_bytes,
        )
    };
    // A native client stream goes as it comes; a gRPC-Web request (which
    // browsers send whole) is read whole, whatever the call kind.
    let outbound = if method.client_streaming && matches!(wire, Wire::Native | Wire::Connect) {
        Outbound::Stream(Uplink {
            body,
            limit: limits.max_body_bytes,
            scan: Scan::default(),
            reframe: json.then(to_proto),
            check: plan.validation.clone().map(|rules| Checker {
                rules,
                pending: bytes::BytesMut::new(),
                coding: coding(parts).map(str::to_owned),
                limit: limits.max_body_bytes,
            }),
            activity: activity.clone(),
            failure: failure.clone().unwrap_or_default(),
        })
    } else {
        // One message: read whole within the deadline, as a unary REST body is.
        let limit = limits.max_body_bytes.saturating_add(PREFIX);
        let whole = pipeline::read_body_within(parts, body, limit, &deadline).await?;
        let whole = match wire {
            Wire::WebText => super::grpc_web::decode_text(&whole)
                .map(Bytes::from)
                .map_err(|_| GatewayError::BadGrpcRequest("the body is not base64"))?,
            Wire::Native | Wire::Web | Wire::Connect => whole,
        };
        let whole = if json {
            let mut reframer = to_proto();
            let converted = reframer.push(&whole)?;
            if reframer.unfinished() {
                return Err(GatewayError::BadGrpcRequest("request message cut short"));
            }
            converted
        } else {
            whole
        };
        if method.client_streaming {
            Outbound::Whole(whole)
        } else {
            one_message(&whole)?;
            Outbound::Whole(match &plan.validation {
                Some(rules) => validated(rules, whole, coding(parts), json, limits.max_body_bytes)?,
                None => whole,
            })
        }
    };
    let mut timing = UpstreamCall::start(gw, target);
    let passed = match gw
        .upstreams()
        .passthrough(target, &plan.route, headers, outbound, deadline)
        .await
    {
        Ok(passed) => passed,
        // The backend's status, as it sent it.
        Err(CallError::Status { status, headers }) => {
            timing.finish(status.code());
            return Ok(status_response(
                &status,
                headers.into_headers(),
                wire,
                answer_content_type(parts),
            ));
        }
        Err(e) => {
            timing.finish(e.code());
            // The gateway cut the client's stream: that is the answer.
            if let Some(cut) = failure.as_ref().and_then(take_failure) {
                return Err(cut);
            }
            return Err(pipeline::call_error(gw, &target.name, e));
        }
    };
    timing.keep_span(passed.span);
    let (mut head, inbound) = passed.response.into_parts();
    if wire != Wire::Native {
        head.headers
            .insert(CONTENT_TYPE, answer_content_type(parts));
        head.headers.remove(http::header::CONTENT_LENGTH);
    }
    if wire == Wire::Connect {
        if let Some(encoding) = head.headers.remove("grpc-encoding") {
            head.headers.insert("connect-content-encoding", encoding);
        }
        if let Some(encoding) = head.headers.remove("grpc-accept-encoding") {
            head.headers.insert("connect-accept-encoding", encoding);
        }
        // Connect has no trailers-only answer: the status goes in the body.
        if let Some(code) = head.headers.get("grpc-status").map(code_of) {
            timing.finish(code);
            let end = envelope::end_stream(&head.headers);
            for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                head.headers.remove(name);
            }
            return Ok(Response::from_parts(head, Body::from(end)));
        }
    }
    // A trailers-only answer: its status is in the headers.
    let ended = head.headers.get("grpc-status").map(code_of);
    if let Some(code) = ended {
        timing.finish(code);
    }
    let idle = limits.stream_idle_timeout;
    let relay = Relay {
        inbound: Some(inbound),
        wire,
        text: (wire == Wire::WebText).then(super::grpc_web::TextEncoder::default),
        done: false,
        has_status: ended.is_some(),
        timing,
        backend: target.name.clone(),
        deadline: Box::pin(tokio::time::sleep_until(deadline.at)),
        timeout: deadline.timeout,
        idle: streaming.then(|| (Box::pin(tokio::time::sleep(idle)), idle)),
        activity,
        failure,
        reframe: json.then(|| {
            super::reframe::Reframer::new(
                super::reframe::Convert::ToJson(route.method.output(), gw.config().transcode.json),
                target.max_response_bytes,
            )
        }),
        cut: parts
            .extensions
            .get::<CancellationToken>()
            .map(|cut| Box::pin(cut.clone().cancelled_owned())),
        _lease: passed.lease,
        _admitted: admitted,
    };
    Ok(Response::from_parts(head, Body::new(relay)))
}

/// A trailers-only answer of one of the gateway's own errors, with the
/// request's content type (`application/grpc` without one); for Connect,
/// an end-of-stream message with the error.
pub(super) fn error_response(error: &GatewayError, parts: &Parts, wire: Wire) -> Response {
    let mut headers = error.grpc_metadata();
    status_headers(&mut headers, error.code(), &error.client_message());
    if let Some(details) = error.status_details()
        && let Ok(value) = HeaderValue::from_str(&STANDARD_NO_PAD.encode(details))
    {
        headers.insert("grpc-status-details-bin", value);
    }
    respond(headers, wire, answer_content_type(parts))
}

/// The content type of answers: the request's, so its codec suffix stays
/// (`application/grpc` without one).
fn answer_content_type(parts: &Parts) -> HeaderValue {
    parts.headers.get(CONTENT_TYPE).cloned().unwrap_or(GRPC)
}

/// An answer with the status in `headers`: trailers-only, or for Connect a
/// body of one end-of-stream message.
fn respond(mut headers: HeaderMap, wire: Wire, content_type: HeaderValue) -> Response {
    let body = if wire == Wire::Connect {
        let end = envelope::end_stream(&headers);
        for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            headers.remove(name);
        }
        Body::from(end)
    } else {
        Body::empty()
    };
    headers.insert(CONTENT_TYPE, content_type);
    let mut response = Response::new(body);
    *response.headers_mut() = headers;
    response
}

/// A backend's status as a trailers-only answer: its metadata, code,
/// message and details.
fn status_response(
    status: &tonic::Status,
    mut headers: HeaderMap,
    wire: Wire,
    content_type: HeaderValue,
) -> Response {
    if status.add_header(&mut headers).is_err() {
        status_headers(&mut headers, status.code(), status.message());
    }
    respond(headers, wire, content_type)
}

/// One framed request message checked against `rules`: as it came when it
/// passes unchanged, re-framed uncompressed when fields were cleared.
///
/// # Errors
/// The violations; a message compressed with a coding the gateway cannot
/// open, or that opens past `limit`.
fn validated(
    rules: &crate::validate::MethodRules,
    whole: Bytes,
    coding: Option<&str>,
    json: bool,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let compressed = whole.first() == Some(&1);
    let opened;
    let message = if compressed && !json {
        opened = open(coding, &whole[PREFIX..], limit)?;
        &opened[..]
    } else {
        &whole[PREFIX..]
    };
    let written = crate::validate::Written {
        proto_names: !json,
        ..Default::default()
    };
    Ok(match rules.check(message, &written)? {
        None => whole,
        Some(cleared) => {
            let mut framed = Vec::with_capacity(cleared.len() + PREFIX);
            framed.push(0);
            framed.extend_from_slice(
                &u32::try_from(cleared.len())
                    .unwrap_or(u32::MAX)
                    .to_be_bytes(),
            );
            framed.extend_from_slice(&cleared);
            Bytes::from(framed)
        }
    })
}

/// The coding of the request's compressed messages: `grpc-encoding`, or a
/// Connect stream's `connect-content-encoding`.
fn coding(parts: &Parts) -> Option<&str> {
    ["grpc-encoding", "connect-content-encoding"]
        .iter()
        .find_map(|name| parts.headers.get(*name))
        .and_then(|v| v.to_str().ok())
}

/// A compressed request message opened by its `grpc-encoding`, at most `limit` bytes.
fn open(coding: Option<&str>, message: &[u8], limit: usize) -> Result<Vec<u8>, GatewayError> {
    use std::io::Read;
    let coding = coding.unwrap_or("identity");
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let read = match coding {
        "gzip" => flate2::read::GzDecoder::new(message)
            .take(cap)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(message)
            .take(cap)
            .read_to_end(&mut out),
        _ => {
            return Err(GatewayError::BadGrpcRequest(
                "a compressed request message of a method with validation rules must use gzip or deflate",
            ));
        }
    };
    read.map_err(|_| GatewayError::BadGrpcRequest("the compressed request message does not open"))?;
    if out.len() > limit {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    Ok(out)
}

/// A unary or server-streaming request is exactly one message.
fn one_message(body: &[u8]) -> Result<(), GatewayError> {
    let Some(prefix) = body.get(..PREFIX) else {
        return Err(GatewayError::BadGrpcRequest("no request message"));
    };
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    match (body.len() - PREFIX).cmp(&len) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(GatewayError::BadGrpcRequest("request message cut short")),
        std::cmp::Ordering::Greater => Err(GatewayError::BadGrpcRequest(
            "more than one request message for a method that takes one",
        )),
    }
}

/// When a frame last went either way, for the idle timeout.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    /// Nanoseconds since `origin`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// Where a message's prefix ends in the bytes of a request stream.
#[derive(Debug, Default)]
struct Scan {
    prefix: [u8; PREFIX],
    have: usize,
    /// Bytes of the current message still to come.
    skip: u64,
}

impl Scan {
    /// Follows the message prefixes in `data`; `Err(len)` for a message over `limit`.
    fn feed(&mut self, mut data: &[u8], limit: usize) -> Result<(), u64> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = data.len().min(PREFIX - self.have);
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == PREFIX {
                let p = self.prefix;
                let len = u64::from(u32::from_be_bytes([p[1], p[2], p[3], p[4]]));
                if len > limit as u64 {
                    return Err(len);
                }
                self.skip = len;
                self.have = 0;
            }
        }
        Ok(())
    }
}

/// A client's stream of messages on its way to the backend, frames as they
/// came; a message over the limit ends it (the backend sees the call
/// reset, the client a RESOURCE_EXHAUSTED).
struct Uplink {
    body: Body,
    limit: usize,
    scan: Scan,
    /// JSON messages to the backend's protobuf.
    reframe: Option<super::reframe::Reframer>,
    /// The method's validation rules: each message is held until it is
    /// whole and checked before it goes on.
    check: Option<Checker>,
    activity: Option<Arc<Activity>>,
    failure: Failure,
}

/// The messages of a client stream checked one by one: bytes are held
/// until a message is whole (at most `limit`), then it is validated and
/// passed on, re-framed when fields were cleared.
struct Checker {
    rules: Arc<crate::validate::MethodRules>,
    pending: bytes::BytesMut,
    coding: Option<String>,
    limit: usize,
}

impl Checker {
    /// The whole, checked messages `data` completes.
    ///
    /// # Errors
    /// A message over the limit, one that breaks the rules.
    fn push(&mut self, data: &[u8], json: bool) -> Result<Bytes, GatewayError> {
        self.pending.extend_from_slice(data);
        let mut out = bytes::BytesMut::new();
        while let Some(prefix) = self.pending.get(..PREFIX) {
            let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
            if len > self.limit {
                return Err(GatewayError::BodyTooLarge { limit: self.limit });
            }
            if self.pending.len() < PREFIX + len {
                break;
            }
            let whole = self.pending.split_to(PREFIX + len).freeze();
            let checked = validated(&self.rules, whole, self.coding.as_deref(), json, self.limit)?;
            out.extend_from_slice(&checked);
        }
        Ok(out.freeze())
    }
}

/// Why the gateway cut a client's stream, for the answer.
type Failure = Arc<std::sync::Mutex<Option<GatewayError>>>;

fn take_failure(failure: &Failure) -> Option<GatewayError> {
    failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// The client's codec is JSON (`+json`): its messages are converted.
fn is_json(parts: &Parts) -> bool {
    parts.headers.get(CONTENT_TYPE).is_some_and(|v| {
        let essence = v
            .as_bytes()
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default();
        essence.trim_ascii().ends_with(b"+json")
    })
}

impl hyper::body::Body for Uplink {
    type Data = Bytes;
    type Error = GatewayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, GatewayError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(activity) = &this.activity {
                    activity.touch();
                }
                let cut = |this: &mut Self, error: GatewayError| {
                    let answer = GatewayError::BodyRead(error.to_string());
                    *this
                        .failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
                    Poll::Ready(Some(Err(answer)))
                };
                let Some(data) = frame.data_ref() else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                let converted = match this.reframe.as_mut() {
                    Some(reframe) => match reframe.push(data) {
                        Ok(converted) => Some(converted),
                        Err(e) => return cut(this, e),
                    },
                    None => None,
                };
                if let Some(check) = this.check.as_mut() {
                    let json = this.reframe.is_some();
                    let data = converted.as_deref().unwrap_or(data);
                    return match check.push(data, json) {
                        Ok(checked) => Poll::Ready(Some(Ok(Frame::data(checked)))),
                        Err(e) => cut(this, e),
                    };
                }
                if let Some(converted) = converted {
                    return Poll::Ready(Some(Ok(Frame::data(converted))));
                }
                if this.scan.feed(data, this.limit).is_err() {
                    let limit = this.limit;
                    return cut(this, GatewayError::BodyTooLarge { limit });
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(GatewayError::BodyRead(e.to_string()))))
            }
            Poll::Ready(None)
                if this.reframe.as_ref().is_some_and(|r| r.unfinished())
                    || this.check.as_ref().is_some_and(|c| !c.pending.is_empty()) =>
            {
                let error = GatewayError::BadGrpcRequest("request message cut short");
                let answer = GatewayError::BodyRead(error.to_string());
                *this
                    .failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
                Poll::Ready(Some(Err(answer)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The backend's answer on its way to the client. Its frames pass as they
/// are; whatever ends the call early (the backend breaking off, the
/// deadline, the idle timeout, the gateway's shutdown) ends it with a
/// status in trailers.
struct Relay {
    /// Dropped when the call ends early, which resets the backend's stream.
    inbound: Option<Inbound>,
    /// How the status reaches the client: in trailers, or in the body.
    wire: Wire,
    /// `application/grpc-web-text`: the body's base64 so far.
    text: Option<super::grpc_web::TextEncoder>,
    done: bool,
    /// The status was sent: in the headers of a trailers-only answer, or
    /// in the backend's trailers.
    has_status: bool,
    timing: UpstreamCall,
    backend: Arc<str>,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    /// Streams only: the timer and the timeout.
    idle: Option<(Pin<Box<Sleep>>, Duration)>,
    /// Streams only: when a frame last went either way.
    activity: Option<Arc<Activity>>,
    /// Client streams only: why the gateway cut the client's stream, when it did.
    failure: Option<Failure>,
    /// The backend's protobuf replies to the client's JSON.
    reframe: Option<super::reframe::Reframer>,
    cut: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    _lease: Lease,
    _admitted: Admitted,
}

impl Relay {
    /// Ends the call with `error`'s status in trailers.
    fn fail(&mut self, error: &GatewayError) -> Frame<Bytes> {
        self.inbound = None;
        self.done = true;
        let code = error.code();
        self.timing.finish(code);
        if code == Code::Internal || code == Code::Unavailable {
            tracing::warn!(backend = %self.backend, cause = %error.log_cause(), "gRPC call ended early");
        } else {
            tracing::info!(backend = %self.backend, cause = %error.log_cause(), "gRPC call ended early");
        }
        let mut trailers = HeaderMap::new();
        status_headers(&mut trailers, code, &error.client_message());
        self.last(trailers)
    }

    /// The frame that ends the answer with `trailers`: HTTP/2 trailers, or
    /// gRPC-Web's last frame in the body.
    fn last(&mut self, trailers: HeaderMap) -> Frame<Bytes> {
        self.done = true;
        match self.wire {
            Wire::Native => Frame::trailers(trailers),
            Wire::Connect => Frame::data(envelope::end_stream(&trailers)),
            Wire::Web | Wire::WebText => {
                let frame = super::grpc_web::trailer_frame(&trailers);
                Frame::data(self.data(&frame, true))
            }
        }
    }

    /// Reply bytes as the client reads them: as they are, or in base64.
    fn data(&mut self, bytes: &[u8], end: bool) -> Bytes {
        match self.text.as_mut() {
            None => Bytes::copy_from_slice(bytes),
            Some(text) => {
                let mut out = text.encode(bytes).to_vec();
                if end {
                    out.extend_from_slice(&text.finish());
                }
                Bytes::from(out)
            }
        }
    }

    /// The error of a reply stream that broke: as the gateway cut the
    /// client's stream, or as the gRPC spec maps the backend's failure.
    fn broken(&self, error: &(dyn std::error::Error + 'static)) -> GatewayError {
        if let Some(cut) = self.failure.as_ref().and_then(take_failure) {
            return cut;
        }
        let failure = match crate::upstream::stream_reset(error) {
            Some(reason) => crate::upstream::reset_error(reason),
            None => CallError::Unreachable(format!(
                "reply stream failed: {}",
                crate::cause::chain(error)
            )),
        };
        match failure {
            CallError::Status { status, .. } => {
                GatewayError::Upstream(Box::new(crate::error::UpstreamStatus {
                    code: status.code(),
                    message: status.message().to_owned(),
                    details: None,
                    headers: HeaderMap::new(),
                }))
            }
            CallError::Unreachable(cause) => GatewayError::Unavailable {
                backend: self.backend.to_string(),
                cause,
            },
            other => GatewayError::BadBackend {
                backend: self.backend.to_string(),
                cause: format!("{other:?}"),
            },
        }
    }

    /// Whether the idle timer fired with no frame either way since it was set.
    fn idle_passed(&mut self, cx: &mut Context<'_>) -> Option<Duration> {
        let (timer, idle) = self.idle.as_mut()?;
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            let Some(activity) = &self.activity else {
                return None;
            };
            let due = activity.last() + *idle;
            if due <= Instant::now() {
                return Some(*idle);
            }
            timer.as_mut().reset(due);
        }
    }
}

impl hyper::body::Body for Relay {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let Some(inbound) = this.inbound.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inbound).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(activity) = &this.activity {
                    activity.touch();
                }
                let frame = match frame.into_data() {
                    Ok(data) if this.reframe.is_some() => {
                        let converted = match this.reframe.as_mut().map(|r| r.push(&data)) {
                            Some(Ok(converted)) => converted,
                            Some(Err(error)) => return Poll::Ready(Some(Ok(this.fail(&error)))),
                            None => data,
                        };
                        Frame::data(this.data(&converted, false))
                    }
                    Ok(data) if this.text.is_some() => Frame::data(this.data(&data, false)),
                    Ok(data) => Frame::data(data),
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => {
                            this.has_status = true;
                            let code = trailers.get("grpc-status").map_or(Code::Unknown, code_of);
                            this.timing.finish(code);
                            this.last(trailers)
                        }
                        Err(other) => other,
                    },
                };
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                let error = this.broken(e.as_ref());
                return Poll::Ready(Some(Ok(this.fail(&error))));
            }
            Poll::Ready(None) => {
                if this.has_status {
                    this.done = true;
                    return Poll::Ready(None);
                }
                let error = GatewayError::BadBackend {
                    backend: this.backend.to_string(),
                    cause: "the reply ended without a grpc-status".to_owned(),
                };
                return Poll::Ready(Some(Ok(this.fail(&error))));
            }
            Poll::Pending => {}
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            let error = GatewayError::DeadlineExceeded {
                backend: this.backend.to_string(),
                timeout: this.timeout,
            };
            return Poll::Ready(Some(Ok(this.fail(&error))));
        }
        if let Some(idle) = this.idle_passed(cx) {
            let error = GatewayError::StreamTimeout {
                what: "idle",
                timeout: idle,
            };
            return Poll::Ready(Some(Ok(this.fail(&error))));
        }
        if let Some(cut) = this.cut.as_mut()
            && cut.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Ok(this.fail(&GatewayError::ShuttingDown))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inbound.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len as usize));
        m
    }

    #[test]
    fn one_message_is_checked_by_its_prefix() {
        let two = [message(3), message(1)].concat();
        for (body, want) in [
            (message(3), None),
            (message(0), None),
            (Vec::new(), Some("no request message")),
            (vec![0, 0, 0], Some("no request message")),
            (message(3)[..6].to_vec(), Some("request message cut short")),
            (
                two,
                Some("more than one request message for a method that takes one"),
            ),
        ] {
            let got = one_message(&body).err().map(|e| match e {
                GatewayError::BadGrpcRequest(why) => why,
                other => panic!("{other}"),
            });
            assert_eq!(got, want, "{body:?}");
        }
    }

    #[test]
    fn scan_finds_messages_over_the_limit_across_chunks() {
        let stream = [message(4), message(10), message(2)].concat();
        for chunk in [1, 2, 3, 5, 7, stream.len()] {
            let mut scan = Scan::default();
            let got = stream
                .chunks(chunk)
                .map(|c| scan.feed(c, 8))
                .find(Result::is_err);
            assert_eq!(got, Some(Err(10)), "chunks of {chunk}");
            let mut scan = Scan::default();
            assert!(
                stream.chunks(chunk).all(|c| scan.feed(c, 10).is_ok()),
                "chunks of {chunk} within the limit"
            );
        }
    }

    #[test]
    fn wires_are_told_by_method_and_content_type() {
        for (method, content_type, want) in [
            ("POST", "application/grpc", Some(Wire::Native)),
            ("POST", "application/grpc+proto", Some(Wire::Native)),
            ("POST", "application/grpc;charset=utf-8", Some(Wire::Native)),
            ("POST", "application/grpc-web", Some(Wire::Web)),
            ("POST", "application/grpc-web+proto", Some(Wire::Web)),
            ("POST", "application/grpc-web-text", Some(Wire::WebText)),
            (
                "POST",
                "application/grpc-web-text+proto",
                Some(Wire::WebText),
            ),
            ("POST", "application/grpcx", None),
            ("POST", "application/json", None),
            ("GET", "application/grpc", None),
        ] {
            let (parts, ()) = http::Request::builder()
                .method(method)
                .uri("/a.B/C")
                .header(CONTENT_TYPE, content_type)
                .body(())
                .unwrap()
                .into_parts();
            assert_eq!(Wire::of(&parts), want, "{method} {content_type}");
        }
    }

    #[test]
    fn grpc_status_values_parse_to_codes() {
        for (value, want) in [
            ("0", Code::Ok),
            ("14", Code::Unavailable),
            ("16", Code::Unauthenticated),
            ("x", Code::Unknown),
            ("99", Code::Unknown),
        ] {
            assert_eq!(code_of(&HeaderValue::from_static(value)), want, "{value}");
        }
    }

    #[test]
    fn gateway_errors_answer_trailers_only() {
        let (parts, ()) = http::Request::post("/x.Y/Z")
            .header(CONTENT_TYPE, "application/grpc-web+proto")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(Wire::of(&parts), Some(Wire::Web));
        let response = error_response(
            &GatewayError::NotServed {
                path: "/x.Y/Z".into(),
            },
            &parts,
            Wire::Web,
        );
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/grpc-web+proto"
        );
        assert_eq!(response.headers()["grpc-status"], "12");
        assert_eq!(
            response.headers()["grpc-message"],
            "/x.Y/Z is not served as a gRPC method by this gateway"
        );
        assert!(hyper::body::Body::is_end_stream(response.body()));
    }
}
