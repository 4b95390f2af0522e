//! Streaming methods over plain HTTP, for curl, browsers and scripts.
//!
//! - **Server streams** are written as messages arrive, framed by the
//!   request's `Accept`: `application/x-ndjson` (one JSON message per line),
//!   `text/event-stream` (Server-Sent Events) or `application/json` (one
//!   array, written incrementally); `*/*` or none takes
//!   `streaming.default_framing`. An error before the first message is an
//!   ordinary error response; after it, the last line (event, element)
//!   carries the error in the `{"code", "message", "details"}` shape.
//! - **Client streams** read an NDJSON request body line by line and send
//!   each line as a message as it arrives. A bad line ends the call with a
//!   400 naming the line (or, once replies are flowing, an error line).
//! - **Bidirectional streams** do both over one HTTP exchange.
//! - `google.api.HttpBody` requests stream the raw body as chunks; replies
//!   stream the raw bytes as a chunked download.
//!
//! Nothing is queued: the reply body pulls one message from the backend when
//! the client takes the previous one, and the request stream reads the body
//! when the backend takes a message, so flow control reaches end to end. A
//! client that goes away drops the reply stream, which cancels the call.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::Streaming;

use super::pipeline::{
    self, Admitted, Call, MAX_UPLOAD_CHUNK, UpstreamCall, call_error, content_type, ended,
    render_reply,
};
use crate::config::Framing;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::http_rule::Route;
use crate::plan::RoutePlan;
use crate::transcode::{RouteCodec, http_body};
use crate::upstream::Lease;
use crate::upstream::metadata::response_headers;
use crate::upstream::stream::{Outgoing, StreamReply, reply_error};
use crate::upstream::{CallError, Deadline};
use tokio_util::sync::CancellationToken;

