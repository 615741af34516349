//! The estimation API: a client asks a shard node for the Space Access List a move needs.
//!
//! A move must carry its list when it is signed, and the list names the values it will write.
//! Only execution nodes hold executed state, so a client sends the unsigned move to a shard node
//! and signs what comes back. One request and one reply per KCP message; the client picks the
//! request id and may have many requests in flight on one session.

use alloy_primitives::Address;

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode, put_list},
    finality::{FailureReason, StateItem},
    tx::{SpaceAccessList, Transaction},
};

const ESTIMATE_API_VERSION: u8 = 1;

/// Items one request may name as deltas.
pub const ESTIMATE_DELTAS_MAX: usize = 256;

/// A request for the list a move needs, run against executed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstimateRequest {
    /// Chosen by the client; the reply carries it back.
    pub id: u64,
    /// The account the move is from.
    pub sender: Address,
    /// The move, a call of `body.to`. Its own access list is ignored, and it runs with the
    /// sender's executed nonce (the client assigns the nonce when it sends the move).
    pub body: Transaction,
    /// Items (balances or slots) whose change is declared as a delta, so that the move still
    /// holds when other players change them first.
    pub deltas: Vec<StateItem>,
}

/// What estimation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstimateFound {
    /// The list to sign the move with.
    pub access_list: SpaceAccessList,
    /// Whether the move succeeds on executed state (a failing move still gets the list of what
    /// it touched before failing).
    pub status: Result<(), FailureReason>,
    /// Gas the move used.
    pub gas_used: u64,
}

/// Why a shard node did not estimate a move.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EstimateRefusal {
    /// The request could not be decoded.
    #[error("malformed estimation request")]
    Malformed,
    /// The move is for another network.
    #[error("wrong chain id {got}, expected {expected}")]
    WrongChain {
        /// This network's chain id.
        expected: u64,
        /// The move's.
        got: u64,
    },
    /// The groups holding the move's state could not be read with a quorum agreeing.
    #[error("the state the move reads is unavailable")]
    StateUnavailable,
    /// Each round of estimation found items the previous one had not read; the move's reads
    /// depend on values in ways that did not settle.
    #[error("estimation did not settle within {rounds} rounds")]
    DidNotSettle {
        /// Rounds run.
        rounds: u32,
    },
    /// The node has more requests in flight than it serves at once.
    #[error("busy")]
    Busy,
}

/// A shard node's answer to an [`EstimateRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstimateReply {
    /// The request's id (zero for a request that could not be decoded).
    pub id: u64,
    /// The estimate, or why there is none.
    pub result: Result<EstimateFound, EstimateRefusal>,
}

impl Encode for EstimateRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(ESTIMATE_API_VERSION);
        self.id.encode(out);
        self.sender.encode(out);
        self.body.encode(out);
        put_list(out, &self.deltas);
    }
}

impl Decode for EstimateRequest {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("estimate request", &[ESTIMATE_API_VERSION])?;
        Ok(EstimateRequest {
            id: decoder.u64()?,
            sender: decoder.address()?,
            body: Transaction::decode(decoder)?,
            deltas: decoder.list("estimate deltas", ESTIMATE_DELTAS_MAX)?,
        })
    }
}

impl Encode for EstimateRefusal {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            EstimateRefusal::Malformed => out.push(0),
            EstimateRefusal::WrongChain { expected, got } => {
                out.push(1);
                expected.encode(out);
                got.encode(out);
            }
            EstimateRefusal::StateUnavailable => out.push(2),
            EstimateRefusal::DidNotSettle { rounds } => {
                out.push(3);
                out.extend_from_slice(&rounds.to_be_bytes());
            }
            EstimateRefusal::Busy => out.push(4),
        }
    }
}

