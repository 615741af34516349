//! Shared types of Tickrate: identifiers and XOR distance, the move (transaction) with its Space
//! Access List, blocks and batches, the blake3 Merkle tree with inclusion proofs, the canonical
//! bounded codec, account keys (secp256k1) and certificate keys (BLS12-381), finality levels, the
//! bytes PBFT votes sign and the equivocation evidence built from them ([`pbft`]), sequencers'
//! signed preconfirmations and the evidence of a broken one ([`preconf`]), and the sans-IO
//! [`machine::Machine`] shape every protocol core follows.
//!
//! Every other crate takes these types from here; none defines its own transaction, ID or hash.
//! Every decoder is bounded by the limits in [`constants`] and returns a typed [`DecodeError`].

pub mod api;
pub mod batch;
pub mod block;
pub mod bls;
pub mod codec;
pub mod constants;
pub mod da;
pub mod estimate;
pub mod ethereum;
pub mod finality;
pub mod id;
pub mod keyfile;
pub mod keys;
pub mod machine;
pub mod merkle;
pub mod pbft;
pub mod preconf;
pub mod session;
pub mod time;
pub mod tx;

pub use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
pub use batch::{Batch, FinalizedBatch};
pub use block::{BlockBody, BlockHeader, BlockId};
pub use codec::{Decode, DecodeError, Decoder, Encode};
pub use finality::{FailureReason, FinalityLevel};
pub use id::{Distance, NodeId, k_nearest, xor_distance};
pub use keys::{AccountKey, Signature, SignatureError};
pub use session::{SESSION_REGISTRY, SessionCall, SessionKey, SessionPublicKey, SessionScope};
pub use time::Instant;
pub use tx::{
    AccountAccess, Authority, DeclaredWrite, MoveSignature, SignedTransaction, SlotAccess,
    SpaceAccessList, Transaction, TxHash, VerifiedTransaction,
};
