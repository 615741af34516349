//! Erasure coding and the DA commitment; no IO.
//!
//! A payload (the encoded finalized batch) is split into k data chunks of equal, even size
//! (Reed–Solomon over GF(2^16) works on 2-byte symbols; `reed-solomon-simd`), and n − k parity
//! chunks are computed, so any k of the n rebuild it. Chunk `i` goes to DA node `i`.
//!
//! Each chunk's *commitment* is a small leaf, `version ‖ k ‖ n ‖ payload length ‖ blake3(chunk)`,
//! and the blake3 Merkle tree ([`primitives::merkle`]) over the n leaves has the batch's DA
//! commitment as its root. Putting k, n and the length in every leaf means a chunk that proves
//! against the commitment also proves how to decode it: nobody can pass the same chunks off
//! under other parameters.
//!
//! A proof only shows a chunk is the one committed to, not that the n committed chunks form
//! one codeword: a faulty disperser could commit to garbage parity, and then different sets of
//! k chunks would rebuild different payloads. [`Rebuilder::finish`] therefore re-encodes what
//! it rebuilt and compares the commitment, so every reader that succeeds gets the same payload
//! and a bad dispersal is a typed error ([`DaError::InconsistentEncoding`]).

use std::collections::BTreeMap;

use primitives::{
    B256,
    codec::{Decode, DecodeError, Decoder, Encode, put_bytes},
    merkle::{MerkleProof, MerkleTree},
};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::{
    constants::{CHUNK_BYTES_MAX, DA_NODES_MAX, PAYLOAD_BYTES_MAX},
    error::DaError,
};

const LEAF_VERSION: u8 = 1;

/// How a payload is spread: any `data_chunks` (k) of `total_chunks` (n) rebuild it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErasureParams {
    /// k: chunks that rebuild the payload.
    pub data_chunks: u16,
    /// n: chunks in all, one per DA node.
    pub total_chunks: u16,
}

impl ErasureParams {
    /// Checked parameters: 1 ≤ k < n ≤ [`DA_NODES_MAX`].
    pub fn new(data_chunks: u16, total_chunks: u16) -> Result<Self, DaError> {
        let params = ErasureParams {
            data_chunks,
            total_chunks,
        };
        params.check()?;
        Ok(params)
    }

    fn check(&self) -> Result<(), DaError> {
        let valid = self.data_chunks >= 1
            && self.data_chunks < self.total_chunks
            && usize::from(self.total_chunks) <= DA_NODES_MAX;
        if valid {
            Ok(())
        } else {
            Err(DaError::InvalidParams {
                data_chunks: self.data_chunks,
                total_chunks: self.total_chunks,
            })
        }
    }

    /// Parity chunks, n − k.
    pub fn parity_chunks(&self) -> u16 {
        self.total_chunks - self.data_chunks
    }

    /// Bytes of each chunk for a payload of `payload_bytes`: the payload over k, rounded up to
    /// an even number (at least 2).
    pub fn chunk_bytes(&self, payload_bytes: usize) -> usize {
        let per_chunk = payload_bytes.div_ceil(usize::from(self.data_chunks)).max(2);
        per_chunk + per_chunk % 2
    }

    /// Faulty nodes the committee tolerates: f = ⌊(n − 1) / 3⌋.
    pub fn faults_max(&self) -> usize {
        (usize::from(self.total_chunks) - 1) / 3
    }

    /// Attestations an availability certificate needs: 2f + 1, and at least k + f so that,
    /// with up to f signers lying, k honest nodes hold verified chunks (enough to rebuild).
    /// For n = 6, k = 4 that is 5: 2f + 1 = 3 alone would not guarantee k chunks exist.
    pub fn quorum(&self) -> usize {
        let faults = self.faults_max();
        (2 * faults + 1).max(usize::from(self.data_chunks) + faults)
    }
}

/// One erasure-coded chunk with its Merkle proof against the DA commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// How the payload was coded.
    pub params: ErasureParams,
    /// Bytes of the payload before coding.
    pub payload_bytes: u32,
    /// Position: 0..k are data, k..n parity. Chunk `i` belongs to DA node `i`.
    pub index: u16,
    /// The chunk.
    pub bytes: Vec<u8>,
    /// Proof of the chunk's leaf at `index` in the tree over all n leaves.
    pub proof: MerkleProof,
}

