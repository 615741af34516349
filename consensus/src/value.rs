//! What the replicas agree on.

use std::fmt::Debug;

use primitives::{B256, Batch, Decode, Encode};

/// A value PBFT agrees on, one per sequence number: a [`Batch`] of block headers among the
/// sequencers, a post-state root ([`B256`]) among the members of an address state group.
///
/// Votes name a value by its [`Value::digest`]; only the pre-prepare carries the value itself.
pub trait Value: Clone + Debug + Eq + Encode + Decode {
    /// The value's digest, which prepares and commits sign. Two values with one digest are the
    /// same value.
    fn digest(&self) -> B256;
}

impl Value for Batch {
    fn digest(&self) -> B256 {
        self.hash()
    }
}

/// A state root is its own digest.
impl Value for B256 {
    fn digest(&self) -> B256 {
        *self
    }
}
