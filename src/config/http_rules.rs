//! `http:`: HTTP rules given in config, like a service config's
//! `http.rules`; they replace a method's `google.api.http` annotation.

use anyhow::bail;
use serde::Deserialize;

/// `http:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Rules by selector; they replace a method's `google.api.http` annotation.
    #[serde(default)]
    pub rules: Vec<HttpRuleSection>,
}

/// `http.rules[]`, mirroring `google.api.HttpRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRuleSection {
    /// `package.Service.Method` (only in top-level rules).
    #[serde(default)]
    pub selector: String,
    /// `GET` template.
    pub get: Option<String>,
    /// `PUT` template.
    pub put: Option<String>,
    /// `POST` template.
    pub post: Option<String>,
    /// `DELETE` template.
    pub delete: Option<String>,
    /// `PATCH` template.
    pub patch: Option<String>,
    /// Any other method.
    pub custom: Option<CustomPatternSection>,
    /// Request field bound to the body, `*`, or none.
    #[serde(default)]
    pub body: String,
    /// Response field used as the body.
    #[serde(default)]
    pub response_body: String,
    /// Further bindings.
    #[serde(default)]
    pub additional_bindings: Vec<HttpRuleSection>,
}

/// `custom: { kind, path }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomPatternSection {
    /// HTTP method name, or `*`.
    pub kind: String,
    /// Path template.
    pub path: String,
}

/// Validates `http.rules`: selectors of the right form, one rule each.
pub(super) fn http_rules(
    raw: HttpSection,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Vec<HttpRuleSection>> {
    let mut seen = std::collections::HashSet::new();
    for (i, rule) in raw.rules.iter().enumerate() {
        let key = format!("http.rules[{i}].selector");
        let valid = rule.selector.split('.').count() >= 2
            && rule
                .selector
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            bail!(err(
                &key,
                format!(
                    "{:?} is not a method name like package.Service.Method",
                    rule.selector
                )
            ));
        }
        if !seen.insert(rule.selector.clone()) {
            bail!(err(&key, format!("{} has two rules", rule.selector)));
        }
    }
    Ok(raw.rules)
}
