//! Response compression and request decompression that cost nothing when
//! a request does not use them.
//!
//! tower-http's compressing and decompressing bodies hold every codec's state
//! inline (several kilobytes), so wrapping every request and response in them
//! costs two large allocations and copies per call, compressed or not. Here a
//! request gets the decompressing body only when it sends
//! `Content-Encoding`, and its response the compressing one only when it
//! accepts gzip or br (not for `Accept-Encoding: identity`, which some
//! clients send on every request); everything else goes straight to the inner
//! service. A response that would have been compressed still says
//! `Vary: Accept-Encoding`, as tower-http's does, so caches keep variants apart.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::TryFutureExt;
use futures_util::future::{Either, MapOk};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, VARY};
use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};
use tower_http::compression::predicate::Predicate;
use tower_http::compression::{Compression, CompressionBody, CompressionLayer};
use tower_http::decompression::{
    DecompressionBody, RequestDecompression, RequestDecompressionLayer,
};

type BoxBody = tower_http::body::UnsyncBoxBody<bytes::Bytes, tower::BoxError>;

/// What is compressed: tower-http's defaults (bodies of 32 bytes or more,
/// or of unknown size; not gRPC except gRPC-Web, not images except SVG, not
/// SSE), and also not NDJSON, and not streams, which mark themselves with
/// `X-Accel-Buffering: no`: compressing would hold messages back. One
/// pass over the headers, as it runs for every answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compressible;

impl Predicate for Compressible {
    fn should_compress<B: hyper::body::Body>(&self, response: &Response<B>) -> bool {
        let headers = response.headers();
        let size = response.body().size_hint().exact().or_else(|| {
            headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        });
        if size.is_some_and(|n| n < 32) || headers.contains_key("x-accel-buffering") {
            return false;
        }
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .map(http::HeaderValue::as_bytes)
            .unwrap_or_default();
        let refused = |prefix: &[u8], except: &[u8]| {
            content_type.starts_with(prefix)
                && (except.is_empty() || !content_type.starts_with(except))
        };
        !(refused(b"application/grpc", b"application/grpc-web")
            || refused(b"image/", b"image/svg+xml")
            || refused(b"text/event-stream", b"")
            || refused(b"application/x-ndjson", b""))
    }
}

/// Whether the request accepts an encoding the gateway compresses with
/// (gzip, br, or `*`) at a non-zero quality. `Accept-Encoding: identity`,
/// which some clients send on every request, or `gzip;q=0` does not:
/// those answers go out as they are, without the compressing body.
fn accepts_compression(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|item| {
            let mut parts = item.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let known = [&b"gzip"[..], b"x-gzip", b"br", b"*"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c));
            known && parts.all(|param| !is_zero_quality(param.trim_ascii()))
        })
}

/// `q=0`, `q=0.0`, `q=0.000` (RFC 9110 section 12.4.2): not acceptable.
fn is_zero_quality(param: &[u8]) -> bool {
    let Some(value) = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))
    else {
        return false;
    };
    let value = value.trim_ascii();
    match value.split_first() {
        Some((b'0', rest)) => {
            rest.is_empty() || (rest[0] == b'.' && rest[1..].iter().all(|&b| b == b'0'))
        }
        _ => false,
    }
}

/// Decompresses gzip and br request bodies as they are read, for requests
/// that say they are encoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecompressLayer;

impl<S> Layer<S> for DecompressLayer {
    type Service = Decompress<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Decompress {
            inner,
            layer: RequestDecompressionLayer::new().gzip(true).br(true),
        }
    }
}

/// See [`DecompressLayer`].
#[derive(Debug, Clone)]
pub struct Decompress<S> {
    inner: S,
    layer: RequestDecompressionLayer,
}

/// Takes the service that was polled ready and leaves a clone, for a call
/// through a layer made for this one request.
fn take_ready<S: Clone>(slot: &mut S) -> S {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}

type Unboxed = fn(Response<BoxBody>) -> Response<Body>;

impl<S> Service<Request<Body>> for Decompress<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Service<Request<DecompressionBody<Body>>, Response = Response<Body>, Error = Infallible>
        + Clone,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<
        <S as Service<Request<Body>>>::Future,
        MapOk<<RequestDecompression<S> as Service<Request<Body>>>::Future, Unboxed>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <S as Service<Request<Body>>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !request.headers().contains_key(CONTENT_ENCODING) {
            return Either::Left(self.inner.call(request));
        }
        Either::Right(
            self.layer
                .layer(take_ready(&mut self.inner))
                .call(request)
                .map_ok((|r: Response<BoxBody>| r.map(Body::new)) as Unboxed),
        )
    }
}

/// Compresses (gzip, br) the responses of requests that accept it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompressLayer;

impl<S> Layer<S> for CompressLayer {
    type Service = Compress<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compress {
            inner,
            layer: CompressionLayer::new()
                .gzip(true)
                .br(true)
                .compress_when(Compressible),
        }
    }
}

/// See [`CompressLayer`].
#[derive(Debug, Clone)]
pub struct Compress<S> {
    inner: S,
    layer: CompressionLayer<Compressible>,
}

type Boxed = fn(Response<CompressionBody<Body>>) -> Response<Body>;
type Varied = fn(Response<Body>) -> Response<Body>;

/// An uncompressed answer that a client accepting an encoding would have
/// had compressed says so, as the compressed one does.
fn vary(mut response: Response<Body>) -> Response<Body> {
    if Compressible.should_compress(&response)
        && !response.headers().get_all(VARY).iter().any(|v| {
            v.as_bytes()
                .windows(ACCEPT_ENCODING.as_str().len())
                .any(|w| w.eq_ignore_ascii_case(ACCEPT_ENCODING.as_str().as_bytes()))
        })
    {
        response
            .headers_mut()
            .append(VARY, http::HeaderValue::from_static("accept-encoding"));
    }
    response
}

impl<S> Service<Request<Body>> for Compress<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<
        MapOk<S::Future, Varied>,
        MapOk<<Compression<S, Compressible> as Service<Request<Body>>>::Future, Boxed>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !accepts_compression(request.headers()) {
            return Either::Left(self.inner.call(request).map_ok(vary as Varied));
        }
        Either::Right(
            self.layer
                .layer(take_ready(&mut self.inner))
                .call(request)
                .map_ok((|r: Response<CompressionBody<Body>>| r.map(Body::new)) as Boxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_asks_for_compression_only_with_a_usable_coding() {
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&[""], false),
            (&["identity"], false),
            (&["identity;q=1"], false),
            (&["deflate"], false),
            (&["zstd, deflate"], false),
            (&["gzip"], true),
            (&["GZip"], true),
            (&["x-gzip"], true),
            (&["br"], true),
            (&["*"], true),
            (&["gzip, deflate, br"], true),
            (&["identity", "br"], true),
            (&["gzip;q=0"], false),
            (&["gzip; q=0.000, br;q=0"], false),
            (&["gzip;q=0.5"], true),
            (&["gzip;q=0.001"], true),
            (&["gzip;Q=0"], false),
            (&["gzip;q=1.0"], true),
            (&["*;q=0, identity"], false),
            (&["deflate, gzip;q=0, br;q=0.1"], true),
        ];
        for (values, expected) in cases {
            let mut headers = HeaderMap::new();
            for v in *values {
                headers.append(ACCEPT_ENCODING, http::HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(
                accepts_compression(&headers),
                *expected,
                "Accept-Encoding: {values:?}"
            );
        }
    }
}
