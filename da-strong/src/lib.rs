//! Strong DA: durable, highly available storage of finalized batches.
//!
//! A finalized batch (its encoded bytes, the payload) is erasure-coded into n chunks, one per
//! DA node, any k of which rebuild it; the chunks' commitments form a blake3 Merkle tree whose
//! root is the batch's DA commitment. Each DA node verifies its chunk against the commitment,
//! stores it in RocksDB and signs an attestation; a quorum of attestations aggregates (BLS) into
//! an availability certificate. Anyone can later rebuild the batch from any k nodes, verifying
//! every chunk, or sample one chunk to check availability cheaply.
//!
//! # Bird's-eye view
//! - [`coding`] — Reed–Solomon coding, chunk leaves and proofs, and [`coding::Rebuilder`],
//!   which takes verified chunks from anywhere and checks the rebuilt payload re-encodes to the
//!   commitment. No IO.
//! - [`attestation`] — the domain-separated message a node signs, and
//!   [`attestation::AvailabilityCertificate`] (aggregate and verify, quorum of
//!   [`coding::ErasureParams::quorum`]).
//! - [`store`] — a node's chunks in RocksDB, verified on write and on read.
//! - [`node`] — [`node::DaNode`]: store/verify/attest/get/sample as plain calls, independent of
//!   the transport, behind the [`node::DaService`] trait.
//! - [`wire`] — requests and responses in the bounded codec.
//! - [`server`] / [`client`] — QUIC (`netstack::quic`) in front of a node, and the client that
//!   disperses, retrieves and samples.
//! - The `da-node` binary runs one node. Logs go to `da_strong::*` targets; metrics are listed
//!   in [`metrics`].

pub mod attestation;
pub mod client;
pub mod coding;
pub mod constants;
pub mod error;
pub mod metrics;
#[cfg(feature = "node")]
pub mod node;
#[cfg(feature = "node")]
pub mod server;
#[cfg(feature = "node")]
pub mod store;
pub mod wire;

pub use attestation::AvailabilityCertificate;
pub use client::{DaClient, DaNodeAddress, Dispersal};
pub use coding::{Chunk, ErasureParams, Rebuilder, encode_payload};
pub use error::DaError;
#[cfg(feature = "node")]
pub use node::{DaNode, DaService};
#[cfg(feature = "node")]
pub use server::DaServer;

use primitives::{FinalizedBatch, codec::Encode};

/// The payload strong DA stores for a finalized batch: its canonical encoding.
pub fn batch_payload(batch: &FinalizedBatch) -> Vec<u8> {
    batch.to_bytes()
}
