//! Calls to backends. Each backend is a set of endpoints ([`backend`]),
//! each a long-lived HTTP/2 channel built at startup, watched by active
//! health checks ([`health`]) and DNS refresh ([`resolve`]), or listed and
//! watched in etcd ([`discovery`]).
//!
//! Channels connect lazily and reconnect by themselves, so a backend that is
//! down at startup or restarts later only fails the requests made meanwhile.
//! Calls move encoded bytes framed by hand as one gRPC message; turning them into JSON
//! is `transcode`'s job, turning failures into HTTP is `error`'s.

pub mod backend;
pub mod breaker;
pub mod connection;
pub mod discovery;
pub mod endpoint;
pub mod health;
pub mod http2;
pub mod metadata;
pub mod passthrough;
pub mod pick;
pub mod resolve;
pub mod split;
pub mod status;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use http::header::{CONTENT_TYPE, HeaderName, TE};
use http_body_util::BodyExt;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tracing::Instrument;

use crate::config::{BackendConfig, Config};
use crate::http_rule::Route;
pub use backend::Backend;
pub use breaker::Outcome;
pub use connection::connection;
pub use endpoint::{Endpoint, Lease};
pub use split::{Split, Target, UnknownBackend};
pub use status::{BackendStatus, DiscoveryState, DiscoveryStatus, EndpointState, EndpointStatus};

const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const TRAILERS: HeaderValue = HeaderValue::from_static("trailers");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// Who is calling, for the backend's logs.
const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("protogate/", env!("CARGO_PKG_VERSION")));

/// The backends, indexed like `Config::backends`.
#[derive(Debug, Clone)]
pub struct Upstreams {
    backends: Vec<Arc<Backend>>,
    override_header: Option<HeaderName>,
}

/// A successful unary reply.
#[derive(Debug)]
pub struct UnaryReply {
    /// Response header metadata.
    pub headers: MetadataMap,
    /// The encoded reply message.
    pub message: Bytes,
    /// Trailer metadata.
    pub trailers: Option<MetadataMap>,
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The backend answered with a non-OK status. The status's metadata
    /// is the trailers (or a trailers-only answer's headers); `headers` the
    /// header metadata sent before them.
    Status {
        /// The status, with the trailer metadata.
        status: Status,
        /// Header metadata, when the answer had headers of its own.
        headers: MetadataMap,
    },
    /// No answer: the backend could not be reached or the connection failed.
    Unreachable(String),
    /// No endpoint of the backend takes calls. With a duration, every
    /// healthy endpoint's circuit breaker is open and the first half-opens
    /// after it.
    NoEndpoint(Option<Duration>),
    /// The backend broke the gRPC contract (e.g. two replies to a unary call).
    Protocol(String),
    /// The deadline passed.
    Timeout(Duration),
    /// The caller's request stream failed before the call was answered
    /// (cut by the gateway, or broken off): it says nothing of the backend.
    Aborted(String),
}

impl CallError {
    /// A status without header metadata of its own.
    pub fn status(status: Status) -> Self {
        Self::Status {
            status,
            headers: MetadataMap::new(),
        }
    }

    /// The failure of a call whose answer began with `headers`: a status
    /// keeps them as its header metadata.
    pub fn after_headers(self, headers: &MetadataMap) -> Self {
        match self {
            Self::Status { status, .. } => Self::Status {
                status,
                headers: headers.clone(),
            },
            other => other,
        }
    }

    /// The gRPC code the failure reports.
    pub fn code(&self) -> Code {
        match self {
            Self::Status { status, .. } => status.code(),
            Self::Unreachable(_) | Self::NoEndpoint(_) => Code::Unavailable,
            Self::Protocol(_) => Code::Internal,
            Self::Timeout(_) => Code::DeadlineExceeded,
            Self::Aborted(_) => Code::Cancelled,
        }
    }
}

