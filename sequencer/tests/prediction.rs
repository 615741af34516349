//! The client SDK's stacked prediction against the sequencer's pending state, over a seeded
//! random run: the sequencer's sans-IO cores (pending state, subscriptions, the retraction of
//! execution outcomes) produce the messages a session would carry, encoded and decoded as on
//! the wire, and the SDK's sans-IO prediction consumes them. After every ack and every
//! retraction the prediction must equal the sequencer's pending state with the client's moves
//! not yet acked stacked on top, for every item the client watches.

use std::collections::{HashMap, VecDeque};

use client_sdk::prediction::Prediction;
use primitives::{
    AccountAccess, AccountKey, Address, B256, Bytes, DeclaredWrite, FailureReason, SlotAccess,
    SpaceAccessList, Transaction, TxHash, U256, VerifiedTransaction,
    api::{RetractionReason, ServerMessage},
    codec::{Decode, Encode},
    finality::StateItem,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sequencer::{
    pending::{PendingState, declared_writes},
    subscriptions::{ClientId, Subscriptions, retract_executed},
};

const GAME: Address = Address::repeat_byte(0x42);
const SDK: ClientId = 1;
const SLOTS: u64 = 5;
const OWN_MOVES: usize = 1_000;
const FAILURE_RATE: f64 = 0.1;

fn slot(n: u64) -> StateItem {
    StateItem::Storage(GAME, B256::from(U256::from(n)))
}

struct World {
    rng: StdRng,
    pending: PendingState,
    subscriptions: Subscriptions,
    prediction: Prediction,
    /// What execution holds, to compute a successful move's actual writes.
    executed: HashMap<StateItem, U256>,
    own_keys: Vec<AccountKey>,
    other_keys: Vec<AccountKey>,
    nonces: HashMap<Address, u64>,
    /// The client's moves sent and not yet admitted, in the order sent.
    in_flight: VecDeque<VerifiedTransaction>,
    /// Admitted, unexecuted moves in ack order (execution's order here).
    unexecuted: VecDeque<VerifiedTransaction>,
    watched: Vec<StateItem>,
    own_sent: usize,
    own_failed: Vec<TxHash>,
    failed_retractions: HashMap<TxHash, usize>,
    checks: usize,
    tick: u64,
}

impl World {
    fn new(seed: u64) -> Self {
        let own_keys: Vec<AccountKey> = (1..=3).map(AccountKey::from_seed).collect();
        let other_keys: Vec<AccountKey> = (10..=12).map(AccountKey::from_seed).collect();
        let mut watched: Vec<StateItem> = (0..SLOTS).map(slot).collect();
        watched.extend(own_keys.iter().map(|key| StateItem::Nonce(key.address())));
        let mut world = World {
            rng: StdRng::seed_from_u64(seed),
            pending: PendingState::new(),
            subscriptions: Subscriptions::new(64),
            prediction: Prediction::new(),
            executed: HashMap::new(),
            own_keys,
            other_keys,
            nonces: HashMap::new(),
            in_flight: VecDeque::new(),
            unexecuted: VecDeque::new(),
            watched: watched.clone(),
            own_sent: 0,
            own_failed: Vec::new(),
            failed_retractions: HashMap::new(),
            checks: 0,
            tick: 0,
        };
        for item in watched {
            let value = world.pending.get(&item);
            world
                .subscriptions
                .subscribe(SDK, item, value)
                .expect("room");
            world.deliver(ServerMessage::Changed { item, value });
        }
        world
    }

    /// A message from the sequencer to the client, through the wire encoding.
    fn deliver(&mut self, message: ServerMessage) {
        let decoded = ServerMessage::from_bytes(&message.to_bytes()).expect("decodes");
        assert_eq!(decoded, message);
        if let ServerMessage::Retracted {
            hash,
            reason: RetractionReason::Failed(_),
            ..
        } = &decoded
        {
            *self.failed_retractions.entry(*hash).or_default() += 1;
        }
        self.prediction.handle(&decoded);
    }

    fn random_move(&mut self, key: &AccountKey) -> VerifiedTransaction {
        let nonce = self.nonces.entry(key.address()).or_default();
        let tx_nonce = *nonce;
        *nonce += 1;
        let writes = self.rng.random_range(1..=2);
        let mut storage: Vec<SlotAccess> = Vec::new();
        for _ in 0..writes {
            let slot = B256::from(U256::from(self.rng.random_range(0..SLOTS)));
            if storage.iter().any(|access| access.slot == slot) {
                continue;
            }
            let write = if self.rng.random_bool(0.5) {
                // A delta, up or down.
                let amount = U256::from(self.rng.random_range(1..100u64));
                let after = if self.rng.random_bool(0.3) {
                    U256::ZERO.wrapping_sub(amount)
                } else {
                    amount
                };
                DeclaredWrite::Delta(DeclaredWrite::delta_between(U256::ZERO, after))
            } else {
                DeclaredWrite::Exact(U256::from(self.rng.random_range(0..1_000u64)))
            };
            storage.push(SlotAccess {
                slot,
                write: Some(write),
            });
        }
        Transaction {
            chain_id: 1,
            nonce: tx_nonce,
            to: GAME,
            value: U256::ZERO,
            data: Bytes::new(),
            gas_limit: 50_000,
            gas_price: 0,
            sponsor: None,
            access_list: SpaceAccessList::new([
                AccountAccess::read(key.address()),
                AccountAccess {
                    storage,
                    ..AccountAccess::read(GAME)
                },
            ]),
        }
        .sign(key)
        .verify(1)
        .expect("valid")
    }

    /// The sequencer admits a move and pushes the changes of the items it writes, as the
    /// node does.
    fn admit(&mut self, verified: VerifiedTransaction) {
        self.pending.admit(&verified);
        let written = declared_writes(&verified).into_iter().map(|(item, _)| item);
        let pending = &self.pending;
        let changes = self
            .subscriptions
            .changes(written, |item| pending.get(item));
        for (client, item, value) in changes {
            assert_eq!(client, SDK);
            self.deliver(ServerMessage::Changed { item, value });
        }
        self.unexecuted.push_back(verified);
    }

    /// An execution outcome reaches the sequencer, which retracts or re-bases as the node
    /// does.
    fn executed(
        &mut self,
        hash: TxHash,
        status: Result<(), FailureReason>,
        writes: Vec<(StateItem, U256)>,
    ) {
        for (item, value) in &writes {
            self.executed.insert(*item, *value);
        }
        let (reason, told) = retract_executed(
            &mut self.pending,
            &mut self.subscriptions,
            &hash,
            &status,
            writes,
        );
        for (client, corrected) in told {
            assert_eq!(client, SDK);
            self.deliver(ServerMessage::Retracted {
                hash,
                reason: reason.clone(),
                corrected,
                tick: self.tick,
            });
        }
    }

    fn execute_oldest(&mut self) {
        let Some(verified) = self.unexecuted.pop_front() else {
            return;
        };
        let own = self
            .own_keys
            .iter()
            .any(|key| key.address() == verified.sender);
        let fails = self.rng.random_bool(FAILURE_RATE);
        let nonce = (
            StateItem::Nonce(verified.sender),
            U256::from(verified.tx().nonce + 1),
        );
        let (status, writes) = if fails {
            if own {
                self.own_failed.push(verified.hash);
            }
            (Err(FailureReason::Reverted), vec![nonce])
        } else {
            let writes = declared_writes(&verified)
                .into_iter()
                .map(|(item, write)| {
                    let before = self.executed.get(&item).copied().unwrap_or_default();
                    (item, write.apply(before))
                })
                .collect();
            (Ok(()), writes)
        };
        self.executed(verified.hash, status, writes);
        self.check("a retraction or re-base");
    }

    /// Another sequencer's move executed: the base moves under this one's pending state.
    fn foreign_result(&mut self) {
        let item = slot(self.rng.random_range(0..SLOTS));
        let value = U256::from(self.rng.random_range(0..1_000u64));
        let hash = B256::from(U256::from(self.rng.random::<u64>()));
        self.executed(hash, Ok(()), vec![(item, value)]);
        self.check("a foreign result");
    }

    /// The prediction equals the sequencer's pending state with the client's unacked moves
    /// stacked on it, for every watched item.
    fn check(&mut self, after: &str) {
        let mut expected = self.pending.clone();
        for verified in &self.in_flight {
            expected.admit(verified);
        }
        for item in &self.watched {
            assert_eq!(
                self.prediction.value(item),
                expected.get(item),
                "{item:?} after {after} (check {})",
                self.checks
            );
        }
        self.checks += 1;
    }

    fn step(&mut self) {
        let roll: f64 = self.rng.random();
        if roll < 0.35 && self.own_sent < OWN_MOVES && self.in_flight.len() < 8 {
            let key = self.own_keys[self.rng.random_range(0..self.own_keys.len())].clone();
            let verified = self.random_move(&key);
            self.prediction
                .submitted(verified.hash, verified.sender, verified.tx())
                .expect("room");
            self.in_flight.push_back(verified);
            self.own_sent += 1;
        } else if roll < 0.65 {
            let Some(verified) = self.in_flight.pop_front() else {
                return;
            };
            let hash = verified.hash;
            self.admit(verified);
            // The ack: the client takes the move off its stack by its hash.
            self.prediction.unstack(&hash);
            self.check("an ack");
        } else if roll < 0.75 {
            let key = self.other_keys[self.rng.random_range(0..self.other_keys.len())].clone();
            let verified = self.random_move(&key);
            self.admit(verified);
        } else if roll < 0.95 {
            self.execute_oldest();
        } else {
            self.foreign_result();
        }
        self.tick += 1;
    }
}

#[test]
fn stacked_prediction_equals_pending_state_after_every_ack_and_retraction() {
    for seed in [1, 2] {
        let mut world = World::new(seed);
        while world.own_sent < OWN_MOVES
            || !world.in_flight.is_empty()
            || !world.unexecuted.is_empty()
        {
            world.step();
        }
        assert_eq!(
            world.prediction.stacked(),
            0,
            "every move acked and unstacked"
        );
        let failed = world.own_failed.len();
        assert!(
            (60..=140).contains(&failed),
            "seed {seed}: about 10 % of {OWN_MOVES} moves fail, {failed} did"
        );
        for hash in &world.own_failed {
            assert_eq!(
                world.failed_retractions.get(hash),
                Some(&1),
                "seed {seed}: exactly one retraction for each failed move"
            );
        }
        assert!(
            world.checks > OWN_MOVES,
            "checked after every ack and retraction"
        );
    }
}
