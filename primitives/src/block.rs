//! Blocks: what one sequencer packs from its local mempool every tick.
//!
//! Only the [`BlockHeader`] is broadcast; the [`BlockBody`] goes to weak DA and is pulled by
//! whoever needs it, then checked against the header's Merkle root.

use alloy_primitives::B256;

use crate::{
    bls::{BlsPublicKey, BlsSecretKey, BlsSignature},
    codec::{Decode, DecodeError, Decoder, Encode, put_list},
    constants::BLOCK_MOVES_MAX,
    id::NodeId,
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
    /// The sequencer's BLS signature over [`BlockHeader::signing_bytes`].
    pub signature: BlsSignature,
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

    /// The bytes the sequencer signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = b"tickrate:block".to_vec();
        self.encode_unsigned(&mut out);
        out
    }

    /// The header's hash (covers the signature too).
    pub fn hash(&self) -> B256 {
        B256::from(*blake3::hash(&self.to_bytes()).as_bytes())
    }

    /// Builds and signs a header over `body`.
    pub fn seal(
        key: &BlsSecretKey,
        sequencer: NodeId,
        height: u64,
        parent: B256,
        packed_at_us: u64,
        body: &BlockBody,
        body_bytes: u32,
    ) -> BlockHeader {
        let mut header = BlockHeader {
            sequencer,
            height,
            parent,
            packed_at_us,
            root: body.root(),
            move_count: body.moves.len() as u32,
            body_bytes,
            signature: key.sign(&[]),
        };
        header.signature = key.sign(&header.signing_bytes());
        header
    }

    /// Checks the sequencer's signature.
    pub fn verify_signature(&self, key: &BlsPublicKey) -> bool {
        key.verify(&self.signing_bytes(), &self.signature).is_ok()
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
            signature: BlsSignature::decode(decoder)?,
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
    use alloy_primitives::Address;

    use super::*;

    #[test]
    fn header_round_trips_and_signature_binds_the_root() {
        let key = BlsSecretKey::from_seed(&[9; 32]);
        let body = BlockBody::default();
        let header = BlockHeader::seal(
            &key,
            NodeId(Address::repeat_byte(1)),
            3,
            B256::ZERO,
            5,
            &body,
            5,
        );
        assert!(header.verify_signature(&key.public_key()));
        assert_eq!(
            BlockHeader::from_bytes(&header.to_bytes()),
            Ok(header.clone())
        );
        let mut tampered = header;
        tampered.root.0[0] ^= 1;
        assert!(!tampered.verify_signature(&key.public_key()));
    }
}
