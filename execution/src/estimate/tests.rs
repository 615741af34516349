//! Estimation followed by execution, and the differential test against plain revm.

use alloy_primitives::{B256, Bytes, I256};
use primitives::{AccountKey, VerifiedTransaction};
use proptest::prelude::*;

use super::*;
use crate::{
    engine::{MoveOutcome, execute},
    plain::execute_plain,
    state::AccountState,
};

const CHAIN_ID: u64 = 7;
const PLAYER_BALANCE: u64 = 1_000_000;

/// `slot[word0] += word1` (wrapping), reverting unless the new value is below `word2`.
const COUNTER_CODE: [u8; 26] = [
    0x60, 0x20, 0x35, 0x60, 0x00, 0x35, 0x54, 0x01, 0x60, 0x40, 0x35, 0x81, 0x10, 0x60, 0x14, 0x57,
    0x60, 0x00, 0x80, 0xfd, 0x5b, 0x60, 0x00, 0x35, 0x55, 0x00,
];

/// `slot[0] += 1`.
const BUMP_CODE: [u8; 10] = [0x60, 0x01, 0x60, 0x00, 0x54, 0x01, 0x60, 0x00, 0x55, 0x00];

fn env() -> ExecutionEnv {
    ExecutionEnv {
        chain_id: CHAIN_ID,
        block_number: 1,
        timestamp: 1_700_000_000,
    }
}

fn key(player: u64) -> AccountKey {
    AccountKey::from_seed(player + 1)
}

fn counter() -> Address {
    Address::repeat_byte(0xc0)
}

fn bump() -> Address {
    Address::repeat_byte(0xb0)
}

/// Calls `bump()` (with no value), then stops: a call into a second contract.
fn relay() -> Address {
    Address::repeat_byte(0xa0)
}

fn relay_code() -> Bytes {
    let mut code = vec![
        0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x73,
    ];
    code.extend_from_slice(bump().as_slice());
    code.extend_from_slice(&[0x5a, 0xf1, 0x00]);
    code.into()
}

fn genesis() -> InMemoryState {
    let mut state = InMemoryState::new();
    for player in 0..3 {
        state.insert_account(
            key(player).address(),
            AccountState {
                balance: U256::from(PLAYER_BALANCE),
                ..AccountState::default()
            },
        );
    }
    for (address, code) in [
        (counter(), Bytes::from_static(&COUNTER_CODE)),
        (bump(), Bytes::from_static(&BUMP_CODE)),
        (relay(), relay_code()),
    ] {
        state.insert_account(
            address,
            AccountState {
                nonce: 1,
                code,
                ..AccountState::default()
            },
        );
    }
    state
}

fn body(nonce: u64, to: Address, value: u64, data: Bytes, gas_price: u128) -> Transaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to,
        value: U256::from(value),
        data,
        gas_limit: 200_000,
        gas_price,
        sponsor: None,
        access_list: SpaceAccessList::default(),
    }
}

fn add_data(slot: u64, amount: i64) -> Bytes {
    let mut data = Vec::with_capacity(96);
    data.extend_from_slice(&U256::from(slot).to_be_bytes::<32>());
    data.extend_from_slice(
        &I256::try_from(amount)
            .expect("small")
            .into_raw()
            .to_be_bytes::<32>(),
    );
    data.extend_from_slice(&U256::MAX.to_be_bytes::<32>());
    data.into()
}

fn signed(player: u64, mut body: Transaction, list: SpaceAccessList) -> VerifiedTransaction {
    body.access_list = list;
    body.sign(&key(player))
        .verify(CHAIN_ID)
        .expect("well-formed")
}

fn run(state: &InMemoryState, tx: &VerifiedTransaction) -> MoveOutcome {
    execute(&env(), tx, &state.slice(&tx.tx().access_list)).expect("slice matches")
}

/// Estimates, executes with the list, and checks the result against plain revm.
fn estimate_then_execute(player: u64, body: Transaction, deltas: &[StateItem]) -> SpaceAccessList {
    let state = genesis();
    let sender = key(player).address();
    let estimate = estimate(&env(), sender, &body, &state, deltas);
    assert_eq!(estimate.status, Ok(()));
    let tx = signed(player, body, estimate.access_list.clone());
    let outcome = run(&state, &tx);
    assert_eq!(outcome.status, Ok(()));
    assert_eq!(outcome.gas_used, estimate.gas_used);
    let mut after = state.clone();
    after.apply(&outcome.diff);
    let mut plain = state;
    execute_plain(&env(), &tx, &mut plain);
    assert_eq!(after, plain);
    estimate.access_list
}

