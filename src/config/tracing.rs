//! `tracing:`: OpenTelemetry spans exported over OTLP.

use http::Uri;
use serde::Deserialize;

use super::value::Ratio;

/// `tracing:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// OTLP/gRPC collector, `http://host:4317`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[schemars(extend("default" = "protogate"))]
    pub service_name: Option<String>,
    /// Share of new traces sampled (a client's sampling decision is kept).
    #[schemars(extend("default" = 1.0))]
    pub sample_ratio: Option<Ratio>,
}

/// OpenTelemetry span export.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingOptions {
    /// OTLP/gRPC collector. Default none: no spans are exported, and W3C
    /// trace context is forwarded to backends unchanged.
    pub otlp_endpoint: Option<String>,
    /// `service.name`. Default `protogate`.
    pub service_name: String,
    /// Share of new traces sampled; requests that carry a `traceparent`
    /// follow its sampled flag. Default 1.
    pub sample_ratio: f64,
}

impl Default for TracingOptions {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "protogate".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

impl TracingSection {
    pub(super) fn validate(
        self,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<TracingOptions> {
        let d = TracingOptions::default();
        if let Some(endpoint) = &self.otlp_endpoint {
            let valid = endpoint
                .parse::<Uri>()
                .is_ok_and(|uri| uri.scheme_str() == Some("http") && uri.authority().is_some());
            if !valid {
                return Err(err(
                    "tracing.otlp_endpoint",
                    format!("{endpoint:?} must look like http://host:4317"),
                ));
            }
        }
        Ok(TracingOptions {
            otlp_endpoint: self.otlp_endpoint,
            service_name: self.service_name.unwrap_or(d.service_name),
            sample_ratio: self.sample_ratio.map_or(d.sample_ratio, Ratio::get),
        })
    }
}