/// The leaf committed for a chunk: parameters, length and the chunk's hash.
pub fn chunk_leaf(params: &ErasureParams, payload_bytes: u32, bytes: &[u8]) -> Vec<u8> {
    let mut leaf = Vec::with_capacity(1 + 2 + 2 + 4 + 32);
    leaf.push(LEAF_VERSION);
    leaf.extend_from_slice(&params.data_chunks.to_be_bytes());
    leaf.extend_from_slice(&params.total_chunks.to_be_bytes());
    leaf.extend_from_slice(&payload_bytes.to_be_bytes());
    leaf.extend_from_slice(blake3::hash(bytes).as_bytes());
    leaf
}

impl Chunk {
    /// Checks the chunk against `commitment`: parameters, size, position and proof.
    pub fn verify(&self, commitment: &B256) -> Result<(), DaError> {
        let bad = |why| DaError::BadChunk {
            commitment: *commitment,
            index: self.index,
            why,
        };
        self.params.check().map_err(|_| bad("invalid parameters"))?;
        if self.index >= self.params.total_chunks {
            return Err(bad("index beyond n"));
        }
        if self.payload_bytes as usize > PAYLOAD_BYTES_MAX {
            return Err(bad("payload length beyond the bound"));
        }
        if self.bytes.len() != self.params.chunk_bytes(self.payload_bytes as usize) {
            return Err(bad("chunk size does not match the payload length"));
        }
        if self.proof.index != u32::from(self.index)
            || self.proof.leaf_count != u32::from(self.params.total_chunks)
        {
            return Err(bad("proof is for another position or tree"));
        }
        let leaf = chunk_leaf(&self.params, self.payload_bytes, &self.bytes);
        if !self.proof.verify(&leaf, commitment) {
            return Err(bad("Merkle proof does not reach the commitment"));
        }
        Ok(())
    }
}

impl Encode for Chunk {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.params.data_chunks.to_be_bytes());
        out.extend_from_slice(&self.params.total_chunks.to_be_bytes());
        out.extend_from_slice(&self.payload_bytes.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        put_bytes(out, &self.bytes);
        self.proof.encode(out);
    }
}

impl Decode for Chunk {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Chunk {
            params: ErasureParams {
                data_chunks: decoder.u16()?,
                total_chunks: decoder.u16()?,
            },
            payload_bytes: decoder.u32()?,
            index: decoder.u16()?,
            bytes: decoder.bytes("DA chunk", CHUNK_BYTES_MAX)?.to_vec(),
            proof: MerkleProof::decode(decoder)?,
        })
    }
}

/// A payload coded into n chunks, with the tree that proves them.
#[derive(Clone, Debug)]
pub struct EncodedPayload {
    /// The DA commitment: the Merkle root over the chunk leaves.
    pub commitment: B256,
    /// The n chunks, each with its proof, by index.
    pub chunks: Vec<Chunk>,
}

/// Codes `payload` into `params.total_chunks` chunks and commits to them.
pub fn encode_payload(payload: &[u8], params: ErasureParams) -> Result<EncodedPayload, DaError> {
    params.check()?;
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(DaError::PayloadTooLarge {
            len: payload.len(),
            max: PAYLOAD_BYTES_MAX,
        });
    }
    let payload_bytes = payload.len() as u32;
    let chunk_bytes = params.chunk_bytes(payload.len());
    let mut shards: Vec<Vec<u8>> = (0..usize::from(params.data_chunks))
        .map(|index| {
            let start = (index * chunk_bytes).min(payload.len());
            let end = ((index + 1) * chunk_bytes).min(payload.len());
            let mut shard = Vec::with_capacity(chunk_bytes);
            shard.extend_from_slice(&payload[start..end]);
            shard.resize(chunk_bytes, 0);
            shard
        })
        .collect();
    let mut encoder = ReedSolomonEncoder::new(
        usize::from(params.data_chunks),
        usize::from(params.parity_chunks()),
        chunk_bytes,
    )?;
    for shard in &shards {
        encoder.add_original_shard(shard)?;
    }
    let parity: Vec<Vec<u8>> = encoder
        .encode()?
        .recovery_iter()
        .map(<[u8]>::to_vec)
        .collect();
    shards.extend(parity);
    assert_eq!(shards.len(), usize::from(params.total_chunks));

    let leaves: Vec<Vec<u8>> = shards
        .iter()
        .map(|shard| chunk_leaf(&params, payload_bytes, shard))
        .collect();
    let tree = MerkleTree::from_leaves(leaves.iter().map(Vec::as_slice));
    let commitment = tree.root();
    let chunks = shards
        .into_iter()
        .enumerate()
        .map(|(index, bytes)| Chunk {
            params,
            payload_bytes,
            index: index as u16,
            bytes,
            proof: tree.proof(index).expect("one leaf per chunk"),
        })
        .collect();
    Ok(EncodedPayload { commitment, chunks })
}

