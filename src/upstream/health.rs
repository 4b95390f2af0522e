//! Active health checks: `grpc.health.v1.Health/Check` against every
//! endpoint of a backend, on a timer, in a task that ends with the backend.
//!
//! An endpoint turns unhealthy after `unhealthy_threshold` failed checks in
//! a row (no answer, an error, or anything but SERVING) and healthy again
//! after `healthy_threshold` passes. The first check decides at once, so a
//! new backend's state is known before it serves.

use std::sync::{Arc, PoisonError, Weak};

use tokio::task::JoinSet;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::backend::Backend;
use super::endpoint::Endpoint;
use crate::config::HealthCheckOptions;

/// Checks every endpoint once now, then keeps checking every `interval`
/// until the backend is dropped.
pub async fn start(backend: &Arc<Backend>, options: HealthCheckOptions) {
    check_all(&backend.endpoints(), &options, true).await;
    let weak = Arc::downgrade(backend);
    let task = tokio::spawn(run(weak, options));
    backend.adopt(task.abort_handle());
}

async fn run(backend: Weak<Backend>, options: HealthCheckOptions) {
    loop {
        tokio::time::sleep(options.interval).await;
        // Hold only the endpoint list while checking: the backend may be dropped meanwhile.
        let Some(endpoints) = backend.upgrade().map(|b| b.endpoints()) else {
            return;
        };
        check_all(&endpoints, &options, false).await;
    }
}

/// Checks `endpoints` concurrently; `first` applies each verdict at once.
pub(super) async fn check_all(
    endpoints: &[Arc<Endpoint>],
    options: &HealthCheckOptions,
    first: bool,
) {
    let mut checks = JoinSet::new();
    for endpoint in endpoints {
        let endpoint = endpoint.clone();
        let options = options.clone();
        checks.spawn(async move {
            let passed = check(&endpoint, &options).await;
            record(&endpoint, passed, &options, first);
        });
    }
    while checks.join_next().await.is_some() {}
}

async fn check(endpoint: &Endpoint, options: &HealthCheckOptions) -> bool {
    let mut client = HealthClient::new(endpoint.channel().clone());
    let request = HealthCheckRequest {
        service: options.service.clone(),
    };
    match tokio::time::timeout(options.timeout, client.check(request)).await {
        Ok(Ok(reply)) => {
            let status = reply.into_inner().status();
            if status != ServingStatus::Serving {
                tracing::debug!(endpoint = %endpoint.address, ?status, "health check: not serving");
            }
            status == ServingStatus::Serving
        }
        Ok(Err(status)) => {
            tracing::debug!(endpoint = %endpoint.address, code = ?status.code(), message = status.message(), "health check failed");
            false
        }
        Err(_) => {
            tracing::debug!(endpoint = %endpoint.address, timeout = ?options.timeout, "health check timed out");
            false
        }
    }
}

fn record(endpoint: &Endpoint, passed: bool, options: &HealthCheckOptions, first: bool) {
    let mut streak = endpoint
        .streak
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    *streak = if passed {
        (*streak).max(0) + 1
    } else {
        (*streak).min(0) - 1
    };
    if first {
        endpoint.set_healthy(passed);
    } else if passed && *streak >= i64::from(options.healthy_threshold) {
        endpoint.set_healthy(true);
    } else if !passed && -*streak >= i64::from(options.unhealthy_threshold) {
        endpoint.set_healthy(false);
    }
}
