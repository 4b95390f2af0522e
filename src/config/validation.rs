//! `validation:`: which of the schema's rules the gateway enforces before a
//! call reaches the backend, globally and per method.

use serde::Deserialize;

/// A family of rules a proto can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleSet {
    /// `buf.validate` (protovalidate) field, oneof and message rules, CEL included.
    Protovalidate,
    /// protoc-gen-validate's legacy `validate.rules`, enforced as their
    /// protovalidate equivalents.
    Pgv,
    /// `google.api.field_behavior`: `REQUIRED`, `OUTPUT_ONLY`, `IMMUTABLE`.
    FieldBehavior,
}

/// What a client-set `OUTPUT_ONLY` field gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputOnly {
    /// Cleared before the call, as AIP-203 asks of servers.
    #[default]
    Drop,
    /// Refused with `INVALID_ARGUMENT`.
    Reject,
}

/// `validation:` (and `methods.<name>.validation:`) as written.
#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidationSection {
    /// Enforce the rules at all. Default true.
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,
    /// The rule families enforced. Default all three: `protovalidate`,
    /// `pgv` and `field_behavior`.
    #[schemars(extend("default" = ["protovalidate", "pgv", "field_behavior"]))]
    pub rules: Option<Vec<RuleSet>>,
    /// What a client-set `OUTPUT_ONLY` field gets: `drop` (default) or `reject`.
    #[schemars(extend("default" = "drop"))]
    pub output_only: Option<OutputOnly>,
}

/// The validation policy of one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationOptions {
    /// The rules are enforced at all.
    pub enabled: bool,
    /// `buf.validate` rules.
    pub protovalidate: bool,
    /// `validate.rules` (protoc-gen-validate).
    pub pgv: bool,
    /// `google.api.field_behavior`.
    pub field_behavior: bool,
    /// What a client-set `OUTPUT_ONLY` field gets.
    pub output_only: OutputOnly,
}

impl Default for ValidationOptions {
    /// Everything on: the rules a proto declares are its contract, and a
    /// request the backend would refuse is refused without calling it.
    fn default() -> Self {
        Self {
            enabled: true,
            protovalidate: true,
            pgv: true,
            field_behavior: true,
            output_only: OutputOnly::Drop,
        }
    }
}

impl ValidationOptions {
    /// Whether `rules` are enforced.
    pub fn on(&self, rules: RuleSet) -> bool {
        self.enabled
            && match rules {
                RuleSet::Protovalidate => self.protovalidate,
                RuleSet::Pgv => self.pgv,
                RuleSet::FieldBehavior => self.field_behavior,
            }
    }

    /// Whether any rule family is enforced.
    pub fn any(&self) -> bool {
        [RuleSet::Protovalidate, RuleSet::Pgv, RuleSet::FieldBehavior]
            .into_iter()
            .any(|r| self.on(r))
    }

    /// `section` applied over `self`: what it leaves out stays as it was.
    pub fn with(mut self, section: &ValidationSection) -> Self {
        if let Some(rules) = &section.rules {
            self.protovalidate = rules.contains(&RuleSet::Protovalidate);
            self.pgv = rules.contains(&RuleSet::Pgv);
            self.field_behavior = rules.contains(&RuleSet::FieldBehavior);
        }
        if let Some(output_only) = section.output_only {
            self.output_only = output_only;
        }
        if let Some(enabled) = section.enabled {
            self.enabled = enabled;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_apply_over_the_defaults() {
        let parse = |yaml: &str| -> ValidationSection {
            serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
        };
        let all = ValidationOptions::default();
        for (yaml, want) in [
            ("{}", all),
            (
                "enabled: false",
                ValidationOptions {
                    enabled: false,
                    ..all
                },
            ),
            (
                "rules: [field_behavior]",
                ValidationOptions {
                    protovalidate: false,
                    pgv: false,
                    ..all
                },
            ),
            (
                "output_only: reject",
                ValidationOptions {
                    output_only: OutputOnly::Reject,
                    ..all
                },
            ),
        ] {
            assert_eq!(all.with(&parse(yaml)), want, "{yaml}");
        }
        // A method turns back on what the global section turned off, with its rules.
        let off = all.with(&parse("enabled: false"));
        assert!(!off.any() && !off.on(RuleSet::Pgv));
        let method = off.with(&parse("enabled: true"));
        assert!(method.on(RuleSet::Pgv) && method.on(RuleSet::FieldBehavior));
        let narrowed = all.with(&parse("rules: [pgv]"));
        assert!(narrowed.on(RuleSet::Pgv) && !narrowed.on(RuleSet::Protovalidate));
        assert!(!all.with(&parse("rules: []")).any());
    }
}
