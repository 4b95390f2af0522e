//! The `google.api.http` method option, read from descriptors at run time.
//!
//! The message types mirror `google/api/http.proto` field for field so the
//! option can be transcoded out of prost-reflect's dynamic `MethodOptions`
//! without generated code. Turning bindings into routes is `route_table`'s job.

use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

use crate::config::HttpRuleSection;

/// The extension's full name.
pub const HTTP_EXTENSION: &str = "google.api.http";

/// `google.api.HttpRule`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRule {
    /// Selects methods to which this rule applies (service config only).
    #[prost(string, tag = "1")]
    pub selector: String,
    /// The request field mapped to the HTTP body, `*`, or empty for none.
    #[prost(string, tag = "7")]
    pub body: String,
    /// The response field used as the HTTP body, or empty for the whole message.
    #[prost(string, tag = "12")]
    pub response_body: String,
    /// Further bindings for the same method.
    #[prost(message, repeated, tag = "11")]
    pub additional_bindings: Vec<HttpRule>,
    /// The HTTP method and path template.
    #[prost(oneof = "Pattern", tags = "2, 3, 4, 5, 6, 8")]
    pub pattern: Option<Pattern>,
}

/// `google.api.HttpRule.pattern`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Pattern {
    /// `GET`.
    #[prost(string, tag = "2")]
    Get(String),
    /// `PUT`.
    #[prost(string, tag = "3")]
    Put(String),
    /// `POST`.
    #[prost(string, tag = "4")]
    Post(String),
    /// `DELETE`.
    #[prost(string, tag = "5")]
    Delete(String),
    /// `PATCH`.
    #[prost(string, tag = "6")]
    Patch(String),
    /// Any other method, or `*` for all.
    #[prost(message, tag = "8")]
    Custom(CustomHttpPattern),
}

/// `google.api.CustomHttpPattern`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CustomHttpPattern {
    /// The HTTP method name, or `*`.
    #[prost(string, tag = "1")]
    pub kind: String,
    /// The path template.
    #[prost(string, tag = "2")]
    pub path: String,
}

/// One HTTP binding of a method: the top-level rule or one of its `additional_bindings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Upper-case method name, or `*` for any method.
    pub http_method: String,
    /// The path template source.
    pub path: String,
    /// `body` as written.
    pub body: String,
    /// `response_body` as written.
    pub response_body: String,
    /// 0 for the main rule, then 1.. for additional bindings.
    pub index: usize,
}

/// Problems with a rule itself (templates and fields are checked by the route table).
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A rule without a pattern.
    #[error("binding {index} has no HTTP method and path")]
    MissingPattern {
        /// Index of the binding (0 for the main rule).
        index: usize,
    },
    /// `additional_bindings` nested inside an additional binding.
    #[error("additional binding {index} has additional_bindings of its own")]
    NestedAdditionalBindings {
        /// Index of the additional binding.
        index: usize,
    },
    /// A custom pattern with an empty kind.
    #[error("binding {index} has a custom pattern with an empty kind")]
    EmptyCustomKind {
        /// Index of the binding (0 for the main rule).
        index: usize,
    },
    /// A configured rule names more than one HTTP method.
    #[error("binding {index} sets more than one of get, put, post, delete, patch and custom")]
    TwoPatterns {
        /// Index of the binding (0 for the main rule).
        index: usize,
    },
    /// The option could not be read.
    #[error("cannot read the google.api.http option: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Reads the `google.api.http` option of `method`, if the pool knows the extension and the method has it.
///
/// # Errors
/// [`RuleError::Decode`] when the option bytes do not decode as an `HttpRule`.
pub fn method_rule(
    pool: &DescriptorPool,
    method: &MethodDescriptor,
) -> Result<Option<HttpRule>, RuleError> {
    let Some(ext) = pool.get_extension_by_name(HTTP_EXTENSION) else {
        return Ok(None);
    };
    let options = method.options();
    if !options.has_extension(&ext) {
        return Ok(None);
    }
    match options.get_extension(&ext).as_ref() {
        Value::Message(msg) => Ok(Some(msg.transcode_to::<HttpRule>()?)),
        _ => Ok(None),
    }
}

impl HttpRule {
    /// Converts a rule from `gateway.yaml`'s `http.rules`.
    ///
    /// # Errors
    /// [`RuleError::TwoPatterns`] when a binding names two HTTP methods.
    pub fn from_config(section: &HttpRuleSection) -> Result<Self, RuleError> {
        Self::from_section(section, 0)
    }

