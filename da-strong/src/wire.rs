//! Requests and responses between DA clients and DA nodes, in the bounded codec.
//!
//! One request and one response per QUIC stream ([`netstack::quic::request`]). Every tag and
//! length is checked before use; an unknown tag is a [`DecodeError`], never a panic.

use primitives::{
    B256,
    bls::BlsSignature,
    codec::{Decode, DecodeError, Decoder, Encode, put_bytes},
};

use crate::{coding::Chunk, constants::ERROR_TEXT_BYTES_MAX};

const REQUEST_VERSION: u8 = 1;
const RESPONSE_VERSION: u8 = 1;

/// What a client asks a DA node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaRequest {
    /// Verify, store and attest the node's chunk of `commitment`.
    Store {
        /// The DA commitment.
        commitment: B256,
        /// The node's chunk with its proof.
        chunk: Chunk,
    },
    /// The chunk `index` of `commitment`, if held.
    Get {
        /// The DA commitment.
        commitment: B256,
        /// Which chunk.
        index: u16,
    },
    /// A chunk of `commitment` chosen by the node from `seed`, with its proof, so a light
    /// client can check availability without downloading the batch.
    Sample {
        /// The DA commitment.
        commitment: B256,
        /// The requester's randomness.
        seed: u64,
    },
}

/// What a DA node answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaResponse {
    /// The chunk is stored; the attestation over the commitment.
    Stored {
        /// BLS signature over [`crate::attestation::availability_message`].
        attestation: BlsSignature,
    },
    /// A chunk, or none held.
    Chunk(Option<Chunk>),
    /// The request was refused.
    Refused {
        /// Why, for logs (at most [`ERROR_TEXT_BYTES_MAX`] bytes).
        reason: String,
    },
}

impl Encode for DaRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(REQUEST_VERSION);
        match self {
            DaRequest::Store { commitment, chunk } => {
                out.push(1);
                commitment.encode(out);
                chunk.encode(out);
            }
            DaRequest::Get { commitment, index } => {
                out.push(2);
                commitment.encode(out);
                out.extend_from_slice(&index.to_be_bytes());
            }
            DaRequest::Sample { commitment, seed } => {
                out.push(3);
                commitment.encode(out);
                out.extend_from_slice(&seed.to_be_bytes());
            }
        }
    }
}

impl Decode for DaRequest {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("DA request", &[REQUEST_VERSION])?;
        match decoder.u8()? {
            1 => Ok(DaRequest::Store {
                commitment: decoder.b256()?,
                chunk: Chunk::decode(decoder)?,
            }),
            2 => Ok(DaRequest::Get {
                commitment: decoder.b256()?,
                index: decoder.u16()?,
            }),
            3 => Ok(DaRequest::Sample {
                commitment: decoder.b256()?,
                seed: decoder.u64()?,
            }),
            tag => Err(DecodeError::UnknownTag {
                what: "DA request",
                tag,
            }),
        }
    }
}

impl Encode for DaResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(RESPONSE_VERSION);
        match self {
            DaResponse::Stored { attestation } => {
                out.push(1);
                attestation.encode(out);
            }
            DaResponse::Chunk(None) => out.push(2),
            DaResponse::Chunk(Some(chunk)) => {
                out.push(3);
                chunk.encode(out);
            }
            DaResponse::Refused { reason } => {
                out.push(4);
                let mut end = reason.len().min(ERROR_TEXT_BYTES_MAX);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                put_bytes(out, &reason.as_bytes()[..end]);
            }
        }
    }
}

impl Decode for DaResponse {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("DA response", &[RESPONSE_VERSION])?;
        match decoder.u8()? {
            1 => Ok(DaResponse::Stored {
                attestation: BlsSignature::decode(decoder)?,
            }),
            2 => Ok(DaResponse::Chunk(None)),
            3 => Ok(DaResponse::Chunk(Some(Chunk::decode(decoder)?))),
            4 => {
                let bytes = decoder.bytes("DA refusal", ERROR_TEXT_BYTES_MAX)?;
                Ok(DaResponse::Refused {
                    // Lossy decoding would give two byte strings one value (found by fuzzing).
                    reason: String::from_utf8(bytes.to_vec()).map_err(|_| {
                        DecodeError::Invalid {
                            what: "refusal reason",
                            why: "not UTF-8",
                        }
                    })?,
                })
            }
            tag => Err(DecodeError::UnknownTag {
                what: "DA response",
                tag,
            }),
        }
    }
}
