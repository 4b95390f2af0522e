//! HTTP headers ⇄ gRPC metadata.
//!
//! Requests: headers on the configured allowlist keep their name,
//! `Grpc-Metadata-<name>` becomes `<name>` (grpc-gateway's convention), and
//! `X-Forwarded-For` / `X-Forwarded-Host` are set by the gateway. Replies:
//! header metadata comes back as `Grpc-Metadata-<name>`, trailers as
//! `Grpc-Trailer-<name>`. Names reserved by gRPC or HTTP/2 never cross in
//! either direction; credentials and forwarding headers never come through
//! the `Grpc-Metadata-` prefix, so a client cannot smuggle them past the
//! allowlist or spoof what the gateway sets.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;
use http::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};
use tonic::metadata::MetadataMap;

use crate::config::MetadataOptions;
// The reserved names live in config, which refuses to forward them.
pub use crate::config::is_reserved;

const METADATA_PREFIX: &str = "grpc-metadata-";
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Names a client may not set through `Grpc-Metadata-`: credentials (only
/// the allowlist forwards them) and what the gateway itself sets.
fn is_protected(name: &str) -> bool {
    is_reserved(name)
        || matches!(
            name,
            "authorization"
                | "proxy-authorization"
                | "cookie"
                | "forwarded"
                | "x-forwarded-for"
                | "x-forwarded-host"
                | "x-forwarded-proto"
                | "x-real-ip"
                | "x-forwarded-client-cert"
        )
}

/// The metadata of a native gRPC call: what [`request_metadata`] makes of
/// the headers, plus every other metadata entry the client sent as it sent
/// it (a gRPC client's metadata is its call's, not a browser's headers),
/// but names reserved by gRPC or HTTP/2, credentials, forwarding headers
/// and `withheld`.
///
/// # Errors
/// [`BadBinaryHeader`] for a binary (`-bin`) entry that is not base64.
pub fn grpc_metadata(
    headers: &HeaderMap,
    authority: Option<&str>,
    options: &MetadataOptions,
    client_ip: Option<&HeaderValue>,
    client_cert: Option<&HeaderValue>,
    withheld: &[HeaderName],
) -> Result<MetadataMap, BadBinaryHeader> {
    let mut out = request_metadata(
        headers,
        authority,
        options,
        client_ip,
        client_cert,
        withheld,
    )?
    .into_headers();
    for name in headers.keys() {
        let text = name.as_str();
        if is_protected(text)
            || text.starts_with(METADATA_PREFIX)
            || withheld.contains(name)
            || out.contains_key(name)
        {
            continue;
        }
        for value in headers.get_all(name) {
            check_binary(text, text, value)?;
            out.append(name.clone(), value.clone());
        }
    }
    Ok(MetadataMap::from_headers(out))
}

/// The client certificate of a mutual TLS connection, set by the gateway only.
const FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
/// `X-Request-Id`, always forwarded.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C Trace Context, always forwarded.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C Trace Context vendor data, forwarded with `traceparent`.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// gRPC metadata for the upstream call: the one place that decides which
/// client headers cross to a backend. `authority` is the request URI's
/// authority, which HTTP/2 clients send instead of a `Host` header;
/// `client_cert` the `X-Forwarded-Client-Cert` of a verified client
/// certificate; `withheld` the headers auth keeps from the backend
/// (identity names the gateway sets, credentials), however sent.
///
/// # Errors
/// [`BadBinaryHeader`] for a binary (`-bin`) header that is not base64:
/// a backend would refuse the whole call.
pub fn request_metadata(
    headers: &HeaderMap,
    authority: Option<&str>,
    options: &MetadataOptions,
    client_ip: Option<&HeaderValue>,
    client_cert: Option<&HeaderValue>,
    withheld: &[HeaderName],
) -> Result<MetadataMap, BadBinaryHeader> {
    let mut out = HeaderMap::new();
    for name in &options.forward_request_headers {
        for value in headers.get_all(name) {
            check_binary(name.as_str(), name.as_str(), value)?;
            out.append(name.clone(), value.clone());
        }
    }
    // Kept only where the gateway does not authenticate: `Authenticator::forward` decides.
    if options.forward_authorization {
        for value in headers.get_all(AUTHORIZATION) {
            out.append(AUTHORIZATION, value.clone());
        }
    }
    // The request id (the client's or the gateway's) ties backend logs to
    // ours; W3C trace context continues the client's trace in the backend.
    for name in [REQUEST_ID, TRACEPARENT, TRACESTATE] {
        if name == REQUEST_ID && !options.request_id {
            continue;
        }
        if let Some(value) = headers.get(&name) {
            let mut value = value.clone();
            // New with every request: indexing them would only churn HPACK tables.
            value.set_sensitive(true);
            out.insert(name, value);
        }
    }
    for (name, value) in headers {
        if let Some(stripped) = name.as_str().strip_prefix(METADATA_PREFIX)
            && !is_protected(stripped)
            && let Ok(target) = HeaderName::from_bytes(stripped.as_bytes())
        {
            check_binary(name.as_str(), stripped, value)?;
            out.append(target, value.clone());
        }
    }
    for name in withheld {
        out.remove(name);
    }
    // The gateway's own view of the client, not a copy of what the client
    // claims, unless the operator says a trusted proxy stands in front.
    out.remove(&FORWARDED_FOR);
    out.remove(&FORWARDED_HOST);
    // Only the gateway vouches for a client certificate.
    out.remove(&FORWARDED_CLIENT_CERT);
    if let Some(cert) = client_cert {
        out.insert(FORWARDED_CLIENT_CERT, cert.clone());
    }
    if !options.forwarded {
        return Ok(MetadataMap::from_headers(out));
    }
    if let Some(ip) = client_ip {
        let prior = headers
            .get(&FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .filter(|p| options.trust_forwarded_for && !p.trim().is_empty());
        let forwarded = match prior {
            Some(prior) => {
                HeaderValue::from_str(&format!("{prior}, {}", ip.to_str().unwrap_or_default())).ok()
            }
            None => Some(ip.clone()),
        };
        if let Some(v) = forwarded {
            out.insert(FORWARDED_FOR, v);
        }
    }
    let host = headers
        .get(HOST)
        .cloned()
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(a).ok()));
    if let Some(host) = host {
        out.insert(FORWARDED_HOST, host);
    }
    Ok(MetadataMap::from_headers(out))
}

