//! A hand-written gRPC backend for `tests/fixtures/protos/probe/v1/probe.proto`.
//!
//! It answers at the HTTP/2 level, so it can do what generated servers
//! cannot: echo every request header it received, send custom trailers, and
//! misbehave (garbage replies, two replies, slow replies). It counts calls
//! dropped before they finished, to see upstream cancellation. [`start`]
//! puts a gateway in front of it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;
use protogate::config::{self, Config};
use protogate::transcode::status::RpcStatus;
use tonic::server::NamedService;

use crate::support::{Reply, Stack, root, serve};

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
    #[prost(bytes = "vec", tag = "3")]
    pub padding: Vec<u8>,
}

/// `google.rpc.DebugInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct DebugInfo {
    #[prost(string, repeated, tag = "1")]
    stack_entries: Vec<String>,
    #[prost(string, tag = "2")]
    detail: String,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
}

/// `probe.v1.CountRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountRequest {
    #[prost(int64, tag = "1")]
    pub n: i64,
    #[prost(int64, tag = "2")]
    pub fail_after: i64,
    #[prost(int32, tag = "3")]
    pub pad_bytes: i32,
    #[prost(bool, tag = "4")]
    pub hold_after_first: bool,
    #[prost(int64, tag = "5")]
    pub reset_after: i64,
}

/// `probe.v1.CountReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountReply {
    #[prost(int64, tag = "1")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub padding: Vec<u8>,
}

/// Messages a backend received: `(gRPC path, message bytes)`, in order.
pub type Received = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// The backend; clones share the counters.
#[derive(Clone, Default)]
pub struct Probe {
    /// Calls dropped by the client before the backend answered.
    pub cancelled: Arc<AtomicUsize>,
    /// Count streams dropped by the client before their last reply.
    pub streams_cancelled: Arc<AtomicUsize>,
    /// Count replies made so far (they are made only as the stream is read).
    pub produced: Arc<AtomicUsize>,
    /// Chat messages received so far.
    pub chat_received: Arc<AtomicUsize>,
    /// Chat calls that ended without a status: reset or dropped by the client.
    pub chat_cancelled: Arc<AtomicUsize>,
    /// Lets a held Count stream go on.
    pub release: Arc<tokio::sync::Notify>,
    /// Echo calls to answer UNAVAILABLE before answering normally.
    pub flaky: Arc<AtomicUsize>,
    /// Echo calls received.
    pub echoes: Arc<AtomicUsize>,
    /// The messages of the echoed calls, by gRPC path, in order.
    pub received: Received,
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

/// The probe under the name of `tests/fixtures/protos/mixed`'s service,
/// whose methods it echoes like any method it does not know.
#[derive(Clone)]
struct Mixed(Probe);

impl NamedService for Mixed {
    const NAME: &'static str = "mixed.v1.Mixed";
}

impl tower::Service<http::Request<tonic::body::Body>> for Mixed {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.call(request)
    }
}

/// The probe under the name of `tests/fixtures/protos/rules`'s service.
#[derive(Clone)]
struct Rules(Probe);

impl NamedService for Rules {
    const NAME: &'static str = "rules.v1.Rules";
}

