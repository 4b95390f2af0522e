//! protogate: a REST/JSON edge gateway for gRPC services, driven by
//! descriptors loaded at run time (no code generation).
//!
//! The data path, one module per step: [`server`] (HTTP in) →
//! [`http_rule`] (route match) → [`transcode`] (message building) →
//! [`upstream`] (gRPC call) → [`transcode`] (JSON out), with failures
//! rendered by [`error`]. [`config`] and [`descriptor`] run once at startup
//! and feed [`gateway::Gateway`].

pub mod auth;
mod cause;
pub mod cli;
pub mod config;
pub mod descriptor;
pub mod error;
pub mod gateway;
pub mod http_rule;
pub mod metrics;
pub mod openapi;
pub mod plan;
pub mod rate_limit;
pub mod schema;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod transcode;
pub mod upstream;
pub mod validate;
mod watch;

pub use gateway::Gateway;

/// The router for a loaded gateway, for tests and embedding; its
/// `/readyz` never reports a shutdown.
pub fn app(gateway: Gateway) -> axum::Router {
    server::router::router(gateway, server::Shared::default())
}