/// Every declared write, changed by one (or dropped), makes the move fail.
fn every_changed_declaration_fails(player: u64, body: Transaction, list: &SpaceAccessList) {
    let state = genesis();
    let mut declared = 0;
    for (account_index, account) in list.accounts().iter().enumerate() {
        let mut variants: Vec<(AccountAccess, FailureReason)> = Vec::new();
        let bump_write = |write: DeclaredWrite, item: StateItem| match write {
            DeclaredWrite::Exact(value) => (
                DeclaredWrite::Exact(value.wrapping_add(U256::from(1))),
                FailureReason::WrongPostValue(item),
            ),
            DeclaredWrite::Delta(amount) => (
                DeclaredWrite::Delta(amount.wrapping_add(I256::ONE)),
                FailureReason::WrongDelta(item),
            ),
        };
        if let Some(write) = account.balance {
            let item = StateItem::Balance(account.address);
            let (changed, reason) = bump_write(write, item);
            variants.push((
                AccountAccess {
                    balance: Some(changed),
                    ..account.clone()
                },
                reason,
            ));
            variants.push((
                AccountAccess {
                    balance: None,
                    ..account.clone()
                },
                FailureReason::UndeclaredWrite(item),
            ));
        }
        for (slot_index, slot) in account.storage.iter().enumerate() {
            let Some(write) = slot.write else { continue };
            let item = StateItem::Storage(account.address, slot.slot);
            let (changed, reason) = bump_write(write, item);
            for (replacement, reason) in [
                (Some(changed), reason),
                (None, FailureReason::UndeclaredWrite(item)),
            ] {
                let mut access = account.clone();
                access.storage[slot_index].write = replacement;
                variants.push((access, reason));
            }
        }
        for (access, reason) in variants {
            declared += 1;
            let mut accounts = list.accounts().to_vec();
            accounts[account_index] = access;
            let tx = signed(player, body.clone(), SpaceAccessList::new(accounts));
            let outcome = run(&state, &tx);
            assert_eq!(outcome.status, Err(reason));
            assert_eq!(
                outcome.diff,
                crate::diff::StateDiff::nonce_only(tx.sender, 1)
            );
        }
    }
    assert!(declared > 0, "the move declares some write");
}

#[test]
fn a_transfer_estimates_and_executes() {
    let transfer = body(0, key(1).address(), 500, Bytes::new(), 2);
    let list = estimate_then_execute(0, transfer.clone(), &[]);
    // The sender pays value and fee; the recipient's balance is declared.
    assert_eq!(
        list.account(&key(0).address()).and_then(|a| a.balance),
        Some(DeclaredWrite::Exact(U256::from(
            PLAYER_BALANCE - 500 - 2 * 21_000
        )))
    );
    every_changed_declaration_fails(0, transfer, &list);
}

#[test]
fn a_storage_write_estimates_and_executes() {
    let call = body(0, counter(), 0, add_data(3, 9), 0);
    let list = estimate_then_execute(0, call.clone(), &[]);
    let slot = B256::from(U256::from(3));
    assert_eq!(
        list.account(&counter())
            .and_then(|a| a.slot(&slot))
            .and_then(|s| s.write),
        Some(DeclaredWrite::Exact(U256::from(9)))
    );
    every_changed_declaration_fails(0, call, &list);
}

#[test]
fn a_call_into_a_second_contract_estimates_and_executes() {
    let call = body(0, relay(), 0, Bytes::new(), 0);
    let list = estimate_then_execute(0, call.clone(), &[]);
    assert!(list.contains(&bump()));
    every_changed_declaration_fails(0, call, &list);
}

#[test]
fn named_slots_are_declared_as_deltas_and_commute() {
    let slot = B256::from(U256::from(5));
    let hot = [StateItem::Storage(counter(), slot)];
    let state = genesis();
    let moves: Vec<VerifiedTransaction> = [(0, 4), (1, 2)]
        .into_iter()
        .map(|(player, amount)| {
            let call = body(0, counter(), 0, add_data(5, amount), 0);
            let found = estimate(&env(), key(player).address(), &call, &state, &hot);
            signed(player, call, found.access_list)
        })
        .collect();
    let mut after = state.clone();
    for tx in moves.iter().rev() {
        let outcome = run(&after, tx);
        assert_eq!(outcome.status, Ok(()));
        after.apply(&outcome.diff);
    }
    assert_eq!(after.storage(&counter(), &slot), U256::from(6));
    every_changed_declaration_fails(0, moves[0].tx().clone(), &moves[0].tx().access_list);
}

