//! Metrics of weak DA (the `metrics` facade; the binary picks an exporter).
//!
//! | name | kind | meaning |
//! | --- | --- | --- |
//! | `da_weak.put.count` | counter | bodies stored |
//! | `da_weak.put.bytes` | counter | encoded body bytes stored |
//! | `da_weak.put.latency_ms` | histogram | one put, retries included |
//! | `da_weak.get.count` | counter | bodies read and verified |
//! | `da_weak.get.latency_ms` | histogram | one verified read, retries included |
//! | `da_weak.get.rejected.count` | counter | reads refused: bad size, bad encoding or bad root |
//! | `da_weak.retry.count` | counter | store calls retried after a transient error |

use std::time::Duration;

pub(crate) fn put(bytes: usize, elapsed: Duration) {
    metrics::counter!("da_weak.put.count").increment(1);
    metrics::counter!("da_weak.put.bytes").increment(bytes as u64);
    metrics::histogram!("da_weak.put.latency_ms").record(elapsed.as_secs_f64() * 1e3);
}

pub(crate) fn get(elapsed: Duration) {
    metrics::counter!("da_weak.get.count").increment(1);
    metrics::histogram!("da_weak.get.latency_ms").record(elapsed.as_secs_f64() * 1e3);
}

pub(crate) fn rejected() {
    metrics::counter!("da_weak.get.rejected.count").increment(1);
}

pub(crate) fn retried() {
    metrics::counter!("da_weak.retry.count").increment(1);
}
