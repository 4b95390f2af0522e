//! Streaming methods over WebSocket: full duplex for bidirectional streams,
//! and a browser-friendly way to open server and client streams.
//!
//! The upgrade request (a GET, matched against the route's own method when
//! that is not GET) is authenticated like any call. Then each text frame is
//! one JSON request message (path and query values apply to each) and each
//! reply is one text frame; a method that takes one request message and no
//! body gets it from the path and query at once. Binary frames carry raw chunks for
//! `google.api.HttpBody` requests, and raw replies go out as binary frames.
//! An empty text frame ends the request stream (a half-close) and keeps the
//! socket open for the remaining replies; the server then closes with 1000
//! when the call ends with OK, or with 4000 + the gRPC code and the status
//! message as the reason when it fails. A close frame from the client ends
//! the call (the close handshake leaves no room for a final status).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::{self, SplitSink, StreamExt};
use http::header::{CONNECTION, UPGRADE};
use http::request::Parts;
use tokio::sync::{mpsc, oneshot};
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::pipeline::{self, Admitted, Call, MAX_UPLOAD_CHUNK, UpstreamCall, call_error, ended};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::http_rule::{BodyRule, Route};
use crate::plan::Limits;
use crate::transcode::{RouteCodec, http_body};
use crate::upstream::stream::{Outgoing, StreamReply, reply_error};
use crate::upstream::{Deadline, Target};
use tokio_util::sync::CancellationToken;

/// Close code of a call that ended with gRPC code `c`: 4000 + c (OK: 1000).
pub fn close_code(code: Code) -> u16 {
    match code {
        Code::Ok => 1000,
        other => 4000 + other as u16,
    }
}

/// Refuses a WebSocket opened by a page of another site: browsers send
/// cookies with cross-site handshakes and, unlike other cross-site requests,
/// let the page read the replies. Requests without `Origin` (curl, servers)
/// and same-origin pages pass; other origins must be listed in
/// `streaming.websocket_origins`.
///
/// # Errors
/// [`GatewayError::CrossOrigin`] for an origin that is neither.
pub fn check_origin(parts: &Parts, allowed: &[String]) -> Result<(), GatewayError> {
    let Some(origin) = parts.headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_ascii_lowercase();
    let own_host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    if origin_host.is_some() && origin_host == own_host.as_deref() {
        return Ok(());
    }
    if allowed.contains(&origin) {
        return Ok(());
    }
    Err(GatewayError::CrossOrigin { origin })
}

