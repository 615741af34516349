//! The packer: every tick, the mempool becomes a block.
//!
//! A block is the moves in ack order, their blake3 Merkle root, and a header signed with the
//! sequencer's operator key that chains to its previous header. Sans-IO: the tick time is passed in.

use primitives::{
    AccountKey, B256, BlockBody, BlockHeader, TxHash, VerifiedTransaction, codec::Encode,
    time::Instant,
};

/// A freshly packed block.
#[derive(Clone, Debug)]
pub struct PackedBlock {
    /// The signed header, to broadcast.
    pub header: BlockHeader,
    /// The body, to push to weak DA.
    pub body: BlockBody,
    /// The body's encoding (what weak DA stores and peers pull).
    pub encoded_body: Vec<u8>,
    /// The hashes of the body's moves, in its order: computed at ingress, kept so that no one
    /// hashes a move again (two keccaks over its encoding each time).
    pub hashes: Vec<TxHash>,
}

/// Packs this sequencer's blocks, one height after another.
#[derive(Debug)]
pub struct Packer {
    key: AccountKey,
    next_height: u64,
    parent: B256,
}

impl Packer {
    /// A packer starting at height 0.
    pub fn new(key: AccountKey) -> Self {
        Packer {
            key,
            next_height: 0,
            parent: B256::ZERO,
        }
    }

    /// Packs `moves` (in ack order) into the next block.
    pub fn pack(&mut self, now: Instant, moves: Vec<VerifiedTransaction>) -> PackedBlock {
        let hashes = moves.iter().map(|verified| verified.hash).collect();
        let body = BlockBody {
            moves: moves.into_iter().map(|verified| verified.signed).collect(),
        };
        let encoded_body = body.to_bytes();
        let body_bytes =
            u32::try_from(encoded_body.len()).expect("blocks are bounded far below 4 GiB");
        let header = BlockHeader::seal(
            &self.key,
            self.next_height,
            self.parent,
            now.as_micros(),
            &body,
            body_bytes,
        );
        debug_assert_eq!(
            header.root,
            body.root(),
            "the header commits to the body it was sealed over"
        );
        self.next_height += 1;
        self.parent = header.hash();
        PackedBlock {
            header,
            body,
            encoded_body,
            hashes,
        }
    }

    /// Continues a chain packed before a restart: the next block is at `next_height`, on top of
    /// the header whose hash is `parent` (both as the write-ahead log recorded them).
    pub fn resume(&mut self, next_height: u64, parent: B256) {
        assert!(
            next_height >= self.next_height,
            "a packer never goes back below a height it packed"
        );
        self.next_height = next_height;
        self.parent = parent;
    }

    /// Height of the next block.
    pub fn next_height(&self) -> u64 {
        self.next_height
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mempool::tests::verified_by;

    #[test]
    fn a_packed_block_keeps_each_moves_hash_in_body_order() {
        let player = AccountKey::from_seed(7);
        let moves: Vec<VerifiedTransaction> =
            (0..3).map(|nonce| verified_by(&player, nonce)).collect();
        let mut packer = Packer::new(AccountKey::from_seed(1));
        let block = packer.pack(Instant::from_micros(10), moves);
        let rehashed: Vec<TxHash> = block
            .body
            .moves
            .iter()
            .map(|signed| signed.hash())
            .collect();
        assert_eq!(block.hashes, rehashed);
        assert_eq!(block.header.root, block.body.root());
        assert_eq!(block.header.move_count, 3);
        assert!(block.header.verify_signature());
    }
}