impl tower::Service<http::Request<tonic::body::Body>> for Rules {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.call(request)
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
        match request.uri().path() {
            "/probe.v1.Probe/Store" => return store(request).await,
            "/probe.v1.Probe/Count" => return self.count(request).await,
            "/probe.v1.Probe/Chat" => return self.chat(request),
            "/probe.v1.Probe/Collect" => return collect(request).await,
            _ => {}
        }
        self.echoes.fetch_add(1, Ordering::SeqCst);
        if self
            .flaky
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "14")
                .header("grpc-message", "flaky%20on%20purpose")
                .body(tonic::body::Body::empty())
                .unwrap();
        }
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let message = bytes.get(5..).unwrap_or_default();
        if let Ok(mut received) = self.received.lock() {
            received.push((parts.uri.path().to_owned(), message.to_vec()));
        }
        let echo = EchoRequest::decode(message).unwrap_or_default();
        let metadata = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();

        if echo.fault == 11 {
            return late_unknown(&parts.headers);
        }
        let mut guard = CancelGuard(Some(self.cancelled.clone()));
        if echo.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(echo.delay_ms as u64)).await;
        }
        guard.0 = None;

        let padding = match echo.fault {
            5 => vec![7; 64 * 1024],
            12 => vec![7; 3 * 1024 * 1024],
            _ => Vec::new(),
        };
        let reply = EchoReply {
            text: echo.text,
            metadata,
            padding,
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
            4 | 8 => {
                return http::Response::builder()
                    .status(if echo.fault == 4 { 404 } else { 503 })
                    .header("content-type", "text/html")
                    .body(tonic::body::Body::new(http_body_util::Full::new(
                        Bytes::from_static(b"<html><body>Not Found</body></html>"),
                    )))
                    .unwrap();
            }
            6 => {
                frames.clear();
                let status = RpcStatus {
                    code: 3,
                    message: "bad input".into(),
                    details: vec![
                        prost_types::Any {
                            type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                            value: ErrorInfo {
                                reason: "TOO_SHORT".into(),
                                domain: "probe.example".into(),
                            }
                            .encode_to_vec(),
                        },
                        prost_types::Any {
                            type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
                            value: DebugInfo {
                                stack_entries: vec!["probe.rs:1".into()],
                                detail: "secret internals".into(),
                            }
                            .encode_to_vec(),
                        },
                    ],
                };
                use base64::Engine;
                let bin =
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
                trailers.insert("grpc-status", "3".parse().unwrap());
                trailers.insert("grpc-message", "bad%20input".parse().unwrap());
                trailers.insert("grpc-status-details-bin", bin.parse().unwrap());
            }
            7 => {
                frames.clear();
                trailers.insert("grpc-status", "3".parse().unwrap());
                trailers.insert("grpc-status-details-bin", "!!!".parse().unwrap());
            }
            13 => {
                frames.clear();
                let retry = prost_types::Duration {
                    seconds: 2,
                    nanos: 500_000_000,
                };
                let status = RpcStatus {
                    code: 8,
                    message: "slow down".into(),
                    details: vec![prost_types::Any {
                        type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                        // google.rpc.RetryInfo { retry_delay = 1 }
                        value: {
                            let mut v = Vec::new();
                            prost::encoding::message::encode(1, &retry, &mut v);
                            v
                        },
                    }],
                };
                use base64::Engine;
                let bin =
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
                trailers.insert("grpc-status", "8".parse().unwrap());
                trailers.insert("grpc-message", "slow%20down".parse().unwrap());
                trailers.insert("grpc-status-details-bin", bin.parse().unwrap());
            }
            _ => {}
        }
        let mut frames: Vec<Result<Frame<Bytes>, tonic::Status>> =
            frames.into_iter().map(Ok).collect();
        match echo.fault {
            // A body error: the server resets the stream, no trailers.
            9 => frames.push(Err(tonic::Status::internal("reset on purpose"))),
            10 => frames = vec![Err(tonic::Status::internal("reset on purpose"))],
            _ => frames.push(Ok(Frame::trailers(trailers))),
        }
        let body = StreamBody::new(tokio_stream::iter(frames));
        http::Response::builder()
            .header("content-type", "application/grpc")
            .header("x-probe-header", "hello")
            .body(tonic::body::Body::new(body))
            .unwrap()
    }
}

/// `FAULT_LATE_UNKNOWN`: headers now, UNKNOWN once the call's `grpc-timeout`
/// has passed (tonic's server timer covers only the wait for the headers).
fn late_unknown(headers: &http::HeaderMap) -> http::Response<tonic::body::Body> {
    let timeout = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| protogate::upstream::metadata::parse_grpc_timeout(v).ok())
        .unwrap_or(Duration::from_millis(10));
    let trailers = futures_util::stream::once(async move {
        tokio::time::sleep(timeout).await;
        Ok::<_, tonic::Status>(Frame::trailers(status_trailers(2, "late on purpose")))
    });
    grpc_response(StreamBody::new(trailers))
}

