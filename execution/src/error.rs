//! The crate's own errors.
//!
//! Two kinds, kept apart on purpose. [`ExecutionError`] is a caller's mistake (a state slice that
//! does not match the move's Space Access List): it is not the move's fault, so it must not turn
//! into a [`primitives::FailureReason`] that a group would agree on. [`AccessError`] is what the
//! SAL-enforcing revm database returns when execution reaches outside the list; the engine turns
//! it into the move's failure reason.

use alloy_primitives::B256;
use primitives::{FailureReason, finality::StateItem};
use revm::database_interface::DBErrorMarker;

/// Why the engine refused to run a move at all (nothing about the move itself is decided).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// The slice lacks an item the Space Access List names. An account is named by its balance
    /// item.
    #[error("state slice lacks {item:?}, which the space access list names")]
    SliceMissingItem {
        /// The item the slice should hold.
        item: StateItem,
    },
    /// The slice holds an item the Space Access List does not name; executing over it would
    /// let the move read outside its list. An account is named by its balance item.
    #[error("state slice holds {item:?}, which the space access list does not name")]
    SliceExtraItem {
        /// The item the slice should not hold.
        item: StateItem,
    },
}

/// Why the SAL-enforcing database refused a read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The move read an account or slot its Space Access List does not name. An unlisted
    /// account is named by its balance item, the first field revm loads.
    #[error("{0:?} is outside the space access list")]
    OutOfAccessList(StateItem),
    /// revm asked for code by a hash no account in the slice has. The database hands out code
    /// with every account, so this only happens if revm changes how it loads code.
    #[error("no code with hash {0} in the state slice")]
    UnknownCode(B256),
    /// Block hashes are not part of any state slice yet; `BLOCKHASH` on a recent block halts
    /// the move instead of returning a made-up value.
    #[error("block hash of block {number} is not available to execution")]
    BlockHashUnavailable {
        /// The block asked for.
        number: u64,
    },
}

// revm requires its database errors to carry this marker.
impl DBErrorMarker for AccessError {}

impl AccessError {
    /// The failure reason of a move whose execution hit this error.
    pub fn failure_reason(&self) -> FailureReason {
        match self {
            AccessError::OutOfAccessList(item) => FailureReason::OutOfAccessList(*item),
            AccessError::UnknownCode(_) | AccessError::BlockHashUnavailable { .. } => {
                FailureReason::Halted
            }
        }
    }
}
