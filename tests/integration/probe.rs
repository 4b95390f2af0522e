//! A hand-written gRPC backend for `tests/fixtures/protos/probe/v1/probe.proto`.
//!
//! It answers at the HTTP/2 level, so it can do what generated servers
//! cannot: echo every request header it received, send custom trailers, and
//! misbehave (garbage replies, two replies, slow replies). It counts calls
//! dropped before they finished, to see upstream cancellation.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;
use tonic::server::NamedService;

/// `probe.v1.EchoRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(int64, tag = "2")]
    pub delay_ms: i64,
    #[prost(int32, tag = "3")]
    pub fault: i32,
}

/// `probe.v1.EchoReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(map = "string, string", tag = "2")]
    pub metadata: HashMap<String, String>,
}

/// The backend; clones share the counters.
#[derive(Clone, Default)]
pub struct Probe {
    /// Calls dropped by the client before the backend answered.
    pub cancelled: Arc<AtomicUsize>,
}

impl NamedService for Probe {
    const NAME: &'static str = "probe.v1.Probe";
}

impl tower::Service<http::Request<tonic::body::Body>> for Probe {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let probe = self.clone();
        Box::pin(async move { Ok(probe.answer(request).await) })
    }
}

/// Counts a cancellation when dropped while armed.
struct CancelGuard(Option<Arc<AtomicUsize>>);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(counter) = self.0.take() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 5);
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

impl Probe {
    async fn answer(
        self,
        request: http::Request<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let echo = EchoRequest::decode(bytes.get(5..).unwrap_or_default()).unwrap_or_default();
        let metadata = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();

        let mut guard = CancelGuard(Some(self.cancelled.clone()));
        if echo.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(echo.delay_ms as u64)).await;
        }
        guard.0 = None;

        let reply = EchoReply {
            text: echo.text,
            metadata,
        }
        .encode_to_vec();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("x-probe-trailer", "done".parse().unwrap());
        let mut frames = vec![Frame::data(frame(&reply))];
        match echo.fault {
            1 => frames[0] = Frame::data(frame(&[0xff, 0xff, 0xff])),
            2 => frames.push(Frame::data(frame(&reply))),
            3 => {
                frames.clear();
                trailers.insert("grpc-status", "13".parse().unwrap());
                trailers.insert("grpc-message", "probe%20failed".parse().unwrap());
            }
            _ => {}
        }
        frames.push(Frame::trailers(trailers));
        let body = StreamBody::new(tokio_stream::iter(
            frames.into_iter().map(Ok::<_, tonic::Status>),
        ));
        http::Response::builder()
            .header("content-type", "application/grpc")
            .header("x-probe-header", "hello")
            .body(tonic::body::Body::new(body))
            .unwrap()
    }
}

/// Serves a probe on an ephemeral loopback port for the rest of the test.
pub async fn spawn() -> (SocketAddr, Probe) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let probe = Probe::default();
    let service = probe.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (addr, probe)
}