/// `Collect`: the whole request stream first, then one reply.
async fn collect(request: http::Request<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let bytes = match request.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut texts = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(message) = rest.get(5..5 + len) else {
            break;
        };
        texts.push(EchoRequest::decode(message).unwrap_or_default().text);
        rest = &rest[5 + len..];
    }
    let reply = EchoReply {
        text: texts.join(" "),
        ..Default::default()
    };
    let frames = vec![
        Ok::<_, tonic::Status>(Frame::data(frame(&reply.encode_to_vec()))),
        Ok(Frame::trailers(status_trailers(0, ""))),
    ];
    grpc_response(StreamBody::new(tokio_stream::iter(frames)))
}

/// `probe.v1.StoreRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoreRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub file: Option<protogate::transcode::http_body::HttpBody>,
}

/// `Store`: describes what arrived.
async fn store(request: http::Request<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let bytes = request
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let req = StoreRequest::decode(bytes.get(5..).unwrap_or_default()).unwrap_or_default();
    let file = req.file.unwrap_or_default();
    let digest: u64 = file.data.iter().map(|&b| u64::from(b)).sum();
    let reply = EchoReply {
        text: format!(
            "{} {} {} bytes, byte sum {digest}",
            req.name,
            file.content_type,
            file.data.len()
        ),
        ..Default::default()
    };
    let frames = vec![
        Ok::<_, tonic::Status>(Frame::data(frame(&reply.encode_to_vec()))),
        Ok(Frame::trailers(status_trailers(0, ""))),
    ];
    grpc_response(StreamBody::new(tokio_stream::iter(frames)))
}

fn grpc_response(
    body: impl http_body::Body<Data = Bytes, Error = tonic::Status> + Send + 'static,
) -> http::Response<tonic::body::Body> {
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::new(body))
        .unwrap()
}

fn status_trailers(code: i32, message: &str) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", code.to_string().parse().unwrap());
    if !message.is_empty() {
        trailers.insert("grpc-message", message.replace(' ', "%20").parse().unwrap());
    }
    trailers
}

