//! What execution reports for a whole batch.

use crate::engine::MoveOutcome;

/// The outcomes of a finalized batch, in batch order: what sequencers use to correct pending
/// state and tell players `Executed` or `Failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutedBatch {
    /// The batch number.
    pub number: u64,
    /// Per move, in batch order: status, gas, logs and state diff.
    pub outcomes: Vec<MoveOutcome>,
}
