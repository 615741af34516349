//! The sequencer's metrics, recorded through the `metrics` facade; the `sequencer` binary
//! serves them to Prometheus at `/metrics`.
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `sequencer_moves_acked_total` | counter | moves acked as pending (its rate is the ingest rate) |
//! | `sequencer_refusals_total{reason}` | counter | refusals by reason (`bad_signature`, `bad_nonce`, `rate_limited`, ...; recorded where they happen, in [`crate::node`]) |
//! | `sequencer_ack_latency_seconds` | histogram | from the core's admission of a move to its ack leaving (the WAL's fsync included) |
//! | `sequencer_mempool_moves` | gauge | moves in the mempool, read at every tick before packing |
//! | `sequencer_wal_fsyncs_total` | counter | fsyncs of the write-ahead log |
//! | `sequencer_wal_fsync_seconds` | histogram | time of each fsync |
//! | `sequencer_wal_group_moves` | histogram | moves made durable by one fsync |
//! | `sequencer_blocks_packed_total` | counter | blocks packed |
//! | `sequencer_batch_commit_seconds` | histogram | as primary, propose to commit |

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

/// Names the metrics and starts the counters at zero, so every series exists from the start.
pub fn describe() {
    describe_counter!(
        "sequencer_moves_acked_total",
        Unit::Count,
        "moves acked as pending"
    );
    describe_counter!(
        "sequencer_refusals_total",
        Unit::Count,
        "moves refused at ingress, by reason"
    );
    describe_histogram!(
        "sequencer_ack_latency_seconds",
        Unit::Seconds,
        "admission of a move to its ack leaving, the WAL's fsync included"
    );
    describe_gauge!(
        "sequencer_mempool_moves",
        Unit::Count,
        "moves in the mempool at the last tick"
    );
    describe_counter!(
        "sequencer_wal_fsyncs_total",
        Unit::Count,
        "fsyncs of the write-ahead log"
    );
    describe_histogram!(
        "sequencer_wal_fsync_seconds",
        Unit::Seconds,
        "time of one fsync of the write-ahead log"
    );
    describe_histogram!(
        "sequencer_wal_group_moves",
        Unit::Count,
        "moves made durable by one fsync"
    );
    describe_counter!(
        "sequencer_blocks_packed_total",
        Unit::Count,
        "blocks packed"
    );
    describe_histogram!(
        "sequencer_batch_commit_seconds",
        Unit::Seconds,
        "as primary, from proposing a batch to committing it"
    );
    counter!("sequencer_moves_acked_total").absolute(0);
    counter!("sequencer_wal_fsyncs_total").absolute(0);
    counter!("sequencer_blocks_packed_total").absolute(0);
    gauge!("sequencer_mempool_moves").set(0.0);
}

/// A move's ack left, `latency` after the core admitted it.
pub fn acked(latency: Duration) {
    counter!("sequencer_moves_acked_total").increment(1);
    histogram!("sequencer_ack_latency_seconds").record(latency.as_secs_f64());
}

/// The mempool's size at a tick.
pub fn mempool(moves: usize) {
    gauge!("sequencer_mempool_moves").set(moves as f64);
}

/// A block was packed.
pub fn block_packed() {
    counter!("sequencer_blocks_packed_total").increment(1);
}

/// One fsync of the write-ahead log, covering `moves` moves.
pub fn wal_fsync(duration: Duration, moves: u64) {
    counter!("sequencer_wal_fsyncs_total").increment(1);
    histogram!("sequencer_wal_fsync_seconds").record(duration.as_secs_f64());
    histogram!("sequencer_wal_group_moves").record(moves as f64);
}
