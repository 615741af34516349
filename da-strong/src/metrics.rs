//! Metrics of strong DA (the `metrics` facade; the binary picks an exporter).
//!
//! | name | kind | meaning |
//! | --- | --- | --- |
//! | `da_strong.node.stored.count` | counter | chunks a node verified, stored and attested |
//! | `da_strong.node.rejected.count` | counter | chunks a node refused |
//! | `da_strong.node.served.count` | counter | chunks a node served (get or sample) |
//! | `da_strong.client.disperse.latency_ms` | histogram | encode, send, collect and aggregate |
//! | `da_strong.client.retrieve.latency_ms` | histogram | fetch k verified chunks and rebuild |
//! | `da_strong.client.chunk.rejected.count` | counter | chunks a client refused |
//! | `da_strong.client.node.failed.count` | counter | requests to a node that failed or timed out |

use std::time::Duration;

/// Describes a node's counters and starts them at zero, so a scrape shows every series from the
/// node's start, not from its first event.
pub fn describe_node() {
    metrics::describe_counter!(
        "da_strong.node.stored.count",
        "chunks this node verified, stored and attested"
    );
    metrics::describe_counter!("da_strong.node.rejected.count", "chunks this node refused");
    metrics::describe_counter!(
        "da_strong.node.served.count",
        "chunks this node served (get or sample)"
    );
    for name in [
        "da_strong.node.stored.count",
        "da_strong.node.rejected.count",
        "da_strong.node.served.count",
    ] {
        metrics::counter!(name).absolute(0);
    }
}

#[cfg(feature = "node")]
pub(crate) fn node_stored() {
    metrics::counter!("da_strong.node.stored.count").increment(1);
}

#[cfg(feature = "node")]
pub(crate) fn node_rejected() {
    metrics::counter!("da_strong.node.rejected.count").increment(1);
}

#[cfg(feature = "node")]
pub(crate) fn node_served() {
    metrics::counter!("da_strong.node.served.count").increment(1);
}

pub(crate) fn dispersed(elapsed: Duration) {
    metrics::histogram!("da_strong.client.disperse.latency_ms").record(elapsed.as_secs_f64() * 1e3);
}

pub(crate) fn retrieved(elapsed: Duration) {
    metrics::histogram!("da_strong.client.retrieve.latency_ms").record(elapsed.as_secs_f64() * 1e3);
}

pub(crate) fn chunk_rejected() {
    metrics::counter!("da_strong.client.chunk.rejected.count").increment(1);
}

pub(crate) fn node_failed() {
    metrics::counter!("da_strong.client.node.failed.count").increment(1);
}