/// A client's IP as the `X-Forwarded-For` value backends get: made once
/// per connection, not per request.
pub fn client_ip_header(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// A binary metadata header whose value is not base64.
#[derive(Debug, thiserror::Error)]
#[error("header {header}: a binary (-bin) metadata value must be base64")]
pub struct BadBinaryHeader {
    /// The header as the client sent it.
    pub header: String,
}

/// Binary metadata (`-bin`) travels base64-encoded, padded or not, as the
/// gRPC spec says.
fn check_binary(header: &str, metadata: &str, value: &HeaderValue) -> Result<(), BadBinaryHeader> {
    use base64::Engine;
    const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    if !metadata.ends_with("-bin") || BASE64.decode(value.as_bytes()).is_ok() {
        return Ok(());
    }
    Err(BadBinaryHeader {
        header: header.to_owned(),
    })
}

/// HTTP headers for the reply: `Grpc-Metadata-*` from header metadata and `Grpc-Trailer-*` from trailers.
pub fn response_headers(headers: &MetadataMap, trailers: Option<&MetadataMap>) -> HeaderMap {
    let mut out = HeaderMap::new();
    copy_prefixed(&mut out, headers, "grpc-metadata-");
    if let Some(trailers) = trailers {
        copy_prefixed(&mut out, trailers, "grpc-trailer-");
    }
    out
}

fn copy_prefixed(out: &mut HeaderMap, from: &MetadataMap, prefix: &str) {
    for (name, value) in from.as_ref() {
        if is_reserved(name.as_str()) {
            continue;
        }
        if let Ok(target) = HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) {
            out.append(target, value.clone());
        }
    }
}