/// Collects chunks for one commitment, verifying each, until k rebuild the payload.
///
/// Feed it with [`Rebuilder::handle_chunk`] as chunks arrive from any source; a chunk that does
/// not verify is counted and dropped, so a lying node costs one more request, never a wrong
/// payload. Once [`Rebuilder::is_complete`], [`Rebuilder::finish`] decodes and checks the
/// codeword.
#[derive(Debug)]
pub struct Rebuilder {
    commitment: B256,
    /// Parameters and length fixed by the first verified chunk.
    shape: Option<(ErasureParams, u32)>,
    chunks: BTreeMap<u16, Vec<u8>>,
    rejected: usize,
}

impl Rebuilder {
    /// An empty rebuilder for `commitment`.
    pub fn new(commitment: B256) -> Self {
        Rebuilder {
            commitment,
            shape: None,
            chunks: BTreeMap::new(),
            rejected: 0,
        }
    }

    /// Verifies and keeps `chunk`; an error says why it was dropped (it changes nothing).
    pub fn handle_chunk(&mut self, chunk: Chunk) -> Result<(), DaError> {
        let outcome = self.accept(chunk);
        if outcome.is_err() {
            self.rejected += 1;
        }
        outcome
    }

    fn accept(&mut self, chunk: Chunk) -> Result<(), DaError> {
        chunk.verify(&self.commitment)?;
        let shape = (chunk.params, chunk.payload_bytes);
        if *self.shape.get_or_insert(shape) != shape {
            // Both verified, so the disperser committed to leaves with different parameters.
            return Err(DaError::BadChunk {
                commitment: self.commitment,
                index: chunk.index,
                why: "parameters differ from the other chunks'",
            });
        }
        self.chunks.insert(chunk.index, chunk.bytes);
        Ok(())
    }

    /// Whether k verified chunks are in.
    pub fn is_complete(&self) -> bool {
        self.shape
            .is_some_and(|(params, _)| self.chunks.len() >= usize::from(params.data_chunks))
    }

    /// Chunks verified so far.
    pub fn verified(&self) -> usize {
        self.chunks.len()
    }

    /// Chunks refused so far.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// Indices already held, so a caller need not fetch them again.
    pub fn has(&self, index: u16) -> bool {
        self.chunks.contains_key(&index)
    }

