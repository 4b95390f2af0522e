//! Streaming calls (server, client and bidirectional): encoded messages in,
//! encoded messages out, through tonic's framing with a pass-through codec.
//!
//! The request side is a stream the caller feeds as the HTTP body arrives
//! (ending it half-closes; [`Outgoing::Abort`] cancels);
//! the reply side is tonic's `Streaming`, read one message at a time by the
//! HTTP response as the client takes them, so HTTP/2 flow control carries
//! backpressure from a slow client to the backend. Dropping the reply stream
//! resets the HTTP/2 stream: the backend sees the call cancelled.

use bytes::{Buf, BufMut, Bytes};
use futures_util::Stream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status, Streaming};
use tracing::Instrument;

use super::breaker::Outcome;
use super::endpoint::Lease;
use super::{CallError, Deadline, GRPC_TIMEOUT, Target, Upstreams};
use crate::http_rule::Route;

/// An open streaming call.
#[derive(Debug)]
pub struct StreamReply {
    /// Response header metadata.
    pub headers: MetadataMap,
    /// The reply messages; `trailers()` after the last one.
    pub messages: Streaming<Bytes>,
    /// Counts the call in flight on its endpoint while held.
    pub lease: Lease,
    /// The call's client span: open until dropped, so it lasts as long as
    /// the stream; [`crate::telemetry::upstream_done`] records its end.
    pub span: tracing::Span,
}

impl Upstreams {
    /// Opens a streaming call of `route` on one of `target`'s endpoints,
    /// sending `requests` as they come, and returns once the backend's
    /// response headers arrived.
    ///
    /// What is left of `deadline` is sent as `grpc-timeout`; the caller
    /// enforces its own limits while reading. Opening is bounded by it: a
    /// backend that sends no headers before the deadline (a client stream
    /// it reads to the end first) ends in [`CallError::Timeout`], which
    /// says nothing about the endpoint.
    ///
    /// # Errors
    /// [`CallError::Status`] when the backend refuses the call at once,
    /// [`CallError::NoEndpoint`] without a healthy endpoint,
    /// [`CallError::Unreachable`] when it cannot be reached.
    pub async fn streaming<S>(
        &self,
        target: &Target,
        route: &Route,
        requests: S,
        metadata: MetadataMap,
        deadline: Deadline,
    ) -> Result<StreamReply, CallError>
    where
        S: Stream<Item = Outgoing> + Send + 'static,
    {
        let span = crate::telemetry::upstream_span(&target.name, route.grpc_path.path());
        let opened = open(target, route, requests, metadata, deadline, span.clone())
            .instrument(span.clone())
            .await;
        if let Err(e) = &opened {
            crate::telemetry::upstream_done(&span, e.code());
        }
        opened
    }
}

async fn open<S>(
    target: &Target,
    route: &Route,
    requests: S,
    metadata: MetadataMap,
    deadline: Deadline,
    span: tracing::Span,
) -> Result<StreamReply, CallError>
where
    S: Stream<Item = Outgoing> + Send + 'static,
{
    {
        let backend = &target.backend;
        let lease = backend
            .pick(&[])
            .ok_or_else(|| CallError::NoEndpoint(backend.reopens_in()))?;
        let mut grpc = tonic::client::Grpc::new(lease.endpoint.channel().clone())
            .max_decoding_message_size(target.max_response_bytes)
            .max_encoding_message_size(usize::MAX);
        let opened = async {
            grpc.ready()
                .await
                .map_err(|e| Status::from_error(e.into()))?;
            // With span export on, the backend's parent is this call's span.
            let mut headers = metadata.into_headers();
            crate::telemetry::inject(&mut headers);
            // Formatted as for unary calls: what is left, in the finest unit that fits.
            headers.insert(
                GRPC_TIMEOUT,
                super::metadata::grpc_timeout_header(deadline.left()),
            );
            let request = tonic::Request::from_parts(
                MetadataMap::from_headers(headers),
                tonic::Extensions::default(),
                requests,
            );
            grpc.streaming(request, route.grpc_path.clone(), RawCodec)
                .await
        };
        // As for unary calls, the deadline owns the call, whichever timer
        // (this one, or tonic's from the grpc-timeout header) fires first.
        match tokio::time::timeout_at(deadline.at, opened).await {
            Ok(Ok(response)) => {
                backend.record(&lease, Outcome::Answered);
                let (headers, messages, _) = response.into_parts();
                Ok(StreamReply {
                    headers,
                    messages,
                    lease,
                    span,
                })
            }
            Ok(Err(status)) if !deadline.passed() && !super::is_expired(&status) => {
                let error = reply_error(status);
                backend.record(&lease, super::failure_outcome(&error));
                Err(error)
            }
            _ => {
                backend.record(&lease, Outcome::Neutral);
                Err(deadline.exceeded())
            }
        }
    }
}

/// The error of a reply stream. tonic reports some failures as statuses
/// as if the backend had sent them; they are told apart and named as for
/// unary calls, so no transport detail reaches the client:
/// - a reply over the size limit (OUT_OF_RANGE): the backend's fault, a
///   protocol error;
/// - a stream the backend reset: by the gRPC spec's RST_STREAM table;
/// - a connection that broke: the backend is unreachable.
pub fn reply_error(status: Status) -> CallError {
    if status.code() == Code::OutOfRange && status.message().contains("message length too large") {
        return CallError::Protocol(status.message().to_owned());
    }
    // Statuses made from transport errors keep them as their source; the
    // backend's own statuses have none.
    let Some(source) = std::error::Error::source(&status) else {
        return CallError::status(status);
    };
    match super::stream_reset(source) {
        Some(reason) => super::reset_error(reason),
        None => CallError::Unreachable(status.message().to_owned()),
    }
}

/// What the request side of a streaming call sends next.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// One encoded request message.
    Message(Bytes),
    /// Cancel the call: the backend sees the stream reset, never a
    /// half-close it could take for a finished request stream. Ending the
    /// request stream (`None`) is the half-close.
    Abort,
}

/// Passes encoded messages through: the gateway encodes and decodes itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Outgoing;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Outgoing::Message(message) => {
                dst.put(message);
                Ok(())
            }
            // An encoding error fails the request body: the HTTP/2 stream is reset.
            Outgoing::Abort => Err(Status::cancelled("the request stream was abandoned")),
        }
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}