impl Upstreams {
    /// Builds every configured backend: resolves its addresses, runs the
    /// first health checks and starts the background tasks. A backend of
    /// `previous` with the same endpoints, connection and health settings is
    /// kept as it is, with its connections and health state (hot reload).
    pub async fn connect(config: &Config, previous: Option<&Upstreams>) -> Self {
        // New backends resolve and run their first checks side by side.
        let mut built = tokio::task::JoinSet::new();
        let mut backends: Vec<Option<Arc<Backend>>> = Vec::with_capacity(config.backends.len());
        for (i, wanted) in config.backends.iter().enumerate() {
            let kept =
                previous.and_then(|p| p.backends.iter().find(|b| b.config.same_endpoints(wanted)));
            backends.push(kept.cloned());
            if kept.is_none() {
                let wanted = wanted.clone();
                built.spawn(async move { (i, Self::build(wanted).await) });
            }
        }
        while let Some(result) = built.join_next().await {
            match result {
                Ok((i, backend)) => backends[i] = Some(backend),
                // Building does not panic; if it did, the backend gets no
                // endpoints and its routes answer 503 rather than the process dying.
                Err(e) => tracing::error!(error = %e, "building a backend failed"),
            }
        }
        Self {
            backends: backends
                .into_iter()
                .zip(&config.backends)
                .map(|(b, wanted)| b.unwrap_or_else(|| Backend::new(wanted.clone(), Vec::new())))
                .collect(),
            override_header: config.traffic.override_header.clone(),
        }
    }

    async fn build(config: BackendConfig) -> Arc<Backend> {
        let endpoints = resolve::endpoints(&config, &[]).await;
        let health_check = config.health_check.clone();
        let host_names = resolve::has_host_names(&config);
        let backend = Backend::new(config, endpoints);
        // Listed before the first health checks, which then check what etcd lists.
        discovery::start(&backend).await;
        if let Some(options) = health_check {
            health::start(&backend, options).await;
        }
        if host_names {
            resolve::start(&backend);
        }
        backend
    }

