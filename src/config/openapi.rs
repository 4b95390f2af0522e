//! `openapi:`: the generated OpenAPI document and the docs UI.

use serde::Deserialize;

/// `openapi:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenApiSection {
    /// Serve `/openapi.json`, `/openapi.yaml` and `/docs`.
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,
    /// `info.title`.
    #[schemars(extend("default" = "protogate"))]
    pub title: Option<String>,
    /// `info.version`.
    #[schemars(extend("default" = "1.0.0"))]
    pub version: Option<String>,
    /// `info.description`.
    pub description: Option<String>,
    /// `servers[].url`; none means the page's own origin.
    #[serde(default)]
    pub servers: Vec<String>,
}

/// OpenAPI document options.
#[derive(Debug, Clone)]
pub struct OpenApiOptions {
    /// Serve `/openapi.json`, `/openapi.yaml` and `/docs`. Default true.
    pub enabled: bool,
    /// `info.title`. Default "protogate".
    pub title: String,
    /// `info.version`. Default "1.0.0".
    pub version: String,
    /// `info.description`. Default none.
    pub description: Option<String>,
    /// `servers[].url`. Default none: clients use the page's own origin.
    pub servers: Vec<String>,
}

impl Default for OpenApiOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            title: "protogate".to_owned(),
            version: "1.0.0".to_owned(),
            description: None,
            servers: Vec::new(),
        }
    }
}

impl OpenApiSection {
    pub(super) fn validate(
        self,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<OpenApiOptions> {
        let d = OpenApiOptions::default();
        for (i, server) in self.servers.iter().enumerate() {
            if !(server.starts_with('/')
                || server.starts_with("http://")
                || server.starts_with("https://"))
            {
                return Err(err(
                    &format!("openapi.servers[{i}]"),
                    format!("{server:?} must be an http(s) URL or a path starting with '/'"),
                ));
            }
        }
        Ok(OpenApiOptions {
            enabled: self.enabled.unwrap_or(d.enabled),
            title: self.title.unwrap_or(d.title),
            version: self.version.unwrap_or(d.version),
            description: self.description,
            servers: self.servers,
        })
    }
}
