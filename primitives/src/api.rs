//! The native client API: what a client and its sequencer say to each other over a KCP session.
//!
//! One message per KCP message. A client submits moves and reads pending state; the sequencer
//! acks each move (or refuses it with a typed [`Refusal`]) and then pushes every change of the
//! move's finality level, so clients never poll for status unless they reconnect.

use alloy_primitives::{Address, B256, U256};

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode, put_list, put_u256},
    constants::{RETRACTION_ITEMS_MAX, TICK_DIFF_ENTITIES_MAX, TICK_DIFF_ITEMS_MAX},
    finality::{FailureReason, FinalityLevel, StateItem},
    preconf::SignedPreconfirmation,
    session::SessionRefusal,
    tx::{SignedTransaction, TxHash},
};

const API_VERSION: u8 = 1;

/// Why a sequencer refused a move at ingress. A refused move changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request could not be decoded.
    #[error("malformed request")]
    Malformed,
    /// The signature is malformed or does not recover.
    #[error("bad signature")]
    BadSignature,
    /// The move is for another network.
    #[error("wrong chain id {got}, expected {expected}")]
    WrongChain {
        /// This network's chain id.
        expected: u64,
        /// The move's chain id.
        got: u64,
    },
    /// The nonce is not the sender's next pending nonce.
    #[error("bad nonce {got}, expected {expected}")]
    BadNonce {
        /// The sender's next pending nonce.
        expected: u64,
        /// The move's nonce.
        got: u64,
    },
    /// The Space Access List does not name the sender or the called account.
    #[error("space access list does not name {0}")]
    MissingFromAccessList(Address),
    /// The mempool is full; retry later.
    #[error("mempool full")]
    MempoolFull,
    /// A session key may not do this (unknown, revoked, expired, out of scope, over budget), or
    /// a session move or grant is not declared as the rules say.
    #[error("session: {0}")]
    Session(SessionRefusal),
    /// The connection or the sender sent more than its rate allows; retry later.
    #[error("rate limited")]
    RateLimited,
    /// The encoded move is larger than a sequencer accepts.
    #[error("move of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The move's encoded size.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// The move names a sponsor that will not pay for it.
    #[error("sponsorship: {0}")]
    Sponsorship(SponsorRefusal),
    /// The move has the sender and nonce of a move still in the mempool, and the replacement
    /// policy does not let it take that move's place.
    #[error("replacement: {0}")]
    Replacement(ReplacementRefusal),
}

/// Why a move may not replace the pending move of the same sender and nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplacementRefusal {
    /// This sequencer replaces no pending move.
    #[error("replacement transaction not allowed")]
    NotAllowed,
    /// The move's gas price does not exceed the pending one's by the policy's bump.
    #[error("replacement transaction underpriced: gas price {got}, at least {min_gas_price}")]
    Underpriced {
        /// The least gas price a replacement must offer.
        min_gas_price: u128,
        /// The move's gas price.
        got: u128,
    },
}

impl Encode for ReplacementRefusal {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ReplacementRefusal::NotAllowed => out.push(0),
            ReplacementRefusal::Underpriced { min_gas_price, got } => {
                out.push(1);
                out.extend_from_slice(&min_gas_price.to_be_bytes());
                out.extend_from_slice(&got.to_be_bytes());
            }
        }
    }
}

impl Decode for ReplacementRefusal {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => ReplacementRefusal::NotAllowed,
            1 => ReplacementRefusal::Underpriced {
                min_gas_price: decoder.u128()?,
                got: decoder.u128()?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "replacement refusal",
                    tag,
                });
            }
        })
    }
}

/// Why a sponsor will not pay for a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SponsorRefusal {
    /// No sponsorship policy of this sequencer names this sponsor.
    #[error("unknown sponsor")]
    UnknownSponsor,
    /// The policy does not cover the move's target contract.
    #[error("target not sponsored")]
    TargetNotCovered,
    /// The player has used the budget the policy gives each player.
    #[error("player budget spent")]
    PlayerBudgetSpent,
    /// The player sends sponsored moves faster than the policy allows.
    #[error("player rate exceeded")]
    PlayerRateExceeded,
    /// The sponsor has spent its whole budget.
    #[error("sponsor budget spent")]
    SponsorBudgetSpent,
    /// A sponsored move must carry a zero gas price (the sponsor pays, the sender does not).
    #[error("sponsored move with a gas price")]
    NonZeroGasPrice,
}

