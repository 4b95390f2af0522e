//! Timestamps for seed data and for "now"; kept in one place so the seed
//! data reads as dates rather than epoch seconds.

use prost_types::Timestamp;
use std::time::SystemTime;

/// The current wall-clock time.
pub(crate) fn now() -> Timestamp {
    SystemTime::now().into()
}

/// A fixed point in time for seed data, given as RFC 3339 ("2026-01-15T09:30:00Z").
pub(crate) fn at(rfc3339: &str) -> Timestamp {
    rfc3339
        .parse()
        .expect("seed timestamps are valid RFC 3339 literals")
}

/// Orders timestamps; `prost_types::Timestamp` does not implement `Ord`.
pub(crate) fn is_after(a: &Timestamp, b: &Timestamp) -> bool {
    (a.seconds, a.nanos) > (b.seconds, b.nanos)
}
