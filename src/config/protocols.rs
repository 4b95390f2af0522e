//! `protocols:`: which client surfaces the main listener serves besides
//! REST/JSON, each over the same route table and policy.

use serde::Deserialize;

/// `protocols:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtocolsSection {
    /// Pass native gRPC calls (`content-type: application/grpc`) of routed
    /// methods through to their backends. Default true.
    #[schemars(extend("default" = true))]
    pub grpc: Option<bool>,
    /// Answer gRPC-Web calls (`application/grpc-web`, `-web-text`) of
    /// routed methods, from browsers. Default true.
    #[schemars(extend("default" = true))]
    pub grpc_web: Option<bool>,
    /// Answer Connect calls (unary POST and GET, `application/connect+proto`
    /// streams) of routed methods. Default true.
    #[schemars(extend("default" = true))]
    pub connect: Option<bool>,
}

/// The client surfaces that are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolOptions {
    /// Native gRPC passthrough. Default true.
    pub grpc: bool,
    /// gRPC-Web. Default true.
    pub grpc_web: bool,
    /// The Connect protocol. Default true.
    pub connect: bool,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        Self {
            grpc: true,
            grpc_web: true,
            connect: true,
        }
    }
}

impl From<ProtocolsSection> for ProtocolOptions {
    fn from(raw: ProtocolsSection) -> Self {
        let d = Self::default();
        Self {
            grpc: raw.grpc.unwrap_or(d.grpc),
            grpc_web: raw.grpc_web.unwrap_or(d.grpc_web),
            connect: raw.connect.unwrap_or(d.connect),
        }
    }
}