impl Encode for SponsorRefusal {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self {
            SponsorRefusal::UnknownSponsor => 0,
            SponsorRefusal::TargetNotCovered => 1,
            SponsorRefusal::PlayerBudgetSpent => 2,
            SponsorRefusal::PlayerRateExceeded => 3,
            SponsorRefusal::SponsorBudgetSpent => 4,
            SponsorRefusal::NonZeroGasPrice => 5,
        });
    }
}

impl Decode for SponsorRefusal {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => SponsorRefusal::UnknownSponsor,
            1 => SponsorRefusal::TargetNotCovered,
            2 => SponsorRefusal::PlayerBudgetSpent,
            3 => SponsorRefusal::PlayerRateExceeded,
            4 => SponsorRefusal::SponsorBudgetSpent,
            5 => SponsorRefusal::NonZeroGasPrice,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "sponsor refusal",
                    tag,
                });
            }
        })
    }
}

impl Encode for Refusal {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Refusal::Malformed => out.push(0),
            Refusal::BadSignature => out.push(1),
            Refusal::WrongChain { expected, got } => {
                out.push(2);
                expected.encode(out);
                got.encode(out);
            }
            Refusal::BadNonce { expected, got } => {
                out.push(3);
                expected.encode(out);
                got.encode(out);
            }
            Refusal::MissingFromAccessList(address) => {
                out.push(4);
                address.encode(out);
            }
            Refusal::MempoolFull => out.push(5),
            Refusal::Session(refusal) => {
                out.push(6);
                refusal.encode(out);
            }
            Refusal::RateLimited => out.push(7),
            Refusal::TooLarge { size, max } => {
                out.push(8);
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&max.to_be_bytes());
            }
            Refusal::Sponsorship(refusal) => {
                out.push(9);
                refusal.encode(out);
            }
            Refusal::Replacement(refusal) => {
                out.push(10);
                refusal.encode(out);
            }
        }
    }
}

impl Decode for Refusal {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => Refusal::Malformed,
            1 => Refusal::BadSignature,
            2 => Refusal::WrongChain {
                expected: decoder.u64()?,
                got: decoder.u64()?,
            },
            3 => Refusal::BadNonce {
                expected: decoder.u64()?,
                got: decoder.u64()?,
            },
            4 => Refusal::MissingFromAccessList(decoder.address()?),
            5 => Refusal::MempoolFull,
            6 => Refusal::Session(SessionRefusal::decode(decoder)?),
            7 => Refusal::RateLimited,
            8 => Refusal::TooLarge {
                size: decoder.u32()?,
                max: decoder.u32()?,
            },
            9 => Refusal::Sponsorship(SponsorRefusal::decode(decoder)?),
            10 => Refusal::Replacement(ReplacementRefusal::decode(decoder)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "refusal",
                    tag,
                });
            }
        })
    }
}

/// Why pending state changed other than by a new move's declared writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetractionReason {
    /// The move failed in execution: its declared writes left pending state (only its nonce
    /// was consumed), and the moves after it were re-based.
    Failed(FailureReason),
    /// An executed move's actual writes went into the executed base and re-based pending
    /// values: a move of another sequencer, or one whose later pending moves fold differently
    /// on its result.
    Rebased,
    /// The move was replaced in the mempool by the move `by` (same sender and nonce).
    Replaced {
        /// The replacement.
        by: TxHash,
    },
    /// The client failed over to another sequencer, whose pending state differs from the dead
    /// one's. A sequencer never sends this; a client SDK reports it.
    Failover,
}

impl Encode for RetractionReason {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RetractionReason::Failed(reason) => {
                out.push(0);
                reason.encode(out);
            }
            RetractionReason::Rebased => out.push(1),
            RetractionReason::Replaced { by } => {
                out.push(2);
                by.encode(out);
            }
            RetractionReason::Failover => out.push(3),
        }
    }
}

