//! A node's key file: the operator key (the node ID is that key's Ethereum address, so the
//! registry checks it by the signer) and the seed of its BLS key for group certificates. The
//! format and its checks are `primitives::keyfile`'s, shared with the sequencer.

pub use primitives::keyfile::{KeyFileError, OperatorKeys as NodeKeys};

use crate::ShardNode;

impl ShardNode {
    /// The node a key file makes.
    pub fn from_keys(keys: &NodeKeys) -> ShardNode {
        ShardNode::new(keys.operator().clone(), keys.bls())
    }
}
