//! `protocols:`: which client surfaces the main listener serves besides
//! REST/JSON, each over the same route table and policy.

use serde::Deserialize;

/// `protocols:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtocolsSection {
    /// Pass native gRPC calls (`content-type: application/grpc`) of routed
    /// methods through to their backends. Default true.
    pub grpc: Option<bool>,
}

/// The client surfaces that are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolOptions {
    /// Native gRPC passthrough. Default true.
    pub grpc: bool,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        Self { grpc: true }
    }
}

impl From<ProtocolsSection> for ProtocolOptions {
    fn from(raw: ProtocolsSection) -> Self {
        let d = Self::default();
        Self {
            grpc: raw.grpc.unwrap_or(d.grpc),
        }
    }
}
