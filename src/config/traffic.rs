//! `traffic:`: weighted splits between backends that serve one service.

use http::HeaderName;
use serde::Deserialize;

use super::value::HeaderNameText;

/// `traffic:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficSection {
    /// Request header naming the backend to use among a service's split backends.
    pub override_header: Option<HeaderNameText>,
}

/// Weighted traffic splitting between backends that serve the same service.
#[derive(Debug, Clone, Default)]
pub struct TrafficOptions {
    /// A request header that names one of the split backends to use instead
    /// of a weighted pick. Default none: clients cannot choose.
    pub override_header: Option<HeaderName>,
}

impl From<TrafficSection> for TrafficOptions {
    fn from(t: TrafficSection) -> Self {
        Self {
            override_header: t.override_header.map(Into::into),
        }
    }
}
