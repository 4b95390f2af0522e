//! Calls to backends: one long-lived HTTP/2 channel per backend, built at startup.
//!
//! Channels connect lazily and reconnect by themselves, so a backend that is
//! down at startup or restarts later only fails the requests made meanwhile.
//! Calls move encoded bytes ([`codec::BytesCodec`]); turning them into JSON
//! is `transcode`'s job, turning failures into HTTP is `error`'s.

pub mod codec;
pub mod metadata;

use std::time::Duration;

use bytes::Bytes;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::instrument;

use crate::config::Config;
use crate::http_rule::Route;

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
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = metadata;
        // Written by hand rather than with `set_timeout`, whose client-side
        // enforcement answers CANCELLED; the deadline is enforced below.
        if let Ok(value) = metadata::format_grpc_timeout(timeout).parse() {
            request.metadata_mut().insert("grpc-timeout", value);
        }
        let call = async {
            let mut grpc = tonic::client::Grpc::new(channel.clone())
                .max_decoding_message_size(route.max_response_bytes);
            grpc.ready()
                .await
                .map_err(|e| CallError::Unreachable(e.to_string()))?;
            // The streaming API keeps header metadata and trailers apart, which
            // the unary one merges; on the wire a unary call is the same.
            let response = grpc
                .server_streaming(request, route.grpc_path.clone(), codec::BytesCodec)
                .await
                .map_err(classify)?;
            let (headers, mut stream, _) = response.into_parts();
            let message =
                stream.message().await.map_err(classify)?.ok_or_else(|| {
                    CallError::Protocol("backend sent no reply message".to_owned())
                })?;
            if stream.message().await.map_err(classify)?.is_some() {
                return Err(CallError::Protocol(
                    "backend sent more than one reply message".to_owned(),
                ));
            }
            let trailers = stream.trailers().await.map_err(classify)?;
            Ok::<_, CallError>(UnaryReply {
                headers,
                message,
                trailers,
            })
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

/// Tells a status the backend sent from one tonic made up on our side:
/// a transport failure (UNAVAILABLE with a source error), or a reply that is
/// not valid gRPC. tonic has no typed errors for the latter, so they are
/// known by the messages of its decoder; none of them can reach a client.
fn classify(status: Status) -> CallError {
    const LOCAL: &[&str] = &[
        "protocol error:",
        "Error, decoded message length too large",
        "grpc-status header missing",
        "Unexpected EOF decoding stream",
    ];
    let has_source = std::error::Error::source(&status).is_some();
    if status.code() == Code::Unavailable && has_source {
        CallError::Unreachable(status.to_string())
    } else if has_source || LOCAL.iter().any(|p| status.message().starts_with(p)) {
        CallError::Protocol(status.to_string())
    } else {
        CallError::Status(status)
    }
}
