//! `mcp:`: the Model Context Protocol endpoint, offering routed methods
//! as tools.

use serde::Deserialize;

use super::service_pattern::{ServicePattern, service_patterns};

/// `mcp:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpSection {
    /// Serve MCP (Streamable HTTP) at `path`. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Where. Default `/mcp`.
    #[schemars(extend("default" = "/mcp"))]
    pub path: Option<String>,
    /// The methods offered as tools, by full name (`package.Service.Method`)
    /// or prefix (`package.Service.*`, `package.*`). Default none.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Most messages a server-streaming tool collects. Default 100.
    #[schemars(extend("default" = 100))]
    pub max_stream_messages: Option<u32>,
}

/// The MCP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpOptions {
    /// Whether it is served. Default false.
    pub enabled: bool,
    /// Its path. Default `/mcp`.
    pub path: String,
    /// Which routed methods are tools: none by default (opt-in).
    pub tools: Vec<ServicePattern>,
    /// Most messages a server-streaming tool collects. Default 100.
    pub max_stream_messages: usize,
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            enabled: false,
            path: "/mcp".to_owned(),
            tools: Vec::new(),
            max_stream_messages: 100,
        }
    }
}

impl McpSection {
    /// Checks the path and the patterns.
    pub(super) fn validate(
        self,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<McpOptions> {
        let d = McpOptions::default();
        let path = self.path.unwrap_or(d.path);
        if !path.starts_with('/') || path.contains(['?', '#', '{', '}']) || path.len() < 2 {
            return Err(err(
                "mcp.path",
                format!("{path:?} must be a path like /mcp"),
            ));
        }
        Ok(McpOptions {
            enabled: self.enabled,
            path,
            tools: service_patterns(&self.tools, "mcp.tools", err)?,
            max_stream_messages: self
                .max_stream_messages
                .map_or(d.max_stream_messages, |n| n.max(1) as usize),
        })
    }
}
