//! Choosing one of a backend's endpoints for a call: power of two choices
//! on calls in flight, or round robin (the backend's `balance`), over the
//! endpoints that take calls now and that the call does not exclude. A
//! half-open endpoint gets one trial call at a time; when every breaker is
//! open, the pick fails fast, or (`fail_open`) uses the healthy endpoints
//! anyway.
//!
//! It does not keep the endpoint list ([`super::backend`]) nor decide an
//! endpoint's state ([`super::health`], [`super::breaker`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use super::endpoint::{Endpoint, Lease};
use crate::config::{BackendConfig, Balance};

/// How a backend picks its endpoints: its policy and the round-robin turn.
#[derive(Debug)]
pub(super) struct Picker {
    balance: Balance,
    fail_open: bool,
    next: AtomicUsize,
}

impl Picker {
    /// The picker `config` asks for.
    pub(super) fn new(config: &BackendConfig) -> Self {
        Self {
            balance: config.balance,
            fail_open: config.outlier.fail_open,
            next: AtomicUsize::new(0),
        }
    }

    /// Picks one of `endpoints` for a call, skipping `exclude` (endpoints
    /// that just refused a connection), and counts the call in flight.
    pub(super) fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        exclude: &[Arc<Endpoint>],
        now: Instant,
    ) -> Option<Lease> {
        let allowed = |e: &Arc<Endpoint>| !exclude.iter().any(|x| Arc::ptr_eq(x, e));
        let chosen = match endpoints {
            // The common case: one endpoint, nothing excluded.
            [only] if exclude.is_empty() => only.available(now).then_some(only),
            all => self.choose(all, |e| allowed(e) && e.available(now)),
        };
        if let Some(chosen) = chosen {
            if !chosen.breaker.half_open(now) {
                return Some(Lease::new(chosen, false));
            }
            if chosen.breaker.try_probe() {
                return Some(Lease::new(chosen, true));
            }
            // Another call took the trial meanwhile: any closed endpoint.
            if let Some(closed) = self.choose(endpoints, |e| {
                allowed(e) && e.available(now) && !e.breaker.half_open(now)
            }) {
                return Some(Lease::new(closed, false));
            }
        }
        // Every breaker is open. Fail fast, or (fail_open) use the actively
        // healthy endpoints anyway.
        if !self.fail_open {
            return None;
        }
        self.choose(endpoints, |e| allowed(e) && e.is_healthy())
            .map(|e| Lease::new(e, false))
    }

    /// One of the endpoints that are `usable`, by the backend's policy.
    /// Health may change while choosing; then any usable one will do.
    fn choose<'e>(
        &self,
        endpoints: &'e [Arc<Endpoint>],
        usable: impl Fn(&Arc<Endpoint>) -> bool,
    ) -> Option<&'e Arc<Endpoint>> {
        let count = endpoints.iter().filter(|e| usable(e)).count();
        let nth = |n: usize| endpoints.iter().filter(|e| usable(e)).nth(n);
        let first = || nth(0);
        match count {
            0 => None,
            1 => first(),
            _ => match self.balance {
                Balance::RoundRobin => {
                    nth(self.next.fetch_add(1, Ordering::Relaxed) % count).or_else(first)
                }
                Balance::P2c => {
                    // Two distinct random candidates; the less busy one wins.
                    let a = fastrand::usize(..count);
                    let b = (a + 1 + fastrand::usize(..count - 1)) % count;
                    match (nth(a), nth(b)) {
                        (Some(x), Some(y)) => {
                            Some(if y.in_flight() < x.in_flight() { y } else { x })
                        }
                        (x, y) => x.or(y).or_else(first),
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::upstream::backend::tests::{backend, counts, lease};
    use crate::upstream::endpoint::Lease;

    #[tokio::test]
    async fn round_robin_takes_turns() {
        let b = backend(3, "    balance: round_robin\n");
        assert_eq!(counts(&b, 9), [3, 3, 3]);
    }

    #[tokio::test]
    async fn p2c_avoids_the_busy_endpoint() {
        let b = backend(3, "");
        // Hold 50 calls on the first endpoint: every pair including it prefers the other.
        let busy = b.endpoints()[0].clone();
        let held: Vec<Lease> = (0..50).map(|_| lease(&busy)).collect();
        let mut got = vec![0; 3];
        for _ in 0..300 {
            // Released at once, so the others stay at zero in flight.
            let lease = b.pick(&[]).unwrap();
            let i = b
                .endpoints()
                .iter()
                .position(|e| Arc::ptr_eq(e, &lease.endpoint))
                .unwrap();
            got[i] += 1;
        }
        assert_eq!(got[0], 0, "{got:?}");
        assert!(got[1] > 100 && got[2] > 100, "{got:?}");
        drop(held);
        assert_eq!(busy.in_flight(), 0);
    }

    #[tokio::test]
    async fn excluded_endpoints_are_skipped() {
        let b = backend(3, "");
        let refused = vec![b.endpoints()[0].clone(), b.endpoints()[2].clone()];
        for _ in 0..20 {
            let lease = b.pick(&refused).unwrap();
            assert!(Arc::ptr_eq(&lease.endpoint, &b.endpoints()[1]));
        }
        let all = b.endpoints().to_vec();
        assert!(b.pick(&all).is_none());
    }
}
