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
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use tonic::Code;

use super::pipeline::{self, Call, UpstreamCall};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::plan::MethodPlan;
use crate::transcode::status::RpcStatus;
use crate::upstream::{CallError, Deadline};

const PROTO: HeaderValue = HeaderValue::from_static("application/proto");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// The unary request header that tells a Connect call from a REST one.
const PROTOCOL_VERSION: &str = "connect-protocol-version";
const TIMEOUT: &str = "connect-timeout-ms";

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

/// The routed method a Connect call names.
///
/// # Errors
/// [`GatewayError::NotServed`] for a path that is no routed method, or
/// while `protocols.connect` is off.
pub(super) fn lookup<'g>(
    gw: &'g Gateway,
    parts: &Parts,
) -> Result<(&'g MethodPlan, &'g crate::plan::RoutePlan), GatewayError> {
    let path = parts.uri.path();
    gw.config()
        .protocols
        .connect
        .then(|| gw.method(path))
        .flatten()
        .ok_or_else(|| GatewayError::NotServed {
            path: path.to_owned(),
        })
}

/// The call's time: `Connect-Timeout-Ms` (capped), else `default`.
///
/// # Errors
/// A timeout that is not a number of milliseconds (at most 10 digits).
pub(super) fn timeout(
    parts: &Parts,
    default: std::time::Duration,
    cap: std::time::Duration,
) -> Result<std::time::Duration, GatewayError> {
    let Some(value) = parts.headers.get(TIMEOUT) else {
        return Ok(default);
    };
    let bad = || GatewayError::BadHeader {
        header: "Connect-Timeout-Ms",
        reason: "not a number of milliseconds (at most 10 digits)".to_owned(),
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ms: u64 = text.parse().map_err(|_| bad())?;
    Ok(std::time::Duration::from_millis(ms).min(cap))
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
        message
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
        return Ok(cached(parts, headers, body, cache_control));
    }
    Ok((StatusCode::OK, headers, body).into_response())
}

/// A GET answer a cache may keep: `Cache-Control` as configured and an
/// `ETag` of the body; `304 Not Modified` when the client has it already.
fn cached(
    parts: &Parts,
    mut headers: HeaderMap,
    body: Bytes,
    cache_control: &HeaderValue,
) -> Response {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{hex}\"");
    headers.insert(http::header::CACHE_CONTROL, cache_control.clone());
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(http::header::ETAG, value);
    }
    let fresh = parts
        .headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    if fresh {
        headers.remove(CONTENT_TYPE);
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, body).into_response()
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

/// Connect's headers, which are the protocol's, not the call's metadata.
pub(super) fn strip_protocol_headers(headers: &mut HeaderMap) {
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("connect-")
                || name.starts_with("accept")
                || name.starts_with("sec-")
                || matches!(name, "content-encoding" | "origin" | "referer")
        })
        .cloned()
        .collect();
    for name in drop {
        headers.remove(name);
    }
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

/// Connect's name of a code.
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Detail>,
}

#[derive(Serialize)]
struct Detail {
    #[serde(rename = "type")]
    type_name: String,
    value: String,
}

/// Connect's error JSON: the code's name, the message, and each detail of
/// a `google.rpc.Status` (`details`, its encoding) as its type and base64.
pub(super) fn error_json(code: Code, message: &str, details: &[u8]) -> Vec<u8> {
    let details = (!details.is_empty())
        .then(|| <RpcStatus as prost::Message>::decode(details).ok())
        .flatten()
        .map(|status| {
            status
                .details
                .into_iter()
                .map(|any| Detail {
                    type_name: any
                        .type_url
                        .rsplit_once('/')
                        .map_or(any.type_url.as_str(), |(_, name)| name)
                        .to_owned(),
                    value: STANDARD_NO_PAD.encode(&any.value),
                })
                .collect()
        })
        .unwrap_or_default();
    let body = ErrorBody {
        code: code_name(code),
        message,
        details,
    };
    serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"code":"internal"}"#.to_vec())
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
    let body = error_json(error.code(), &error.client_message(), &[]);
    (error.status(), headers, body).into_response()
}