impl Decode for RetractionReason {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => RetractionReason::Failed(FailureReason::decode(decoder)?),
            1 => RetractionReason::Rebased,
            2 => RetractionReason::Replaced {
                by: decoder.b256()?,
            },
            3 => RetractionReason::Failover,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "retraction reason",
                    tag,
                });
            }
        })
    }
}

/// One item of pending state and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemValue {
    /// The item.
    pub item: StateItem,
    /// Its pending value.
    pub value: U256,
}

impl Encode for ItemValue {
    fn encode(&self, out: &mut Vec<u8>) {
        self.item.encode(out);
        put_u256(out, &self.value);
    }
}

impl Decode for ItemValue {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ItemValue {
            item: StateItem::decode(decoder)?,
            value: decoder.u256()?,
        })
    }
}

/// What a tick-diff subscription names: a whole account or one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// Every item of the account: its balance, its nonce and each of its storage slots.
    Account(Address),
    /// One item.
    Item(StateItem),
}

impl Entity {
    /// Whether `item` belongs to this entity.
    pub fn covers(&self, item: &StateItem) -> bool {
        match self {
            Entity::Item(own) => own == item,
            Entity::Account(address) => match item {
                StateItem::Balance(of)
                | StateItem::Nonce(of)
                | StateItem::Code(of)
                | StateItem::Storage(of, _) => of == address,
            },
        }
    }
}

impl Encode for Entity {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Entity::Account(address) => {
                out.push(0);
                address.encode(out);
            }
            Entity::Item(item) => {
                out.push(1);
                item.encode(out);
            }
        }
    }
}

impl Decode for Entity {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => Entity::Account(decoder.address()?),
            1 => Entity::Item(StateItem::decode(decoder)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "entity",
                    tag,
                });
            }
        })
    }
}

/// What a client asks of its sequencer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a request is decoded once and moved to the core; boxing would cost an allocation a move"
)]
pub enum ClientRequest {
    /// Submit a signed move.
    Submit(SignedTransaction),
    /// The sender's next nonce in pending state.
    PendingNonce(Address),
    /// A storage slot's value in pending state.
    PendingStorage(Address, B256),
    /// The current finality level of a move.
    Status(TxHash),
    /// Push every change of this item's pending value over the session, starting with its
    /// current value, until unsubscribed or the session ends.
    Subscribe(StateItem),
    /// Stop pushing changes of this item.
    Unsubscribe(StateItem),
    /// Deliver one [`ServerMessage::TickDiff`] per tick in which a pending value of these
    /// entities changed (at most [`TICK_DIFF_ENTITIES_MAX`]); replaces the session's earlier
    /// set, and an empty set ends the subscription.
    SubscribeEntities(Vec<Entity>),
}

impl Encode for ClientRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(API_VERSION);
        match self {
            ClientRequest::Submit(signed) => {
                out.push(0);
                signed.encode(out);
            }
            ClientRequest::PendingNonce(address) => {
                out.push(1);
                address.encode(out);
            }
            ClientRequest::PendingStorage(address, slot) => {
                out.push(2);
                address.encode(out);
                slot.encode(out);
            }
            ClientRequest::Status(hash) => {
                out.push(3);
                hash.encode(out);
            }
            ClientRequest::Subscribe(item) => {
                out.push(4);
                item.encode(out);
            }
            ClientRequest::Unsubscribe(item) => {
                out.push(5);
                item.encode(out);
            }
            ClientRequest::SubscribeEntities(entities) => {
                out.push(6);
                put_list(out, entities);
            }
        }
    }
}

impl Decode for ClientRequest {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("client request", &[API_VERSION])?;
        Ok(match decoder.u8()? {
            0 => ClientRequest::Submit(SignedTransaction::decode(decoder)?),
            1 => ClientRequest::PendingNonce(decoder.address()?),
            2 => ClientRequest::PendingStorage(decoder.address()?, decoder.b256()?),
            3 => ClientRequest::Status(decoder.b256()?),
            4 => ClientRequest::Subscribe(StateItem::decode(decoder)?),
            5 => ClientRequest::Unsubscribe(StateItem::decode(decoder)?),
            6 => ClientRequest::SubscribeEntities(
                decoder.list("tick-diff entities", TICK_DIFF_ENTITIES_MAX)?,
            ),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "client request",
                    tag,
                });
            }
        })
    }
}