/// Parses a `Grpc-Timeout` value: up to 8 digits and a unit (`H M S m u n`).
///
/// # Errors
/// A reason when the value is not in that form.
pub fn parse_grpc_timeout(value: &str) -> Result<Duration, String> {
    // The value is the client's own: not repeated, so it never reaches a log.
    let bad = || "not a gRPC timeout such as 500m or 5S".to_owned();
    let (digits, unit) = value.split_at(value.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad()),
    })
}

/// `Grpc-Timeout` for a deadline, formatted without a temporary string and
/// never indexed by HPACK: a value that changes with every call would only
/// churn the header tables of both ends of the connection.
pub fn grpc_timeout_header(timeout: Duration) -> HeaderValue {
    use std::io::Write;
    let (value, unit) = grpc_timeout_parts(timeout);
    let mut text = [0u8; 16];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    // At most 8 digits and a unit: always fits.
    let _ = write!(cursor, "{value}{unit}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    let mut header =
        HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static("99999999H"));
    header.set_sensitive(true);
    header
}

/// A deadline as `Grpc-Timeout` parts: the finest unit whose value fits in 8 digits.
fn grpc_timeout_parts(timeout: Duration) -> (u128, &'static str) {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    for (unit, per) in [
        ("n", 1),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
        ("H", 3_600_000_000_000),
    ] {
        // Round up so the backend never gets less time than the gateway waits.
        let value = nanos.div_ceil(per);
        if value <= MAX {
            return (value, unit);
        }
    }
    (MAX, "H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        for (text, want) in [
            ("5S", Some(Duration::from_secs(5))),
            ("100m", Some(Duration::from_millis(100))),
            ("2H", Some(Duration::from_secs(7200))),
            ("1M", Some(Duration::from_secs(60))),
            ("7u", Some(Duration::from_micros(7))),
            ("9n", Some(Duration::from_nanos(9))),
            ("99999999S", Some(Duration::from_secs(99_999_999))),
            ("123456789S", None),
            ("S", None),
            ("", None),
            ("5", None),
            ("5s", None),
            ("-5S", None),
            ("1.5S", None),
        ] {
            assert_eq!(parse_grpc_timeout(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn grpc_timeouts_format_and_round_trip() {
        for (timeout, want) in [
            (Duration::from_nanos(5), "5n"),
            (Duration::from_millis(50), "50000000n"),
            (Duration::from_millis(200), "200000u"),
            (Duration::from_secs(3), "3000000u"),
            (Duration::from_secs(300), "300000m"),
            (Duration::from_secs(200_000), "200000S"),
            (Duration::from_secs(3600 * 200_000), "12000000M"),
            (Duration::from_secs(u64::MAX), "99999999H"),
        ] {
            let header = grpc_timeout_header(timeout);
            assert!(header.is_sensitive(), "never indexed");
            let got = header.to_str().unwrap();
            assert_eq!(got, want, "{timeout:?}");
            assert!(parse_grpc_timeout(got).is_ok(), "{got}");
        }
    }

    #[test]
    fn request_ids_and_forwarding_headers_can_be_left_out() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("r-1"));
        h.insert("host", HeaderValue::from_static("api.example"));
        let ip = client_ip_header("10.0.0.7".parse().unwrap());
        for (forwarded, request_id, want) in [
            (
                true,
                true,
                vec!["x-forwarded-for", "x-forwarded-host", "x-request-id"],
            ),
            (false, true, vec!["x-request-id"]),
            (true, false, vec!["x-forwarded-for", "x-forwarded-host"]),
            (false, false, vec![]),
        ] {
            let opts = MetadataOptions {
                forwarded,
                request_id,
                ..Default::default()
            };
            let md = request_metadata(&h, None, &opts, Some(&ip), None, &[]).unwrap();
            let mut got: Vec<String> = md
                .into_headers()
                .keys()
                .map(|k| k.as_str().to_owned())
                .collect();
            got.sort();
            assert_eq!(got, want, "forwarded {forwarded}, request_id {request_id}");
        }
    }

    #[test]
    fn request_metadata_follows_allowlist_and_prefix() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("r1"));
        h.insert("authorization", HeaderValue::from_static("Bearer secret"));
        h.insert("grpc-metadata-tenant", HeaderValue::from_static("acme"));
        h.insert("grpc-metadata-grpc-status", HeaderValue::from_static("0"));
        h.insert("grpc-metadata-trace-bin", HeaderValue::from_static("AAE="));
        h.insert("host", HeaderValue::from_static("api.example.com"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert(
            "grpc-metadata-authorization",
            HeaderValue::from_static("Bearer forged"),
        );
        h.insert(
            "grpc-metadata-cookie",
            HeaderValue::from_static("session=1"),
        );
        h.insert(
            "grpc-metadata-x-forwarded-host",
            HeaderValue::from_static("evil.example"),
        );
        h.insert(
            "grpc-metadata-x-forwarded-for",
            HeaderValue::from_static("10.9.9.9"),
        );
        let mut opts = MetadataOptions {
            forward_request_headers: vec![HeaderName::from_static("x-request-id")],
            trust_forwarded_for: false,
            forward_authorization: false,
            ..Default::default()
        };
        let ip = client_ip_header("127.0.0.1".parse().unwrap());
        let client = Some(&ip);
        let md = request_metadata(&h, None, &opts, client, None, &[])
            .unwrap()
            .into_headers();
        assert_eq!(md.get("x-request-id").unwrap(), "r1");
        assert_eq!(md.get("tenant").unwrap(), "acme");
        assert_eq!(md.get("trace-bin").unwrap(), "AAE=");
        assert!(
            md.get("authorization").is_none(),
            "not with forward_authorization off, never through the prefix"
        );
        assert!(md.get("cookie").is_none());
        assert!(md.get("grpc-status").is_none(), "reserved");
        assert_eq!(
            md.get("x-forwarded-for").unwrap(),
            "127.0.0.1",
            "the client's claim is not trusted"
        );
        assert_eq!(md.get("x-forwarded-host").unwrap(), "api.example.com");

        opts.trust_forwarded_for = true;
        let md = request_metadata(&h, None, &opts, client, None, &[])
            .unwrap()
            .into_headers();
        assert_eq!(md.get("x-forwarded-for").unwrap(), "203.0.113.9, 127.0.0.1");

        h.remove("host");
        let md = request_metadata(&h, Some("api.example.com:443"), &opts, None, None, &[])
            .unwrap()
            .into_headers();
        assert_eq!(
            md.get("x-forwarded-host").unwrap(),
            "api.example.com:443",
            "HTTP/2 :authority"
        );
        assert!(
            md.get("x-forwarded-for").is_none(),
            "no client address, and no client claim either"
        );
    }

    #[test]
    fn response_headers_are_prefixed() {
        let mut headers = MetadataMap::new();
        headers.insert("x-served-by", "users-1".parse().unwrap());
        headers.insert("content-type", "application/grpc".parse().unwrap());
        headers.insert("date", "Sat, 21 Nov 2026 12:24:44 GMT".parse().unwrap());
        let mut trailers = MetadataMap::new();
        trailers.insert("x-cost", "3".parse().unwrap());
        trailers.insert("grpc-status", "0".parse().unwrap());
        let out = response_headers(&headers, Some(&trailers));
        assert_eq!(out.get("grpc-metadata-x-served-by").unwrap(), "users-1");
        assert_eq!(out.get("grpc-trailer-x-cost").unwrap(), "3");
        assert_eq!(out.len(), 2, "{out:?}");
    }
}
