//! `server:`: the listener, its limits and timeouts, HTTPS termination and
//! how a stopping gateway drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::value::{NonZeroDuration, Positive};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default cap on a client's `Grpc-Timeout`.
pub const DEFAULT_MAX_GRPC_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time a stopping gateway waits for requests in flight.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// `server:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `host:port` to listen on.
    #[schemars(extend("default" = "127.0.0.1:8080"))]
    pub listen: Option<String>,
    /// Largest `Grpc-Timeout` a client may ask for.
    #[schemars(extend("default" = "5m"))]
    pub max_grpc_timeout: Option<NonZeroDuration>,
    /// How long a stopping gateway keeps accepting connections, answering
    /// `/readyz` with 503, before it closes its listener.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<super::value::DurationText>")]
    #[schemars(extend("default" = "0s"))]
    pub drain_delay: Option<Duration>,
    /// How long a stopping gateway waits for requests and streams in flight.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<super::value::DurationText>")]
    #[schemars(extend("default" = "30s"))]
    pub shutdown_grace: Option<Duration>,
    /// Longest a client may take to send a request's headers.
    #[schemars(extend("default" = "10s"))]
    pub header_read_timeout: Option<NonZeroDuration>,
    /// Longest a connection may stay open without a request in flight.
    #[schemars(extend("default" = "5m"))]
    pub idle_timeout: Option<NonZeroDuration>,
    /// Longest request target (path and query), in bytes.
    #[schemars(extend("default" = 8192))]
    pub max_uri_bytes: Option<Positive<usize>>,
    /// Largest total size of the request headers, in bytes.
    #[schemars(extend("default" = 16384))]
    pub max_header_bytes: Option<Positive<usize>>,
    /// API requests handled at once; more are refused with 503.
    #[schemars(extend("default" = 1024))]
    pub max_concurrent_requests: Option<Positive<usize>>,
    /// Compress responses (gzip, br) for clients that accept it.
    #[schemars(extend("default" = true))]
    pub compression: Option<bool>,
    /// Give every request an `X-Request-Id` (the client's, or a new UUID),
    /// echoed on the answer and sent to the backend. Default true.
    #[schemars(extend("default" = true))]
    pub request_id: Option<bool>,
    /// HTTPS termination.
    pub tls: Option<ServerTlsSection>,
}

/// `server.tls:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSection {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: whether clients may connect without a certificate.
    #[schemars(extend("default" = false))]
    pub client_cert_optional: Option<bool>,
}

/// Limits and protocol handling applied to every request.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Longest a client may take to send a request's headers, so slow
    /// clients (slowloris) cannot hold connections. Default 10s.
    pub header_read_timeout: Duration,
    /// Longest a connection (HTTP/1 keep-alive or HTTP/2) stays open with no
    /// request in flight; then it is closed gracefully. Default 5m.
    pub idle_timeout: Duration,
    /// Longest request target (path and query); 414 above it. Default 8 KiB.
    pub max_uri_bytes: usize,
    /// Largest total size of request header names and values; 431 above it.
    /// Default 16 KiB.
    pub max_header_bytes: usize,
    /// API requests handled at once; more get 503 with `Retry-After` at once
    /// instead of queueing. Gateway endpoints (health, docs) are not
    /// counted. Default 1024.
    pub max_concurrent_requests: usize,
    /// Compress responses with gzip or br when the client accepts it
    /// (streams excepted: compression would hold messages back). Default true.
    pub compression: bool,
    /// `X-Request-Id` on every request: kept or made, echoed, forwarded.
    /// Default true.
    pub request_id: bool,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_concurrent_requests: 1024,
            compression: true,
            request_id: true,
        }
    }
}

/// HTTPS on the listener. Read at startup (like the listen address); the
/// files it names are reloaded when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// CA certificates for client certificates; set, clients must present
    /// one it signed (mutual TLS). Default none.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`, clients without a certificate are let in too.
    /// The certificate is not passed to the auth rules. Default false.
    pub client_cert_optional: bool,
}

impl ServerSection {
    /// `listen`, or [`DEFAULT_LISTEN`].
    pub(super) fn listen(
        &self,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<SocketAddr> {
        let text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        text.parse()
            .map_err(|e| err("server.listen", format!("{text:?} is not host:port ({e})")))
    }

    /// The edge limits, defaults filled in.
    pub(super) fn edge(&self) -> EdgeOptions {
        let d = EdgeOptions::default();
        EdgeOptions {
            header_read_timeout: self
                .header_read_timeout
                .map_or(d.header_read_timeout, NonZeroDuration::get),
            idle_timeout: self
                .idle_timeout
                .map_or(d.idle_timeout, NonZeroDuration::get),
            max_uri_bytes: self.max_uri_bytes.map_or(d.max_uri_bytes, Positive::get),
            max_header_bytes: self
                .max_header_bytes
                .map_or(d.max_header_bytes, Positive::get),
            max_concurrent_requests: self
                .max_concurrent_requests
                .map_or(d.max_concurrent_requests, Positive::get),
            compression: self.compression.unwrap_or(d.compression),
            request_id: self.request_id.unwrap_or(d.request_id),
        }
    }
}

impl ServerTlsSection {
    /// The listener's TLS, paths anchored. The files are read at startup
    /// and by `protogate check`, not here: a reload does not change the
    /// listener, and must not fail because a certificate rotation is half
    /// done.
    pub(super) fn validate(
        self,
        anchor: &impl Fn(&PathBuf) -> PathBuf,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<ServerTls> {
        if self.client_cert_optional.is_some() && self.client_ca.is_none() {
            bail!(err(
                "server.tls.client_cert_optional",
                "needs `client_ca`".into()
            ));
        }
        Ok(ServerTls {
            cert: anchor(&self.cert),
            key: anchor(&self.key),
            client_ca: self.client_ca.as_ref().map(anchor),
            client_cert_optional: self.client_cert_optional.unwrap_or(false),
        })
    }
}