    /// The backends `route` calls, with their handles: resolved once per
    /// route when the gateway is built. `None` for a route naming a backend
    /// that is not configured, which the route table never builds.
    pub fn split(&self, route: &Route) -> Option<Split> {
        let targets = route
            .backends
            .iter()
            .map(|b| {
                Some(Target {
                    backend: self.backends.get(b.index)?.clone(),
                    name: b.name.as_str().into(),
                    weight: b.weight,
                    timeout: b.timeout,
                    max_response_bytes: b.max_response_bytes,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Split::new(targets, self.override_header.clone())
    }

    /// Every backend's state, for `/readyz`.
    pub fn status(&self) -> Vec<BackendStatus> {
        self.backends.iter().map(|b| b.status()).collect()
    }

    /// Calls a unary method on one of `target`'s endpoints with an encoded
    /// request and returns the encoded reply.
    ///
    /// The deadline is sent to the backend as `grpc-timeout` and enforced
    /// here too. An endpoint that refuses the connection never saw the
    /// request, so the call moves on to another endpoint.
    ///
    /// # Errors
    /// [`CallError::Status`] for a non-OK status, [`CallError::Unreachable`]
    /// for a transport failure, [`CallError::NoEndpoint`] when no endpoint
    /// is healthy, [`CallError::Timeout`] when the deadline passes.
    pub async fn unary(
        &self,
        target: &Target,
        route: &Route,
        message: Bytes,
        metadata: MetadataMap,
        deadline: Deadline,
    ) -> Result<UnaryReply, CallError> {
        let span = crate::telemetry::upstream_span(&target.name, route.grpc_path.path());
        let result = self
            .unary_call(target, route, message, metadata, deadline)
            .instrument(span.clone())
            .await;
        crate::telemetry::upstream_done(
            &span,
            result.as_ref().err().map_or(Code::Ok, CallError::code),
        );
        result
    }

    async fn unary_call(
        &self,
        target: &Target,
        route: &Route,
        message: Bytes,
        metadata: MetadataMap,
        deadline: Deadline,
    ) -> Result<UnaryReply, CallError> {
        // The request is one gRPC frame in one HTTP/2 DATA frame that also
        // ends the stream: no message tree, no extra frames for the backend.
        let mut framed = BytesMut::with_capacity(message.len() + 5);
        framed.put_u8(0);
        framed.put_u32(
            u32::try_from(message.len())
                .map_err(|_| CallError::Protocol("request too large".to_owned()))?,
        );
        framed.put(message);
        let framed = framed.freeze();
        let mut headers = metadata.into_headers();
        // The backend's parent is this call's span, when spans are exported.
        crate::telemetry::inject(&mut headers);
        headers.insert(CONTENT_TYPE, GRPC);
        let limit = target.max_response_bytes;
        let (reply, _lease) = attempts(target, route, headers, deadline, |endpoint, request| {
            send(endpoint, request, framed.clone(), limit)
        })
        .await?;
        Ok(reply)
    }
}

/// Runs a call whose request can be sent again: on one endpoint, then on
/// another when the first refused it, and again (idempotent methods only,
/// within the backend's retry budget) after a failure worth a retry.
/// `attempt` sends one request to one endpoint; `headers` are its headers
/// but `:path`, `grpc-timeout`, `te` and `user-agent`, set here. Returns the
/// answer and the lease of the endpoint that gave it.
pub(crate) async fn attempts<T, F, Fut>(
    target: &Target,
    route: &Route,
    mut headers: http::HeaderMap,
    deadline: Deadline,
    mut attempt: F,
) -> Result<(T, Lease), CallError>
where
    F: FnMut(Arc<Endpoint>, http::Request<()>) -> Fut,
    Fut: std::future::Future<Output = Result<T, Attempt>>,
{
    let backend = &target.backend;
    headers.insert(TE, TRAILERS);
    headers.insert(http::header::USER_AGENT, USER_AGENT);
    let retry = &backend.config.retry;
    let retries = if route.idempotent {
        retry.attempts.saturating_sub(1)
    } else {
        0
    };
    backend.deposit();
    // Endpoints not to try again: they refused, or failed a retried call.
    let mut excluded: Vec<Arc<Endpoint>> = Vec::new();
    let mut last_refusal: Option<String> = None;
    let mut retried = 0;
    // The last failure of a retried call, reported if no endpoint is left.
    let mut last_failure: Option<CallError> = None;
    let gave_up = |refusal: Option<String>, failure: Option<CallError>| match (refusal, failure) {
        (Some(cause), _) => CallError::Unreachable(cause),
        (None, Some(failure)) => failure,
        (None, None) => CallError::NoEndpoint(backend.reopens_in()),
    };
    // Only a backend with several endpoints, or with retries, can
    // need the headers twice.
    let spare = (backend.endpoints().len() > 1 || retries > 0).then(|| headers.clone());
    let mut headers = Some(headers);
    // Every wait below is bounded by the deadline (each attempt, each
    // backoff), so no timer of its own is needed around the loop.
    loop {
        if deadline.passed() {
            return Err(deadline.exceeded());
        }
        let Some(lease) = backend.pick(&excluded).or_else(|| {
            // A retry may go back to the endpoint that failed when it is the only one.
            (retried > 0 && last_refusal.is_none())
                .then(|| backend.pick(&[]))
                .flatten()
        }) else {
            return Err(gave_up(last_refusal, last_failure));
        };
        let Some(mut attempt_headers) = headers.take().or_else(|| spare.clone()) else {
            return Err(gave_up(last_refusal, last_failure));
        };
        // Sent so the backend knows what is left; enforced below, whatever it does.
        let left = deadline.left();
        attempt_headers.insert(GRPC_TIMEOUT, metadata::grpc_timeout_header(left));
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = lease.endpoint.http2().uri(&route.grpc_path);
        *request.headers_mut() = attempt_headers;
        // The caller's deadline owns the call: whatever ends it once
        // the deadline is reached (this timer, tonic's own from the
        // grpc-timeout header, a late reply of any status) is a
        // timeout, and says nothing about the endpoint.
        let sent = attempt(lease.endpoint.clone(), request);
        let result = match tokio::time::timeout_at(deadline.at, sent).await {
            Ok(result) if !deadline.passed() => result,
            _ => Err(Attempt::Expired),
        };
        backend.record(&lease, outcome(&result));
        match result {
            Err(Attempt::Refused(cause)) => {
                tracing::debug!(endpoint = %lease.endpoint.address, %cause, "connection refused; trying another endpoint");
                excluded.push(lease.endpoint.clone());
                last_refusal = Some(format!("{}: {cause}", lease.endpoint.address));
            }
            Err(Attempt::Failed(e)) if retried < retries && retryable(&e) && backend.withdraw() => {
                retried += 1;
                let delay = backoff(retry, retried).min(deadline.left());
                tracing::debug!(endpoint = %lease.endpoint.address, attempt = retried + 1, ?delay, "retrying an idempotent call");
                excluded.push(lease.endpoint.clone());
                // Not in flight while waiting.
                drop(lease);
                last_failure = Some(e);
                tokio::time::sleep(delay).await;
            }
            // Which endpoint, for the log line.
            Err(Attempt::Failed(CallError::Unreachable(cause))) => {
                return Err(CallError::Unreachable(format!(
                    "{}: {cause}",
                    lease.endpoint.address
                )));
            }
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Expired) => return Err(deadline.exceeded()),
            Ok(reply) => return Ok((reply, lease)),
        }
    }
}

/// When a call must have ended: the caller's `Grpc-Timeout` (capped) or the
/// route's or backend's timeout, fixed once when the request arrived.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The instant the call's time is up.
    pub at: tokio::time::Instant,
    /// The whole time the call was given, for messages.
    pub timeout: Duration,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self {
            at: tokio::time::Instant::now() + timeout,
            timeout,
        }
    }

    /// The time left, zero once passed.
    pub fn left(&self) -> Duration {
        self.at
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// Whether the deadline has been reached.
    pub fn passed(&self) -> bool {
        tokio::time::Instant::now() >= self.at
    }

    /// The error of a call that ran out of time.
    pub fn exceeded(&self) -> CallError {
        CallError::Timeout(self.timeout)
    }
}

/// One attempt's failure: refused before the request left, out of time
/// (by any timer), or any other.
pub(crate) enum Attempt {
    Refused(String),
    Expired,
    Failed(CallError),
}

async fn send(
    endpoint: Arc<Endpoint>,
    request: http::Request<()>,
    framed: Bytes,
    limit: usize,
) -> Result<UnaryReply, Attempt> {
    let response = endpoint
        .http2()
        .send(request, framed)
        .await
        .map_err(|e| transport_failure(e.as_ref()))?;
    read_reply(response, limit).await.map_err(Attempt::Failed)
}

/// What a transport error says about the attempt.
pub(crate) fn transport_failure(e: &(dyn std::error::Error + 'static)) -> Attempt {
    if is_expired(e) {
        Attempt::Expired
    } else if is_refused(e) || never_processed(e) {
        Attempt::Refused(crate::cause::chain(e))
    } else if let Some(reason) = stream_reset(e) {
        match reason {
            // The backend never processed it: another endpoint may.
            h2::Reason::REFUSED_STREAM => Attempt::Refused(crate::cause::chain(e)),
            reason => Attempt::Failed(reset_error(reason)),
        }
    } else {
        Attempt::Failed(CallError::Unreachable(crate::cause::chain(e)))
    }
}

/// A stream the backend's GOAWAY left out: one it had not started to
/// process, so another connection or endpoint may take the call.
fn never_processed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote();
        }
        cause = e.source();
    }
    false
}

