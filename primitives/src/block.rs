//! Blocks: what one sequencer packs from its local mempool every tick.
//!
//! Only the [`BlockHeader`] is broadcast; the [`BlockBody`] goes to weak DA and is pulled by
//! whoever needs it, then checked against the header's Merkle root.
//!
//! A header is signed with the sequencer's operator key (secp256k1): the signer is recovered
//! and must be the header's sequencer ID. Every sequencer checks every header, so this costs one
//! recovery (tens of microseconds) where a BLS signature would cost a pairing (about a
//! millisecond); BLS is kept for what must aggregate, the certificates.

use alloy_primitives::{B256, keccak256};

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode, put_list},
    constants::BLOCK_MOVES_MAX,
    id::NodeId,
    keys::{AccountKey, Signature},
    merkle::MerkleTree,
    tx::SignedTransaction,
};

const HEADER_VERSION: u8 = 1;
const BODY_VERSION: u8 = 1;

/// Names a block: its sequencer and that sequencer's block height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId {
    /// The sequencer that packed it.
    pub sequencer: NodeId,
    /// Its height in that sequencer's chain of blocks.
    pub height: u64,
}

/// The signed summary of a block that sequencers broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// The sequencer that packed the block.
    pub sequencer: NodeId,
    /// Height in the sequencer's own chain, from 0.
    pub height: u64,
    /// Hash of the sequencer's previous header ([`B256::ZERO`] at height 0).
    pub parent: B256,
    /// When it was packed, microseconds on the sequencer's clock (informational).
    pub packed_at_us: u64,
    /// blake3 Merkle root of the encoded moves.
    pub root: B256,
    /// Number of moves.
    pub move_count: u32,
    /// Size of the encoded body, so a puller can bound its read.
    pub body_bytes: u32,
    /// The sequencer's operator-key signature over [`BlockHeader::signing_hash`].
    pub signature: Signature,
}

impl BlockHeader {
    /// The block's ID.
    pub fn id(&self) -> BlockId {
        BlockId {
            sequencer: self.sequencer,
            height: self.height,
        }
    }

    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        out.push(HEADER_VERSION);
        self.sequencer.encode(out);
        out.extend_from_slice(&self.height.to_be_bytes());
        self.parent.encode(out);
        out.extend_from_slice(&self.packed_at_us.to_be_bytes());
        self.root.encode(out);
        out.extend_from_slice(&self.move_count.to_be_bytes());
        out.extend_from_slice(&self.body_bytes.to_be_bytes());
    }

    /// The hash the sequencer signs.
    pub fn signing_hash(&self) -> B256 {
        let mut out = b"tickrate:block".to_vec();
        self.encode_unsigned(&mut out);
        keccak256(&out)
    }

    /// The header's hash (covers the signature too).
    pub fn hash(&self) -> B256 {
        B256::from(*blake3::hash(&self.to_bytes()).as_bytes())
    }

    /// Builds and signs a header over `body`.
    pub fn seal(
        key: &AccountKey,
        height: u64,
        parent: B256,
        packed_at_us: u64,
        body: &BlockBody,
        body_bytes: u32,
    ) -> BlockHeader {
        let mut header = BlockHeader {
            sequencer: NodeId(key.address()),
            height,
            parent,
            packed_at_us,
            root: body.root(),
            move_count: body.moves.len() as u32,
            body_bytes,
            signature: Signature([0; 65]),
        };
        header.signature = key.sign_prehash(&header.signing_hash());
        header
    }

    /// Whether the header is signed by its sequencer's operator key.
    pub fn verify_signature(&self) -> bool {
        self.signature.recover_address(&self.signing_hash()) == Ok(self.sequencer.0)
    }
}

impl Encode for BlockHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_unsigned(out);
        self.signature.encode(out);
    }
}

impl Decode for BlockHeader {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("block header", &[HEADER_VERSION])?;
        Ok(BlockHeader {
            sequencer: NodeId::decode(decoder)?,
            height: decoder.u64()?,
            parent: decoder.b256()?,
            packed_at_us: decoder.u64()?,
            root: decoder.b256()?,
            move_count: decoder.u32()?,
            body_bytes: decoder.u32()?,
            signature: Signature::decode(decoder)?,
        })
    }
}

/// The moves of a block, in packing order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BlockBody {
    /// The moves.
    pub moves: Vec<SignedTransaction>,
}

impl BlockBody {
    /// The Merkle tree over the encoded moves.
    pub fn tree(&self) -> MerkleTree {
        let encoded: Vec<Vec<u8>> = self.moves.iter().map(Encode::to_bytes).collect();
        MerkleTree::from_leaves(encoded.iter().map(Vec::as_slice))
    }

    /// The Merkle root over the encoded moves.
    pub fn root(&self) -> B256 {
        self.tree().root()
    }
}

impl Encode for BlockBody {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(BODY_VERSION);
        put_list(out, &self.moves);
    }
}

impl Decode for BlockBody {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("block body", &[BODY_VERSION])?;
        Ok(BlockBody {
            moves: decoder.list("block moves", BLOCK_MOVES_MAX)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_signature_binds_the_root_and_the_sequencer() {
        let key = AccountKey::from_seed(9);
        let body = BlockBody::default();
        let header = BlockHeader::seal(&key, 3, B256::ZERO, 5, &body, 5);
        assert_eq!(header.sequencer, NodeId(key.address()));
        assert!(header.verify_signature());
        assert_eq!(
            BlockHeader::from_bytes(&header.to_bytes()),
            Ok(header.clone())
        );
        let mut tampered = header.clone();
        tampered.root.0[0] ^= 1;
        assert!(!tampered.verify_signature());
        let mut impostor = header;
        impostor.sequencer = NodeId(AccountKey::from_seed(10).address());
        assert!(!impostor.verify_signature());
    }
}
