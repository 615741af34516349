//! The schedule against sequential execution, on a counter contract whose success depends on
//! the value it adds to (so wrong delta predictions would show).

use alloy_primitives::{Address, B256, Bytes, I256, U256};
use primitives::{
    AccountAccess, AccountKey, DeclaredWrite, FailureReason, SlotAccess, SpaceAccessList,
    Transaction, VerifiedTransaction,
};
use proptest::prelude::*;

use super::*;
use crate::state::AccountState;

const CHAIN_ID: u64 = 7;
const PLAYERS: u64 = 4;
const PLAYER_BALANCE: u64 = 1_000;

/// `slot[word0] += word1` (wrapping), reverting unless the new value is below `word2`.
const COUNTER_CODE: [u8; 26] = [
    0x60, 0x20, 0x35, 0x60, 0x00, 0x35, 0x54, 0x01, 0x60, 0x40, 0x35, 0x81, 0x10, 0x60, 0x14, 0x57,
    0x60, 0x00, 0x80, 0xfd, 0x5b, 0x60, 0x00, 0x35, 0x55, 0x00,
];

fn env() -> ExecutionEnv {
    ExecutionEnv {
        chain_id: CHAIN_ID,
        block_number: 1,
        timestamp: 1_700_000_000,
    }
}

fn counter() -> Address {
    Address::repeat_byte(0xc0)
}

fn key(player: u64) -> AccountKey {
    AccountKey::from_seed(player + 1)
}

fn slot(n: u64) -> B256 {
    B256::from(U256::from(n))
}

fn signed_word(amount: i64) -> U256 {
    I256::try_from(amount).expect("small").into_raw()
}

fn genesis() -> InMemoryState {
    let mut state = InMemoryState::new();
    for player in 0..PLAYERS {
        state.insert_account(
            key(player).address(),
            AccountState {
                balance: U256::from(PLAYER_BALANCE),
                ..AccountState::default()
            },
        );
    }
    state.insert_account(
        counter(),
        AccountState {
            nonce: 1,
            code: Bytes::from_static(&COUNTER_CODE),
            storage: [(slot(0), U256::from(10))].into(),
            ..AccountState::default()
        },
    );
    state
}

fn sign(
    player: u64,
    nonce: u64,
    to: Address,
    value: u64,
    data: Bytes,
    list: Vec<AccountAccess>,
) -> VerifiedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to,
        value: U256::from(value),
        data,
        gas_limit: 100_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new(list),
    }
    .sign(&key(player))
    .verify(CHAIN_ID)
    .expect("well-formed")
}

/// Adds `amount` to counter slot `slot_index`, reverting at `limit`, declaring `write`.
fn add(
    player: u64,
    nonce: u64,
    slot_index: u64,
    amount: i64,
    limit: U256,
    write: Option<DeclaredWrite>,
) -> VerifiedTransaction {
    let mut data = Vec::with_capacity(96);
    data.extend_from_slice(slot(slot_index).as_slice());
    data.extend_from_slice(&signed_word(amount).to_be_bytes::<32>());
    data.extend_from_slice(&limit.to_be_bytes::<32>());
    sign(
        player,
        nonce,
        counter(),
        0,
        data.into(),
        vec![
            AccountAccess::read(key(player).address()),
            AccountAccess {
                storage: vec![SlotAccess {
                    slot: slot(slot_index),
                    write,
                }],
                ..AccountAccess::read(counter())
            },
        ],
    )
}

fn delta(amount: i64) -> Option<DeclaredWrite> {
    Some(DeclaredWrite::Delta(I256::try_from(amount).expect("small")))
}

fn transfer(
    player: u64,
    nonce: u64,
    to: u64,
    value: u64,
    exact_sender: Option<u64>,
) -> VerifiedTransaction {
    let sender_write = match exact_sender {
        Some(after) => DeclaredWrite::Exact(U256::from(after)),
        None => DeclaredWrite::Delta(-I256::try_from(value).expect("small")),
    };
    let recipient = key(to).address();
    sign(
        player,
        nonce,
        recipient,
        value,
        Bytes::new(),
        vec![
            AccountAccess {
                balance: Some(sender_write),
                ..AccountAccess::read(key(player).address())
            },
            AccountAccess {
                balance: Some(DeclaredWrite::Delta(I256::try_from(value).expect("small"))),
                ..AccountAccess::read(recipient)
            },
        ],
    )
}

fn both_ways(batch: &[VerifiedTransaction]) -> (Vec<MoveOutcome>, InMemoryState) {
    let mut sequential_state = genesis();
    let sequential = execute_sequential(&env(), batch, &mut sequential_state);
    let mut parallel_state = genesis();
    let parallel = execute_parallel(&env(), batch, &mut parallel_state);
    assert_eq!(parallel, sequential);
    assert_eq!(parallel_state, sequential_state);
    (sequential, sequential_state)
}

#[test]
fn two_deltas_on_one_slot_succeed_in_either_order() {
    let first = add(0, 0, 0, 5, U256::MAX, delta(5));
    let second = add(1, 0, 0, -3, U256::MAX, delta(-3));
    for batch in [vec![first.clone(), second.clone()], vec![second, first]] {
        assert_eq!(Schedule::new(&batch).waves, vec![vec![0, 1]]);
        let (outcomes, state) = both_ways(&batch);
        assert!(outcomes.iter().all(MoveOutcome::is_success));
        assert_eq!(state.storage(&counter(), &slot(0)), U256::from(12));
    }
}

