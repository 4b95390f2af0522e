//! `apis:`: groups of services with a path prefix and a lifecycle
//! (deprecation dates and links).

use std::time::SystemTime;

use anyhow::bail;
use serde::Deserialize;

use super::service_pattern::{ServicePattern, service_patterns};

/// `apis[]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Full service names or `package.*` patterns.
    pub services: Vec<String>,
    /// Path prefix the API is mounted under, e.g. `/api`.
    pub prefix: Option<String>,
    /// Marks the API deprecated.
    pub deprecated: Option<DeprecationSection>,
}

/// `apis[].deprecated` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecationSection {
    /// When the API was (or will be) deprecated: `YYYY-MM-DD` or RFC 3339.
    pub since: String,
    /// When it stops answering: `YYYY-MM-DD` or RFC 3339.
    pub sunset: Option<String>,
    /// URL or path of the successor version.
    pub successor: Option<String>,
    /// URL of a page explaining the deprecation.
    pub documentation: Option<String>,
}

/// A group of services sharing a path prefix and a lifecycle.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The services in the group.
    pub services: Vec<ServicePattern>,
    /// Literal path prefix every route of the group is mounted under
    /// (`/api`), without a trailing slash. Default none.
    pub prefix: Option<String>,
    /// Set when the group is deprecated. Default none.
    pub deprecation: Option<Deprecation>,
}

/// A deprecated API's dates and links (RFC 9745, RFC 8594).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// Sent as `Deprecation: @<unix seconds>`.
    pub since: SystemTime,
    /// Sent as `Sunset: <HTTP-date>`, when set.
    pub sunset: Option<SystemTime>,
    /// Sent as `Link: <...>; rel="successor-version"`, when set.
    pub successor: Option<String>,
    /// Sent as `Link: <...>; rel="deprecation"`, when set.
    pub documentation: Option<String>,
}

/// Validates `apis:`, in file order.
pub(super) fn apis(
    raw: Vec<ApiSection>,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Vec<ApiConfig>> {
    let mut out = Vec::new();
    for (i, api) in raw.into_iter().enumerate() {
        let key = format!("apis[{i}]");
        if api.services.is_empty() {
            bail!(err(
                &format!("{key}.services"),
                "list at least one service".into()
            ));
        }
        let services = service_patterns(&api.services, &format!("{key}.services"), err)?;
        let prefix = match api.prefix.as_deref().map(|p| p.trim_end_matches('/')) {
            None | Some("") => None,
            Some(p) => {
                let valid = p.starts_with('/')
                    && p[1..].split('/').all(|seg| {
                        !seg.is_empty()
                            && seg != "."
                            && seg != ".."
                            && seg
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
                    });
                if !valid {
                    bail!(err(
                        &format!("{key}.prefix"),
                        format!("{p:?} must be literal path segments like /api or /shop/api")
                    ));
                }
                Some(p.to_owned())
            }
        };
        let deprecation = match api.deprecated {
            None => None,
            Some(d) => {
                let date = |text: &str, field: &str| {
                    parse_date(text).ok_or_else(|| {
                        err(
                            &format!("{key}.deprecated.{field}"),
                            format!(
                                "{text:?} is not a date like 2027-06-30 or 2027-06-30T00:00:00Z"
                            ),
                        )
                    })
                };
                let since = date(&d.since, "since")?;
                let sunset = d.sunset.as_deref().map(|s| date(s, "sunset")).transpose()?;
                if sunset.is_some_and(|s| s < since) {
                    bail!(err(
                        &format!("{key}.deprecated.sunset"),
                        "comes before `since`".into()
                    ));
                }
                for (field, link) in [
                    ("successor", &d.successor),
                    ("documentation", &d.documentation),
                ] {
                    if let Some(link) = link
                        && (link.contains(['<', '>', '"', ' ']) || link.is_empty())
                    {
                        bail!(err(
                            &format!("{key}.deprecated.{field}"),
                            format!("{link:?} is not a URL or path")
                        ));
                    }
                }
                Some(Deprecation {
                    since,
                    sunset,
                    successor: d.successor,
                    documentation: d.documentation,
                })
            }
        };
        out.push(ApiConfig {
            services,
            prefix,
            deprecation,
        });
    }
    Ok(out)
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339 in UTC.
fn parse_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.len() == 10 {
        humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).ok()
    } else {
        humantime::parse_rfc3339(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_days_or_utc_timestamps() {
        for (text, want) in [
            ("2026-11-01", Some(1_793_491_200)),
            ("2026-11-01T12:00:00Z", Some(1_793_534_400)),
            ("2026-13-01", None),
            ("01.11.2026", None),
            ("", None),
        ] {
            let got = parse_date(text)
                .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
            assert_eq!(got, want, "{text:?}");
        }
    }
}
