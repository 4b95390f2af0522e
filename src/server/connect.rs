//! The Connect protocol ([spec]) on the main listener, over the same
//! pipeline as every other surface.
//!
//! - **Unary** calls (`POST` with `Connect-Protocol-Version: 1` and
//!   `application/proto` or `application/json`, or `GET ?connect=v1` for
//!   methods with `idempotency_level = NO_SIDE_EFFECTS`) carry the bare
//!   message: it is framed, sent as a unary gRPC call, and the reply comes
//!   back bare, its trailers as `Trailer-` headers; errors are Connect's
//!   JSON with the HTTP status of their code. This module answers them.
//! - **Streams** (`application/connect+proto`) carry envelopes that are
//!   gRPC frames but for the last, so they go through the native adapter
//!   ([`super::grpc`]), which only writes Connect's end-of-stream message.
//!
//! [spec]: https://connectrpc.com/docs/protocol

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tonic::Code;

use super::envelope::{error_json, strip_protocol_headers, timeout};
use super::pipeline::{self, Call, UpstreamCall};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::plan::MethodPlan;
use crate::upstream::{CallError, Deadline};

const PROTO: HeaderValue = HeaderValue::from_static("application/proto");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// The unary request header that tells a Connect call from a REST one.
const PROTOCOL_VERSION: &str = "connect-protocol-version";

/// A Connect call, as its request tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `POST`, the message as the body.
    Unary {
        /// `application/json` rather than `application/proto`.
        json: bool,
    },
    /// `GET ?connect=v1&message=...`.
    Get,
    /// `application/connect+proto` envelopes.
    Stream,
}

impl Kind {
    /// The Connect call a request is, if it is one: a streaming content
    /// type, a unary POST with `Connect-Protocol-Version`, or a GET with
    /// `connect=v1` in its query.
    pub(super) fn of(parts: &Parts) -> Option<Self> {
        if parts.method == http::Method::GET {
            return parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "connect=v1"))
                .then_some(Self::Get);
        }
        if parts.method != http::Method::POST {
            return None;
        }
        let content_type = parts.headers.get(CONTENT_TYPE)?.as_bytes();
        if content_type.starts_with(b"application/connect+") {
            return Some(Self::Stream);
        }
        if !parts.headers.contains_key(PROTOCOL_VERSION) {
            return None;
        }
        let essence = content_type
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if essence.eq_ignore_ascii_case(b"application/proto") {
            Some(Self::Unary { json: false })
        } else if essence.eq_ignore_ascii_case(b"application/json") {
            Some(Self::Unary { json: true })
        } else {
            None
        }
    }
}

/// Answers a unary Connect call (POST or GET).
///
/// # Errors
/// The request's message, deadline or protocol version; a backend that
/// could not be called. A backend's status is answered here, as Connect's
/// error with its details.
pub(super) async fn unary(
    gw: &Gateway,
    parts: &Parts,
    body: Body,
    call: Call<'_>,
    method: &MethodPlan,
    kind: Kind,
) -> Result<Response, GatewayError> {
    if method.client_streaming || method.server_streaming {
        return Err(GatewayError::BadGrpcRequest(
            "a streaming method takes application/connect+proto envelopes",
        ));
    }
    if let Some(version) = parts.headers.get(PROTOCOL_VERSION)
        && version.as_bytes() != b"1"
    {
        return Err(GatewayError::BadHeader {
            header: "Connect-Protocol-Version",
            reason: "only version 1 is spoken".to_owned(),
        });
    }
    let plan = call.plan;
    let target = call.target;
    let deadline = Deadline::after(timeout(
        parts,
        target.timeout,
        plan.limits.max_grpc_timeout,
    )?);
    let (message, json) = match kind {
        Kind::Get => get_message(parts, method)?,
        Kind::Unary { json } => {
            let body =
                pipeline::read_body_within(parts, body, plan.limits.max_body_bytes, &deadline)
                    .await?;
            (body, json)
        }
        Kind::Stream => return Err(GatewayError::BadGrpcRequest("not a unary call")),
    };
    let route = &plan.route;
    let input = if json {
        Bytes::from(crate::transcode::message_from_json(
            route.method.input(),
            &message,
            route.unknown_json_fields,
        )?)
    } else {
        message.clone()
    };
    let input = match &plan.validation {
        Some(rules) => {
            let written = crate::validate::Written {
                body: json.then_some((&message[..], None)),
                proto_names: !json,
                ..Default::default()
            };
            rules.check(&input, &written)?.map_or(input, Bytes::from)
        }
        None => input,
    };
    let mut headers = call.metadata.into_headers();
    strip_protocol_headers(&mut headers);
    let metadata = tonic::metadata::MetadataMap::from_headers(headers);
    let mut timing = UpstreamCall::start(gw, target);
    let reply = gw
        .upstreams()
        .unary(target, route, input, metadata, deadline)
        .await;
    timing.finish(reply.as_ref().map_or_else(CallError::code, |_| Code::Ok));
    drop(timing);
    let reply = match reply {
        Ok(reply) => reply,
        Err(CallError::Status { status, headers }) => {
            let mut metadata = headers.into_headers();
            metadata.extend(status.metadata().clone().into_headers());
            return Ok(error(
                status.code(),
                status.message(),
                status.details(),
                metadata,
            ));
        }
        Err(e) => return Err(pipeline::call_error(gw, &target.name, e)),
    };
    let mut headers = metadata_headers(reply.headers.into_headers(), "");
    if let Some(trailers) = reply.trailers {
        headers.extend(metadata_headers(trailers.into_headers(), "trailer-"));
    }
    let body = if json {
        headers.insert(CONTENT_TYPE, JSON);
        crate::transcode::message_to_json(
            route.method.output(),
            &reply.message,
            &gw.config().transcode.json,
        )
        .map(Bytes::from)
        .map_err(|e| GatewayError::BadBackend {
            backend: target.name.to_string(),
            cause: e.to_string(),
        })?
    } else {
        headers.insert(CONTENT_TYPE, PROTO);
        reply.message
    };
    if kind == Kind::Get
        && let Some(cache_control) = &method.cache_control
    {
        return Ok(super::conditional::answer(
            parts,
            StatusCode::OK,
            headers,
            body,
            None,
            Some(cache_control),
        ));
    }
    Ok((StatusCode::OK, headers, body).into_response())
}