/// Failures worth another attempt of an idempotent call: the backend was
/// unavailable or the connection broke. A passed deadline is not: there is
/// no time left.
fn retryable(error: &CallError) -> bool {
    match error {
        CallError::Unreachable(_) => true,
        CallError::Status { status, .. } => status.code() == Code::Unavailable,
        _ => false,
    }
}

/// Exponential backoff with full jitter: a random wait up to
/// `backoff * 2^(n-1)`, at most `max_backoff`.
fn backoff(options: &crate::config::RetryOptions, retry: u32) -> Duration {
    let ceiling = options
        .backoff
        .saturating_mul(1 << retry.saturating_sub(1).min(16))
        .min(options.max_backoff);
    ceiling.mul_f64(fastrand::f64())
}

/// The reason of the RST_STREAM a backend ended the call with, if that is
/// what `error` is. Not a broken connection or a GOAWAY: those are transport
/// failures.
pub(crate) fn stream_reset(error: &(dyn std::error::Error + 'static)) -> Option<h2::Reason> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return (h2.is_reset() && h2.is_remote())
                .then(|| h2.reason())
                .flatten();
        }
        cause = e.source();
    }
    None
}

/// A reset stream as the gRPC spec maps RST_STREAM codes: REFUSED_STREAM
/// is UNAVAILABLE (the backend never processed the call); CANCEL and
/// ENHANCE_YOUR_CALM keep their meaning; any other reason (INTERNAL_ERROR,
/// PROTOCOL_ERROR, ...) is an INTERNAL failure of the backend, even after a
/// complete reply message, since the call has no status.
pub(crate) fn reset_error(reason: h2::Reason) -> CallError {
    let why = format!("backend reset the stream ({reason})");
    match reason {
        h2::Reason::REFUSED_STREAM => CallError::Unreachable(why),
        h2::Reason::CANCEL => CallError::status(Status::cancelled(why)),
        h2::Reason::ENHANCE_YOUR_CALM => CallError::status(Status::resource_exhausted(why)),
        _ => CallError::Protocol(why),
    }
}

