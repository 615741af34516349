//! Errors of the assets engine. Every rejected deposit, transfer or proof is one of these, and a
//! rejected operation changes nothing.

use alloy_primitives::U256;

/// Why the assets engine refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetsError {
    /// The transfer or deposit was proven from another root than the state's current one: a
    /// proof moves the state from one root to the next, so it is made against the newest.
    #[error("stale root: the proof starts from another root than the current one")]
    StaleRoot,
    /// The proof appends its outputs at another leaf than the next one.
    #[error("wrong leaf index: the next leaf is {expected}, the proof appends at {got}")]
    WrongLeafIndex {
        /// The tree's leaf count.
        expected: u64,
        /// The proof's first new leaf.
        got: u64,
    },
    /// The proof's new root is not the root appending its outputs gives.
    #[error("the proof's new root is not the root its outputs give")]
    NewRootMismatch,
    /// The insertion paths of a witness do not lead from the old root to the new one.
    #[error("the insertion paths do not lead from the old root to the new root")]
    InsertionInvalid,
    /// A value from the upper chain is not a canonical BN254 scalar.
    #[error("a value is not below the BN254 scalar field modulus")]
    NotCanonical,
    /// An input's nullifier is already in the nullifier set: a double spend.
    #[error("nullifier of input {input} already spent")]
    NullifierSpent {
        /// Which input of the transfer.
        input: usize,
    },
    /// Both inputs of one transfer publish the same nullifier.
    #[error("both inputs publish the same nullifier")]
    DuplicateNullifier,
    /// The Groth16 proof does not verify against the public inputs.
    #[error("the proof does not verify against the transfer's public inputs")]
    ProofInvalid,
    /// The proof bytes do not decode to a proof.
    #[error("malformed proof: {0}")]
    ProofMalformed(String),
    /// An input's Merkle path does not lead from its commitment to the root.
    #[error("merkle path of input {input} does not lead to the root")]
    MerklePathInvalid {
        /// Which input of the transfer.
        input: usize,
    },
    /// An input's owner signature does not verify.
    #[error("signature of input {input} does not verify")]
    SignatureInvalid {
        /// Which input of the transfer.
        input: usize,
    },
    /// An input's spending key is not the key of the output it spends.
    #[error("input {input} is not owned by the key that spends it")]
    NotOwner {
        /// Which input of the transfer.
        input: usize,
    },
    /// Inputs and outputs of one asset type do not add up to the same amount.
    #[error("amounts of asset {asset} do not balance")]
    Unbalanced {
        /// The asset type whose amounts differ.
        asset: U256,
    },
    /// A sum of amounts does not fit in u256.
    #[error("amounts of asset {asset} overflow u256")]
    AmountOverflow {
        /// The asset type whose sum overflowed.
        asset: U256,
    },
    /// A withdrawal to the zero address could never be claimed.
    #[error("withdrawal recipient is the zero address")]
    WithdrawalToZero,
    /// The deposit with this id was already minted.
    #[error("deposit {deposit_id} was already minted")]
    DepositReplayed {
        /// The deposit's id on the upper chain.
        deposit_id: u64,
    },
    /// Deposits are minted in the bridge's order, each once.
    #[error("deposit {got} is out of order: deposit {expected} is next")]
    DepositOutOfOrder {
        /// The next deposit to mint.
        expected: u64,
        /// The deposit offered.
        got: u64,
    },
    /// An ERC-721 id from 2^96 on does not fit an asset type.
    #[error("item id {id} does not fit 96 bits")]
    ItemIdTooLarge {
        /// The id.
        id: U256,
    },
    /// The output tree is full.
    #[error("output tree is full ({max} leaves)")]
    TreeFull {
        /// Leaves the tree can hold.
        max: u64,
    },
    /// No output at this index.
    #[error("no output at leaf {index}")]
    NoSuchLeaf {
        /// The leaf index asked for.
        index: u64,
    },
    /// A key file could not be read or written.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Constraint synthesis or proving failed.
    #[error("proving failed: {0}")]
    Proving(String),
}
