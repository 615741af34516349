//! Stacked local prediction: what the game shows before the sequencer has answered.
//!
//! [`Prediction`] holds the pending values the sequencer told this client (changes of watched
//! items, retractions, tick diffs) and, on top of them, the declared writes of the client's own
//! moves that the sequencer's values do not include yet, applied in submission order (each
//! account's in nonce order), stacked: an exact write replaces the value, a delta adds to it,
//! exactly as the sequencer's pending state folds them. A move leaves the stack when the
//! sequencer's values include it: on its ack, or earlier when the sequencer's pending nonce of
//! its sender (a watched item) passes it, since the sequencer pushes a move's changes before its
//! ack. A refusal or a retraction removes exactly that move; the rest stay stacked and are
//! re-applied over the corrected values.
//!
//! The values are exact for the items the client watches (and its own nonces, if watched);
//! an item the sequencer never told is taken as zero under the stacked writes.
//!
//! Sans-IO: fed messages and submissions, it only computes. [`crate::Client`] feeds one.

use std::collections::{BTreeMap, HashMap};

use primitives::{
    Address, DeclaredWrite, Transaction, TxHash, U256,
    api::{ItemValue, ServerMessage},
    finality::StateItem,
};

/// Own moves a prediction stacks at most (a game pipelines a handful per frame).
pub const PREDICTION_STACK_MAX: usize = 4_096;

/// Why a move could not be stacked. The prediction is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PredictionError {
    /// The move is stacked already.
    #[error("move {0} is stacked already")]
    Duplicate(TxHash),
    /// [`PREDICTION_STACK_MAX`] moves are stacked.
    #[error("{0} moves stacked already")]
    StackFull(usize),
}

#[derive(Clone, Debug)]
struct Stacked {
    hash: TxHash,
    sender: Address,
    nonce: u64,
    writes: Vec<(StateItem, DeclaredWrite)>,
}

/// The sequencer's pending values as told, with the client's own not-yet-included moves
/// stacked on top.
#[derive(Clone, Debug, Default)]
pub struct Prediction {
    /// Pending values the sequencer told.
    told: HashMap<StateItem, U256>,
    /// Own moves not included in `told`, by submission order.
    stack: BTreeMap<u64, Stacked>,
    place_of: HashMap<TxHash, u64>,
    next_place: u64,
}

impl Prediction {
    /// Nothing told, nothing stacked.
    pub fn new() -> Self {
        Prediction::default()
    }

    /// The predicted pending value of `item`: the value told, with the stacked moves' writes
    /// folded on in order.
    pub fn value(&self, item: &StateItem) -> U256 {
        let told = self.told.get(item).copied().unwrap_or_default();
        self.stack
            .values()
            .flat_map(|stacked| stacked.writes.iter())
            .filter(|(written, _)| written == item)
            .fold(told, |value, (_, write)| write.apply(value))
    }

    /// The value the sequencer last told for `item`, if it did.
    pub fn told(&self, item: &StateItem) -> Option<U256> {
        self.told.get(item).copied()
    }

    /// Own moves stacked (sent, not yet included in the sequencer's values).
    pub fn stacked(&self) -> usize {
        self.stack.len()
    }

    /// Whether `hash` is stacked.
    pub fn is_stacked(&self, hash: &TxHash) -> bool {
        self.place_of.contains_key(hash)
    }

    /// A move of `sender` was sent: its declared writes go on top of the stack.
    pub fn submitted(
        &mut self,
        hash: TxHash,
        sender: Address,
        tx: &Transaction,
    ) -> Result<(), PredictionError> {
        if self.place_of.contains_key(&hash) {
            return Err(PredictionError::Duplicate(hash));
        }
        if self.stack.len() >= PREDICTION_STACK_MAX {
            return Err(PredictionError::StackFull(self.stack.len()));
        }
        let place = self.next_place;
        self.next_place += 1;
        self.stack.insert(
            place,
            Stacked {
                hash,
                sender,
                nonce: tx.nonce,
                writes: tx.declared_writes(sender),
            },
        );
        self.place_of.insert(hash, place);
        Ok(())
    }