/// Whether the request asks to upgrade to a WebSocket.
pub fn is_websocket(parts: &Parts) -> bool {
    let has = |name, token: &str| {
        parts.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    parts.method == http::Method::GET && has(UPGRADE, "websocket") && has(CONNECTION, "upgrade")
}

/// Accepts the upgrade and runs the call on the socket.
///
/// # Errors
/// The upgrade request is not a valid WebSocket handshake.
pub(super) async fn websocket(
    gw: &Gateway,
    parts: &mut Parts,
    call: Call<'_>,
    admitted: Admitted,
) -> Result<Response, GatewayError> {
    check_origin(parts, &gw.config().streaming.websocket_origins)?;
    let limit = call.plan.limits.max_body_bytes;
    let upgrade = WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .map_err(|e| GatewayError::BadHeader {
            header: "Upgrade",
            reason: e.body_text(),
        })?
        // A frame is a message, held whole: as large as a request body may be.
        .max_message_size(limit)
        .max_frame_size(limit);
    let cut = parts.extensions.get::<CancellationToken>().cloned();
    let session = Session {
        frames: 0,
        upload_prefix: None,
        cut,
        gw: gw.clone(),
        route: call.plan.route.clone(),
        plan: call.plan.clone(),
        codec: call.plan.codec.clone(),
        limits: call.plan.limits,
        values: call.values,
        query: call.query,
        target: call.target.clone(),
        _admitted: admitted,
    };
    let metadata = call.metadata;
    Ok(upgrade.on_upgrade(move |socket| session.run(socket, metadata)))
}

struct Session {
    /// Frames read so far, to name a bad one.
    frames: usize,
    /// The encoded path and query fields of a raw upload's chunks.
    upload_prefix: Option<Vec<u8>>,
    cut: Option<CancellationToken>,
    gw: Gateway,
    route: Arc<Route>,
    /// The route's plan, for its validation rules.
    plan: crate::plan::RoutePlan,
    codec: RouteCodec,
    limits: Limits,
    values: Vec<String>,
    query: Option<String>,
    target: Target,
    /// The request's concurrency slot and in-flight count, held for the
    /// session's life.
    _admitted: Admitted,
}

/// A request message waiting for the backend, or the end of the requests.
enum Queued {
    Message(Bytes),
    Finish,
}

/// What the session does after a client frame.
enum Step {
    /// Queue these request messages.
    Send(Vec<Queued>),
    /// End the request stream (half-close).
    Finish,
    /// Nothing to send.
    Skip,
    /// The client closed the socket: cancel the call, answer the close.
    Closed,
    /// The client is gone or broke the protocol: cancel the call.
    Cancel(Option<GatewayError>),
}

impl Session {
    /// Runs the call: one loop reads the client's frames (for as long as
    /// the session lasts, so a close or a dropped connection is seen at
    /// once), feeds request messages to the backend as it takes them, and
    /// writes replies as they come.
    async fn run(mut self, socket: WebSocket, metadata: MetadataMap) {
        let (mut sink, mut source) = socket.split();
        let limits = self.limits;
        let deadline = Deadline::after(limits.stream_max_duration);
        let client_streaming = self.route.method.is_client_streaming();

        // Request messages go through a channel of one: the socket is read
        // no faster than the backend takes messages. Dropping `cancel`
        // (when the session ends early) resets the call; dropping `tx`
        // after the last message half-closes it.
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let (cancel, cancelled) = oneshot::channel::<()>();
        let mut tx = Some(tx);
        let mut pending: VecDeque<Queued> = VecDeque::new();
        let requests = stream::unfold(Some((rx, cancelled)), |state| async move {
            let (mut rx, mut cancelled) = state?;
            tokio::select! {
                biased;
                _ = &mut cancelled => Some((Outgoing::Abort, None)),
                message = rx.recv() => message.map(|m| (Outgoing::Message(m), Some((rx, cancelled)))),
            }
        })
        .boxed();
        let mut cut = self.cut.take();
        // A method that takes one message: from the path and query, or the
        // first frame.
        let mut awaiting_first = false;
        if !client_streaming {
            if self.route.body == BodyRule::None {
                match self.message(&Message::Text(Utf8Bytes::from_static(""))) {
                    Ok(first) => pending.extend(first),
                    Err(error) => return close(&mut sink, &error).await,
                }
                pending.push_back(Queued::Finish);
            } else {
                awaiting_first = true;
            }
        }

        let gw = self.gw.clone();
        let (route, target) = (self.route.clone(), self.target.clone());
        let mut timing = UpstreamCall::start(&gw, &target);
        let mut opening = std::pin::pin!(
            gw.upstreams()
                .streaming(&target, &route, requests, metadata, deadline)
        );
        let mut reply: Option<StreamReply> = None;
        // Held for the whole session; see `requests`.
        let _cancel = cancel;
        loop {
            if matches!(pending.front(), Some(Queued::Finish)) {
                pending.pop_front();
                tx = None;
            }
            let idle = tokio::time::sleep(limits.stream_idle_timeout);
            tokio::select! {
                // Flush queued request messages as the backend takes them.
                permit = reserve(tx.as_ref()), if !pending.is_empty() => {
                    if let (Some(permit), Some(Queued::Message(m))) = (permit, pending.pop_front()) {
                        permit.send(m);
                    }
                }
                frame = source.next(), if pending.is_empty() => {
                    let step = match frame {
                        Some(Ok(frame)) => self.step(&frame, client_streaming, &mut awaiting_first),
                        Some(Err(_)) | None => Step::Cancel(None),
                    };
                    match step {
                        Step::Send(messages) => pending.extend(messages),
                        Step::Finish => pending.push_back(Queued::Finish),
                        Step::Skip => {}
                        // Ending the session drops `cancel`, which resets the call.
                        Step::Cancel(None) => return,
                        Step::Closed => {
                            // Flushes the close reply tungstenite has queued.
                            let _ = sink.close().await;
                            return;
                        }
                        Step::Cancel(Some(error)) => return close(&mut sink, &error).await,
                    }
                }
                opened = &mut opening, if reply.is_none() => match opened {
                    Ok(opened) => {
                        timing.keep_span(opened.span.clone());
                        reply = Some(opened);
                    }
                    Err(e) => {
                        timing.finish(e.code());
                        return close(&mut sink, &call_error(&gw, &target.name, e)).await;
                    }
                },
                next = next_reply(reply.as_mut()), if reply.is_some() => {
                    let message = match next {
                        Ok(Some(message)) => message,
                        Ok(None) => {
                            timing.finish(Code::Ok);
                            let _ = sink
                                .send(Message::Close(Some(CloseFrame {
                                    code: close_code(Code::Ok),
                                    reason: Utf8Bytes::from_static("OK"),
                                })))
                                .await;
                            // Also flushes the reply to a close the client began.
                            let _ = sink.close().await;
                            return;
                        }
                        Err(status) => {
                            let error = call_error(&gw, &target.name, reply_error(status));
                            timing.finish(error.code());
                            return close(&mut sink, &error).await;
                        }
                    };
                    match self.frame(&message) {
                        Ok(frame) => {
                            if sink.send(frame).await.is_err() {
                                return;
                            }
                        }
                        Err(cause) => {
                            let error = GatewayError::BadBackend { backend: target.name.to_string(), cause };
                            timing.finish(error.code());
                            return close(&mut sink, &error).await;
                        }
                    }
                }
                () = idle => {
                    let error = GatewayError::StreamTimeout { what: "idle", timeout: limits.stream_idle_timeout };
                    timing.finish(error.code());
                    return close(&mut sink, &error).await;
                }
                () = tokio::time::sleep_until(deadline.at) => {
                    let error = GatewayError::StreamTimeout { what: "too long", timeout: limits.stream_max_duration };
                    timing.finish(error.code());
                    return close(&mut sink, &error).await;
                }
                () = ended(&mut cut) => {
                    timing.finish(GatewayError::ShuttingDown.code());
                    return close(&mut sink, &GatewayError::ShuttingDown).await;
                }
            }
        }
    }

    /// What a client frame asks for.
    fn step(&mut self, frame: &Message, client_streaming: bool, awaiting_first: &mut bool) -> Step {
        match frame {
            Message::Ping(_) | Message::Pong(_) => Step::Skip,
            Message::Close(_) => Step::Closed,
            // An empty text frame ends the request stream and keeps the
            // socket open for the replies and the status.
            Message::Text(text) if text.is_empty() && client_streaming => Step::Finish,
            _ if !client_streaming && !*awaiting_first => Step::Skip,
            frame => match self.message(frame) {
                Ok(mut messages) => {
                    if !client_streaming {
                        *awaiting_first = false;
                        messages.push(Queued::Finish);
                    }
                    Step::Send(messages)
                }
                Err(error) => Step::Cancel(Some(error)),
            },
        }
    }

    /// The request messages of one frame: a JSON text frame is one message;
    /// a binary frame of a raw upload is one or more chunks.
    fn message(&mut self, frame: &Message) -> Result<Vec<Queued>, GatewayError> {
        self.frames += 1;
        let line = self.frames;
        let bad = |message: String| GatewayError::BadLine {
            line,
            message,
            cause: None,
        };
        let codec = &self.codec;
        match frame {
            Message::Text(text) if !self.route.raw_request => codec
                .request(&self.values, self.query.as_deref(), text.as_bytes())
                .map_err(|e| GatewayError::bad_line(line, e))
                .and_then(|m| {
                    pipeline::checked_line(
                        &self.plan,
                        line,
                        text.as_bytes(),
                        self.query.as_deref(),
                        m,
                    )
                })
                .map(|m| vec![Queued::Message(Bytes::from(m))]),
            Message::Binary(data) if self.route.raw_request => {
                // The path and query fields, encoded once for the session.
                let prefix = match &self.upload_prefix {
                    Some(prefix) => prefix.clone(),
                    None => {
                        let prefix = codec
                            .request(&self.values, self.query.as_deref(), b"")
                            .map_err(|e| GatewayError::bad_line(line, e))?;
                        self.upload_prefix = Some(prefix.clone());
                        prefix
                    }
                };
                let path = self.route.body.field();
                let mut data = data.clone();
                let mut out = Vec::new();
                loop {
                    let chunk = data.split_to(data.len().min(MAX_UPLOAD_CHUNK));
                    let mut message = prefix.clone();
                    http_body::append(&mut message, path, "", chunk);
                    out.push(Queued::Message(Bytes::from(message)));
                    if data.is_empty() {
                        return Ok(out);
                    }
                }
            }
            Message::Text(_) => Err(bad("send this method's chunks as binary frames".to_owned())),
            _ => Err(bad("send JSON messages as text frames".to_owned())),
        }
    }

    /// A reply as a frame: JSON text, or the raw bytes of an `HttpBody`.
    fn frame(&self, message: &[u8]) -> Result<Message, String> {
        if self.route.raw_response {
            return http_body::decode(message)
                .map(|b| Message::Binary(b.data))
                .map_err(|e| e.to_string());
        }
        let json = self.codec.response(message).map_err(|e| e.to_string())?;
        String::from_utf8(json)
            .map(|t| Message::Text(t.into()))
            .map_err(|e| e.to_string())
    }
}

/// A send slot on the request channel; `None` once the channel is closed.
async fn reserve(tx: Option<&mpsc::Sender<Bytes>>) -> Option<mpsc::Permit<'_, Bytes>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => None,
    }
}