impl Decode for EstimateRefusal {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => EstimateRefusal::Malformed,
            1 => EstimateRefusal::WrongChain {
                expected: decoder.u64()?,
                got: decoder.u64()?,
            },
            2 => EstimateRefusal::StateUnavailable,
            3 => EstimateRefusal::DidNotSettle {
                rounds: decoder.u32()?,
            },
            4 => EstimateRefusal::Busy,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "estimate refusal",
                    tag,
                });
            }
        })
    }
}

impl Encode for EstimateReply {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(ESTIMATE_API_VERSION);
        self.id.encode(out);
        match &self.result {
            Ok(found) => {
                out.push(0);
                found.access_list.encode(out);
                match &found.status {
                    Ok(()) => out.push(0),
                    Err(reason) => {
                        out.push(1);
                        reason.encode(out);
                    }
                }
                found.gas_used.encode(out);
            }
            Err(refusal) => {
                out.push(1);
                refusal.encode(out);
            }
        }
    }
}

impl Decode for EstimateReply {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("estimate reply", &[ESTIMATE_API_VERSION])?;
        let id = decoder.u64()?;
        let result = match decoder.u8()? {
            0 => {
                let access_list = SpaceAccessList::decode(decoder)?;
                let status = match decoder.u8()? {
                    0 => Ok(()),
                    1 => Err(FailureReason::decode(decoder)?),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "estimate status",
                            tag,
                        });
                    }
                };
                Ok(EstimateFound {
                    access_list,
                    status,
                    gas_used: decoder.u64()?,
                })
            }
            1 => Err(EstimateRefusal::decode(decoder)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "estimate result",
                    tag,
                });
            }
        };
        Ok(EstimateReply { id, result })
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{B256, Bytes, U256};
    use proptest::prelude::*;

    use super::*;
    use crate::tx::{AccountAccess, DeclaredWrite, SlotAccess};

    fn body() -> Transaction {
        Transaction {
            chain_id: 7,
            nonce: 3,
            to: Address::repeat_byte(0x42),
            value: U256::ZERO,
            data: Bytes::from(vec![1, 2, 3]),
            gas_limit: 100_000,
            gas_price: 0,
            sponsor: None,
            access_list: SpaceAccessList::default(),
        }
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let request = EstimateRequest {
            id: 9,
            sender: Address::repeat_byte(1),
            body: body(),
            deltas: vec![StateItem::Storage(Address::repeat_byte(0x42), B256::ZERO)],
        };
        assert_eq!(
            EstimateRequest::from_bytes(&request.to_bytes()),
            Ok(request)
        );
        let list = SpaceAccessList::new([AccountAccess {
            storage: vec![SlotAccess {
                slot: B256::ZERO,
                write: Some(DeclaredWrite::Exact(U256::from(5))),
            }],
            ..AccountAccess::read(Address::repeat_byte(0x42))
        }]);
        for result in [
            Ok(EstimateFound {
                access_list: list.clone(),
                status: Ok(()),
                gas_used: 21_000,
            }),
            Ok(EstimateFound {
                access_list: list,
                status: Err(FailureReason::Reverted),
                gas_used: 30_000,
            }),
            Err(EstimateRefusal::WrongChain {
                expected: 1,
                got: 2,
            }),
            Err(EstimateRefusal::DidNotSettle { rounds: 8 }),
            Err(EstimateRefusal::Busy),
        ] {
            let reply = EstimateReply { id: 4, result };
            assert_eq!(EstimateReply::from_bytes(&reply.to_bytes()), Ok(reply));
        }
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut bytes = EstimateRequest {
            id: 1,
            sender: Address::ZERO,
            body: body(),
            deltas: Vec::new(),
        }
        .to_bytes();
        bytes[0] = 99;
        assert!(matches!(
            EstimateRequest::from_bytes(&bytes),
            Err(DecodeError::UnknownVersion { .. })
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_are_a_typed_error_or_a_request(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = EstimateRequest::from_bytes(&bytes);
            let _ = EstimateReply::from_bytes(&bytes);
        }
    }
}