/// Calls a streaming method: builds the request stream from the body, opens
/// the call and answers with the reply stream (or, for a client stream, the
/// one reply).
///
/// # Errors
/// A `GatewayError` for anything that fails before the response starts.
pub(super) async fn call(
    gw: &Gateway,
    parts: &Parts,
    body: Body,
    call: Call<'_>,
    admitted: Admitted,
) -> Result<Response, GatewayError> {
    let plan = call.plan;
    let target = call.target;
    let route = plan.route.clone();
    let limits = plan.limits;
    // Counted from the start: the wait for the backend's headers is part of it.
    // A client's Grpc-Timeout (capped as for unary calls) can only shorten it.
    let deadline = Deadline::after(
        pipeline::timeout(parts, limits.stream_max_duration, limits.max_grpc_timeout)?
            .min(limits.stream_max_duration),
    );
    let mut cut = parts.extensions.get::<CancellationToken>().cloned();
    let framing = if route.method.is_server_streaming() && !route.raw_response {
        Some(Framing::negotiate(
            parts.headers.get(ACCEPT),
            gw.config().streaming.default_framing,
        )?)
    } else {
        None
    };
    let (report, failure) = oneshot::channel::<GatewayError>();
    let mut failure = Some(failure);
    // Held while anyone waits for the reply; dropping it cancels the call.
    let (waiting, abandoned) = oneshot::channel::<()>();
    let requests: BoxStream<'static, Outgoing> = if route.method.is_client_streaming() {
        let reader = Reader {
            body: body.into_data_stream(),
            idle: limits.stream_idle_timeout,
            failed: Some(report),
            abandoned,
        };
        if route.raw_request {
            // Path and query are checked before the call opens: a plain 400.
            let prefix = plan
                .codec
                .request(&call.values, call.query.as_deref(), b"")?;
            let field = route.body.field().cloned();
            upload_chunks(reader, prefix, field, content_type(parts).to_owned())
        } else {
            ndjson_messages(
                reader,
                plan.clone(),
                call.values.clone(),
                call.query.clone(),
                plan.limits.max_body_bytes,
            )
        }
    } else {
        drop((report, abandoned));
        // The body of a server stream arrives within the stream's deadline.
        let body =
            pipeline::read_body_within(parts, body, plan.limits.max_body_bytes, &deadline).await?;
        let input = pipeline::message(&call, parts, body)?;
        stream::once(async move { Outgoing::Message(Bytes::from(input)) }).boxed()
    };

    let mut timing = UpstreamCall::start(gw, target);
    let opened = tokio::select! {
        biased;
        error = failed(&mut failure) => return Err(error),
        opened = gw.upstreams().streaming(target, &route, requests, call.metadata, deadline) => opened,
    };
    let StreamReply {
        headers: reply_headers,
        mut messages,
        lease,
        span,
    } = opened.map_err(|e| {
        timing.finish(e.code());
        call_error(gw, &target.name, e)
    })?;
    timing.keep_span(span);

    if !route.method.is_server_streaming() {
        // Exactly one reply, then an OK status, as for a unary call.
        let one = async {
            let reply = messages.message().await?;
            let extra = messages.message().await?;
            let trailers = messages.trailers().await?;
            Ok::<_, tonic::Status>((reply, extra, trailers))
        };
        let result = tokio::select! {
            biased;
            error = failed(&mut failure) => return Err(error),
            result = tokio::time::timeout_at(deadline.at, one) => result,
        };
        let bad = |cause: &str| GatewayError::BadBackend {
            backend: target.name.to_string(),
            cause: cause.to_owned(),
        };
        let answer = match result {
            Ok(Ok((Some(reply), None, trailers))) => {
                timing.finish(tonic::Code::Ok);
                let headers = response_headers(&reply_headers, trailers.as_ref());
                render_reply(
                    parts,
                    plan,
                    &target.name,
                    &reply,
                    headers,
                    &pipeline::ReplyType::Json,
                )
            }
            Ok(Ok((None, _, _))) => Err(bad("no reply to a client stream")),
            Ok(Ok((Some(_), Some(_), _))) => Err(bad("more than one reply to a client stream")),
            Ok(Err(status)) if !deadline.passed() => Err(call_error(
                gw,
                &target.name,
                reply_error(status).after_headers(&reply_headers),
            )),
            Ok(Err(_)) | Err(_) => Err(GatewayError::StreamTimeout {
                what: "too long",
                timeout: deadline.timeout,
            }),
        };
        if let Err(e) = &answer {
            timing.finish(e.code());
        }
        drop(admitted);
        return answer;
    }
    let headers = response_headers(&reply_headers, None);

    // The first message decides the HTTP status: an error before it is an
    // ordinary error response.
    let first = tokio::select! {
        biased;
        error = failed(&mut failure) => return Err(error),
        () = ended(&mut cut) => return Err(GatewayError::ShuttingDown),
        first = next(&mut messages, deadline.at, limits.stream_idle_timeout, deadline.timeout) => first,
    };
    let first = match first {
        Next::Message(m) => Some(m),
        Next::End => None,
        Next::Failed(Failure::Call(e)) => {
            timing.finish(e.code());
            return Err(call_error(
                gw,
                &target.name,
                e.after_headers(&reply_headers),
            ));
        }
        Next::Failed(e) => {
            let error = e.into_gateway(gw, &target.name);
            timing.finish(error.code());
            return Err(error);
        }
    };
    if first.is_none() {
        timing.finish(tonic::Code::Ok);
    }
    let mut replies = Replies {
        gw: gw.clone(),
        codec: plan.codec.clone(),
        route,
        backend: target.name.clone(),
        _admitted: admitted,
        timing,
        messages,
        _lease: lease,
        failure,
        cut,
        _waiting: waiting,
        deadline: deadline.at,
        idle: limits.stream_idle_timeout,
        max_duration: deadline.timeout,
    };
    Ok(match framing {
        Some(framing) => {
            // A first message that does not render is still an ordinary error.
            let first = first
                .map(|m| replies.codec.response(&m))
                .transpose()
                .map_err(|e| {
                    replies.timing.finish(tonic::Code::Internal);
                    GatewayError::BadBackend {
                        backend: target.name.to_string(),
                        cause: e.to_string(),
                    }
                })?;
            framed(replies, first, framing, headers)
        }
        None => download(replies, first, headers)?,
    })
}

