//! End-to-end tests: the real example backends (tonic, on ephemeral
//! loopback ports) behind the real gateway, called in process (its router,
//! `oneshot`) unless a socket decides what is tested (TLS, HTTP/2,
//! connections, slow clients, streams, WebSockets, shutdown, the binary),
//! then over HTTP.

mod node;
mod probe;
mod protobuf_bodies;
mod python;
mod servers;
mod support;

mod admin;
mod auth;
mod balancing;
mod bindings;
mod cli;
mod connect;
mod conventions;
mod deadlines;
mod descriptor_set;
mod discovery;
mod edge;
mod errors;
mod grpc;
mod grpc_web;
mod mcp;
mod metadata;
mod openapi;
mod readme;
mod reflection_server;
mod reload;
mod replicas;
mod schema;
mod shared_limits;
mod shutdown;
mod streaming;
mod surfaces;
mod tls;
mod tracing;
mod transcoding;
mod validation;
mod versions;