/// The next reply message; never without an open call.
async fn next_reply(reply: Option<&mut StreamReply>) -> Result<Option<Bytes>, tonic::Status> {
    match reply {
        Some(reply) => reply.messages.message().await,
        None => std::future::pending().await,
    }
}

/// Closes the socket with the error's code and message.
async fn close(sink: &mut SplitSink<WebSocket, Message>, error: &GatewayError) {
    let mut reason = error.client_message();
    // A close reason holds at most 123 bytes.
    while reason.len() > 123 {
        reason.pop();
    }
    tracing::info!(code = ?error.code(), cause = %error.log_cause(), "websocket stream ended with an error");
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: close_code(error.code()),
            reason: reason.into(),
        })))
        .await;
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_and_listed_origins_may_open_websockets() {
        let allowed = vec!["https://app.example.com".to_owned()];
        for (origin, host, ok) in [
            (None, "gw.example.com", true),
            (Some("https://gw.example.com"), "gw.example.com", true),
            (Some("http://127.0.0.1:8080"), "127.0.0.1:8080", true),
            (Some("https://APP.example.com/"), "gw.example.com", true),
            (Some("https://evil.example"), "gw.example.com", false),
            (
                Some("https://gw.example.com.evil.example"),
                "gw.example.com",
                false,
            ),
            (Some("null"), "gw.example.com", false),
        ] {
            let mut request = http::Request::builder().uri("/x").header("host", host);
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let (parts, ()) = request.body(()).unwrap().into_parts();
            assert_eq!(
                check_origin(&parts, &allowed).is_ok(),
                ok,
                "{origin:?} on {host}"
            );
        }
    }

    #[test]
    fn close_codes_carry_the_grpc_code() {
        for (code, want) in [
            (Code::Ok, 1000),
            (Code::InvalidArgument, 4003),
            (Code::NotFound, 4005),
            (Code::Unavailable, 4014),
            (Code::Unauthenticated, 4016),
        ] {
            assert_eq!(close_code(code), want, "{code:?}");
        }
    }
}
