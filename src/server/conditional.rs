//! Conditional requests (RFC 9110 §13, AIP-154) on REST and Connect GET.
//!
//! A reply with an `etag` field carries it as `ETag`; a GET whose
//! `If-None-Match` names it is answered `304 Not Modified` without a body.
//! A route with `methods.<name>.cache_control` sends that on its GET
//! answers, with an `ETag` of the body when the reply has no etag field.
//! A write's `If-Match` is copied into the request's etag field (see
//! [`if_match`]), and a backend that refuses it with `FAILED_PRECONDITION`
//! or `ABORTED` is answered `412 Precondition Failed`.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::transcode::etag;

/// The etag a write's `If-Match` names, as the request's etag field holds
/// it; `None` on reads, without the header, or for `*`.
pub(super) fn if_match(parts: &Parts) -> Option<String> {
    if is_read(&parts.method) {
        return None;
    }
    let value = parts.headers.get(IF_MATCH)?.to_str().ok()?;
    // A list names several; the request's field holds one: the first.
    etag::from_header(value.split(',').next()?)
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Whether `If-None-Match` names `etag` (a header value, quoted).
fn fresh(parts: &Parts, etag: &str) -> bool {
    let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = weak(etag);
    parts
        .headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || weak(tag) == etag)
}

/// A strong validator of `body`: the first 128 bits of its SHA-256.
fn digest(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The answer of a successful call: `ETag` from `field_etag` (the reply's
/// etag field) or, on a cached GET, from the body; `Cache-Control` on GET;
/// `304` when the client has it already.
pub(super) fn answer(
    parts: &Parts,
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    field_etag: Option<String>,
    cache_control: Option<&HeaderValue>,
) -> Response {
    let read = is_read(&parts.method);
    let etag = match (field_etag, cache_control) {
        (Some(tag), _) => Some(etag::header_value(&tag)),
        (None, Some(_)) if read => Some(digest(&body)),
        (None, _) => None,
    };
    if let Some(tag) = &etag
        && let Ok(value) = HeaderValue::from_str(tag)
    {
        headers.insert(ETAG, value);
    }
    if read {
        if let Some(cache_control) = cache_control {
            headers.insert(CACHE_CONTROL, cache_control.clone());
        }
        if etag.as_deref().is_some_and(|tag| fresh(parts, tag)) {
            headers.remove(CONTENT_TYPE);
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
    }
    if status == StatusCode::NO_CONTENT {
        // No body, and no content type for one.
        return (status, headers).into_response();
    }
    (status, headers, body).into_response()
}
