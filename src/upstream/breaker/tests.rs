//! The breaker as a backend's calls meet it: tripping on failures in a row
//! or on a window's failure rate, half-open trials, timeouts that never
//! count, ejections that end by themselves and grow when they repeat. Time
//! runs on tokio's paused clock.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::Outcome;
use crate::upstream::backend::tests::{backend, counts, lease, trial};
use crate::upstream::status::EndpointState;

#[tokio::test]
async fn failure_rate_opens_the_breaker() {
    let b = backend(
        2,
        "    outlier_detection: { consecutive_failures: 0, failure_rate: 0.5, minimum_calls: 10, window: 1h }\n",
    );
    let first = b.endpoints()[0].clone();
    // 4 of 9 failed, alternating: no streak, too few calls.
    for i in 0..9 {
        let outcome = if i % 2 == 1 {
            Outcome::Failed
        } else {
            Outcome::Answered
        };
        b.record(&lease(&first), outcome);
    }
    assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
    // The 10th call fails: 5 of 10.
    b.record(&lease(&first), Outcome::Failed);
    assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_counts_within_its_window() {
    let b = backend(
        2,
        "    outlier_detection: { consecutive_failures: 0, failure_rate: 0.5, minimum_calls: 4, window: 200ms }\n",
    );
    let first = b.endpoints()[0].clone();
    for _ in 0..3 {
        b.record(&lease(&first), Outcome::Failed);
    }
    tokio::time::advance(Duration::from_millis(250)).await;
    // A new window: the old failures are gone.
    b.record(&lease(&first), Outcome::Answered);
    b.record(&lease(&first), Outcome::Answered);
    b.record(&lease(&first), Outcome::Answered);
    b.record(&lease(&first), Outcome::Failed);
    assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn half_open_takes_one_trial_call_at_a_time() {
    let b = backend(
        1,
        "    outlier_detection: { consecutive_failures: 1, ejection_time: 100ms }\n",
    );
    let only = b.endpoints()[0].clone();
    b.record(&lease(&only), Outcome::Failed);
    assert!(b.pick(&[]).is_none());
    tokio::time::advance(Duration::from_millis(150)).await;
    assert_eq!(only.state(Instant::now()), EndpointState::HalfOpen);
    let trial = b.pick(&[]).expect("the trial call");
    assert!(b.pick(&[]).is_none(), "one trial at a time");
    assert_eq!(b.reopens_in(), Some(Duration::ZERO), "fail fast meanwhile");
    drop(trial);
    // A trial that ended without a verdict lets the next call try.
    let next = b.pick(&[]).expect("the next trial");
    // Calls sent before the ejection decide nothing now.
    b.record(&lease(&only), Outcome::Answered);
    assert_eq!(only.state(Instant::now()), EndpointState::HalfOpen);
    b.record(&lease(&only), Outcome::Failed);
    assert_eq!(only.state(Instant::now()), EndpointState::HalfOpen);
    // The trial's answer closes it, even while its lease lives on (a stream).
    b.record(&next, Outcome::Answered);
    assert_eq!(only.state(Instant::now()), EndpointState::Healthy);
    assert!(!only.breaker.probing.load(Ordering::Relaxed));
    let (one, two) = (b.pick(&[]), b.pick(&[]));
    assert!(one.is_some() && two.is_some(), "closed: no limit");
}

#[tokio::test(start_paused = true)]
async fn timeouts_never_count_not_even_for_a_trial() {
    let b = backend(
        2,
        "    outlier_detection: { consecutive_failures: 1, ejection_time: 100ms }\n",
    );
    let first = b.endpoints()[0].clone();
    for _ in 0..10 {
        b.record(&lease(&first), Outcome::Neutral);
    }
    assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
    b.record(&lease(&first), Outcome::Failed);
    tokio::time::advance(Duration::from_millis(150)).await;
    assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
    b.record(&trial(&first), Outcome::Neutral);
    assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
    // The trial is free again for the next call.
    let next = trial(&first);
    b.record(&next, Outcome::Answered);
    assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn ejection_ends_by_itself() {
    let b = backend(
        2,
        "    balance: round_robin\n    outlier_detection: { consecutive_failures: 1, ejection_time: 300ms }\n",
    );
    let first = b.endpoints()[0].clone();
    b.record(&lease(&first), Outcome::Failed);
    assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
    tokio::time::advance(Duration::from_millis(400)).await;
    assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
    assert_eq!(counts(&b, 10).iter().filter(|&&n| n > 0).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn back_from_ejection_one_failure_ejects_again_for_longer() {
    let b = backend(
        2,
        "    balance: round_robin\n    outlier_detection: { consecutive_failures: 3, ejection_time: 200ms }\n",
    );
    let first = b.endpoints()[0].clone();
    for _ in 0..3 {
        b.record(&lease(&first), Outcome::Failed);
    }
    assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
    tokio::time::advance(Duration::from_millis(250)).await;
    assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
    // Half-open: a failed trial, and out for 400ms this time.
    b.record(&trial(&first), Outcome::Failed);
    assert_eq!(first.state(Instant::now()), EndpointState::Ejected);
    tokio::time::advance(Duration::from_millis(250)).await;
    assert_eq!(
        first.state(Instant::now()),
        EndpointState::Ejected,
        "doubled"
    );
    tokio::time::advance(Duration::from_millis(250)).await;
    assert_eq!(first.state(Instant::now()), EndpointState::HalfOpen);
    // The trial answers and closes it: back to three failures.
    b.record(&trial(&first), Outcome::Answered);
    b.record(&lease(&first), Outcome::Failed);
    b.record(&lease(&first), Outcome::Failed);
    assert_eq!(first.state(Instant::now()), EndpointState::Healthy);
}