impl Probe {
    /// `Count`: each reply is made when the stream is polled for it, so a
    /// slow reader holds the backend back.
    async fn count(
        self,
        request: http::Request<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        let bytes = request
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let req = CountRequest::decode(bytes.get(5..).unwrap_or_default()).unwrap_or_default();
        struct State {
            probe: Probe,
            req: CountRequest,
            i: i64,
            done: bool,
            guard: CancelGuard,
        }
        let state = State {
            guard: CancelGuard(Some(self.streams_cancelled.clone())),
            probe: self,
            req,
            i: 0,
            done: false,
        };
        let frames = futures_util::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            if s.i == 1 && s.req.hold_after_first {
                s.probe.release.notified().await;
            }
            if s.req.reset_after > 0 && s.i == s.req.reset_after {
                // Let the replies sent so far arrive (a reset drops frames
                // the peer has not read), then fail the body: the server
                // resets the stream, no trailers.
                tokio::time::sleep(Duration::from_millis(200)).await;
                s.done = true;
                s.guard.0 = None;
                return Some((Err(tonic::Status::internal("reset on purpose")), s));
            }
            let fail = s.req.fail_after < 0 || (s.req.fail_after > 0 && s.i == s.req.fail_after);
            let frame = if fail {
                s.done = true;
                s.guard.0 = None;
                let mut trailers = status_trailers(9, "count failed on purpose");
                trailers.insert("x-probe-trailer", "failed".parse().unwrap());
                Frame::trailers(trailers)
            } else if s.i == s.req.n {
                s.done = true;
                s.guard.0 = None;
                Frame::trailers(status_trailers(0, ""))
            } else {
                let reply = CountReply {
                    i: s.i + 1,
                    padding: vec![b'p'; s.req.pad_bytes.max(0) as usize],
                };
                s.i += 1;
                s.probe.produced.fetch_add(1, Ordering::SeqCst);
                Frame::data(frame(&reply.encode_to_vec()))
            };
            Some((Ok::<_, tonic::Status>(frame), s))
        });
        let mut response = grpc_response(StreamBody::new(frames));
        response
            .headers_mut()
            .insert("x-probe-header", "counting".parse().unwrap());
        response
    }

    /// `Chat`: reads request frames as they come and answers each at once.
    fn chat(self, request: http::Request<tonic::body::Body>) -> http::Response<tonic::body::Body> {
        let body = request.into_body().into_data_stream();
        // Counts the call as cancelled unless it ends with a status.
        let guard = CancelGuard(Some(self.chat_cancelled.clone()));
        let state = (body, BytesMut::new(), self, false, guard);
        let frames = futures_util::stream::unfold(
            state,
            |(mut body, mut buffer, probe, done, mut guard)| async move {
                use futures_util::StreamExt;
                if done {
                    return None;
                }
                loop {
                    if buffer.len() >= 5 {
                        let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]])
                            as usize;
                        if buffer.len() >= 5 + len {
                            let message = buffer.split_to(5 + len);
                            let echo = EchoRequest::decode(&message[5..]).unwrap_or_default();
                            probe.chat_received.fetch_add(1, Ordering::SeqCst);
                            if echo.text == "fail" {
                                let trailers = status_trailers(3, "chat failed on purpose");
                                guard.0 = None;
                                return Some((
                                    Ok::<_, tonic::Status>(Frame::trailers(trailers)),
                                    (body, buffer, probe, true, guard),
                                ));
                            }
                            let reply = EchoReply {
                                text: format!("re: {}", echo.text),
                                ..Default::default()
                            };
                            return Some((
                                Ok(Frame::data(frame(&reply.encode_to_vec()))),
                                (body, buffer, probe, false, guard),
                            ));
                        }
                    }
                    match body.next().await {
                        Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                        // Reset by the client: the call is cancelled, no status.
                        Some(Err(_)) => return None,
                        // Half-closed: the call ends well.
                        None => {
                            guard.0 = None;
                            return Some((
                                Ok(Frame::trailers(status_trailers(0, ""))),
                                (body, buffer, probe, true, guard),
                            ));
                        }
                    }
                }
            },
        );
        grpc_response(StreamBody::new(frames))
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
            .add_service(Mixed(service.clone()))
            .add_service(Rules(service.clone()))
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (addr, probe)
}

// The gateway in front of the probe.

/// A gateway config serving the probe at `addr`, with `x-request-id`
/// forwarded, then `extra` top-level sections.
pub fn probe_config(addr: SocketAddr, extra: &str) -> Config {
    let text = format!(
        "descriptors:\n  include: [{}]\n  protos: [probe/v1/probe.proto]\n\
         backends:\n  probe:\n    address: http://{addr}\n    services: [probe.v1.Probe]\n\
         metadata:\n  forward_request_headers: [x-request-id]\n{extra}",
        root().join("tests/fixtures/protos").display()
    );
    config::parse(&text, Path::new("probe.yaml")).unwrap()
}

/// Starts the probe and a gateway in front of it, configured by [`probe_config`].
pub async fn start(extra: &str) -> (ProbeStack, Probe) {
    start_with(extra, |_| {}).await
}

/// [`start`], after `edit` adjusts the config.
pub async fn start_with(extra: &str, edit: impl FnOnce(&mut Config)) -> (ProbeStack, Probe) {
    let (backend, probe) = spawn().await;
    let mut config = probe_config(backend, extra);
    edit(&mut config);
    let (addr, stop) = serve(config).await;
    (ProbeStack(Stack::for_gateway(addr, stop)), probe)
}

/// [`start`], the gateway in process: for tests where no socket behaviour
/// is under test.
pub async fn start_in_process(extra: &str) -> (ProbeStack, Probe) {
    let (backend, probe) = spawn().await;
    let stack = Stack::in_process(probe_config(backend, extra)).await;
    (ProbeStack(stack), probe)
}

/// A gateway in front of the probe.
pub struct ProbeStack(pub Stack);

impl ProbeStack {
    /// `POST /v1/echo` with `body` and `headers`.
    pub async fn echo(&self, body: serde_json::Value, headers: &[(&str, &str)]) -> Reply {
        self.0
            .call_with("POST", "/v1/echo", Some(&body.to_string()), headers)
            .await
    }
}