/// What a sequencer tells a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    /// The answer to a submit: accepted as `Pending`, or refused.
    Ack {
        /// The move's hash; for a request refused before it was decoded (too large, over the
        /// connection's rate, malformed), keccak-256 of the request's bytes.
        hash: TxHash,
        /// `Ok(tick)`: accepted, and promised to be in a block packed by that tick.
        result: Result<u64, Refusal>,
        /// With an `Ok` result, the sequencer's signed promise ([`crate::preconf`]): what a
        /// client keeps and anyone may hold against the sequencer on the upper chain. `None`
        /// from a sequencer that signs none (and always with a refusal, which promises nothing).
        preconfirmation: Option<Box<SignedPreconfirmation>>,
    },
    /// A move reached a new finality level.
    Status {
        /// The move.
        hash: TxHash,
        /// Its new level.
        level: FinalityLevel,
    },
    /// Pending nonce of an account.
    PendingNonce {
        /// The account.
        address: Address,
        /// Its next nonce in pending state.
        nonce: u64,
    },
    /// Pending value of a storage slot.
    PendingStorage {
        /// The account.
        address: Address,
        /// The slot.
        slot: B256,
        /// Its value in pending state.
        value: U256,
    },
    /// The status of a move asked by hash; `None` if this sequencer does not know it.
    StatusReply {
        /// The move.
        hash: TxHash,
        /// Its level, if known.
        level: Option<FinalityLevel>,
    },
    /// A subscribed item's pending value: its value when subscribed, then each new value.
    Changed {
        /// The item.
        item: StateItem,
        /// Its pending value.
        value: U256,
    },
    /// A subscription was refused: the session already watches the most items allowed.
    SubscriptionRefused {
        /// The item.
        item: StateItem,
        /// Items one session may watch.
        limit: u32,
    },
    /// Pending state changed for a cause other than a new move: every session watching an
    /// item the cause touched gets one, in order with the item's other messages, carrying the
    /// corrected values of the items it watches (at most [`RETRACTION_ITEMS_MAX`]; a larger
    /// correction comes in several messages).
    Retracted {
        /// The move whose execution result, failure or replacement changed pending state.
        hash: TxHash,
        /// Why.
        reason: RetractionReason,
        /// The watched items' pending values after the change.
        corrected: Vec<ItemValue>,
        /// The sequencer's tick when it changed.
        tick: u64,
    },
    /// The pending values, at the end of `tick`, of the subscribed entities' items that
    /// changed since the last diff: at most one a tick, none for a tick that changed nothing,
    /// at most [`TICK_DIFF_ITEMS_MAX`] items (the rest come with the next tick's diff).
    TickDiff {
        /// The tick that ended.
        tick: u64,
        /// Each changed item and its value, in item order.
        changes: Vec<ItemValue>,
    },
}