    /// Decodes the payload and checks that it re-encodes to the commitment.
    pub fn finish(self) -> Result<Vec<u8>, DaError> {
        let unavailable = || DaError::Unavailable {
            verified: self.chunks.len(),
            needed: self
                .shape
                .map_or(1, |(params, _)| usize::from(params.data_chunks)),
            rejected: self.rejected,
        };
        let Some((params, payload_bytes)) = self.shape else {
            return Err(unavailable());
        };
        if !self.is_complete() {
            return Err(unavailable());
        }
        let data_chunks = usize::from(params.data_chunks);
        let chunk_bytes = params.chunk_bytes(payload_bytes as usize);
        let mut restored: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let missing_data = (0..data_chunks).any(|index| !self.chunks.contains_key(&(index as u16)));
        if missing_data {
            let mut decoder = ReedSolomonDecoder::new(
                data_chunks,
                usize::from(params.parity_chunks()),
                chunk_bytes,
            )?;
            for (index, bytes) in &self.chunks {
                let index = usize::from(*index);
                if index < data_chunks {
                    decoder.add_original_shard(index, bytes)?;
                } else {
                    decoder.add_recovery_shard(index - data_chunks, bytes)?;
                }
            }
            let result = decoder.decode()?;
            restored.extend(
                result
                    .restored_original_iter()
                    .map(|(index, bytes)| (index, bytes.to_vec())),
            );
        }
        let mut payload = Vec::with_capacity(data_chunks * chunk_bytes);
        for index in 0..data_chunks {
            let bytes = self
                .chunks
                .get(&(index as u16))
                .or_else(|| restored.get(&index))
                .expect("every data chunk held or restored");
            payload.extend_from_slice(bytes);
        }
        payload.truncate(payload_bytes as usize);
        let actual = encode_payload(&payload, params)?.commitment;
        if actual != self.commitment {
            return Err(DaError::InconsistentEncoding {
                commitment: self.commitment,
                actual,
            });
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn payload(len: usize, seed: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        bytes
    }

    #[test]
    fn any_k_of_n_rebuild_for_awkward_sizes() {
        let params = ErasureParams::new(4, 6).expect("params");
        for len in [0usize, 1, 7, 8, 9, 1000, 65_537] {
            let payload = payload(len, len as u64);
            let encoded = encode_payload(&payload, params).expect("encode");
            // Every subset of 4 of the 6 chunks.
            for mask in 0u32..64 {
                if mask.count_ones() != 4 {
                    continue;
                }
                let mut rebuilder = Rebuilder::new(encoded.commitment);
                for chunk in encoded.chunks.iter().filter(|c| mask & (1 << c.index) != 0) {
                    rebuilder.handle_chunk(chunk.clone()).expect("verifies");
                }
                assert!(rebuilder.is_complete());
                assert_eq!(rebuilder.finish().expect("rebuilds"), payload, "len {len}");
            }
        }
    }

    #[test]
    fn corrupted_or_misplaced_chunks_are_refused_and_others_used() {
        let params = ErasureParams::new(4, 6).expect("params");
        let payload = payload(10_000, 1);
        let encoded = encode_payload(&payload, params).expect("encode");
        let mut rebuilder = Rebuilder::new(encoded.commitment);

        let mut corrupted = encoded.chunks[0].clone();
        corrupted.bytes[17] ^= 1;
        assert!(matches!(
            rebuilder.handle_chunk(corrupted),
            Err(DaError::BadChunk { index: 0, .. })
        ));
        let mut moved = encoded.chunks[1].clone();
        moved.index = 2;
        assert!(rebuilder.handle_chunk(moved).is_err());
        let mut relabelled = encoded.chunks[1].clone();
        relabelled.params = ErasureParams::new(3, 6).expect("params");
        assert!(rebuilder.handle_chunk(relabelled).is_err());
        let mut short = encoded.chunks[1].clone();
        short.bytes.pop();
        assert!(rebuilder.handle_chunk(short).is_err());
        assert_eq!(rebuilder.rejected(), 4);
        assert!(!rebuilder.is_complete());

        for chunk in &encoded.chunks[1..5] {
            rebuilder.handle_chunk(chunk.clone()).expect("verifies");
        }
        assert_eq!(rebuilder.finish().expect("rebuilds"), payload);

        let decoded = Chunk::from_bytes(&encoded.chunks[5].to_bytes()).expect("round trip");
        assert_eq!(decoded, encoded.chunks[5]);
    }

    #[test]
    fn too_few_chunks_is_unavailable_and_bad_params_refused() {
        let params = ErasureParams::new(4, 6).expect("params");
        let encoded = encode_payload(b"hello", params).expect("encode");
        let mut rebuilder = Rebuilder::new(encoded.commitment);
        for chunk in &encoded.chunks[..3] {
            rebuilder.handle_chunk(chunk.clone()).expect("verifies");
        }
        assert!(matches!(
            rebuilder.finish(),
            Err(DaError::Unavailable {
                verified: 3,
                needed: 4,
                ..
            })
        ));
        assert!(ErasureParams::new(0, 6).is_err());
        assert!(ErasureParams::new(6, 6).is_err());
        assert!(ErasureParams::new(4, 300).is_err());
        assert_eq!(params.quorum(), 5);
        assert_eq!(ErasureParams::new(2, 4).expect("params").quorum(), 3);
    }

    #[test]
    fn a_commitment_to_garbage_parity_is_caught_on_rebuild() {
        let params = ErasureParams::new(2, 4).expect("params");
        let mut encoded = encode_payload(&payload(100, 2), params).expect("encode");
        // A faulty disperser commits to a parity chunk that is not the code's.
        encoded.chunks[3].bytes[0] ^= 1;
        let leaves: Vec<Vec<u8>> = encoded
            .chunks
            .iter()
            .map(|chunk| chunk_leaf(&params, chunk.payload_bytes, &chunk.bytes))
            .collect();
        let tree = MerkleTree::from_leaves(leaves.iter().map(Vec::as_slice));
        let mut rebuilder = Rebuilder::new(tree.root());
        for index in [0usize, 3] {
            let mut chunk = encoded.chunks[index].clone();
            chunk.proof = tree.proof(index).expect("leaf");
            rebuilder
                .handle_chunk(chunk)
                .expect("proves against the bad commitment");
        }
        assert!(matches!(
            rebuilder.finish(),
            Err(DaError::InconsistentEncoding { .. })
        ));
    }
}
