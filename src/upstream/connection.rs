//! How the gateway connects to one backend address: the tonic endpoint
//! (connect timeout, and for `https://` TLS verified against the configured
//! host) and the long-lived, lazily connecting channel an
//! [`Endpoint`](super::Endpoint) keeps.
//!
//! It does not find addresses (DNS is [`super::resolve`]'s) nor decide
//! whether an address takes calls ([`super::health`], [`super::breaker`]).

use std::time::Duration;

use http::Uri;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use crate::config::BackendConfig;

/// How to connect to `uri` (an address of `origin`): its connect timeout
/// and, for `https://`, TLS verified against `origin`'s host (or the
/// configured server name), so resolved IPs still check the right name.
pub fn connection(uri: Uri, origin: &Uri, config: &BackendConfig) -> TonicEndpoint {
    let endpoint = TonicEndpoint::from(uri)
        .origin(origin.clone())
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true);
    let Some(tls) = &config.tls else {
        return endpoint;
    };
    let host = origin.host().unwrap_or_default();
    // The host without IPv6 brackets, as certificates name it.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let settings = crate::tls::client_config(tls, host).timeout(config.connect_timeout);
    match endpoint.clone().tls_config(settings) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            // Every call then fails as unreachable, with this in the log.
            tracing::error!(backend = %config.name, error = %e, "cannot set up TLS to the backend");
            endpoint
        }
    }
}

/// A lazily connecting channel to `uri`, [`connection`]'s settings plus
/// HTTP/2 keep-alive pings (also while idle), so a dead peer is noticed
/// before a call waits on it.
pub fn channel(uri: Uri, origin: &Uri, config: &BackendConfig) -> Channel {
    connection(uri, origin, config)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy()
}
