//! How the gRPC family and Connect carry a call's status and deadline:
//! gRPC's `grpc-status` / `grpc-message` headers, Connect's error JSON and
//! end-of-stream message, `Connect-Timeout-Ms`. Shared by the adapters that
//! answer those protocols ([`super::grpc`], [`super::connect`]), as
//! [`super::framing`] is by the HTTP streams.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use tonic::Code;

use crate::error::GatewayError;
use crate::transcode::status::RpcStatus;

const TIMEOUT: &str = "connect-timeout-ms";

/// The gRPC code of a `grpc-status` value; UNKNOWN when it is no code.
pub(super) fn code_of(value: &HeaderValue) -> Code {
    std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32)
}

/// `grpc-status` and a percent-encoded `grpc-message`.
pub(super) fn status_headers(headers: &mut HeaderMap, code: Code, message: &str) {
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    // The gRPC spec's percent-encoding: anything outside printable ASCII, and '%'.
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    let encoded = percent_encoding::utf8_percent_encode(message, ESCAPED).to_string();
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-message", value);
    }
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
    let code = trailers.get("grpc-status").map_or(Code::Unknown, code_of);
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

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().method("POST").uri("/a.B/C");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
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
            let got = timeout(&parts(&headers), default, cap)
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