#[derive(Serialize)]
struct EndStream<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    metadata: std::collections::BTreeMap<&'a str, Vec<&'a str>>,
}

/// A stream's last envelope (flag `0x02`) for a call that ended with
/// `trailers`: the error when the status is not OK, and the other
/// trailers as metadata.
pub(super) fn end_stream(trailers: &HeaderMap) -> Bytes {
    use bytes::BufMut;
    let code = trailers
        .get("grpc-status")
        .map_or(Code::Unknown, super::grpc::code_of);
    let message = trailers
        .get("grpc-message")
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let details = trailers
        .get("grpc-status-details-bin")
        .and_then(|v| {
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            engine.decode(v.as_bytes()).ok()
        })
        .unwrap_or_default();
    let error = (code != Code::Ok).then(|| error_json(code, &message, &details));
    let error = error
        .as_deref()
        .and_then(|e| serde_json::from_slice::<&serde_json::value::RawValue>(e).ok());
    let mut metadata = std::collections::BTreeMap::new();
    for (name, value) in trailers {
        let name = name.as_str();
        if crate::upstream::metadata::is_reserved(name) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            metadata.entry(name).or_insert_with(Vec::new).push(value);
        }
    }
    let json = serde_json::to_vec(&EndStream { error, metadata })
        .unwrap_or_else(|_| br#"{"error":{"code":"internal"}}"#.to_vec());
    let mut envelope = bytes::BytesMut::with_capacity(json.len() + 5);
    envelope.put_u8(0x02);
    envelope.put_u32(u32::try_from(json.len()).unwrap_or(u32::MAX));
    envelope.put_slice(&json);
    envelope.freeze()
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

    #[test]
    fn streams_end_with_the_status_and_metadata() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("x-done", "yes".parse().unwrap());
        let ok = end_stream(&trailers);
        assert_eq!(ok[0], 0x02);
        let json: serde_json::Value = serde_json::from_slice(&ok[5..]).unwrap();
        assert_eq!(json, serde_json::json!({"metadata": {"x-done": ["yes"]}}));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "16".parse().unwrap());
        trailers.insert("grpc-message", "no%20token".parse().unwrap());
        let failed = end_stream(&trailers);
        let json: serde_json::Value = serde_json::from_slice(&failed[5..]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "unauthenticated", "message": "no token"}})
        );
    }

    #[test]
    fn timeouts_are_milliseconds_capped() {
        let cap = std::time::Duration::from_secs(10);
        let default = std::time::Duration::from_secs(3);
        for (value, want) in [
            (None, Some(3_000)),
            (Some("250"), Some(250)),
            (Some("99999999"), Some(10_000)),
            (Some("12345678901"), None),
            (Some("-1"), None),
            (Some(""), None),
            (Some("1.5"), None),
        ] {
            let headers: Vec<(&str, &str)> = value.map(|v| (TIMEOUT, v)).into_iter().collect();
            let got = timeout(&parts("POST", "/a.B/C", &headers), default, cap)
                .ok()
                .map(|d| d.as_millis() as u64);
            assert_eq!(got, want, "{value:?}");
        }
    }

    #[test]
    fn errors_have_connects_shape() {
        let status = RpcStatus {
            code: 3,
            message: "bad".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.BadRequest".into(),
                value: vec![1, 2, 3],
            }],
        };
        let body = error_json(
            Code::InvalidArgument,
            "bad",
            &prost::Message::encode_to_vec(&status),
        );
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "code": "invalid_argument",
                "message": "bad",
                "details": [{"type": "google.rpc.BadRequest", "value": "AQID"}]
            })
        );
        let json: serde_json::Value =
            serde_json::from_slice(&error_json(Code::Cancelled, "", &[])).unwrap();
        assert_eq!(json, serde_json::json!({"code": "canceled"}));
    }
}