/// Whether an error is tonic's own deadline timer (set from the
/// `grpc-timeout` header) somewhere in its chain.
pub(crate) fn is_expired(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Whether a transport error is a refused connection somewhere in its chain.
fn is_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// What a call's result says about the endpoint's health.
fn outcome<T>(result: &Result<T, Attempt>) -> Outcome {
    match result {
        Ok(_) => Outcome::Answered,
        Err(Attempt::Refused(_)) => Outcome::Failed,
        Err(Attempt::Expired) => Outcome::Neutral,
        Err(Attempt::Failed(e)) => failure_outcome(e),
    }
}

/// What a failed call says about the endpoint's health: no answer or
/// UNAVAILABLE is a failure; any other status, even a broken reply, is an
/// answer.
pub(crate) fn failure_outcome(error: &CallError) -> Outcome {
    match error {
        CallError::Unreachable(_) => Outcome::Failed,
        CallError::Status { status, .. } if status.code() == Code::Unavailable => Outcome::Failed,
        CallError::Status { .. } | CallError::Protocol(_) => Outcome::Answered,
        CallError::Timeout(_) | CallError::NoEndpoint(_) | CallError::Aborted(_) => {
            Outcome::Neutral
        }
    }
}

/// Reads a unary reply: headers, exactly one message, and the status in the
/// trailers (or in the headers of a trailers-only answer).
async fn read_reply<B>(response: http::Response<B>, limit: usize) -> Result<UnaryReply, CallError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    let bad = |why: String| CallError::Protocol(why);
    let (mut parts, mut body) = response.into_parts();
    // Trailers-only: the headers are the trailers, and the status's metadata.
    if let Some(status) = status_of(&mut parts.headers)
        && status.code() != Code::Ok
    {
        return Err(CallError::status(status));
    }
    not_grpc(&parts)?;
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        // A connection that breaks after the headers is no answer, as a
        // refused one is: UNAVAILABLE, and a failure of the endpoint.
        let frame = frame.map_err(|e| match stream_reset(&e) {
            Some(reason) => reset_error(reason),
            None => CallError::Unreachable(format!("reply stream failed: {e}")),
        })?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > limit.saturating_add(5) {
                    return Err(bad(format!("reply larger than {limit} bytes")));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    // Without trailers the status must have come in the headers (checked above).
    let status_headers = match trailers.as_mut() {
        Some(t) => t,
        None => &mut parts.headers,
    };
    // The common answer, told apart without building a status.
    if !is_ok(status_headers) {
        let status =
            status_of(status_headers).ok_or_else(|| bad("reply without grpc-status".to_owned()))?;
        if status.code() != Code::Ok {
            return Err(CallError::Status {
                status,
                headers: MetadataMap::from_headers(parts.headers),
            });
        }
    }
    let message = match data.first() {
        Some(0) if data.len() >= 5 => {
            let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            if data.len() - 5 < len {
                return Err(bad("reply message cut short".to_owned()));
            }
            if data.len() - 5 > len {
                return Err(bad("backend sent more than one reply message".to_owned()));
            }
            data.split_off(5).freeze()
        }
        Some(0) | None => return Err(bad("backend sent no reply message".to_owned())),
        // No compression was offered, so a compressed (or invalid) flag is a protocol error.
        Some(flag) => return Err(bad(format!("reply message flag {flag}"))),
    };
    Ok(UnaryReply {
        headers: MetadataMap::from_headers(parts.headers),
        message,
        trailers: trailers.map(MetadataMap::from_headers),
    })
}

/// A reply that is no gRPC answer: an HTTP status other than 200 (a proxy
/// or web server answered; the gRPC spec's HTTP-to-gRPC table decides the
/// code, so clients can retry a 503), or a content type that is not gRPC.
pub(crate) fn not_grpc(parts: &http::response::Parts) -> Result<(), CallError> {
    if parts.status != http::StatusCode::OK {
        let code = match parts.status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        };
        return Err(CallError::status(Status::new(
            code,
            format!(
                "backend answered HTTP {} without a gRPC status",
                parts.status.as_u16()
            ),
        )));
    }
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/grpc") {
        return Err(CallError::Protocol(format!(
            "content type {content_type:?} is not gRPC"
        )));
    }
    Ok(())
}