/// The open reply side of a call, read as the client takes messages.
struct Replies {
    gw: Gateway,
    codec: RouteCodec,
    route: Arc<Route>,
    backend: std::sync::Arc<str>,
    /// The request's concurrency slot and in-flight count, held while the
    /// stream is open.
    _admitted: Admitted,
    /// Counts the backend call when it ends.
    timing: UpstreamCall,
    messages: Streaming<Bytes>,
    /// Keeps the call counted in flight on its endpoint.
    _lease: Lease,
    /// A client-stream line that failed: it ends the reply stream too.
    failure: Option<oneshot::Receiver<GatewayError>>,
    /// Ends the stream when the gateway shuts down.
    cut: Option<CancellationToken>,
    /// Dropped with the reply stream: the request stream then cancels the call.
    _waiting: oneshot::Sender<()>,
    deadline: Instant,
    idle: Duration,
    max_duration: Duration,
}

/// The failure reported by a request stream, once; pending when there is
/// none (and forever after the request stream ended without one).
pub(super) async fn failed(slot: &mut Option<oneshot::Receiver<GatewayError>>) -> GatewayError {
    if let Some(receiver) = slot.as_mut() {
        let result = receiver.await;
        *slot = None;
        if let Ok(error) = result {
            return error;
        }
    }
    std::future::pending().await
}

/// What the next read of a reply stream gave.
enum Next {
    Message(Bytes),
    End,
    Failed(Failure),
}

/// Why a stream failed.
enum Failure {
    Call(CallError),
    Gateway(GatewayError),
}

impl Failure {
    fn into_gateway(self, gw: &Gateway, backend: &str) -> GatewayError {
        match self {
            Failure::Call(e) => call_error(gw, backend, e),
            Failure::Gateway(e) => e,
        }
    }
}

/// The next reply message, within the idle timeout and the stream's deadline.
async fn next(
    messages: &mut Streaming<Bytes>,
    deadline: Instant,
    idle: Duration,
    max_duration: Duration,
) -> Next {
    let (limit, what, timeout) = if Instant::now() + idle < deadline {
        (Instant::now() + idle, "idle", idle)
    } else {
        (deadline, "too long", max_duration)
    };
    match tokio::time::timeout_at(limit, messages.message()).await {
        Ok(Ok(Some(m))) => Next::Message(m),
        Ok(Ok(None)) => Next::End,
        // However the backend or tonic ends a call whose time is up, it is the cut.
        Ok(Err(_)) if Instant::now() >= deadline => {
            Next::Failed(Failure::Gateway(GatewayError::StreamTimeout {
                what: "too long",
                timeout: max_duration,
            }))
        }
        Ok(Err(status)) => Next::Failed(Failure::Call(reply_error(status))),
        Err(_) => Next::Failed(Failure::Gateway(GatewayError::StreamTimeout {
            what,
            timeout,
        })),
    }
}

impl Replies {
    /// The next message, or the failure of a client-stream line meanwhile.
    async fn next(&mut self) -> Next {
        // A reported failure first: the call it cancels fails right after.
        let next = tokio::select! {
            biased;
            error = failed(&mut self.failure) => Next::Failed(Failure::Gateway(error)),
            () = ended(&mut self.cut) => Next::Failed(Failure::Gateway(GatewayError::ShuttingDown)),
            next = next(&mut self.messages, self.deadline, self.idle, self.max_duration) => next,
        };
        match &next {
            Next::Message(_) => {}
            Next::End => self.timing.finish(tonic::Code::Ok),
            Next::Failed(Failure::Call(e)) => self.timing.finish(e.code()),
            Next::Failed(Failure::Gateway(e)) => self.timing.finish(e.code()),
        }
        next
    }

    fn error_body(&self, failure: Failure) -> Vec<u8> {
        let error = failure.into_gateway(&self.gw, &self.backend);
        tracing::warn!(route = %self.route.template.source, cause = %error.log_cause(), "stream failed after it started");
        error.body()
    }
}

