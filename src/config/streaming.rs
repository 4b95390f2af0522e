//! `streaming:`: server, client and bidirectional streams over HTTP.

use std::time::Duration;

use serde::Deserialize;

use super::value::NonZeroDuration;

/// `streaming:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamingSection {
    /// Framing for `Accept: */*` or no `Accept`.
    #[schemars(extend("default" = "ndjson"))]
    pub default_framing: Option<Framing>,
    /// Longest a stream may stay open.
    #[schemars(extend("default" = "1h"))]
    pub max_duration: Option<NonZeroDuration>,
    /// Longest a stream may go without a message either way.
    #[schemars(extend("default" = "5m"))]
    pub idle_timeout: Option<NonZeroDuration>,
    /// Origins (`https://app.example.com`) whose pages may open WebSockets,
    /// besides the gateway's own.
    #[serde(default)]
    pub websocket_origins: Vec<String>,
}

/// How a server stream is written when the client's `Accept` allows any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `application/x-ndjson`: one JSON message per line.
    #[default]
    Ndjson,
    /// `text/event-stream`: Server-Sent Events.
    Sse,
    /// `application/json`: one JSON array, written as messages arrive.
    Json,
}

/// Streaming methods over HTTP.
#[derive(Debug, Clone)]
pub struct StreamingOptions {
    /// Framing of a server stream when `Accept` allows any. Default NDJSON.
    pub default_framing: Framing,
    /// Longest a stream may stay open; sent to the backend as its deadline.
    /// Default 1h.
    pub max_duration: Duration,
    /// Longest a stream may go without a message from the backend (or, on
    /// a client stream, from the client). Default 5m.
    pub idle_timeout: Duration,
    /// Origins besides the gateway's own whose pages may open WebSockets,
    /// lower-cased, without a trailing slash. Default none: a browser page
    /// of another site cannot use a visitor's cookies to open a stream.
    pub websocket_origins: Vec<String>,
}

impl Default for StreamingOptions {
    fn default() -> Self {
        Self {
            default_framing: Framing::default(),
            max_duration: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(300),
            websocket_origins: Vec::new(),
        }
    }
}

impl From<StreamingSection> for StreamingOptions {
    fn from(s: StreamingSection) -> Self {
        let d = Self::default();
        Self {
            default_framing: s.default_framing.unwrap_or(d.default_framing),
            max_duration: s.max_duration.map_or(d.max_duration, NonZeroDuration::get),
            idle_timeout: s.idle_timeout.map_or(d.idle_timeout, NonZeroDuration::get),
            websocket_origins: s
                .websocket_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }
}