impl Encode for ServerMessage {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(API_VERSION);
        match self {
            ServerMessage::Ack {
                hash,
                result,
                preconfirmation,
            } => {
                out.push(0);
                hash.encode(out);
                match (result, preconfirmation) {
                    (Ok(tick), None) => {
                        out.push(0);
                        tick.encode(out);
                    }
                    (Ok(tick), Some(preconfirmation)) => {
                        out.push(2);
                        tick.encode(out);
                        preconfirmation.encode(out);
                    }
                    // A refusal promises nothing: no preconfirmation goes with it.
                    (Err(refusal), _) => {
                        out.push(1);
                        refusal.encode(out);
                    }
                }
            }
            ServerMessage::Status { hash, level } => {
                out.push(1);
                hash.encode(out);
                level.encode(out);
            }
            ServerMessage::PendingNonce { address, nonce } => {
                out.push(2);
                address.encode(out);
                nonce.encode(out);
            }
            ServerMessage::PendingStorage {
                address,
                slot,
                value,
            } => {
                out.push(3);
                address.encode(out);
                slot.encode(out);
                crate::codec::put_u256(out, value);
            }
            ServerMessage::StatusReply { hash, level } => {
                out.push(4);
                hash.encode(out);
                match level {
                    None => out.push(0),
                    Some(level) => {
                        out.push(1);
                        level.encode(out);
                    }
                }
            }
            ServerMessage::Changed { item, value } => {
                out.push(5);
                item.encode(out);
                crate::codec::put_u256(out, value);
            }
            ServerMessage::SubscriptionRefused { item, limit } => {
                out.push(6);
                item.encode(out);
                out.extend_from_slice(&limit.to_be_bytes());
            }
            ServerMessage::Retracted {
                hash,
                reason,
                corrected,
                tick,
            } => {
                out.push(7);
                hash.encode(out);
                reason.encode(out);
                put_list(out, corrected);
                tick.encode(out);
            }
            ServerMessage::TickDiff { tick, changes } => {
                out.push(8);
                tick.encode(out);
                put_list(out, changes);
            }
        }
    }
}