    fn from_section(section: &HttpRuleSection, index: usize) -> Result<Self, RuleError> {
        let mut patterns = [
            section.get.clone().map(Pattern::Get),
            section.put.clone().map(Pattern::Put),
            section.post.clone().map(Pattern::Post),
            section.delete.clone().map(Pattern::Delete),
            section.patch.clone().map(Pattern::Patch),
            section.custom.as_ref().map(|c| {
                Pattern::Custom(CustomHttpPattern {
                    kind: c.kind.clone(),
                    path: c.path.clone(),
                })
            }),
        ]
        .into_iter()
        .flatten();
        let pattern = patterns.next();
        if patterns.next().is_some() {
            return Err(RuleError::TwoPatterns { index });
        }
        Ok(Self {
            selector: section.selector.clone(),
            body: section.body.clone(),
            response_body: section.response_body.clone(),
            additional_bindings: section
                .additional_bindings
                .iter()
                .enumerate()
                .map(|(i, extra)| Self::from_section(extra, index + i + 1))
                .collect::<Result<_, _>>()?,
            pattern,
        })
    }

    /// Flattens the rule and its additional bindings, each checked on its
    /// own so that one malformed binding does not hide the others.
    ///
    /// Each entry is a [`RuleError`] for a binding without a pattern, with an
    /// empty custom kind or with nested additional bindings.
    pub fn bindings(&self) -> Vec<Result<Binding, RuleError>> {
        let mut out = vec![binding(self, 0)];
        for (i, extra) in self.additional_bindings.iter().enumerate() {
            let index = i + 1;
            out.push(if extra.additional_bindings.is_empty() {
                binding(extra, index)
            } else {
                Err(RuleError::NestedAdditionalBindings { index })
            });
        }
        out
    }
}

impl Binding {
    /// `POST /package.Service/Method` with the whole request message as the
    /// body: the route of a method without a rule when `fallback_routes` is on.
    pub fn fallback(method: &MethodDescriptor) -> Self {
        Self {
            http_method: "POST".to_owned(),
            path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
            body: "*".to_owned(),
            response_body: String::new(),
            index: 0,
        }
    }
}

fn binding(rule: &HttpRule, index: usize) -> Result<Binding, RuleError> {
    let (http_method, path) = match &rule.pattern {
        None => return Err(RuleError::MissingPattern { index }),
        Some(Pattern::Get(p)) => ("GET".to_owned(), p.clone()),
        Some(Pattern::Put(p)) => ("PUT".to_owned(), p.clone()),
        Some(Pattern::Post(p)) => ("POST".to_owned(), p.clone()),
        Some(Pattern::Delete(p)) => ("DELETE".to_owned(), p.clone()),
        Some(Pattern::Patch(p)) => ("PATCH".to_owned(), p.clone()),
        Some(Pattern::Custom(c)) => {
            if c.kind.trim().is_empty() {
                return Err(RuleError::EmptyCustomKind { index });
            }
            (c.kind.to_ascii_uppercase(), c.path.clone())
        }
    };
    Ok(Binding {
        http_method,
        path,
        body: rule.body.clone(),
        response_body: rule.response_body.clone(),
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_additional_bindings() {
        let rule = HttpRule {
            pattern: Some(Pattern::Get("/v1/a/{id}".into())),
            response_body: "item".into(),
            additional_bindings: vec![
                HttpRule {
                    pattern: Some(Pattern::Post("/v1/a".into())),
                    body: "*".into(),
                    ..Default::default()
                },
                HttpRule {
                    pattern: Some(Pattern::Custom(CustomHttpPattern {
                        kind: "head".into(),
                        path: "/v1/a/{id}".into(),
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let got: Vec<_> = rule
            .bindings()
            .into_iter()
            .map(|b| b.unwrap())
            .map(|b| (b.http_method, b.path, b.body, b.response_body, b.index))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "GET".into(),
                    "/v1/a/{id}".into(),
                    "".into(),
                    "item".into(),
                    0
                ),
                ("POST".into(), "/v1/a".into(), "*".into(), "".into(), 1),
                ("HEAD".into(), "/v1/a/{id}".into(), "".into(), "".into(), 2),
            ]
        );
    }

    #[test]
    fn rejects_bindings_without_pattern_or_with_nested_bindings_one_by_one() {
        let no_pattern = HttpRule::default();
        assert!(matches!(
            no_pattern.bindings().as_slice(),
            [Err(RuleError::MissingPattern { index: 0 })]
        ));
        let nested = HttpRule {
            pattern: Some(Pattern::Get("/a".into())),
            additional_bindings: vec![
                HttpRule {
                    pattern: Some(Pattern::Get("/b".into())),
                    additional_bindings: vec![HttpRule::default()],
                    ..Default::default()
                },
                HttpRule::default(),
                HttpRule {
                    pattern: Some(Pattern::Get("/c".into())),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        // The good bindings around the bad ones are still there.
        assert!(matches!(
            nested.bindings().as_slice(),
            [
                Ok(Binding { index: 0, .. }),
                Err(RuleError::NestedAdditionalBindings { index: 1 }),
                Err(RuleError::MissingPattern { index: 2 }),
                Ok(Binding { index: 3, .. }),
            ]
        ));
    }
}
