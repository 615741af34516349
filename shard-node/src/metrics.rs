//! The metrics a shard node exports, through the `metrics` facade (whichever recorder the node
//! installed: one per node in the devnet, beside the operator metrics of `accounting`). Names
//! follow Prometheus's conventions.
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `tickrate_shard_batches_executed` | gauge | the last batch the node stored (its height) |
//! | `tickrate_shard_moves_executed_total` | counter | moves the node executed with the outcome its group agreed on |
//! | `tickrate_shard_group_rounds_total` | counter | group rounds certified with the node's signature |
//! | `tickrate_shard_registry_epoch` | gauge | the registry epoch whose groups the node serves in |
//! | `tickrate_shard_accounts_synced_total` | counter | accounts handed over to the node at epoch boundaries (state sync progress) |
//! | `tickrate_shard_evictions_total` | counter | evictions recorded by groups the node is a member of |
//! | `tickrate_shard_evicted` | gauge | 1 once the node itself was evicted |

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

/// `tickrate_shard_batches_executed`.
pub const BATCHES_EXECUTED: &str = "tickrate_shard_batches_executed";
/// `tickrate_shard_moves_executed_total`.
pub const MOVES_EXECUTED: &str = "tickrate_shard_moves_executed_total";
/// `tickrate_shard_group_rounds_total`.
pub const GROUP_ROUNDS: &str = "tickrate_shard_group_rounds_total";
/// `tickrate_shard_registry_epoch`.
pub const REGISTRY_EPOCH: &str = "tickrate_shard_registry_epoch";
/// `tickrate_shard_accounts_synced_total`.
pub const ACCOUNTS_SYNCED: &str = "tickrate_shard_accounts_synced_total";
/// `tickrate_shard_evictions_total`.
pub const EVICTIONS: &str = "tickrate_shard_evictions_total";
/// `tickrate_shard_evicted`.
pub const EVICTED: &str = "tickrate_shard_evicted";

/// Every shard-node metric, as the exposition names it.
pub const ALL: [&str; 7] = [
    BATCHES_EXECUTED,
    MOVES_EXECUTED,
    GROUP_ROUNDS,
    REGISTRY_EPOCH,
    ACCOUNTS_SYNCED,
    EVICTIONS,
    EVICTED,
];

/// Names the metrics and starts them at zero, so that a scrape finds every series from the
/// start.
pub fn describe() {
    describe_gauge!(
        BATCHES_EXECUTED,
        Unit::Count,
        "the last batch the node stored"
    );
    describe_counter!(
        MOVES_EXECUTED,
        Unit::Count,
        "moves executed with the outcome the group agreed on"
    );
    describe_counter!(
        GROUP_ROUNDS,
        Unit::Count,
        "group rounds certified with this node's signature"
    );
    describe_gauge!(
        REGISTRY_EPOCH,
        "the registry epoch whose groups the node serves in"
    );
    describe_counter!(
        ACCOUNTS_SYNCED,
        Unit::Count,
        "accounts handed over to the node at epoch boundaries"
    );
    describe_counter!(
        EVICTIONS,
        Unit::Count,
        "evictions recorded by groups the node is a member of"
    );
    describe_gauge!(EVICTED, "1 once the node was evicted");
    for gauge_name in [BATCHES_EXECUTED, REGISTRY_EPOCH, EVICTED] {
        gauge!(gauge_name).set(0.0);
    }
    for counter_name in [MOVES_EXECUTED, GROUP_ROUNDS, ACCOUNTS_SYNCED, EVICTIONS] {
        counter!(counter_name).absolute(0);
    }
}

/// What one node has done, as its metrics show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// The last batch it stored.
    pub height: u64,
    /// The registry epoch it serves in.
    pub registry_epoch: u64,
    /// Accounts handed over to it so far.
    pub accounts_synced: u64,
    /// Evictions recorded by groups it is a member of, so far.
    pub evictions: u64,
    /// Whether it was evicted.
    pub evicted: bool,
}

/// Publishes `report`, and the moves and rounds counted since the last call.
pub fn export(report: &NodeReport, new_moves: u64, new_rounds: u64) {
    gauge!(BATCHES_EXECUTED).set(report.height as f64);
    gauge!(REGISTRY_EPOCH).set(report.registry_epoch as f64);
    gauge!(EVICTED).set(f64::from(u8::from(report.evicted)));
    counter!(ACCOUNTS_SYNCED).absolute(report.accounts_synced);
    counter!(EVICTIONS).absolute(report.evictions);
    counter!(MOVES_EXECUTED).increment(new_moves);
    counter!(GROUP_ROUNDS).increment(new_rounds);
}
