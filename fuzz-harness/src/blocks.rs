//! Block headers and bodies (pulled from a peer sequencer or weak DA), batches and finalized
//! batches (proposed by the PBFT primary, read back from strong DA), and Merkle proofs.

use primitives::{
    BlockBody, BlockHeader, Encode,
    batch::{Batch, FinalizedBatch},
    merkle::MerkleProof,
};

use crate::codec::canonical;

/// Leaves of a decoded body whose proofs are checked; proofs cost a hash per level.
const PROVEN_LEAVES_MAX: usize = 4;

/// The bytes as each block and batch type, and as a Merkle proof.
pub fn fuzz(data: &[u8]) {
    if let Some(header) = canonical::<BlockHeader>(data) {
        // A forged header is refused, never a panic; only the check's outcome is unknown.
        let _ = header.verify_signature();
        assert_eq!(header.id(), header.clone().id());
    }
    if let Some(body) = canonical::<BlockBody>(data) {
        check_body(&body);
    }
    if let Some(batch) = canonical::<Batch>(data) {
        check_batch(&batch);
    }
    if let Some(finalized) = canonical::<FinalizedBatch>(data) {
        check_batch(&finalized.batch);
    }
    if let Some(proof) = canonical::<MerkleProof>(data) {
        // A proof of arbitrary bytes against an unrelated root never verifies.
        assert!(!proof.verify(data, &primitives::B256::repeat_byte(0xA5)));
    }
}

/// Every leaf of a decoded body is provable against the body's root.
fn check_body(body: &BlockBody) {
    let tree = body.tree();
    assert_eq!(tree.root(), body.root());
    for (index, tx) in body.moves.iter().enumerate().take(PROVEN_LEAVES_MAX) {
        let proof = tree.proof(index).expect("a leaf of the tree has a proof");
        assert!(proof.verify(&tx.to_bytes(), &body.root()));
    }
}

/// A batch's derived figures never overflow or panic.
fn check_batch(batch: &Batch) {
    let moves: u64 = batch
        .headers
        .iter()
        .map(|header| u64::from(header.move_count))
        .sum();
    assert_eq!(batch.move_count(), moves);
    assert_eq!(batch.hash(), batch.clone().hash());
}
