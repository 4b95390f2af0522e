//! Native gRPC calls passed through to a backend: the client's frames go
//! out as they came, the backend's headers, frames and trailers come back
//! as it sent them. Nothing is decoded or encoded again, so compression
//! (`grpc-encoding`) is between the client and the backend.
//!
//! A call whose client sends one message (unary, server streaming) is read
//! whole first, so it leaves in one write over the endpoint's own HTTP/2
//! connection and can move to another endpoint, or be retried when its
//! method is idempotent, exactly as a transcoded unary call. A client or
//! bidirectional stream goes over the endpoint's tonic channel as it
//! arrives, once: what has been sent cannot be sent again.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{TE, USER_AGENT as USER_AGENT_HEADER};
use hyper::body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::Service;
use tracing::Instrument;

use super::breaker::Outcome;
use super::endpoint::Lease;
use super::http2::Reply;
use super::{
    Attempt, CallError, Deadline, GRPC_TIMEOUT, TRAILERS, Target, USER_AGENT, Upstreams, attempts,
    not_grpc, status_of, transport_failure,
};
use crate::http_rule::Route;

/// A transport error of either connection kind.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request of a passed-through call.
#[derive(Debug)]
pub enum Outbound<B> {
    /// The whole body of a call whose client sends one message.
    Whole(Bytes),
    /// A client's stream of messages, sent as it arrives.
    Stream(B),
}

/// A passed-through call the backend answered with headers.
#[derive(Debug)]
pub struct Passed {
    /// The backend's response: its headers, and its frames as the body.
    pub response: http::Response<Inbound>,
    /// Counts the call in flight on its endpoint while held.
    pub lease: Lease,
    /// The call's client span, open as long as the call.
    pub span: tracing::Span,
}

/// The backend's frames, over the endpoint's own connection or its channel.
#[derive(Debug)]
pub enum Inbound {
    /// From the endpoint's HTTP/2 connection.
    Direct(Reply),
    /// From the endpoint's tonic channel.
    Channel(tonic::body::Body),
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Direct(reply) => Pin::new(reply).poll_frame(cx).map_err(Into::into),
            Self::Channel(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Direct(reply) => reply.is_end_stream(),
            Self::Channel(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Direct(reply) => reply.size_hint(),
            Self::Channel(body) => body.size_hint(),
        }
    }
}

impl Upstreams {
    /// Passes a native gRPC call of `route`'s method to one of `target`'s
    /// endpoints and returns once the backend's response headers arrived.
    /// `headers` are the call's metadata plus the client's `content-type`
    /// and `grpc-encoding`s; what is left of `deadline` is sent as
    /// `grpc-timeout`, and opening the call is bounded by it.
    ///
    /// # Errors
    /// [`CallError::Status`] for a trailers-only UNAVAILABLE left after any
    /// retries, or an answer that is not gRPC; [`CallError::NoEndpoint`],
    /// [`CallError::Unreachable`], [`CallError::Timeout`] as for unary calls.
    pub async fn passthrough<B>(
        &self,
        target: &Target,
        route: &Route,
        mut headers: HeaderMap,
        body: Outbound<B>,
        deadline: Deadline,
    ) -> Result<Passed, CallError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let span = crate::telemetry::upstream_span(&target.name, route.grpc_path.path());
        let opened = async {
            // The backend's parent is this call's span, when spans are exported.
            crate::telemetry::inject(&mut headers);
            match body {
                Outbound::Whole(body) => whole(target, route, headers, body, deadline).await,
                Outbound::Stream(body) => stream(target, route, headers, body, deadline).await,
            }
        }
        .instrument(span.clone())
        .await;
        match opened {
            Ok((response, lease)) => Ok(Passed {
                response,
                lease,
                span,
            }),
            Err(e) => {
                crate::telemetry::upstream_done(&span, e.code());
                Err(e)
            }
        }
    }
}

/// One message: sent whole, on another endpoint after a refusal, again
/// after a trailers-only UNAVAILABLE when the method is idempotent.
async fn whole(
    target: &Target,
    route: &Route,
    headers: HeaderMap,
    body: Bytes,
    deadline: Deadline,
) -> Result<(http::Response<Inbound>, Lease), CallError> {
    let (response, lease) = attempts(target, route, headers, deadline, |endpoint, request| {
        let body = body.clone();
        async move {
            let response = endpoint
                .http2()
                .send(request, body)
                .await
                .map_err(|e| transport_failure(e.as_ref()))?;
            answered(response).map_err(Attempt::Failed)
        }
    })
    .await?;
    Ok((response.map(Inbound::Direct), lease))
}

/// A stream of messages: one attempt, on the endpoint's channel.
async fn stream<B>(
    target: &Target,
    route: &Route,
    mut headers: HeaderMap,
    body: B,
    deadline: Deadline,
) -> Result<(http::Response<Inbound>, Lease), CallError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let backend = &target.backend;
    let lease = backend
        .pick(&[])
        .ok_or_else(|| CallError::NoEndpoint(backend.reopens_in()))?;
    headers.insert(TE, TRAILERS);
    headers.insert(USER_AGENT_HEADER, USER_AGENT);
    headers.insert(
        GRPC_TIMEOUT,
        super::metadata::grpc_timeout_header(deadline.left()),
    );
    let mut request = http::Request::new(tonic::body::Body::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = lease.endpoint.http2().uri(&route.grpc_path);
    *request.headers_mut() = headers;
    let mut channel = lease.endpoint.channel().clone();
    let sent = async {
        std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
        channel.call(request).await
    };
    let result = match tokio::time::timeout_at(deadline.at, sent).await {
        Ok(_) if deadline.passed() => Err(deadline.exceeded()),
        Ok(Ok(response)) => answered(response),
        Ok(Err(e)) if request_failed(&e) => Err(CallError::Aborted(crate::cause::chain(&e))),
        Ok(Err(e)) => Err(match transport_failure(&e) {
            // The stream's first messages may have gone: nothing is sent again.
            Attempt::Refused(cause) | Attempt::Failed(CallError::Unreachable(cause)) => {
                CallError::Unreachable(format!("{}: {cause}", lease.endpoint.address))
            }
            Attempt::Failed(e) => e,
            Attempt::Expired => deadline.exceeded(),
        }),
        Err(_) => Err(deadline.exceeded()),
    };
    let outcome = match &result {
        Ok(_) => Outcome::Answered,
        Err(e) => super::failure_outcome(e),
    };
    backend.record(&lease, outcome);
    Ok((result?.map(Inbound::Channel), lease))
}

/// The backend's answer, if it is a gRPC answer to pass on. A trailers-only
/// UNAVAILABLE is a failure, so the call can go elsewhere or be retried.
fn answered<B>(response: http::Response<B>) -> Result<http::Response<B>, CallError> {
    let (mut parts, body) = response.into_parts();
    not_grpc(&parts)?;
    if parts
        .headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"14")
        && let Some(status) = status_of(&mut parts.headers)
        && status.code() == Code::Unavailable
    {
        return Err(CallError::status(status));
    }
    Ok(http::Response::from_parts(parts, body))
}

/// Whether a failed call failed on the request's side: the client's stream
/// broke off or was cut, not the backend.
fn request_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            return hyper.is_user();
        }
        cause = e.source();
    }
    false
}
