//! The backends one route calls and how its traffic splits among them,
//! resolved once when the gateway is built: each target holds its
//! backend's handle, so a request picks one without any lookup.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName};

use super::backend::Backend;

/// One backend a route may call.
#[derive(Debug, Clone)]
pub struct Target {
    /// The backend's endpoints and their state.
    pub backend: Arc<Backend>,
    /// The backend's name, for metrics, logs and the override header;
    /// shared, so a call that keeps it (a stream's metrics) copies no text.
    pub name: Arc<str>,
    /// Share of the route's traffic (1 when it is the only backend).
    pub weight: u32,
    /// Default deadline: the method's, else the backend's.
    pub timeout: Duration,
    /// Largest reply message accepted from the backend.
    pub max_response_bytes: usize,
}

/// A route's backends: one, or several sharing its traffic by weight.
#[derive(Debug, Clone)]
pub struct Split {
    targets: Vec<Target>,
    total_weight: u32,
    /// `traffic.override_header`: lets a client pick a backend by name.
    override_header: Option<HeaderName>,
}

/// The override header names no backend of the route. The message names
/// only the header: backend names are not for clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{header} names no backend of this route")]
pub struct UnknownBackend {
    /// The override header's name.
    pub header: String,
}

impl Split {
    /// A split over `targets`, of which there is at least one.
    pub fn new(targets: Vec<Target>, override_header: Option<HeaderName>) -> Option<Self> {
        if targets.is_empty() {
            return None;
        }
        let total_weight = targets.iter().map(|t| t.weight).sum();
        Some(Self {
            targets,
            total_weight,
            override_header,
        })
    }

    /// The targets, in config order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Chooses the backend for a call: the one the override header names,
    /// else a weighted pick; a pick that cannot take calls gives way to a
    /// backend of the split that can.
    ///
    /// # Errors
    /// [`UnknownBackend`] when the override header names a backend the
    /// route does not have.
    pub fn select(&self, headers: &HeaderMap) -> Result<&Target, UnknownBackend> {
        let (chosen, overridden) = self.pick(headers)?;
        if overridden || self.targets.len() == 1 || chosen.backend.takes_calls() {
            return Ok(chosen);
        }
        Ok(self
            .targets
            .iter()
            .find(|t| t.backend.takes_calls())
            .unwrap_or(chosen))
    }

    /// The override header's choice (then also `true`), else a weighted
    /// random pick.
    fn pick(&self, headers: &HeaderMap) -> Result<(&Target, bool), UnknownBackend> {
        if let Some(name) = &self.override_header
            && let Some(value) = headers.get(name)
        {
            let value = String::from_utf8_lossy(value.as_bytes());
            return self
                .targets
                .iter()
                .find(|t| *t.name == *value)
                .map(|t| (t, true))
                .ok_or_else(|| UnknownBackend {
                    header: name.to_string(),
                });
        }
        let first = &self.targets[0];
        if self.targets.len() == 1 {
            return Ok((first, false));
        }
        let mut ticket = fastrand::u32(..self.total_weight.max(1));
        for target in &self.targets {
            if ticket < target.weight {
                return Ok((target, false));
            }
            ticket -= target.weight;
        }
        Ok((first, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn split_follows_weights_and_the_override_header() {
        let config = config::parse(
            "descriptors:\n  protos: [x.proto]\nbackends:\n  stable:\n    address: http://127.0.0.1:1\n    services: [a.B]\n    weight: 90\n  canary:\n    address: http://127.0.0.1:2\n    services: [a.B]\n    weight: 10\n",
            std::path::Path::new("gateway.yaml"),
        )
        .unwrap();
        let header = HeaderName::from_static("x-backend");
        let split = |header: Option<HeaderName>| {
            let targets = config
                .backends
                .iter()
                .map(|b| Target {
                    backend: Backend::new(b.clone(), Vec::new()),
                    name: b.name.as_str().into(),
                    weight: b.weight.unwrap_or(1),
                    timeout: b.timeout,
                    max_response_bytes: b.max_response_bytes,
                })
                .collect();
            Split::new(targets, header).unwrap()
        };
        let with_header = split(Some(header.clone()));
        let mut canary = 0;
        for _ in 0..10_000 {
            let (chosen, overridden) = with_header.pick(&HeaderMap::new()).unwrap();
            assert!(!overridden);
            if &*chosen.name == "canary" {
                canary += 1;
            }
        }
        // 10 % of 10,000: the binomial standard deviation is 30.
        assert!((850..=1150).contains(&canary), "{canary}");
        let mut headers = HeaderMap::new();
        headers.insert("x-backend", "canary".parse().unwrap());
        for _ in 0..100 {
            let (chosen, overridden) = with_header.pick(&headers).unwrap();
            assert_eq!((&*chosen.name, overridden), ("canary", true));
        }
        // Without a configured header, the client cannot choose.
        let without = split(None);
        let mut stable = 0;
        for _ in 0..1000 {
            if &*without.pick(&headers).unwrap().0.name == "stable" {
                stable += 1;
            }
        }
        assert!(stable > 800, "{stable}");
        headers.insert("x-backend", "other".parse().unwrap());
        let err = with_header.pick(&headers).unwrap_err();
        assert_eq!(err.to_string(), "x-backend names no backend of this route");
    }
}
