//! The UTXO engine of Tickrate's bridge group: game assets (ERC-20 tokens, ERC-721 items)
//! deposited from the upper chain live here as outputs, move by private-key-signed transfers
//! proven in zero knowledge, and leave by withdrawals the upper chain can verify.
//!
//! Bird's-eye view:
//! - [`asset`]: asset types from upper-chain tokens (ERC-20, ERC-721 items).
//! - [`poseidon`]: the one hash of the engine (Poseidon over BN254, documented parameters),
//!   native and in circuit.
//! - [`tree`]: the append-only output tree, three children a branch node.
//! - [`keys`]: owner keys (EdDSA on Baby Jubjub with Poseidon, and a nullifier key).
//! - [`output`]: outputs, commitments, nullifiers.
//! - [`note`]: output discovery: each new output's data encrypted to its recipient's viewing
//!   key (ECDH on Baby Jubjub, ChaCha20-Poly1305), published with the transfer; payment
//!   addresses.
//! - [`transfer`]: building, signing and natively checking transfers and withdraws.
//! - [`deposit`]: deposits from the bridge, minted once each, in order.
//! - [`circuit`]: the 2-in 2-out transfer circuit and the deposit circuit (R1CS,
//!   `ark-r1cs-std`); both prove the move from an old root to a new one.
//! - [`prover`]: Groth16 over BN254: seeded dev setup, key files, proving, verifying.
//! - [`solidity`]: the Solidity Groth16 verifier generated from a verifying key, and proofs
//!   and public inputs encoded for it (the EVM's BN254 precompiles).
//! - [`state`]: the nullifier set, deposits (public mints, once each) and applying proven
//!   transfers; a rejected operation changes nothing.
//!
//! The upper chain's side (the `AssetBridge` and `AssetRollup` contracts and their alloy
//! adapter) is `upper_chain::rollup`; `tests/assets_evm.rs` runs both against a real EVM.
//! The client side (an asset wallet: scanning, balances, building and proving transfers) is
//! `client_sdk::assets`. Not here yet: the `Engine` seam in `execution` that runs this state in
//! an address state group.

pub mod asset;
pub mod circuit;
pub mod constants;
pub mod deposit;
pub mod error;
pub mod keys;
pub mod note;
pub mod output;
pub mod poseidon;
pub mod prover;
pub mod solidity;
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
