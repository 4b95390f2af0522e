//! Service selectors of `backends.<name>.services` and `apis[].services`.

/// A service selector from `backends.<name>.services`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServicePattern {
    /// A full service name.
    Exact(String),
    /// `pkg.*`: every service in `pkg` and its sub-packages.
    Package(String),
}

impl ServicePattern {
    pub(super) fn parse(s: &str) -> Option<Self> {
        let valid = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        };
        match s.strip_suffix(".*") {
            Some(pkg) if valid(pkg) => Some(Self::Package(pkg.to_owned())),
            None if valid(s) => Some(Self::Exact(s.to_owned())),
            _ => None,
        }
    }

    /// Whether the full service name matches.
    pub fn matches(&self, service: &str) -> bool {
        match self {
            Self::Exact(name) => name == service,
            Self::Package(pkg) => service
                .strip_prefix(pkg.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
        }
    }
}

impl std::fmt::Display for ServicePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(s) => f.write_str(s),
            Self::Package(p) => write!(f, "{p}.*"),
        }
    }
}

/// The patterns of a `services` list; `key` names it in errors.
pub(super) fn service_patterns(
    names: &[String],
    key: &str,
    err: &impl Fn(&str, String) -> anyhow::Error,
) -> anyhow::Result<Vec<ServicePattern>> {
    names
        .iter()
        .map(|s| {
            ServicePattern::parse(s)
                .ok_or_else(|| err(key, format!("{s:?} is not a service name or `package.*`")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_patterns_match() {
        for (pattern, service, want) in [
            ("shop.user.v1.UserService", "shop.user.v1.UserService", true),
            (
                "shop.user.v1.UserService",
                "shop.user.v1.UserServiceX",
                false,
            ),
            ("shop.user.v1.*", "shop.user.v1.UserService", true),
            ("shop.*", "shop.user.v1.UserService", true),
            ("shop.*", "shopping.Cart", false),
        ] {
            let p = ServicePattern::parse(pattern).unwrap();
            assert_eq!(p.matches(service), want, "{pattern} vs {service}");
        }
        for bad in ["", "*", "a..b", "a.*.b", "a b"] {
            assert!(ServicePattern::parse(bad).is_none(), "{bad:?}");
        }
    }
}
