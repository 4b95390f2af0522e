//! The edge layers every request passes, outermost first:
//!
//! 1. request id: `X-Request-Id` kept when the client sent one, generated
//!    (a UUID) otherwise, echoed on the response and forwarded to backends;
//! 2. CORS, preflights included, when `cors` is configured;
//! 3. response compression (gzip, br), but never of streams: compressing
//!    would hold messages back;
//! 4. compressed request bodies (gzip, br), decompressed as they are read,
//!    so body limits count decompressed bytes.
//!
//! 3 and 4 ([`super::compression`]) cost nothing for requests that send
//! neither `Accept-Encoding` nor `Content-Encoding`.
//!
//! Size limits ([`check_sizes`]) and load shedding are the API handler's
//! first steps, so health checks and docs answer under load; as plain
//! checks rather than layers they cost no allocation per request.

use axum::Router;
use http::{HeaderName, HeaderValue};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

use crate::config::{CorsOptions, EdgeOptions};
use crate::error::GatewayError;

/// `X-Request-Id`.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the edge layers.
pub fn apply(router: Router, edge: &EdgeOptions, cors: Option<&CorsOptions>) -> Router {
    // One stack, one layer: axum boxes each layer's future per request, so
    // five layers applied one by one cost five allocations and copies.
    let stack = tower::ServiceBuilder::new()
        // Always the same layers: off, no id is made (a client's own is
        // still echoed), which costs a branch, not another layer.
        .layer(SetRequestIdLayer::new(
            REQUEST_ID,
            RandomId {
                on: edge.request_id,
            },
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .option_layer(cors.map(cors_layer))
        .option_layer(
            edge.compression
                .then_some(super::compression::CompressLayer),
        )
        .layer(super::compression::DecompressLayer);
    router.layer(stack)
}

/// Request ids in the UUID v4 form from a fast non-cryptographic generator:
/// they name requests in logs, they guard nothing, and a system random
/// number per request would cost a syscall.
#[derive(Debug, Clone, Copy)]
struct RandomId {
    /// `server.request_id`.
    on: bool,
}

impl MakeRequestId for RandomId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        self.on.then(|| RequestId::new(random_uuid()))
    }
}

fn random_uuid() -> HeaderValue {
    // Version 4, variant 10: the layout RFC 9562 gives random UUIDs.
    let bits = (fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    // Written in place: the header value is the one allocation.
    HeaderValue::from_bytes(&uuid_text(bits)).unwrap_or(HeaderValue::from_static(
        "00000000-0000-4000-8000-000000000000",
    ))
}

/// `bits` as 32 hex digits in 8-4-4-4-12 groups.
fn uuid_text(bits: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'-'; 36];
    let mut nibble = 32;
    for (i, byte) in text.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        nibble -= 1;
        *byte = HEX[((bits >> (nibble * 4)) & 0xf) as usize];
    }
    text
}

/// Refuses a request whose target or headers are over the limits (414, 431).
///
/// # Errors
/// [`GatewayError::UriTooLong`] or [`GatewayError::HeadersTooLarge`].
pub fn check_sizes(parts: &http::request::Parts, edge: &EdgeOptions) -> Result<(), GatewayError> {
    let uri = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri > edge.max_uri_bytes {
        return Err(GatewayError::UriTooLong {
            limit: edge.max_uri_bytes,
        });
    }
    let headers: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > edge.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge {
            limit: edge.max_header_bytes,
        });
    }
    Ok(())
}

fn cors_layer(options: &CorsOptions) -> CorsLayer {
    let origins = match &options.allowed_origins {
        None => AllowOrigin::any(),
        Some(list) => AllowOrigin::list(list.iter().cloned()),
    };
    let mut expose = options.expose_headers.clone();
    // Scripts may read the request id and a deprecated API's notices.
    for always in [
        REQUEST_ID,
        HeaderName::from_static("deprecation"),
        HeaderName::from_static("sunset"),
    ] {
        if !expose.contains(&always) {
            expose.push(always);
        }
    }
    // Browsers' gRPC-Web clients send these and read the status from
    // headers when an answer has no body.
    for grpc_web in [
        HeaderName::from_static("grpc-status"),
        HeaderName::from_static("grpc-message"),
        HeaderName::from_static("grpc-status-details-bin"),
    ] {
        if !expose.contains(&grpc_web) {
            expose.push(grpc_web);
        }
    }
    let mut allow = options.allowed_headers.clone();
    for grpc_web in [
        HeaderName::from_static("x-grpc-web"),
        HeaderName::from_static("x-user-agent"),
        HeaderName::from_static("grpc-timeout"),
    ] {
        if !allow.contains(&grpc_web) {
            allow.push(grpc_web);
        }
    }
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(options.allowed_methods.clone())
        .allow_headers(allow)
        .expose_headers(expose)
        .allow_credentials(options.allow_credentials)
        .max_age(options.max_age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_look_like_random_uuids() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{text}"
        );
        assert!(parts[2].starts_with('4'), "{text}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{text}");
    }

    #[test]
    fn uuid_text_groups_the_hex_digits() {
        for bits in [0, 1, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            let hex = format!("{bits:032x}");
            let expected = format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            );
            assert_eq!(std::str::from_utf8(&uuid_text(bits)).unwrap(), expected);
        }
    }
}