/// Whether `headers` carry `grpc-status: 0`.
fn is_ok(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"0")
}

/// The gRPC status in a header map. tonic's parser panics on a
/// `grpc-status-details-bin` that is not base64, so such a value is dropped first.
pub(crate) fn status_of(headers: &mut http::HeaderMap) -> Option<Status> {
    use base64::Engine;
    const DETAILS: &str = "grpc-status-details-bin";
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    if headers
        .get(DETAILS)
        .is_some_and(|v| engine.decode(v.as_bytes()).is_err())
    {
        headers.remove(DETAILS);
    }
    Status::from_header_map(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_resets_map_as_the_grpc_spec_says() {
        let cases = [
            (h2::Reason::NO_ERROR, Code::Internal),
            (h2::Reason::PROTOCOL_ERROR, Code::Internal),
            (h2::Reason::INTERNAL_ERROR, Code::Internal),
            (h2::Reason::FLOW_CONTROL_ERROR, Code::Internal),
            (h2::Reason::FRAME_SIZE_ERROR, Code::Internal),
            (h2::Reason::REFUSED_STREAM, Code::Unavailable),
            (h2::Reason::CANCEL, Code::Cancelled),
            (h2::Reason::ENHANCE_YOUR_CALM, Code::ResourceExhausted),
        ];
        for (reason, code) in cases {
            assert_eq!(reset_error(reason).code(), code, "{reason}");
        }
    }

    #[test]
    fn transport_errors_name_their_causes() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = Wrapper(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert_eq!(
            crate::cause::chain(&refused),
            "transport error: Connection refused (os error 111)"
        );
        let io = std::io::Error::other("broken pipe");
        assert_eq!(crate::cause::chain(&io), "broken pipe");
    }

    #[test]
    fn only_a_reset_from_the_peer_is_a_stream_reset() {
        let local: h2::Error = h2::Reason::INTERNAL_ERROR.into();
        // An h2::Error made from a reason counts as the local side's.
        assert_eq!(stream_reset(&local), None);
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(stream_reset(&io), None);
    }
}
