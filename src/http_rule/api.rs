//! API groups: the reply headers of a deprecated API (RFC 9745 `Deprecation`,
//! RFC 8594 `Sunset`, RFC 8288 `Link`), computed once per group at startup.
//!
//! Which services belong to a group and the prefix they are mounted under
//! come from `config::ApiConfig`; the route table applies them.

use std::time::UNIX_EPOCH;

use http::header::LINK;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Deprecation;

/// `Deprecation` (RFC 9745).
pub const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// `Sunset` (RFC 8594).
pub const SUNSET: HeaderName = HeaderName::from_static("sunset");

/// The headers every reply of a deprecated API carries.
pub fn deprecation_headers(d: &Deprecation) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // RFC 9745: a structured-field Date, `@` and seconds since the epoch.
    let seconds = d
        .since
        .duration_since(UNIX_EPOCH)
        .map(|s| s.as_secs())
        .unwrap_or(0);
    if let Ok(value) = HeaderValue::from_str(&format!("@{seconds}")) {
        headers.insert(DEPRECATION, value);
    }
    if let Some(sunset) = d.sunset {
        // RFC 8594: an HTTP-date (IMF-fixdate).
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(sunset)) {
            headers.insert(SUNSET, value);
        }
    }
    for (link, rel) in [
        (&d.successor, "successor-version"),
        (&d.documentation, "deprecation"),
    ] {
        // Config validation refuses links with characters a header cannot carry.
        if let Some(link) = link
            && let Ok(value) = HeaderValue::from_str(&format!("<{link}>; rel=\"{rel}\""))
        {
            headers.append(LINK, value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn headers_follow_the_rfcs() {
        let d = Deprecation {
            since: UNIX_EPOCH + Duration::from_secs(1_688_169_599),
            sunset: Some(UNIX_EPOCH + Duration::from_secs(1_782_863_999)),
            successor: Some("/openapi/v2.json".into()),
            documentation: Some("https://example.com/migrate".into()),
        };
        let h = deprecation_headers(&d);
        assert_eq!(h["deprecation"], "@1688169599");
        assert_eq!(h["sunset"], "Tue, 30 Jun 2026 23:59:59 GMT");
        let links: Vec<_> = h.get_all("link").iter().collect();
        assert_eq!(
            links,
            [
                "</openapi/v2.json>; rel=\"successor-version\"",
                "<https://example.com/migrate>; rel=\"deprecation\""
            ]
        );
        let bare = deprecation_headers(&Deprecation {
            sunset: None,
            successor: None,
            documentation: None,
            ..d
        });
        assert_eq!(bare.len(), 1, "{bare:?}");
    }
}
