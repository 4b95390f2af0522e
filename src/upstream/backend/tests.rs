//! Tests of what spans a backend's endpoints: failing fast when every
//! breaker is open, and `fail_open`. Also the fixtures the breaker's and
//! the pick's tests share: a backend from a config snippet, leases, and
//! counting picks.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Backend;
use crate::config;
use crate::upstream::breaker::Outcome;
use crate::upstream::endpoint::{Endpoint, Lease};
use crate::upstream::status::EndpointState;

/// An ordinary call's lease.
pub(in crate::upstream) fn lease(endpoint: &Arc<Endpoint>) -> Lease {
    Lease::new(endpoint, false)
}

/// A half-open endpoint's trial call.
pub(in crate::upstream) fn trial(endpoint: &Arc<Endpoint>) -> Lease {
    assert!(endpoint.breaker.try_probe(), "no other trial is out");
    Lease::new(endpoint, true)
}

/// A backend of `n` endpoints, `http://127.0.0.{1..=n}:1`, with `extra`
/// lines of its config.
pub(in crate::upstream) fn backend(n: usize, extra: &str) -> Arc<Backend> {
    let endpoints: Vec<String> = (1..=n).map(|i| format!("http://127.0.0.{i}:1")).collect();
    let text = format!(
        "descriptors:\n  protos: [x.proto]\nbackends:\n  b:\n    endpoints: [{}]\n    services: [a.B]\n{extra}",
        endpoints.join(", ")
    );
    let config = config::parse(&text, std::path::Path::new("gateway.yaml"))
        .unwrap()
        .backends
        .remove(0);
    let eps = config
        .endpoints
        .iter()
        .map(|uri| Endpoint::new(uri.clone(), uri, &config))
        .collect();
    Backend::new(config, eps)
}

/// How many of `picks` calls went to each endpoint.
pub(in crate::upstream) fn counts(backend: &Backend, picks: usize) -> Vec<usize> {
    let endpoints = backend.endpoints();
    let mut counts = vec![0; endpoints.len()];
    for _ in 0..picks {
        let lease = backend.pick(&[]).unwrap();
        let i = endpoints
            .iter()
            .position(|e| Arc::ptr_eq(e, &lease.endpoint))
            .unwrap();
        counts[i] += 1;
    }
    counts
}

#[tokio::test]
async fn every_breaker_open_fails_fast() {
    let b = backend(
        2,
        "    outlier_detection: { consecutive_failures: 2, ejection_time: 1h }\n",
    );
    let [first, second] = [b.endpoints()[0].clone(), b.endpoints()[1].clone()];
    assert_eq!(b.reopens_in(), None);
    for endpoint in [&first, &second] {
        b.record(&lease(endpoint), Outcome::Failed);
        b.record(&lease(endpoint), Outcome::Failed);
    }
    assert_eq!(second.state(Instant::now()), EndpointState::Ejected);
    assert!(b.pick(&[]).is_none(), "no call while every breaker is open");
    let reopens = b.reopens_in().unwrap();
    assert!(
        reopens > Duration::from_secs(3590) && reopens <= Duration::from_secs(3600),
        "{reopens:?}"
    );
    // Not available, though the endpoints pass their health checks:
    // no call would be sent.
    assert!(!b.status().available);
}

#[tokio::test]
async fn fail_open_never_ejects_the_last_endpoint() {
    let b = backend(
        2,
        "    outlier_detection: { consecutive_failures: 2, ejection_time: 1h, fail_open: true }\n",
    );
    let [first, second] = [b.endpoints()[0].clone(), b.endpoints()[1].clone()];
    b.record(&lease(&first), Outcome::Failed);
    b.record(&lease(&first), Outcome::Answered);
    b.record(&lease(&first), Outcome::Failed);
    assert_eq!(
        first.state(Instant::now()),
        EndpointState::Healthy,
        "a success resets the count"
    );
    b.record(&lease(&first), Outcome::Failed);
    assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
    assert_eq!(counts(&b, 10), [0, 10]);
    for _ in 0..5 {
        b.record(&lease(&second), Outcome::Failed);
    }
    assert_eq!(
        second.state(Instant::now()),
        EndpointState::Healthy,
        "the last endpoint stays"
    );
    let status = b.status();
    assert!(status.available);
    assert_eq!(status.endpoints[0].state, EndpointState::Ejected);
    // Only the ejected one is left: it takes traffic rather than none.
    second.set_healthy(false);
    assert_eq!(counts(&b, 4), [4, 0]);
    first.set_healthy(false);
    assert!(b.pick(&[]).is_none());
    assert!(!b.status().available);
}
