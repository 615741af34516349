//! Finality levels reported for every move, and why a move failed.

use alloy_primitives::{Address, B256};

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode},
    session::SessionRefusal,
};

/// One piece of state a move can touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateItem {
    /// An account's balance.
    Balance(Address),
    /// An account's nonce.
    Nonce(Address),
    /// An account's code.
    Code(Address),
    /// One storage slot.
    Storage(Address, B256),
}

impl Encode for StateItem {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            StateItem::Balance(address) => {
                out.push(0);
                address.encode(out);
            }
            StateItem::Nonce(address) => {
                out.push(1);
                address.encode(out);
            }
            StateItem::Code(address) => {
                out.push(2);
                address.encode(out);
            }
            StateItem::Storage(address, slot) => {
                out.push(3);
                address.encode(out);
                slot.encode(out);
            }
        }
    }
}

impl Decode for StateItem {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => StateItem::Balance(decoder.address()?),
            1 => StateItem::Nonce(decoder.address()?),
            2 => StateItem::Code(decoder.address()?),
            3 => StateItem::Storage(decoder.address()?, decoder.b256()?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "state item",
                    tag,
                });
            }
        })
    }
}

/// Why a move failed. Every member of a group reaches the same reason for the same move.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// Execution read or wrote an item its Space Access List does not name.
    OutOfAccessList(StateItem),
    /// Execution changed an item the list names but declares no write for.
    UndeclaredWrite(StateItem),
    /// A declared exact write did not happen as declared.
    WrongPostValue(StateItem),
    /// A declared delta did not happen as declared: the value after the move is not the value
    /// before plus the declared amount.
    WrongDelta(StateItem),
    /// The contract reverted.
    Reverted,
    /// Execution halted (out of gas, invalid opcode, stack error...).
    Halted,
    /// The move's nonce is not the sender's next nonce when it executes.
    BadNonce {
        /// The sender's next nonce.
        expected: u64,
        /// The move's nonce.
        got: u64,
    },
    /// The payer cannot cover value plus fees.
    InsufficientFunds,
    /// The move in a finalized batch does not verify (bad signature, wrong chain, or a list that
    /// does not name its sender): a faulty sequencer packed it. It consumes nothing.
    InvalidMove,
    /// A session key acted outside what its grant allows when the move ran, or a grant or
    /// revocation was refused.
    Session(SessionRefusal),
    /// The executing group did not receive a proven slice of this account from the group that
    /// holds it (every holder down, or every shipment failed its proof). The move did not run and
    /// consumes nothing: the decision is taken once for the group, from the shipments it received,
    /// so every member records the same failure.
    SliceUnavailable(Address),
    /// Its sender replaced it, before it was packed, by the move `by` with the same nonce (see
    /// the sequencer's replacement policy). It never runs and consumes nothing.
    Replaced {
        /// The move that took its place.
        by: B256,
    },
}

impl Encode for FailureReason {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            FailureReason::OutOfAccessList(item) => {
                out.push(0);
                item.encode(out);
            }
            FailureReason::UndeclaredWrite(item) => {
                out.push(1);
                item.encode(out);
            }
            FailureReason::WrongPostValue(item) => {
                out.push(2);
                item.encode(out);
            }
            FailureReason::Reverted => out.push(3),
            FailureReason::Halted => out.push(4),
            FailureReason::BadNonce { expected, got } => {
                out.push(5);
                expected.encode(out);
                got.encode(out);
            }
            FailureReason::InsufficientFunds => out.push(6),
            FailureReason::InvalidMove => out.push(7),
            FailureReason::WrongDelta(item) => {
                out.push(8);
                item.encode(out);
            }
            FailureReason::Session(refusal) => {
                out.push(9);
                refusal.encode(out);
            }
            FailureReason::SliceUnavailable(address) => {
                out.push(10);
                address.encode(out);
            }
            FailureReason::Replaced { by } => {
                out.push(11);
                by.encode(out);
            }
        }
    }
}

impl Decode for FailureReason {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => FailureReason::OutOfAccessList(StateItem::decode(decoder)?),
            1 => FailureReason::UndeclaredWrite(StateItem::decode(decoder)?),
            2 => FailureReason::WrongPostValue(StateItem::decode(decoder)?),
            3 => FailureReason::Reverted,
            4 => FailureReason::Halted,
            5 => FailureReason::BadNonce {
                expected: decoder.u64()?,
                got: decoder.u64()?,
            },
            6 => FailureReason::InsufficientFunds,
            7 => FailureReason::InvalidMove,
            8 => FailureReason::WrongDelta(StateItem::decode(decoder)?),
            9 => FailureReason::Session(SessionRefusal::decode(decoder)?),
            10 => FailureReason::SliceUnavailable(decoder.address()?),
            11 => FailureReason::Replaced {
                by: decoder.b256()?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "failure reason",
                    tag,
                });
            }
        })
    }
}

/// How far a move has gone. Levels only rise, except to `Failed`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FinalityLevel {
    /// Acked by a sequencer, in its local mempool.
    Pending,
    /// In a block whose body is in weak DA.
    Sequenced,
    /// In a PBFT-committed batch.
    Finalized,
    /// Its groups agreed on the post-state root.
    Executed,
    /// That root is committed on the upper chain.
    Settled,
    /// The move failed; only its nonce was consumed.
    Failed(FailureReason),
}

impl FinalityLevel {
    /// Order of the level on the path (`Failed` ranks last: it ends the path).
    pub fn rank(&self) -> u8 {
        match self {
            FinalityLevel::Pending => 0,
            FinalityLevel::Sequenced => 1,
            FinalityLevel::Finalized => 2,
            FinalityLevel::Executed => 3,
            FinalityLevel::Settled => 4,
            FinalityLevel::Failed(_) => 5,
        }
    }
}

impl Encode for FinalityLevel {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.rank());
        if let FinalityLevel::Failed(reason) = self {
            reason.encode(out);
        }
    }
}

impl Decode for FinalityLevel {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => FinalityLevel::Pending,
            1 => FinalityLevel::Sequenced,
            2 => FinalityLevel::Finalized,
            3 => FinalityLevel::Executed,
            4 => FinalityLevel::Settled,
            5 => FinalityLevel::Failed(FailureReason::decode(decoder)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "finality level",
                    tag,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip() {
        let item = StateItem::Storage(Address::repeat_byte(1), B256::repeat_byte(2));
        for level in [
            FinalityLevel::Pending,
            FinalityLevel::Executed,
            FinalityLevel::Failed(FailureReason::WrongPostValue(item)),
            FinalityLevel::Failed(FailureReason::WrongDelta(item)),
            FinalityLevel::Failed(FailureReason::BadNonce {
                expected: 3,
                got: 9,
            }),
            FinalityLevel::Failed(FailureReason::SliceUnavailable(Address::repeat_byte(7))),
        ] {
            assert_eq!(FinalityLevel::from_bytes(&level.to_bytes()), Ok(level));
        }
        assert_eq!(
            FinalityLevel::from_bytes(&[9]),
            Err(DecodeError::UnknownTag {
                what: "finality level",
                tag: 9
            })
        );
    }
}