    /// Takes `hash` off the stack, if stacked (acked: the sequencer's values include it;
    /// refused or retracted: it is not there). Returns whether it was stacked.
    pub fn unstack(&mut self, hash: &TxHash) -> bool {
        match self.place_of.remove(hash) {
            Some(place) => {
                self.stack.remove(&place);
                true
            }
            None => false,
        }
    }

    /// The sequencer told a new pending value of `item`. A nonce of a stacked move's sender
    /// says which of its moves the sequencer's values include: those below it leave the stack.
    pub fn told_value(&mut self, item: StateItem, value: U256) {
        self.told.insert(item, value);
        if let StateItem::Nonce(account) = item {
            let included: Vec<TxHash> = self
                .stack
                .values()
                .filter(|stacked| stacked.sender == account && U256::from(stacked.nonce) < value)
                .map(|stacked| stacked.hash)
                .collect();
            for hash in included {
                self.unstack(&hash);
            }
        }
    }

    /// Feeds one message of the sequencer.
    pub fn handle(&mut self, message: &ServerMessage) {
        match message {
            ServerMessage::Ack { .. } => {
                // Accepted: included; refused: never will be. Either way the move leaves the
                // stack, by the name the client knows it by ([`Prediction::unstack`]): a
                // refusal before decoding names the request, not the move.
            }
            ServerMessage::Changed { item, value } => self.told_value(*item, *value),
            ServerMessage::Retracted {
                hash, corrected, ..
            } => {
                self.unstack(hash);
                self.told_all(corrected);
            }
            ServerMessage::TickDiff { changes, .. } => self.told_all(changes),
            // A level past the ack (or one asked for) means the sequencer has the move, or
            // had it and is done with it: a move whose ack was lost leaves the stack too.
            ServerMessage::Status { hash, .. }
            | ServerMessage::StatusReply {
                hash,
                level: Some(_),
            } => {
                self.unstack(hash);
            }
            ServerMessage::PendingNonce { .. }
            | ServerMessage::PendingStorage { .. }
            | ServerMessage::StatusReply { level: None, .. }
            | ServerMessage::SubscriptionRefused { .. } => {}
        }
    }

    fn told_all(&mut self, values: &[ItemValue]) {
        for ItemValue { item, value } in values {
            self.told_value(*item, *value);
        }
    }

    /// The client moved to another sequencer: what the dead one told no longer holds. The
    /// stack stays (its moves are sent again); the values are forgotten until the new
    /// sequencer tells them. Returns the items forgotten, with the values they had.
    pub fn failed_over(&mut self) -> Vec<ItemValue> {
        let mut forgotten: Vec<ItemValue> = self
            .told
            .drain()
            .map(|(item, value)| ItemValue { item, value })
            .collect();
        forgotten.sort_unstable_by_key(|told| told.item);
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountAccess, AccountKey, B256, Bytes, SlotAccess, SpaceAccessList};

    use super::*;

    const GAME: Address = Address::repeat_byte(0x42);

    fn slot(n: u64) -> StateItem {
        StateItem::Storage(GAME, B256::from(U256::from(n)))
    }

    fn writing(key: &AccountKey, nonce: u64, writes: &[(u64, DeclaredWrite)]) -> Transaction {
        Transaction {
            chain_id: 1,
            nonce,
            to: GAME,
            value: U256::ZERO,
            data: Bytes::new(),
            gas_limit: 50_000,
            gas_price: 0,
            sponsor: None,
            access_list: SpaceAccessList::new([
                AccountAccess::read(key.address()),
                AccountAccess {
                    storage: writes
                        .iter()
                        .map(|(n, write)| SlotAccess {
                            slot: B256::from(U256::from(*n)),
                            write: Some(*write),
                        })
                        .collect(),
                    ..AccountAccess::read(GAME)
                },
            ]),
        }
    }