#[test]
fn a_failed_delta_is_left_out_of_the_next_moves_slice() {
    // The first move's wrong delta fails it; the second then sees 10, not 11, and its limit of
    // 14 lets 10 + 3 through where 11 + 3 would also pass but declare the wrong post-state.
    let batch = vec![
        add(0, 0, 0, 1, U256::MAX, delta(2)),
        add(1, 0, 0, 3, U256::from(14), delta(3)),
        add(2, 0, 0, 1, U256::from(14), delta(1)),
    ];
    let (outcomes, state) = both_ways(&batch);
    assert_eq!(
        outcomes[0].status,
        Err(FailureReason::WrongDelta(
            primitives::finality::StateItem::Storage(counter(), slot(0))
        ))
    );
    assert!(outcomes[1].is_success());
    // 13 + 1 reaches the limit: reverted.
    assert_eq!(outcomes[2].status, Err(FailureReason::Reverted));
    assert_eq!(state.storage(&counter(), &slot(0)), U256::from(13));
}

#[test]
fn conflicts_order_waves() {
    let batch = vec![
        add(0, 0, 1, 4, U256::MAX, delta(4)),
        // Reads slot 1 (adds zero, declares nothing): after the delta.
        add(1, 0, 1, 0, U256::MAX, None),
        // Another delta on slot 1: after the reader.
        add(2, 0, 1, 1, U256::MAX, delta(1)),
        // Untouched slot, other player: first wave.
        add(3, 0, 2, 1, U256::MAX, delta(1)),
        // Same sender as the first: its nonce conflicts.
        add(0, 1, 2, 1, U256::MAX, delta(1)),
    ];
    assert_eq!(
        Schedule::new(&batch).waves,
        vec![vec![0, 3], vec![1, 4], vec![2]]
    );
    let (outcomes, state) = both_ways(&batch);
    assert!(outcomes.iter().all(MoveOutcome::is_success));
    assert_eq!(state.storage(&counter(), &slot(1)), U256::from(5));
    assert_eq!(state.storage(&counter(), &slot(2)), U256::from(2));
}

/// One random move: its kind and the ways its declaration may be wrong.
#[derive(Clone, Debug)]
enum Spec {
    Add {
        slot: u64,
        amount: i64,
        limit: Option<u64>,
        declare: u8,
    },
    Transfer {
        to: u64,
        value: u64,
        exact_sender: bool,
    },
}

fn spec() -> impl Strategy<Value = (u64, bool, Spec)> {
    let add = (0..3u64, -20..20i64, prop::option::of(0..60u64), 0..6u8).prop_map(
        |(slot, amount, limit, declare)| Spec::Add {
            slot,
            amount,
            limit,
            declare,
        },
    );
    let transfer = (0..PLAYERS, 0..400u64, any::<bool>()).prop_map(|(to, value, exact_sender)| {
        Spec::Transfer {
            to,
            value,
            exact_sender,
        }
    });
    (
        0..PLAYERS,
        prop::bool::weighted(0.05),
        prop_oneof![3 => add, 1 => transfer],
    )
}

fn build(specs: &[(u64, bool, Spec)]) -> Vec<VerifiedTransaction> {
    let mut nonces = [0u64; PLAYERS as usize];
    specs
        .iter()
        .map(|(player, skip_nonce, spec)| {
            let nonce = &mut nonces[*player as usize];
            // A skipped nonce makes this move a bad nonce and the sender's next one fine.
            let used = *nonce + u64::from(*skip_nonce);
            if !skip_nonce {
                *nonce += 1;
            }
            match spec {
                Spec::Add {
                    slot,
                    amount,
                    limit,
                    declare,
                } => {
                    let limit = limit.map_or(U256::MAX, U256::from);
                    let write = match declare {
                        0..=2 => delta(*amount),
                        3 => delta(amount + 1),
                        4 => Some(DeclaredWrite::Exact(U256::from(10 + amount.unsigned_abs()))),
                        _ => None,
                    };
                    add(*player, used, *slot, *amount, limit, write)
                }
                Spec::Transfer {
                    to,
                    value,
                    exact_sender,
                } => {
                    let exact = exact_sender.then_some(PLAYER_BALANCE - value);
                    transfer(*player, used, *to, *value, exact)
                }
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn parallel_equals_sequential(specs in prop::collection::vec(spec(), 1..24)) {
        let batch = build(&specs);
        both_ways(&batch);
    }

    /// Steps much smaller than a wave, so that deltas settled in earlier steps, failures at
    /// step boundaries and results applied while the next step runs are all exercised.
    #[test]
    fn parallel_in_small_steps_equals_sequential(
        specs in prop::collection::vec(spec(), 1..24),
        step in 1..5usize,
    ) {
        let batch = build(&specs);
        let mut sequential_state = genesis();
        let sequential = execute_sequential(&env(), &batch, &mut sequential_state);
        let mut parallel_state = genesis();
        let parallel = execute_parallel_in_steps(&env(), &batch, &mut parallel_state, step);
        prop_assert_eq!(parallel, sequential);
        prop_assert_eq!(parallel_state, sequential_state);
    }
}
