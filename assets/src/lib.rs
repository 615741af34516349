//! The UTXO engine of Tickrate's bridge group: game assets (ERC-20 tokens, ERC-721 items)
//! deposited from the upper chain live here as outputs, move by private-key-signed transfers
//! proven in zero knowledge, and leave by withdrawals the upper chain can verify.
//!
//! Bird's-eye view:
//! - [`poseidon`]: the one hash of the engine (Poseidon over BN254, documented parameters),
//!   native and in circuit.
//! - [`tree`]: the append-only output tree, three children a branch node.
//! - [`keys`]: owner keys (EdDSA on Baby Jubjub with Poseidon, and a nullifier key).
//! - [`output`]: outputs, commitments, nullifiers.
//! - [`transfer`]: building, signing and natively checking transfers and withdraws.
//! - [`circuit`]: the 2-in 2-out transfer circuit (R1CS, `ark-r1cs-std`).
//! - [`prover`]: Groth16 over BN254: seeded dev setup, key files, proving, verifying.
//! - [`state`]: the nullifier set, deposits (public mints, once each) and applying proven
//!   transfers; a rejected operation changes nothing.
//!
//! Not here yet: the `Engine` seam in `execution` that runs this state in an address state
//! group, the Solidity verifier and bridge contracts, and the client side.

pub mod circuit;
pub mod constants;
pub mod error;
pub mod keys;
pub mod output;
pub mod poseidon;
pub mod prover;
pub mod state;
pub mod transfer;
pub mod tree;

pub use error::AssetsError;

#[cfg(test)]
mod tests;

/// Asset types and amounts.
pub use alloy_primitives::U256;
/// The field of every hash, commitment and public input: BN254's scalar field.
pub use ark_bn254::Fr;