impl Decode for ServerMessage {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("server message", &[API_VERSION])?;
        Ok(match decoder.u8()? {
            0 => {
                let hash = decoder.b256()?;
                let (result, preconfirmation) = match decoder.u8()? {
                    0 => (Ok(decoder.u64()?), None),
                    1 => (Err(Refusal::decode(decoder)?), None),
                    2 => {
                        let tick = decoder.u64()?;
                        let preconfirmation = SignedPreconfirmation::decode(decoder)?;
                        // One ack, one promise: the preconfirmation is this move's, by this tick.
                        if preconfirmation.preconfirmation.hash != hash
                            || preconfirmation.preconfirmation.tick != tick
                        {
                            return Err(DecodeError::Invalid {
                                what: "ack preconfirmation",
                                why: "names another move or tick than its ack",
                            });
                        }
                        (Ok(tick), Some(Box::new(preconfirmation)))
                    }
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "ack result",
                            tag,
                        });
                    }
                };
                ServerMessage::Ack {
                    hash,
                    result,
                    preconfirmation,
                }
            }
            1 => ServerMessage::Status {
                hash: decoder.b256()?,
                level: FinalityLevel::decode(decoder)?,
            },
            2 => ServerMessage::PendingNonce {
                address: decoder.address()?,
                nonce: decoder.u64()?,
            },
            3 => ServerMessage::PendingStorage {
                address: decoder.address()?,
                slot: decoder.b256()?,
                value: decoder.u256()?,
            },
            4 => {
                let hash = decoder.b256()?;
                let level = if decoder.bool()? {
                    Some(FinalityLevel::decode(decoder)?)
                } else {
                    None
                };
                ServerMessage::StatusReply { hash, level }
            }
            5 => ServerMessage::Changed {
                item: StateItem::decode(decoder)?,
                value: decoder.u256()?,
            },
            6 => ServerMessage::SubscriptionRefused {
                item: StateItem::decode(decoder)?,
                limit: decoder.u32()?,
            },
            7 => ServerMessage::Retracted {
                hash: decoder.b256()?,
                reason: RetractionReason::decode(decoder)?,
                corrected: decoder.list("retracted items", RETRACTION_ITEMS_MAX)?,
                tick: decoder.u64()?,
            },
            8 => ServerMessage::TickDiff {
                tick: decoder.u64()?,
                changes: decoder.list("tick diff", TICK_DIFF_ITEMS_MAX)?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "server message",
                    tag,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn messages_round_trip() {
        let hash = B256::repeat_byte(7);
        for message in [
            ServerMessage::Ack {
                hash,
                preconfirmation: None,
                result: Ok(12),
            },
            ServerMessage::Ack {
                hash,
                preconfirmation: None,
                result: Err(Refusal::BadNonce {
                    expected: 1,
                    got: 4,
                }),
            },
            ServerMessage::Status {
                hash,
                level: FinalityLevel::Finalized,
            },
            ServerMessage::PendingStorage {
                address: Address::repeat_byte(1),
                slot: hash,
                value: U256::from(9),
            },
            ServerMessage::StatusReply { hash, level: None },
            ServerMessage::Changed {
                item: StateItem::Storage(Address::repeat_byte(3), hash),
                value: U256::from(5),
            },
            ServerMessage::SubscriptionRefused {
                item: StateItem::Nonce(Address::repeat_byte(3)),
                limit: 64,
            },
            ServerMessage::Ack {
                hash,
                preconfirmation: None,
                result: Err(Refusal::Session(SessionRefusal::Expired {
                    expires_after_batch: 3,
                })),
            },
            ServerMessage::Ack {
                hash,
                preconfirmation: None,
                result: Err(Refusal::Sponsorship(SponsorRefusal::PlayerBudgetSpent)),
            },
            ServerMessage::Ack {
                hash,
                preconfirmation: None,
                result: Err(Refusal::TooLarge { size: 9, max: 8 }),
            },
            ServerMessage::Ack {
                hash,
                preconfirmation: None,
                result: Err(Refusal::Replacement(ReplacementRefusal::Underpriced {
                    min_gas_price: u128::MAX,
                    got: 7,
                })),
            },
            ServerMessage::Ack {
                hash,
                preconfirmation: None,
                result: Err(Refusal::Replacement(ReplacementRefusal::NotAllowed)),
            },
            ServerMessage::Status {
                hash,
                level: FinalityLevel::Failed(crate::FailureReason::Replaced {
                    by: B256::repeat_byte(8),
                }),
            },
            ServerMessage::Retracted {
                hash,
                reason: RetractionReason::Failed(FailureReason::Reverted),
                corrected: vec![ItemValue {
                    item: StateItem::Storage(Address::repeat_byte(3), hash),
                    value: U256::from(7),
                }],
                tick: 41,
            },
            ServerMessage::Retracted {
                hash,
                reason: RetractionReason::Replaced {
                    by: B256::repeat_byte(9),
                },
                corrected: Vec::new(),
                tick: 0,
            },
            ServerMessage::Retracted {
                hash,
                reason: RetractionReason::Rebased,
                corrected: Vec::new(),
                tick: 2,
            },
            ServerMessage::Retracted {
                hash,
                reason: RetractionReason::Failover,
                corrected: Vec::new(),
                tick: 3,
            },
            ServerMessage::TickDiff {
                tick: 5,
                changes: vec![ItemValue {
                    item: StateItem::Nonce(Address::repeat_byte(1)),
                    value: U256::from(2),
                }],
            },
        ] {
            assert_eq!(ServerMessage::from_bytes(&message.to_bytes()), Ok(message));
        }
        for request in [
            ClientRequest::PendingStorage(Address::repeat_byte(2), hash),
            ClientRequest::Subscribe(StateItem::Balance(Address::repeat_byte(4))),
            ClientRequest::Unsubscribe(StateItem::Storage(Address::repeat_byte(4), hash)),
            ClientRequest::SubscribeEntities(vec![
                Entity::Account(Address::repeat_byte(5)),
                Entity::Item(StateItem::Balance(Address::repeat_byte(6))),
            ]),
            ClientRequest::SubscribeEntities(Vec::new()),
        ] {
            assert_eq!(ClientRequest::from_bytes(&request.to_bytes()), Ok(request));
        }
        assert_eq!(
            ClientRequest::from_bytes(&[2, 0]),
            Err(DecodeError::UnknownVersion {
                what: "client request",
                version: 2
            })
        );
    }

    #[test]
    fn a_signed_ack_round_trips_and_an_old_ack_still_decodes() {
        let key = crate::AccountKey::from_seed(3);
        let hash = B256::repeat_byte(7);
        let promise = crate::preconf::Preconfirmation {
            hash,
            sequencer: crate::NodeId(key.address()),
            seq: 41,
            tick: 12,
            height_first: 5,
            height_last: 5,
        };
        let signed = crate::preconf::SignedPreconfirmation::sign_group(&key, &[promise]).remove(0);
        let ack = ServerMessage::Ack {
            hash,
            result: Ok(12),
            preconfirmation: Some(Box::new(signed.clone())),
        };
        let bytes = ack.to_bytes();
        assert_eq!(ServerMessage::from_bytes(&bytes), Ok(ack));
        // Version 1's unsigned ack, byte for byte as before: tag 0, then the tick.
        let mut old = vec![API_VERSION, 0];
        old.extend_from_slice(hash.as_slice());
        old.push(0);
        old.extend_from_slice(&12u64.to_be_bytes());
        assert_eq!(
            ServerMessage::from_bytes(&old),
            Ok(ServerMessage::Ack {
                hash,
                result: Ok(12),
                preconfirmation: None,
            })
        );
        // A refusal never carries a promise, whatever the value says.
        let refused = ServerMessage::Ack {
            hash,
            result: Err(Refusal::MempoolFull),
            preconfirmation: Some(Box::new(signed.clone())),
        };
        assert_eq!(
            ServerMessage::from_bytes(&refused.to_bytes()),
            Ok(ServerMessage::Ack {
                hash,
                result: Err(Refusal::MempoolFull),
                preconfirmation: None,
            })
        );
        // An ack whose promise is for another tick is refused, typed.
        let other_tick = ServerMessage::Ack {
            hash,
            result: Ok(13),
            preconfirmation: Some(Box::new(signed)),
        };
        assert_eq!(
            ServerMessage::from_bytes(&other_tick.to_bytes()),
            Err(DecodeError::Invalid {
                what: "ack preconfirmation",
                why: "names another move or tick than its ack",
            })
        );
        let mut unknown = bytes.clone();
        unknown[1 + 1 + 32] = 3;
        assert_eq!(
            ServerMessage::from_bytes(&unknown),
            Err(DecodeError::UnknownTag {
                what: "ack result",
                tag: 3
            })
        );
    }

    #[test]
    fn oversized_lists_are_refused_before_allocating() {
        let too_many = vec![Entity::Account(Address::ZERO); TICK_DIFF_ENTITIES_MAX + 1];
        assert_eq!(
            ClientRequest::from_bytes(&ClientRequest::SubscribeEntities(too_many).to_bytes()),
            Err(DecodeError::Oversized {
                what: "tick-diff entities",
                len: TICK_DIFF_ENTITIES_MAX + 1,
                max: TICK_DIFF_ENTITIES_MAX,
            })
        );
        let item = ItemValue {
            item: StateItem::Nonce(Address::ZERO),
            value: U256::ZERO,
        };
        let diff = ServerMessage::TickDiff {
            tick: 1,
            changes: vec![item; TICK_DIFF_ITEMS_MAX + 1],
        };
        assert!(matches!(
            ServerMessage::from_bytes(&diff.to_bytes()),
            Err(DecodeError::Oversized { .. })
        ));
        let mut bad_reason = ServerMessage::Retracted {
            hash: B256::ZERO,
            reason: RetractionReason::Rebased,
            corrected: Vec::new(),
            tick: 1,
        }
        .to_bytes();
        // version, tag, hash: the reason's tag follows.
        bad_reason[2 + 32] = 9;
        assert_eq!(
            ServerMessage::from_bytes(&bad_reason),
            Err(DecodeError::UnknownTag {
                what: "retraction reason",
                tag: 9
            })
        );
    }

    #[test]
    fn an_account_entity_covers_every_item_of_the_account() {
        let account = Address::repeat_byte(1);
        let entity = Entity::Account(account);
        assert!(entity.covers(&StateItem::Balance(account)));
        assert!(entity.covers(&StateItem::Storage(account, B256::repeat_byte(2))));
        assert!(!entity.covers(&StateItem::Nonce(Address::repeat_byte(2))));
        assert!(Entity::Item(StateItem::Nonce(account)).covers(&StateItem::Nonce(account)));
        assert!(!Entity::Item(StateItem::Nonce(account)).covers(&StateItem::Balance(account)));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = ClientRequest::from_bytes(&bytes);
            let _ = ServerMessage::from_bytes(&bytes);
        }
    }
}
