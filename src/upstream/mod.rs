//! Calls to backends: one long-lived HTTP/2 channel per backend, built at startup.
//!
//! Channels connect lazily and reconnect by themselves, so a backend that is
//! down at startup or restarts later only fails the requests made meanwhile.
//! Calls move encoded bytes framed by hand as one gRPC message; turning them into JSON
//! is `transcode`'s job, turning failures into HTTP is `error`'s.

pub mod metadata;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use http::header::{CONTENT_TYPE, HeaderName, TE};
use http_body_util::{BodyExt, Full};
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::{Service, ServiceExt};
use tracing::instrument;

use crate::config::Config;
use crate::http_rule::Route;

const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const TRAILERS: HeaderValue = HeaderValue::from_static("trailers");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The backends' channels, indexed like `Config::backends`.
#[derive(Debug, Clone)]
pub struct Upstreams {
    channels: Vec<Channel>,
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
    /// The backend answered with a non-OK status.
    Status(Status),
    /// No answer: the backend could not be reached or the connection failed.
    Unreachable(String),
    /// The backend broke the gRPC contract (e.g. two replies to a unary call).
    Protocol(String),
    /// The deadline passed.
    Timeout(Duration),
}

impl Upstreams {
    /// Creates one lazily connecting channel per configured backend.
    pub fn connect(config: &Config) -> Self {
        let channels = config
            .backends
            .iter()
            .map(|b| {
                let endpoint = Endpoint::from(b.address.clone())
                    .connect_timeout(b.connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_timeout(Duration::from_secs(10))
                    .keep_alive_while_idle(true);
                endpoint.connect_lazy()
            })
            .collect();
        Self { channels }
    }

    /// Calls a unary method with an encoded request and returns the encoded reply.
    ///
    /// The deadline is sent to the backend as `grpc-timeout` and enforced here too.
    ///
    /// # Errors
    /// [`CallError::Status`] for a non-OK status, [`CallError::Unreachable`]
    /// for a transport failure, [`CallError::Timeout`] when the deadline passes.
    #[instrument(skip_all, fields(backend = %route.backend_name, method = %route.grpc_path))]
    pub async fn unary(
        &self,
        route: &Route,
        message: Bytes,
        metadata: MetadataMap,
        timeout: Duration,
    ) -> Result<UnaryReply, CallError> {
        let Some(channel) = self.channels.get(route.backend) else {
            return Err(CallError::Protocol(
                "route names an unknown backend".to_owned(),
            ));
        };
        // The request is one gRPC frame in one HTTP/2 DATA frame that also
        // ends the stream: no message tree, no extra frames for the backend.
        let mut framed = BytesMut::with_capacity(message.len() + 5);
        framed.put_u8(0);
        framed.put_u32(
            u32::try_from(message.len())
                .map_err(|_| CallError::Protocol("request too large".to_owned()))?,
        );
        framed.put(message);
        let mut headers = metadata.into_headers();
        headers.insert(CONTENT_TYPE, GRPC);
        headers.insert(TE, TRAILERS);
        // Sent so the backend knows; enforced below, whatever the backend does.
        if let Ok(value) = HeaderValue::from_str(&metadata::format_grpc_timeout(timeout)) {
            headers.insert(GRPC_TIMEOUT, value);
        }
        let mut request = http::Request::new(tonic::body::Body::new(Full::new(framed.freeze())));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = http::Uri::from(route.grpc_path.clone());
        *request.headers_mut() = headers;
        let limit = route.max_response_bytes;
        let call = async move {
            let mut channel = channel.clone();
            let response = channel
                .ready()
                .await
                .map_err(|e| CallError::Unreachable(e.to_string()))?
                .call(request)
                .await
                .map_err(|e| CallError::Unreachable(e.to_string()))?;
            read_reply(response, limit).await
        };
        let started = std::time::Instant::now();
        match tokio::time::timeout(timeout, call).await {
            // Servers that enforce grpc-timeout themselves may cancel or reset
            // the call (tonic answers CANCELLED) a moment before our own timer fires.
            Ok(Err(CallError::Status(s)))
                if matches!(s.code(), Code::Cancelled | Code::DeadlineExceeded)
                    && started.elapsed() >= timeout =>
            {
                Err(CallError::Timeout(timeout))
            }
            Ok(Err(CallError::Protocol(_) | CallError::Unreachable(_)))
                if started.elapsed() >= timeout =>
            {
                Err(CallError::Timeout(timeout))
            }
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }
}

/// Reads a unary reply: headers, exactly one message, and the status in the
/// trailers (or in the headers of a trailers-only answer).
async fn read_reply(
    response: http::Response<tonic::body::Body>,
    limit: usize,
) -> Result<UnaryReply, CallError> {
    let bad = |why: String| CallError::Protocol(why);
    let (mut parts, mut body) = response.into_parts();
    if let Some(status) = status_of(&mut parts.headers)
        && status.code() != Code::Ok
    {
        return Err(CallError::Status(status));
    }
    if parts.status != http::StatusCode::OK {
        // No gRPC status: a proxy or web server answered. The gRPC spec's
        // HTTP-to-gRPC table decides the code, so clients can retry a 503.
        let code = match parts.status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        };
        return Err(CallError::Status(Status::new(
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
        return Err(bad(format!("content type {content_type:?} is not gRPC")));
    }
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad(format!("reply stream failed: {e}")))?;
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
    let status = match trailers.as_mut() {
        Some(t) => status_of(t),
        None => status_of(&mut parts.headers),
    }
    .ok_or_else(|| bad("reply without grpc-status".to_owned()))?;
    if status.code() != Code::Ok {
        return Err(CallError::Status(status));
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

/// The gRPC status in a header map. tonic's parser panics on a
/// `grpc-status-details-bin` that is not base64, so such a value is dropped first.
fn status_of(headers: &mut http::HeaderMap) -> Option<Status> {
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