/// One random move of the differential test.
fn random_body() -> impl Strategy<Value = (u64, Transaction)> {
    let transfer = (0..3u64, 0..5_000u64, 0..3u128)
        .prop_map(|(to, value, price)| body(0, key(to).address(), value, Bytes::new(), price));
    let add = (0..4u64, -50..50i64)
        .prop_map(|(slot, amount)| body(0, counter(), 0, add_data(slot, amount), 0));
    let relay_call = Just(body(0, relay(), 0, Bytes::new(), 1));
    (0..3u64, prop_oneof![transfer, add, relay_call])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// On random moves, SAL-enforced execution after estimation leaves the same state and
    /// reaches the same verdict as plain revm.
    #[test]
    fn estimated_execution_equals_plain_revm(moves in prop::collection::vec(random_body(), 1..12)) {
        let mut enforced = genesis();
        let mut plain = genesis();
        let mut nonces = [0u64; 3];
        for (player, mut body) in moves {
            body.nonce = nonces[player as usize];
            nonces[player as usize] += 1;
            let sender = key(player).address();
            let found = estimate(&env(), sender, &body, &enforced, &[]);
            let tx = signed(player, body, found.access_list);
            let outcome = run(&enforced, &tx);
            enforced.apply(&outcome.diff);
            let reference = execute_plain(&env(), &tx, &mut plain);
            prop_assert_eq!(&outcome.status, &reference.status);
            prop_assert_eq!(outcome.gas_used, reference.gas_used);
            if outcome.is_success() {
                prop_assert_eq!(&enforced, &plain);
            }
        }
    }
}

/// A move signed as an EIP-2930 transaction with an access list: estimation lists every listed
/// item (the unused one too) and charges the list's intrinsic gas, and execution with that list
/// agrees, gas included, with plain revm.
#[test]
fn an_ethereum_access_list_is_listed_charged_and_executed_as_ethereum_would() {
    use primitives::{
        MoveSignature, SignedTransaction,
        ethereum::{EthereumAccessListItem, EthereumKind, EthereumSignature},
    };

    let state = genesis();
    let player = 0;
    let sender = key(player).address();
    let unused = Address::repeat_byte(0x77);
    let list = EthereumAccessList(vec![
        EthereumAccessListItem {
            address: bump(),
            storage_keys: vec![B256::ZERO],
        },
        EthereumAccessListItem {
            address: unused,
            storage_keys: vec![B256::repeat_byte(5)],
        },
    ]);
    let mut move_body = body(0, relay(), 0, Bytes::new(), 1);
    let mut signature = EthereumSignature {
        kind: EthereumKind::Eip2930,
        create: false,
        max_fee_per_gas: 0,
        max_priority_fee_per_gas: 0,
        signature: primitives::Signature([0; 65]),
        access_list: list.clone(),
    };
    signature.signature = key(player).sign_prehash(&signature.signing_hash(&move_body));
    let with_list = estimate_move(&env(), sender, &move_body, (false, &list), &state, &[]);
    let without = estimate_move(
        &env(),
        sender,
        &move_body,
        (false, &EthereumAccessList::default()),
        &state,
        &[],
    );
    assert_eq!(
        (with_list.status.clone(), without.status.clone()),
        (Ok(()), Ok(()))
    );
    // Two addresses and two slots of intrinsic gas, less what warming saves the call: the
    // relay's CALL to a warm `bump` (2,600 - 100) and bump's SLOAD and SSTORE of a warm slot
    // (2,100 - 100 for the first access).
    assert_eq!(
        with_list.gas_used,
        without.gas_used + 2 * 2_400 + 2 * 1_900 - 2_500 - 2_000
    );
    let unused_entry = with_list
        .access_list
        .account(&unused)
        .expect("the unused listed address is in the SAL");
    assert_eq!(unused_entry.balance, None);
    assert!(
        unused_entry
            .slot(&B256::repeat_byte(5))
            .is_some_and(|slot| slot.write.is_none())
    );

    move_body.access_list = with_list.access_list.clone();
    let tx = SignedTransaction {
        tx: move_body.clone(),
        signature: MoveSignature::Ethereum(signature.clone()),
    }
    .verify(CHAIN_ID)
    .expect("every listed item is in the SAL");
    let outcome = run(&state, &tx);
    assert_eq!(outcome.status, Ok(()));
    assert_eq!(outcome.gas_used, with_list.gas_used);
    let mut after = state.clone();
    after.apply(&outcome.diff);
    let mut plain = state;
    let plain_outcome = execute_plain(&env(), &tx, &mut plain);
    assert_eq!(plain_outcome.gas_used, outcome.gas_used);
    assert_eq!(after, plain);

    // The list-less estimate misses the unused item: verification refuses that move.
    move_body.access_list = without.access_list;
    assert_eq!(
        SignedTransaction {
            tx: move_body,
            signature: MoveSignature::Ethereum(signature),
        }
        .verify(CHAIN_ID)
        .err(),
        Some(primitives::tx::TxError::MissingFromAccessList(unused))
    );
}
