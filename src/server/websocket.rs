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

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::{self, BoxStream, SplitSink, SplitStream, StreamExt};
use http::header::{CONNECTION, UPGRADE};
use http::request::Parts;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::metadata::MetadataMap;

use super::handler::call_error;
use super::reload::Cut;
use super::stream::{ended, failed};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::http_rule::{BodyRule, Route, RouteBackend, RouteMatch};
use crate::transcode::http_body;
use crate::upstream::stream::reply_error;

/// Close code of a call that ended with gRPC code `c`: 4000 + c (OK: 1000).
pub fn close_code(code: Code) -> u16 {
    match code {
        Code::Ok => 1000,
        other => 4000 + other as u16,
    }
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
    found: &RouteMatch<'_>,
    target: &RouteBackend,
    query: Option<String>,
    metadata: MetadataMap,
) -> Result<Response, GatewayError> {
    let upgrade = WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .map_err(|e| GatewayError::BadHeader {
            header: "Upgrade",
            reason: e.body_text(),
        })?;
    let cut = parts.extensions.get::<Cut>().cloned();
    let session = Session {
        cut,
        gw: gw.clone(),
        route: found.route.clone(),
        values: found.values.clone(),
        query,
        target: target.clone(),
    };
    Ok(upgrade.on_upgrade(move |socket| session.run(socket, metadata)))
}

struct Session {
    cut: Option<Cut>,
    gw: Gateway,
    route: Arc<Route>,
    values: Vec<String>,
    query: Option<String>,
    target: RouteBackend,
}

impl Session {
    async fn run(mut self, socket: WebSocket, metadata: MetadataMap) {
        let (mut sink, source) = socket.split();
        let (report, failure) = oneshot::channel::<GatewayError>();
        let mut failure = Some(failure);
        let requests = self.requests(source, report);
        let options = self.gw.config().streaming;
        let opened = tokio::select! {
            opened = self.gw.upstreams().streaming(&self.target, &self.route, requests, metadata, options.max_duration) => opened,
            error = failed(&mut failure) => {
                close(&mut sink, &error).await;
                return;
            }
        };
        let mut reply = match opened {
            Ok(reply) => reply,
            Err(e) => {
                close(&mut sink, &call_error(&self.gw, &self.target.name, e)).await;
                return;
            }
        };
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(options.idle_timeout, reply.messages.message()) => next,
                error = failed(&mut failure) => {
                    close(&mut sink, &error).await;
                    return;
                }
                () = ended(&mut self.cut) => {
                    close(&mut sink, &GatewayError::ShuttingDown).await;
                    return;
                }
            };
            let message = match next {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => {
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
                Ok(Err(status)) => {
                    let error = call_error(&self.gw, &self.target.name, reply_error(status));
                    close(&mut sink, &error).await;
                    return;
                }
                Err(_) => {
                    let error = GatewayError::StreamTimeout {
                        what: "idle",
                        timeout: options.idle_timeout,
                    };
                    close(&mut sink, &error).await;
                    return;
                }
            };
            let frame = if self.route.raw_response {
                http_body::decode(&message)
                    .map(|b| Message::Binary(b.data))
                    .map_err(|e| e.to_string())
            } else {
                self.gw
                    .codec()
                    .response(&self.route, &message)
                    .map_err(|e| e.to_string())
                    .and_then(|json| {
                        String::from_utf8(json)
                            .map(|t| Message::Text(t.into()))
                            .map_err(|e| e.to_string())
                    })
            };
            match frame {
                Ok(frame) => {
                    if sink.send(frame).await.is_err() {
                        // The client is gone; dropping the reply cancels the call.
                        return;
                    }
                }
                Err(cause) => {
                    let error = GatewayError::BadBackend {
                        backend: self.target.name.clone(),
                        cause,
                    };
                    close(&mut sink, &error).await;
                    return;
                }
            }
        }
    }

    /// Request messages from the client's frames until it closes; a frame
    /// that is not a valid message is reported through `failed`. A method
    /// that takes one request message ends its request stream after it.
    fn requests(
        &self,
        source: SplitStream<WebSocket>,
        failed: oneshot::Sender<GatewayError>,
    ) -> BoxStream<'static, Bytes> {
        let gw = self.gw.clone();
        let route = self.route.clone();
        let values = self.values.clone();
        let query = self.query.clone();
        let single = !route.method.is_client_streaming();
        if single && route.body == BodyRule::None {
            // Path and query are the whole request: no frame to wait for.
            return match gw.codec().request(&route, &values, query.as_deref(), b"") {
                Ok(message) => stream::once(async move { Bytes::from(message) }).boxed(),
                Err(e) => {
                    let _ = failed.send(GatewayError::from(e));
                    stream::pending().boxed()
                }
            };
        }
        let state = (source, Some(failed), 0usize, false);
        stream::unfold(state, move |(mut source, mut failed, mut n, done)| {
            let (gw, route, values, query) =
                (gw.clone(), route.clone(), values.clone(), query.clone());
            async move {
                if done {
                    return None;
                }
                loop {
                    let frame = match source.next().await {
                        Some(Ok(frame)) => frame,
                        Some(Err(_)) | None => return None,
                    };
                    let built = match frame {
                        // An empty text frame ends the request stream and
                        // keeps the socket open for the replies and the status.
                        Message::Text(text) if text.is_empty() => return None,
                        Message::Text(text) if !route.raw_request => gw
                            .codec()
                            .request(&route, &values, query.as_deref(), text.as_bytes())
                            .map_err(GatewayError::from),
                        Message::Binary(data) if route.raw_request => {
                            let mut message = gw
                                .codec()
                                .request(&route, &values, query.as_deref(), b"")
                                .map_err(GatewayError::from);
                            if let Ok(m) = message.as_mut() {
                                let path = match &route.body {
                                    BodyRule::Field(path) => Some(path),
                                    _ => None,
                                };
                                http_body::append(m, path, "", data);
                            }
                            message
                        }
                        Message::Close(_) => return None,
                        Message::Ping(_) | Message::Pong(_) => continue,
                        Message::Text(_) => Err(GatewayError::BadLine {
                            line: n + 1,
                            message: "send this method's chunks as binary frames".to_owned(),
                        }),
                        Message::Binary(_) => Err(GatewayError::BadLine {
                            line: n + 1,
                            message: "send JSON messages as text frames".to_owned(),
                        }),
                    };
                    n += 1;
                    match built {
                        Ok(message) => {
                            return Some((Bytes::from(message), (source, failed, n, single)));
                        }
                        Err(error) => {
                            let error = match error {
                                GatewayError::BadLine { .. } => error,
                                other => GatewayError::BadLine {
                                    line: n,
                                    message: other.client_message(),
                                },
                            };
                            if let Some(failed) = failed.take() {
                                let _ = failed.send(error);
                            }
                            // No half-close: the call ends when the failure is seen.
                            return std::future::pending().await;
                        }
                    }
                }
            }
        })
        .boxed()
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