    fn add(amount: u64) -> DeclaredWrite {
        DeclaredWrite::Delta(DeclaredWrite::delta_between(U256::ZERO, U256::from(amount)))
    }

    #[test]
    fn own_moves_stack_in_order_and_leave_as_the_sequencer_includes_them() {
        let key = AccountKey::from_seed(1);
        let me = key.address();
        let mut prediction = Prediction::new();
        prediction.told_value(slot(1), U256::from(100));
        let first = writing(&key, 0, &[(1, add(5))]);
        let second = writing(
            &key,
            1,
            &[(1, add(7)), (2, DeclaredWrite::Exact(U256::from(3)))],
        );
        let third = writing(&key, 2, &[(2, DeclaredWrite::Exact(U256::from(4)))]);
        let hashes = [
            B256::repeat_byte(1),
            B256::repeat_byte(2),
            B256::repeat_byte(3),
        ];
        for (hash, tx) in hashes.iter().zip([&first, &second, &third]) {
            prediction.submitted(*hash, me, tx).expect("room");
        }
        assert_eq!(prediction.value(&slot(1)), U256::from(112));
        assert_eq!(prediction.value(&slot(2)), U256::from(4));
        assert_eq!(prediction.value(&StateItem::Nonce(me)), U256::from(3));
        assert_eq!(
            prediction.submitted(hashes[0], me, &first),
            Err(PredictionError::Duplicate(hashes[0]))
        );
        // The sequencer admits the first: its nonce and value come before its ack, and the
        // nonce tells that the first is included, so its delta is not counted twice.
        prediction.handle(&ServerMessage::Changed {
            item: StateItem::Nonce(me),
            value: U256::from(1),
        });
        prediction.handle(&ServerMessage::Changed {
            item: slot(1),
            value: U256::from(105),
        });
        assert_eq!(prediction.value(&slot(1)), U256::from(112));
        assert_eq!(prediction.stacked(), 2);
        // The second is refused: exactly it leaves; the third stays on top.
        assert!(prediction.unstack(&hashes[1]));
        assert_eq!(prediction.value(&slot(1)), U256::from(105));
        assert_eq!(prediction.value(&slot(2)), U256::from(4));
        // The first fails in execution: the corrected values come with the retraction.
        prediction.handle(&ServerMessage::Retracted {
            hash: hashes[0],
            reason: primitives::api::RetractionReason::Failed(primitives::FailureReason::Reverted),
            corrected: vec![ItemValue {
                item: slot(1),
                value: U256::from(100),
            }],
            tick: 9,
        });
        assert_eq!(prediction.value(&slot(1)), U256::from(100));
        assert!(prediction.is_stacked(&hashes[2]));
        prediction.handle(&ServerMessage::TickDiff {
            tick: 10,
            changes: vec![ItemValue {
                item: slot(2),
                value: U256::from(4),
            }],
        });
        assert!(prediction.unstack(&hashes[2]), "acked");
        assert_eq!(prediction.stacked(), 0);
        assert_eq!(prediction.value(&slot(2)), U256::from(4));
        let forgotten = prediction.failed_over();
        assert_eq!(forgotten.len(), 3, "slots 1 and 2 and the nonce");
        assert_eq!(prediction.told(&slot(1)), None);
    }

    #[test]
    fn the_stack_is_bounded() {
        let key = AccountKey::from_seed(2);
        let mut prediction = Prediction::new();
        for n in 0..PREDICTION_STACK_MAX as u64 {
            prediction
                .submitted(
                    B256::from(U256::from(n)),
                    key.address(),
                    &writing(&key, n, &[]),
                )
                .expect("room");
        }
        assert_eq!(
            prediction.submitted(
                B256::repeat_byte(0xff),
                key.address(),
                &writing(&key, 0, &[])
            ),
            Err(PredictionError::StackFull(PREDICTION_STACK_MAX))
        );
    }
}