/// A JSON reply stream in `framing`.
fn framed(
    replies: Replies,
    first: Option<Vec<u8>>,
    framing: Framing,
    mut headers: HeaderMap,
) -> Response {
    struct State {
        replies: Replies,
        /// The first message, already rendered.
        pending: Option<Vec<u8>>,
        sent: u64,
        done: bool,
    }
    let state = State {
        replies,
        pending: first,
        sent: 0,
        done: false,
    };
    let body = stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(json) = s.pending.take() {
            s.sent += 1;
            return Some((Ok(framing.message(s.sent, &json)), s));
        }
        let chunk = match s.replies.next().await {
            Next::Message(m) => match s.replies.codec.response(&m) {
                Ok(json) => {
                    s.sent += 1;
                    framing.message(s.sent, &json)
                }
                Err(e) => {
                    s.done = true;
                    let error = GatewayError::BadBackend {
                        backend: s.replies.backend.to_string(),
                        cause: e.to_string(),
                    };
                    framing.error(s.sent, &s.replies.error_body(Failure::Gateway(error)))
                }
            },
            Next::End => {
                s.done = true;
                Bytes::from_static(framing.end(s.sent))
            }
            Next::Failed(failure) => {
                s.done = true;
                let body = s.replies.error_body(failure);
                framing.error(s.sent, &body)
            }
        };
        Some((Ok::<_, std::convert::Infallible>(chunk), s))
    })
    // A body layer (compression) may poll again after the end.
    .fuse();
    headers.insert(CONTENT_TYPE, framing.content_type());
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx) would hold messages back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

/// A `google.api.HttpBody` reply stream as a chunked download: the first
/// message's content type, then every message's bytes. A failure after the
/// first bytes can only cut the download short.
fn download(
    mut replies: Replies,
    first: Option<Bytes>,
    mut headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let first = match first.map(|m| http_body::decode(&m)).transpose() {
        Ok(first) => first,
        Err(e) => {
            replies.timing.finish(tonic::Code::Internal);
            return Err(GatewayError::BadBackend {
                backend: replies.backend.to_string(),
                cause: e.to_string(),
            });
        }
    };
    let content_type = first
        .as_ref()
        .filter(|b| !b.content_type.is_empty())
        .and_then(|b| HeaderValue::from_str(&b.content_type).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(CONTENT_TYPE, content_type);
    let first = first.map(|b| b.data);
    let body = stream::unfold((replies, first), |(mut replies, pending)| async move {
        if let Some(data) = pending {
            return Some((Ok(data), (replies, None)));
        }
        match replies.next().await {
            Next::Message(m) => match http_body::decode(&m) {
                Ok(b) => Some((Ok(b.data), (replies, None))),
                Err(e) => {
                    tracing::warn!(route = %replies.route.template.source, error = %e, "download cut short: reply is not an HttpBody");
                    Some((Err(std::io::Error::other("invalid reply")), (replies, None)))
                }
            },
            Next::End => None,
            Next::Failed(failure) => {
                let body = replies.error_body(failure);
                Some((
                    Err(std::io::Error::other(String::from_utf8_lossy(&body).into_owned())),
                    (replies, None),
                ))
            }
        }
    })
    // An error ends the body; nothing may follow it.
    .scan(false, |failed, item| {
        let out = if *failed { None } else { Some(item) };
        if let Some(Err(_)) = &out {
            *failed = true;
        }
        std::future::ready(out)
    })
    // A body layer (compression) may poll again after the end: an unfold
    // polled past its end panics.
    .fuse();
    Ok((StatusCode::OK, headers, Body::from_stream(body)).into_response())
}

/// The request body read for a client stream: chunk by chunk, each within
/// the idle timeout; a failure is reported once through `failed`. When the
/// reply side is gone (`abandoned` fires), reading stops.
struct Reader {
    body: axum::body::BodyDataStream,
    idle: Duration,
    failed: Option<oneshot::Sender<GatewayError>>,
    abandoned: oneshot::Receiver<()>,
}

/// What reading the request body gave.
enum Read {
    Chunk(Bytes),
    /// The body ended: the request stream half-closes.
    End,
    /// The call must be cancelled: a failure was reported, or nobody waits
    /// for the reply any more.
    Abort,
}

impl Reader {
    async fn chunk(&mut self) -> Read {
        let next = tokio::select! {
            biased;
            _ = &mut self.abandoned => return Read::Abort,
            next = tokio::time::timeout(self.idle, self.body.next()) => next,
        };
        match next {
            Ok(Some(Ok(chunk))) => Read::Chunk(chunk),
            Ok(None) => Read::End,
            Ok(Some(Err(e))) => self.fail(GatewayError::BodyRead(e.to_string())),
            Err(_) => self.fail(GatewayError::StreamTimeout {
                what: "idle",
                timeout: self.idle,
            }),
        }
    }

    /// Reports `error` (the first one only) and asks for the call to be cancelled.
    fn fail(&mut self, error: GatewayError) -> Read {
        if let Some(failed) = self.failed.take() {
            let _ = failed.send(error);
        }
        Read::Abort
    }
}

/// Cancels the call and ends the request stream: a half-close would let the
/// backend answer as if the client had finished.
fn abort<S>() -> Option<(Outgoing, Option<S>)> {
    Some((Outgoing::Abort, None))
}

/// NDJSON request lines as messages, each as soon as its line is complete.
fn ndjson_messages(
    reader: Reader,
    plan: RoutePlan,
    values: Vec<String>,
    query: Option<String>,
    max_line: usize,
) -> BoxStream<'static, Outgoing> {
    struct State {
        reader: Reader,
        buffer: BytesMut,
        /// Bytes of `buffer` already searched for a newline.
        scanned: usize,
        line: usize,
        ended: bool,
        plan: RoutePlan,
        values: Vec<String>,
        query: Option<String>,
        max_line: usize,
    }
    let state = State {
        reader,
        buffer: BytesMut::new(),
        scanned: 0,
        line: 0,
        ended: false,
        plan,
        values,
        query,
        max_line,
    };
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            let complete = s.buffer[s.scanned..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|at| s.scanned + at);
            let text = match complete {
                Some(at) => {
                    s.scanned = 0;
                    s.buffer.split_to(at + 1).freeze()
                }
                None if s.ended && !s.buffer.is_empty() => s.buffer.split().freeze(),
                None if s.ended => return None,
                None => {
                    s.scanned = s.buffer.len();
                    if s.buffer.len() > s.max_line {
                        let line = s.line + 1;
                        let max = s.max_line;
                        s.reader.fail(GatewayError::BadLine {
                            line,
                            message: format!("longer than {max} bytes"),
                            cause: None,
                        });
                        return abort();
                    }
                    match s.reader.chunk().await {
                        Read::Chunk(chunk) => s.buffer.extend_from_slice(&chunk),
                        Read::End => s.ended = true,
                        Read::Abort => return abort(),
                    }
                    continue;
                }
            };
            s.line += 1;
            let content = text.strip_suffix(b"\n").unwrap_or(&text);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if content.len() > s.max_line {
                let (line, max) = (s.line, s.max_line);
                s.reader.fail(GatewayError::BadLine {
                    line,
                    message: format!("longer than {max} bytes"),
                    cause: None,
                });
                return abort();
            }
            if content.trim_ascii().is_empty() {
                continue;
            }
            let built = s
                .plan
                .codec
                .request(&s.values, s.query.as_deref(), content)
                .map_err(|e| GatewayError::bad_line(s.line, e))
                .and_then(|message| {
                    pipeline::checked_line(&s.plan, s.line, content, s.query.as_deref(), message)
                });
            match built {
                Ok(message) => return Some((Outgoing::Message(Bytes::from(message)), Some(s))),
                Err(e) => {
                    s.reader.fail(e);
                    return abort();
                }
            }
        }
    })
    .boxed()
}

