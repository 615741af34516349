//! Batches: ordered lists of block headers that the sequencers finalize by PBFT.

use alloy_primitives::B256;

use crate::{
    block::BlockHeader,
    bls::Certificate,
    codec::{Decode, DecodeError, Decoder, Encode, put_list},
    constants::BATCH_BLOCKS_MAX,
};

const BATCH_VERSION: u8 = 1;

/// An ordered list of block headers proposed for one sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Sequence number, from 1, one batch per number.
    pub number: u64,
    /// Hash of the previous batch ([`B256::ZERO`] before the first).
    pub parent: B256,
    /// The blocks, in execution order.
    pub headers: Vec<BlockHeader>,
}

impl Batch {
    /// The batch's hash, which its certificate signs.
    pub fn hash(&self) -> B256 {
        B256::from(*blake3::hash(&self.to_bytes()).as_bytes())
    }

    /// Total moves named by the batch.
    pub fn move_count(&self) -> u64 {
        self.headers
            .iter()
            .map(|header| u64::from(header.move_count))
            .sum()
    }
}

impl Encode for Batch {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(BATCH_VERSION);
        out.extend_from_slice(&self.number.to_be_bytes());
        self.parent.encode(out);
        put_list(out, &self.headers);
    }
}

impl Decode for Batch {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("batch", &[BATCH_VERSION])?;
        Ok(Batch {
            number: decoder.u64()?,
            parent: decoder.b256()?,
            headers: decoder.list("batch headers", BATCH_BLOCKS_MAX)?,
        })
    }
}

/// A batch with the commit certificate of the sequencers that finalized it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalizedBatch {
    /// The batch.
    pub batch: Batch,
    /// The PBFT sequence the batch was decided at. Equal to `batch.number` until a view change
    /// fills a sequence with a null (no batch), after which sequences run ahead of numbers.
    pub sequence: u64,
    /// The PBFT view the batch was committed in, which the commit votes sign.
    pub view: u64,
    /// Aggregate commit signature over the batch's commit message, with the signer bitmap.
    pub certificate: Certificate,
}

impl Encode for FinalizedBatch {
    fn encode(&self, out: &mut Vec<u8>) {
        self.batch.encode(out);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.view.to_be_bytes());
        self.certificate.encode(out);
    }
}

impl Decode for FinalizedBatch {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(FinalizedBatch {
            batch: Batch::decode(decoder)?,
            sequence: decoder.u64()?,
            view: decoder.u64()?,
            certificate: Certificate::decode(decoder)?,
        })
    }
}