/// The message of a GET call: `message` as percent-encoded text, or
/// base64url with `base64=1`; `encoding` names the codec.
fn get_message(parts: &Parts, method: &MethodPlan) -> Result<(Bytes, bool), GatewayError> {
    if !method.no_side_effects {
        return Err(GatewayError::BadGrpcRequest(
            "GET is only for methods with idempotency_level = NO_SIDE_EFFECTS",
        ));
    }
    let query = parts.uri.query().unwrap_or_default();
    let (mut message, mut encoding, mut base64) = (None, None, false);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "message" => message = Some(value),
            "encoding" => encoding = Some(value),
            "base64" => base64 = value == "1",
            "compression" if !value.is_empty() && value != "identity" => {
                return Err(GatewayError::BadGrpcRequest(
                    "only identity compression is taken for GET messages",
                ));
            }
            _ => {}
        }
    }
    let json = match encoding {
        Some("json") => true,
        Some("proto") => false,
        _ => {
            return Err(GatewayError::BadGrpcRequest(
                "encoding must be json or proto",
            ));
        }
    };
    let raw = message.unwrap_or_default();
    let bytes = if base64 {
        let unescaped = percent_encoding::percent_decode_str(raw).collect::<Vec<u8>>();
        let trimmed: Vec<u8> = unescaped.into_iter().filter(|b| *b != b'=').collect();
        URL_SAFE_NO_PAD
            .decode(trimmed)
            .map_err(|_| GatewayError::BadGrpcRequest("message is not base64url"))?
    } else {
        percent_encoding::percent_decode_str(raw).collect()
    };
    Ok((Bytes::from(bytes), json))
}

/// A backend's metadata as Connect's response headers: reserved names
/// left out, each name under `prefix` (`trailer-` for trailers).
fn metadata_headers(metadata: HeaderMap, prefix: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut last = None;
    for (name, value) in metadata {
        let name = match name {
            Some(name) => {
                last = Some(name.clone());
                name
            }
            None => match &last {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        if crate::upstream::metadata::is_reserved(name.as_str()) {
            continue;
        }
        let name = if prefix.is_empty() {
            name
        } else {
            match HeaderName::try_from(format!("{prefix}{}", name.as_str())) {
                Ok(name) => name,
                Err(_) => continue,
            }
        };
        out.append(name, value);
    }
    out
}

/// A unary call's error: Connect's JSON with the HTTP status of its code,
/// and `metadata` as headers.
fn error(code: Code, message: &str, details: &[u8], metadata: HeaderMap) -> Response {
    let mut headers = metadata_headers(metadata, "");
    headers.insert(CONTENT_TYPE, JSON);
    let status = crate::error::http_status(code);
    (status, headers, error_json(code, message, details)).into_response()
}

/// The answer of one of the gateway's own errors to a unary call.
pub(super) fn error_response(error: &GatewayError) -> Response {
    let mut headers = error.grpc_metadata();
    headers.insert(CONTENT_TYPE, JSON);
    let details = error.status_details().unwrap_or_default();
    let body = error_json(error.code(), &error.client_message(), &details);
    (error.status(), headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn connect_calls_are_told_from_rest_calls() {
        let v1 = ("connect-protocol-version", "1");
        for (method, uri, headers, want) in [
            (
                "POST",
                "/a.B/C",
                vec![("content-type", "application/json"), v1],
                Some(Kind::Unary { json: true }),
            ),
            (
                "POST",
                "/a.B/C",
                vec![("content-type", "application/proto"), v1],
                Some(Kind::Unary { json: false }),
            ),
            (
                "POST",
                "/a.B/C",
                vec![("content-type", "application/json; charset=utf-8"), v1],
                Some(Kind::Unary { json: true }),
            ),
            // Without the header a JSON POST is REST's.
            (
                "POST",
                "/a.B/C",
                vec![("content-type", "application/json")],
                None,
            ),
            (
                "POST",
                "/a.B/C",
                vec![("content-type", "application/connect+proto")],
                Some(Kind::Stream),
            ),
            (
                "POST",
                "/a.B/C",
                vec![("content-type", "text/plain"), v1],
                None,
            ),
            (
                "GET",
                "/a.B/C?connect=v1&encoding=json&message=%7B%7D",
                vec![],
                Some(Kind::Get),
            ),
            ("GET", "/v1/users?connectx=v1", vec![], None),
            ("GET", "/v1/users", vec![], None),
        ] {
            assert_eq!(
                Kind::of(&parts(method, uri, &headers)),
                want,
                "{method} {uri} {headers:?}"
            );
        }
    }
}