/// A raw upload as `google.api.HttpBody` messages, one per body chunk (at
/// most 1 MiB each) as it arrives; the first carries the content type. An
/// empty body is one empty message, so the backend still gets the path
/// fields and the content type.
fn upload_chunks(
    reader: Reader,
    prefix: Vec<u8>,
    field: Option<crate::http_rule::FieldPath>,
    content_type: String,
) -> BoxStream<'static, Outgoing> {
    struct State {
        reader: Reader,
        rest: Bytes,
        content_type: Option<String>,
        prefix: Vec<u8>,
        field: Option<crate::http_rule::FieldPath>,
        sent: bool,
    }
    let state = State {
        reader,
        rest: Bytes::new(),
        content_type: Some(content_type),
        prefix,
        field,
        sent: false,
    };
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        while s.rest.is_empty() {
            match s.reader.chunk().await {
                Read::Chunk(chunk) => s.rest = chunk,
                Read::End if s.sent => return None,
                Read::End => break,
                Read::Abort => return abort(),
            }
        }
        let data = s.rest.split_to(s.rest.len().min(MAX_UPLOAD_CHUNK));
        let mut message = s.prefix.clone();
        http_body::append(
            &mut message,
            s.field.as_ref(),
            s.content_type.take().as_deref().unwrap_or_default(),
            data,
        );
        s.sent = true;
        Some((Outgoing::Message(Bytes::from(message)), Some(s)))
    })
    .boxed()
}
