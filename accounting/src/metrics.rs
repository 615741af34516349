//! The operator metrics a node exports, through the `metrics` facade (whichever recorder the
//! node installed: the `sequencer` binary's Prometheus exporter, or one recorder per node in the
//! devnet). Names follow Prometheus's conventions; values are in the units the name says.
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `tickrate_peer_balance{peer}` | gauge | ledger units given to the peer minus received from it: positive when the peer owes us service ([`crate::ledger`]) |
//! | `tickrate_peers_out_of_bounds` | gauge | peers whose balance is past a bound now |
//! | `tickrate_usage_epoch` | gauge | the last epoch whose usage the node signed |
//! | `tickrate_epoch_owed` | gauge | what that epoch's usage earns at the node's rates (base units of the payout asset) |
//! | `tickrate_owed_total` | counter | the sum of `tickrate_epoch_owed` over every epoch the node signed |
//! | `tickrate_epoch_usage{figure}` | gauge | that epoch's usage figures, by [`Figure::name`] |
//!
//! What a node expects to be owed is its own claim priced: the compensation report accepts only
//! what witnesses corroborate, so the report's `owed` may be lower, never higher.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::usage::{Figure, Usage};

/// `tickrate_peer_balance{peer}`.
pub const PEER_BALANCE: &str = "tickrate_peer_balance";
/// `tickrate_peers_out_of_bounds`.
pub const PEERS_OUT_OF_BOUNDS: &str = "tickrate_peers_out_of_bounds";
/// `tickrate_usage_epoch`.
pub const USAGE_EPOCH: &str = "tickrate_usage_epoch";
/// `tickrate_epoch_owed`.
pub const EPOCH_OWED: &str = "tickrate_epoch_owed";
/// `tickrate_owed_total`.
pub const OWED_TOTAL: &str = "tickrate_owed_total";
/// `tickrate_epoch_usage{figure}`.
pub const EPOCH_USAGE: &str = "tickrate_epoch_usage";

/// Every operator metric, as the exposition names it (a dashboard may query only these).
pub const ALL: [&str; 6] = [
    PEER_BALANCE,
    PEERS_OUT_OF_BOUNDS,
    USAGE_EPOCH,
    EPOCH_OWED,
    OWED_TOTAL,
    EPOCH_USAGE,
];

/// Names the metrics and starts the ones without labels at zero, so that a scrape finds every
/// series from the start, before the first epoch closes.
pub fn describe() {
    describe_gauge!(
        PEER_BALANCE,
        "ledger units given to the peer minus received from it (positive: the peer owes us)"
    );
    describe_gauge!(
        PEERS_OUT_OF_BOUNDS,
        Unit::Count,
        "peers whose service balance is past a bound"
    );
    describe_gauge!(USAGE_EPOCH, "the last epoch whose usage the node signed");
    describe_gauge!(
        EPOCH_OWED,
        "what the last signed epoch's usage earns at the node's rates, in base units"
    );
    describe_counter!(
        OWED_TOTAL,
        "what every signed epoch's usage earns at the node's rates, in base units"
    );
    describe_gauge!(EPOCH_USAGE, "the last signed epoch's usage, by figure");
    gauge!(PEERS_OUT_OF_BOUNDS).set(0.0);
    gauge!(USAGE_EPOCH).set(0.0);
    gauge!(EPOCH_OWED).set(0.0);
    counter!(OWED_TOTAL).absolute(0);
    for figure in Figure::ALL {
        gauge!(EPOCH_USAGE, "figure" => figure.name()).set(0.0);
    }
}

/// Publishes a signed epoch: its number, what it earns, the running total, and its figures.
/// Amounts beyond 2^53 (or 2^64 for the total) lose precision only in the metric.
pub fn epoch_signed(epoch: u64, usage: &Usage, owed: u128, owed_total: u128) {
    gauge!(USAGE_EPOCH).set(epoch as f64);
    gauge!(EPOCH_OWED).set(owed as f64);
    counter!(OWED_TOTAL).absolute(u64::try_from(owed_total).unwrap_or(u64::MAX));
    for figure in Figure::ALL {
        gauge!(EPOCH_USAGE, "figure" => figure.name()).set(usage.get(figure) as f64);
    }
}
