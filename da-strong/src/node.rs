//! The DA node: store, verify, attest, serve and sample. No transport here.
//!
//! [`DaNode`] is a plain struct over a [`ChunkStore`]; [`crate::server`] wraps it in QUIC and a
//! test or the simulator can call [`DaNode::handle_request`] directly. Its calls block (RocksDB,
//! hashing, a BLS signature), so async callers run them on a blocking thread.

use std::path::Path;

use primitives::{B256, bls::BlsSecretKey, bls::BlsSignature};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tracing::{debug, warn};

use crate::{
    attestation::attest,
    coding::Chunk,
    error::DaError,
    metrics,
    store::ChunkStore,
    wire::{DaRequest, DaResponse},
};

/// Anything that answers DA requests: the node itself, or a wrapper (tests use a lying one).
pub trait DaService: Send + Sync + 'static {
    /// Answers one request.
    fn handle_request(&self, request: DaRequest) -> DaResponse;
}

/// One DA node: position `position` in its committee, so it holds chunk `position` of every
/// batch, and attests with its BLS key.
#[derive(Debug)]
pub struct DaNode {
    position: u16,
    key: BlsSecretKey,
    store: ChunkStore,
}

impl DaNode {
    /// Opens the node's chunk store in `directory` (RocksDB; created if missing).
    pub fn open(directory: &Path, position: u16, key: BlsSecretKey) -> Result<Self, DaError> {
        Ok(DaNode {
            position,
            key,
            store: ChunkStore::open(directory)?,
        })
    }

    /// The node's position in its committee.
    pub fn position(&self) -> u16 {
        self.position
    }

    /// The node's chunk store.
    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// Verifies `chunk` against `commitment`, stores it and returns the attestation.
    pub fn handle_store(&self, commitment: &B256, chunk: &Chunk) -> Result<BlsSignature, DaError> {
        if chunk.index != self.position {
            return Err(DaError::WrongPosition {
                position: self.position,
                index: chunk.index,
            });
        }
        self.store.put(commitment, chunk)?;
        metrics::node_stored();
        debug!(target: "da_strong::node", %commitment, index = chunk.index, "stored and attested");
        Ok(attest(&self.key, commitment))
    }

    /// The chunk `index` of `commitment`, if held.
    pub fn handle_get(&self, commitment: &B256, index: u16) -> Result<Option<Chunk>, DaError> {
        let chunk = self.store.get(commitment, index)?;
        if chunk.is_some() {
            metrics::node_served();
        }
        Ok(chunk)
    }

    /// A chunk of `commitment` picked from `seed` among those held, with its proof.
    pub fn handle_sample(&self, commitment: &B256, seed: u64) -> Result<Option<Chunk>, DaError> {
        let indices = self.store.indices(commitment)?;
        if indices.is_empty() {
            return Ok(None);
        }
        let pick = indices[StdRng::seed_from_u64(seed).random_range(0..indices.len())];
        self.handle_get(commitment, pick)
    }
}

impl DaService for DaNode {
    fn handle_request(&self, request: DaRequest) -> DaResponse {
        let outcome = match &request {
            DaRequest::Store { commitment, chunk } => self
                .handle_store(commitment, chunk)
                .map(|attestation| DaResponse::Stored { attestation }),
            DaRequest::Get { commitment, index } => {
                self.handle_get(commitment, *index).map(DaResponse::Chunk)
            }
            DaRequest::Sample { commitment, seed } => {
                self.handle_sample(commitment, *seed).map(DaResponse::Chunk)
            }
        };
        outcome.unwrap_or_else(|error| {
            metrics::node_rejected();
            warn!(target: "da_strong::node", position = self.position, %error, "refused request");
            DaResponse::Refused {
                reason: error.to_string(),
            }
        })
    }
}
