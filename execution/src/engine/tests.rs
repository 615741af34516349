//! Moves against a tiny hand-assembled contract, one rule of the engine per test.

use alloy_primitives::{Address, B256, Bytes, U256};
use primitives::{
    AccountAccess, AccountKey, DeclaredWrite, FailureReason, SlotAccess, SpaceAccessList,
    Transaction, VerifiedTransaction, finality::StateItem,
};

use super::*;
use crate::{
    error::ExecutionError,
    state::{AccountState, InMemoryState},
};

const CHAIN_ID: u64 = 7;
const PLAYER_BALANCE: u64 = 1_000_000_000;

/// Stores the first calldata word at slot `CALLER` if it is below 64, else reverts:
/// `PUSH1 0x40 PUSH1 0 CALLDATALOAD LT PUSH1 0x0d JUMPI PUSH1 0 DUP1 REVERT
///  JUMPDEST PUSH1 0 CALLDATALOAD CALLER SSTORE STOP`.
const STORE_CODE: [u8; 20] = [
    0x60, 0x40, 0x60, 0x00, 0x35, 0x10, 0x60, 0x0d, 0x57, 0x60, 0x00, 0x80, 0xfd, 0x5b, 0x60, 0x00,
    0x35, 0x33, 0x55, 0x00,
];

fn env() -> ExecutionEnv {
    ExecutionEnv {
        chain_id: CHAIN_ID,
        block_number: 10,
        timestamp: 1_700_000_000,
    }
}

fn player() -> AccountKey {
    AccountKey::from_seed(1)
}

fn game() -> Address {
    Address::repeat_byte(0xc0)
}

fn friend() -> Address {
    Address::repeat_byte(0xf1)
}

/// The slot the contract writes for `caller`: the caller's address as a word.
fn caller_slot(caller: Address) -> B256 {
    caller.into_word()
}

fn word(value: u64) -> Bytes {
    Bytes::from(U256::from(value).to_be_bytes::<32>().to_vec())
}

/// `CALL(gas, target, value, 0, 0, 0, 0) STOP`: touches `target` and nothing else.
fn call_code(target: Address, value: u8) -> Bytes {
    let mut code = vec![
        0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x60, value, 0x73,
    ];
    code.extend_from_slice(target.as_slice());
    code.extend_from_slice(&[0x5a, 0xf1, 0x00]);
    code.into()
}

fn genesis() -> InMemoryState {
    let mut state = InMemoryState::new();
    state.insert_account(
        player().address(),
        AccountState {
            balance: U256::from(PLAYER_BALANCE),
            ..AccountState::default()
        },
    );
    state.insert_account(
        game(),
        AccountState {
            nonce: 1,
            code: Bytes::from_static(&STORE_CODE),
            ..AccountState::default()
        },
    );
    state
}

fn sign(tx: Transaction) -> VerifiedTransaction {
    tx.sign(&player())
        .verify(CHAIN_ID)
        .expect("a well-formed move")
}

fn call(to: Address, data: Bytes, nonce: u64, access: Vec<AccountAccess>) -> VerifiedTransaction {
    let mut entries = vec![AccountAccess::read(player().address())];
    entries.extend(access);
    sign(Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to,
        value: U256::ZERO,
        data,
        gas_limit: 100_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new(entries),
    })
}

/// A move storing `position`, whose list names the caller's slot with `write` (or omits the
/// slot when `slot_listed` is false).
fn store_move(
    position: u64,
    nonce: u64,
    slot_listed: bool,
    write: Option<u64>,
) -> VerifiedTransaction {
    let storage = if slot_listed {
        vec![SlotAccess {
            slot: caller_slot(player().address()),
            write: write.map(|value| DeclaredWrite::Exact(U256::from(value))),
        }]
    } else {
        Vec::new()
    };
    call(
        game(),
        word(position),
        nonce,
        vec![AccountAccess {
            storage,
            ..AccountAccess::read(game())
        }],
    )
}

fn transfer(
    value: u64,
    gas_price: u128,
    sender_after: U256,
    friend_after: Option<U256>,
) -> VerifiedTransaction {
    sign(Transaction {
        chain_id: CHAIN_ID,
        nonce: 0,
        to: friend(),
        value: U256::from(value),
        data: Bytes::new(),
        gas_limit: 21_000,
        gas_price,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess {
                balance: Some(DeclaredWrite::Exact(sender_after)),
                ..AccountAccess::read(player().address())
            },
            AccountAccess {
                balance: friend_after.map(DeclaredWrite::Exact),
                ..AccountAccess::read(friend())
            },
        ]),
    })
}

fn run(state: &InMemoryState, tx: &VerifiedTransaction) -> MoveOutcome {
    let slice = state.slice(&tx.tx().access_list);
    execute(&env(), tx, &slice).expect("the slice matches the list")
}

/// A failed move reports `reason` and consumes its sender's nonce, nothing else.
fn assert_failed(outcome: &MoveOutcome, reason: FailureReason) {
    assert_eq!(outcome.status, Err(reason));
    assert_eq!(outcome.diff, StateDiff::nonce_only(player().address(), 1));
    assert!(outcome.logs.is_empty());
}

#[test]
fn a_declared_store_succeeds_with_the_exact_diff() {
    let mut state = genesis();
    let tx = store_move(5, 0, true, Some(5));
    let outcome = run(&state, &tx);

    assert_eq!(outcome.status, Ok(()));
    assert_eq!(outcome.hash, tx.hash);
    assert!(outcome.gas_used > 21_000);
    let slot = caller_slot(player().address());
    let mut expected = StateDiff::nonce_only(player().address(), 1);
    expected.accounts.insert(
        game(),
        AccountDiff {
            storage: [(slot, U256::from(5))].into(),
            ..AccountDiff::default()
        },
    );
    assert_eq!(outcome.diff, expected);

    state.apply(&outcome.diff);
    assert_eq!(state.storage(&game(), &slot), U256::from(5));
    let account = state.account(&player().address()).expect("player exists");
    assert_eq!(account.nonce, 1);
    assert_eq!(account.balance, U256::from(PLAYER_BALANCE));

    // The next move sees the new nonce; storing the same value again changes nothing but it.
    let again = run(&state, &store_move(5, 1, true, Some(5)));
    assert_eq!(again.status, Ok(()));
    assert_eq!(again.diff, StateDiff::nonce_only(player().address(), 2));
}

#[test]
fn reading_an_unlisted_slot_is_out_of_access_list() {
    let outcome = run(&genesis(), &store_move(5, 0, false, None));
    let item = StateItem::Storage(game(), caller_slot(player().address()));
    assert_failed(&outcome, FailureReason::OutOfAccessList(item));
}

#[test]
fn an_undeclared_storage_write_fails() {
    let outcome = run(&genesis(), &store_move(5, 0, true, None));
    let item = StateItem::Storage(game(), caller_slot(player().address()));
    assert_failed(&outcome, FailureReason::UndeclaredWrite(item));
}

#[test]
fn a_wrong_declared_value_fails() {
    let outcome = run(&genesis(), &store_move(5, 0, true, Some(6)));
    let item = StateItem::Storage(game(), caller_slot(player().address()));
    assert_failed(&outcome, FailureReason::WrongPostValue(item));
}

/// The store move with its slot declared as `write` (any kind).
fn store_move_declaring(position: u64, write: DeclaredWrite) -> VerifiedTransaction {
    let mut tx = store_move(position, 0, true, None).signed.tx;
    tx.access_list = SpaceAccessList::new([
        AccountAccess::read(player().address()),
        AccountAccess {
            storage: vec![SlotAccess {
                slot: caller_slot(player().address()),
                write: Some(write),
            }],
            ..AccountAccess::read(game())
        },
    ]);
    sign(tx)
}

#[test]
fn a_delta_is_held_to_the_value_before_plus_the_amount() {
    let item = StateItem::Storage(game(), caller_slot(player().address()));
    let mut state = genesis();
    state.insert_account(
        game(),
        AccountState {
            nonce: 1,
            code: Bytes::from_static(&STORE_CODE),
            storage: [(caller_slot(player().address()), U256::from(7))].into(),
            ..AccountState::default()
        },
    );
    // 7 -> 5 is a delta of -2, wrapping.
    let minus_two = DeclaredWrite::delta_between(U256::from(7), U256::from(5));
    let outcome = run(
        &state,
        &store_move_declaring(5, DeclaredWrite::Delta(minus_two)),
    );
    assert_eq!(outcome.status, Ok(()));
    let plus_two = DeclaredWrite::delta_between(U256::from(5), U256::from(7));
    let outcome = run(
        &state,
        &store_move_declaring(5, DeclaredWrite::Delta(plus_two)),
    );
    assert_failed(&outcome, FailureReason::WrongDelta(item));
    // A zero delta on a slot the move leaves alone holds; a non-zero one does not.
    let zero = DeclaredWrite::delta_between(U256::ZERO, U256::ZERO);
    let outcome = run(&state, &store_move_declaring(7, DeclaredWrite::Delta(zero)));
    assert_eq!(outcome.status, Ok(()));
    let outcome = run(
        &state,
        &store_move_declaring(7, DeclaredWrite::Delta(plus_two)),
    );
    assert_failed(&outcome, FailureReason::WrongDelta(item));
}

#[test]
fn a_declared_write_that_does_not_happen_fails() {
    // Storing zero over zero changes nothing, yet the list promised 9.
    let outcome = run(&genesis(), &store_move(0, 0, true, Some(9)));
    let item = StateItem::Storage(game(), caller_slot(player().address()));
    assert_failed(&outcome, FailureReason::WrongPostValue(item));

    // Declaring the value an item already has is fine, touched or not.
    let mut unchanged_balance = store_move(5, 0, true, Some(5)).signed.tx;
    unchanged_balance.access_list = SpaceAccessList::new(
        unchanged_balance
            .access_list
            .accounts()
            .iter()
            .cloned()
            .chain([AccountAccess {
                balance: Some(DeclaredWrite::Exact(U256::from(PLAYER_BALANCE))),
                ..AccountAccess::read(player().address())
            }]),
    );
    assert_eq!(
        run(&genesis(), &sign(unchanged_balance.clone())).status,
        Ok(())
    );

    unchanged_balance.access_list = SpaceAccessList::new(
        unchanged_balance
            .access_list
            .accounts()
            .iter()
            .cloned()
            .chain([AccountAccess {
                balance: Some(DeclaredWrite::Exact(U256::from(1))),
                ..AccountAccess::read(player().address())
            }]),
    );
    let outcome = run(&genesis(), &sign(unchanged_balance));
    assert_failed(
        &outcome,
        FailureReason::WrongPostValue(StateItem::Balance(player().address())),
    );
}

#[test]
fn a_revert_fails_and_consumes_only_the_nonce() {
    let outcome = run(&genesis(), &store_move(64, 0, true, Some(64)));
    assert_failed(&outcome, FailureReason::Reverted);
    assert!(outcome.gas_used > 0);
}

#[test]
fn a_bad_nonce_changes_nothing() {
    let outcome = run(&genesis(), &store_move(5, 3, true, Some(5)));
    assert_eq!(
        outcome.status,
        Err(FailureReason::BadNonce {
            expected: 0,
            got: 3
        })
    );
    assert!(outcome.diff.is_empty());
    assert_eq!(outcome.gas_used, 0);
}

#[test]
fn a_declared_transfer_succeeds_and_a_wrong_one_fails() {
    let start = U256::from(PLAYER_BALANCE);
    let value = U256::from(1_000);

    let outcome = run(&genesis(), &transfer(1_000, 0, start - value, Some(value)));
    assert_eq!(outcome.status, Ok(()));
    assert_eq!(outcome.gas_used, 21_000);
    let player_diff = outcome
        .diff
        .account(&player().address())
        .expect("sender changed");
    assert_eq!(player_diff.balance, Some(start - value));
    assert_eq!(player_diff.nonce, Some(1));
    let friend_diff = outcome.diff.account(&friend()).expect("recipient changed");
    assert_eq!(friend_diff.balance, Some(value));
    assert_eq!(outcome.diff.accounts.len(), 2);

    let outcome = run(
        &genesis(),
        &transfer(1_000, 0, start - value, Some(value + U256::from(1))),
    );
    assert_failed(
        &outcome,
        FailureReason::WrongPostValue(StateItem::Balance(friend())),
    );

    let outcome = run(&genesis(), &transfer(1_000, 0, start - value, None));
    assert_failed(
        &outcome,
        FailureReason::UndeclaredWrite(StateItem::Balance(friend())),
    );
}

#[test]
fn a_fee_is_charged_to_the_sender_and_burned() {
    let start = U256::from(PLAYER_BALANCE);
    let value = U256::from(1_000);
    let fee = U256::from(21_000 * 3);
    let outcome = run(
        &genesis(),
        &transfer(1_000, 3, start - value - fee, Some(value)),
    );
    assert_eq!(outcome.status, Ok(()));
    assert_eq!(outcome.gas_used, 21_000);
    // The unlisted beneficiary's credit is dropped, not reported as a write outside the list.
    assert_eq!(outcome.diff.accounts.len(), 2);
    assert!(outcome.diff.account(&BLOCK_BENEFICIARY).is_none());

    // Declaring the balance as if there were no fee is a wrong post value.
    let outcome = run(&genesis(), &transfer(1_000, 3, start - value, Some(value)));
    assert_failed(
        &outcome,
        FailureReason::WrongPostValue(StateItem::Balance(player().address())),
    );
}

#[test]
fn value_sent_to_the_unlisted_beneficiary_is_outside_the_list() {
    let mut state = genesis();
    let payer = Address::repeat_byte(0xca);
    state.insert_account(
        payer,
        AccountState {
            balance: U256::from(10),
            code: call_code(BLOCK_BENEFICIARY, 1),
            ..AccountState::default()
        },
    );
    // With a fee, the beneficiary's credit is the fee plus the wei sent: only the fee is exempt.
    let tx = sign(Transaction {
        chain_id: CHAIN_ID,
        nonce: 0,
        to: payer,
        value: U256::ZERO,
        data: Bytes::new(),
        gas_limit: 100_000,
        gas_price: 3,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(player().address()),
            AccountAccess {
                balance: Some(DeclaredWrite::Exact(U256::from(9))),
                ..AccountAccess::read(payer)
            },
        ]),
    });
    assert_failed(
        &run(&state, &tx),
        FailureReason::OutOfAccessList(StateItem::Balance(BLOCK_BENEFICIARY)),
    );

    // Without the extra wei the beneficiary's fee is dropped, and the first error is the
    // sender's undeclared fee (the zero address would have sorted first).
    state.insert_account(
        payer,
        AccountState {
            balance: U256::from(10),
            code: call_code(BLOCK_BENEFICIARY, 0),
            ..AccountState::default()
        },
    );
    let mut without_value = tx.signed.tx.clone();
    without_value.access_list = SpaceAccessList::new([
        AccountAccess::read(player().address()),
        AccountAccess::read(payer),
    ]);
    assert_failed(
        &run(&state, &sign(without_value)),
        FailureReason::UndeclaredWrite(StateItem::Balance(player().address())),
    );
}

#[test]
fn a_sender_short_of_value_has_insufficient_funds() {
    let value = PLAYER_BALANCE + 1;
    let outcome = run(
        &genesis(),
        &transfer(value, 0, U256::ZERO, Some(U256::from(value))),
    );
    assert_failed(&outcome, FailureReason::InsufficientFunds);
}

#[test]
fn precompiles_are_readable_without_being_listed_and_other_accounts_are_not() {
    let caller_contract = Address::repeat_byte(0xca);
    let mut state = genesis();
    let identity = Address::with_last_byte(4);
    state.insert_account(
        caller_contract,
        AccountState {
            code: call_code(identity, 0),
            ..AccountState::default()
        },
    );
    let to_identity = call(
        caller_contract,
        Bytes::new(),
        0,
        vec![AccountAccess::read(caller_contract)],
    );
    assert_eq!(run(&state, &to_identity).status, Ok(()));

    let stranger = Address::repeat_byte(0x99);
    state.insert_account(
        caller_contract,
        AccountState {
            code: call_code(stranger, 0),
            ..AccountState::default()
        },
    );
    let outcome = run(&state, &to_identity);
    assert_failed(
        &outcome,
        FailureReason::OutOfAccessList(StateItem::Balance(stranger)),
    );
}

/// `CREATE` of a child whose init code returns one byte of runtime code:
/// `PUSH5 (PUSH1 1 PUSH1 0 RETURN) PUSH1 0 MSTORE PUSH1 5 PUSH1 27 PUSH1 0 CREATE STOP`.
const FACTORY_CODE: [u8; 16] = [
    0x64, 0x60, 0x01, 0x60, 0x00, 0xf3, 0x60, 0x00, 0x52, 0x60, 0x05, 0x60, 0x1b, 0x60, 0x00, 0xf0,
];

#[test]
fn code_deployed_by_a_call_is_an_undeclared_write() {
    let factory = Address::repeat_byte(0xfa);
    let mut state = genesis();
    state.insert_account(
        factory,
        AccountState {
            nonce: 1,
            code: Bytes::from_static(&FACTORY_CODE),
            ..AccountState::default()
        },
    );
    let child = factory.create(1);
    // Every other change the creation makes is declared: the factory's nonce and the child's.
    let deploy = call(
        factory,
        Bytes::new(),
        0,
        vec![
            AccountAccess {
                nonce: Some(2),
                ..AccountAccess::read(factory)
            },
            AccountAccess {
                nonce: Some(1),
                ..AccountAccess::read(child)
            },
        ],
    );
    let outcome = run(&state, &deploy);
    assert_failed(
        &outcome,
        FailureReason::UndeclaredWrite(StateItem::Code(child)),
    );
}

#[test]
fn blockhash_halts_instead_of_inventing_a_value() {
    let mut state = genesis();
    let reader = Address::repeat_byte(0xbb);
    // PUSH1 9 BLOCKHASH STOP: block 9 is recent for block 10, so revm asks the database.
    state.insert_account(
        reader,
        AccountState {
            code: Bytes::from_static(&[0x60, 0x09, 0x40, 0x00]),
            ..AccountState::default()
        },
    );
    let tx = call(reader, Bytes::new(), 0, vec![AccountAccess::read(reader)]);
    assert_failed(&run(&state, &tx), FailureReason::Halted);

    // PUSH1 10 BLOCKHASH STOP: the current block's hash is zero by rule, no database involved.
    state.insert_account(
        reader,
        AccountState {
            code: Bytes::from_static(&[0x60, 0x0a, 0x40, 0x00]),
            ..AccountState::default()
        },
    );
    assert_eq!(run(&state, &tx).status, Ok(()));
}

#[test]
fn a_slice_that_does_not_match_the_list_is_refused() {
    let tx = store_move(5, 0, true, Some(5));
    let mut slice = genesis().slice(&tx.tx().access_list);
    slice.accounts.insert(friend(), AccountSlice::default());
    assert_eq!(
        execute(&env(), &tx, &slice),
        Err(ExecutionError::SliceExtraItem {
            item: StateItem::Balance(friend())
        })
    );
}

#[test]
fn roots_are_deterministic_and_follow_the_values() {
    let mut state = genesis();
    let outcome = run(&state, &store_move(5, 0, true, Some(5)));
    state.apply(&outcome.diff);

    // The same accounts inserted in another order, with a zero slot that must not count.
    let mut same = InMemoryState::new();
    same.insert_account(
        game(),
        AccountState {
            nonce: 1,
            code: Bytes::from_static(&STORE_CODE),
            storage: [
                (caller_slot(player().address()), U256::from(5)),
                (B256::repeat_byte(1), U256::ZERO),
            ]
            .into(),
            ..AccountState::default()
        },
    );
    same.insert_account(
        player().address(),
        AccountState {
            balance: U256::from(PLAYER_BALANCE),
            nonce: 1,
            ..AccountState::default()
        },
    );
    assert_eq!(state, same);
    let everything = |_: &Address| true;
    assert_eq!(state.root_where(everything), same.root_where(everything));

    let mut different = same.clone();
    different.apply(&StateDiff {
        accounts: [(
            game(),
            AccountDiff {
                storage: [(caller_slot(player().address()), U256::from(6))].into(),
                ..AccountDiff::default()
            },
        )]
        .into(),
    });
    assert_ne!(
        state.root_where(everything),
        different.root_where(everything)
    );

    // A group that holds only the player's address does not see the game's slot change.
    let players_group = |address: &Address| *address == player().address();
    assert_eq!(
        state.root_where(players_group),
        different.root_where(players_group)
    );
    assert_ne!(
        state.root_where(players_group),
        state.root_where(everything)
    );
}

mod session_keys {
    use primitives::{
        Authority, SESSION_REGISTRY, SessionCall, SessionKey, SessionScope,
        codec::Encode,
        session::{GrantWord, REVOKED_GRANT, SessionRefusal, grant_slot, session_access},
    };

    use super::*;

    fn registry_call(call: &SessionCall, nonce: u64) -> VerifiedTransaction {
        sign(Transaction {
            chain_id: CHAIN_ID,
            nonce,
            to: SESSION_REGISTRY,
            value: U256::ZERO,
            data: Bytes::from(call.to_bytes()),
            gas_limit: 0,
            gas_price: 0,
            sponsor: None,
            access_list: SpaceAccessList::new([call.access(player().address())]),
        })
    }

    fn grant(session: &SessionKey, expires_after_batch: u64, moves: u64) -> SessionCall {
        SessionCall::Grant {
            key: session.public_key(),
            scope: SessionScope {
                targets: vec![game()],
                expires_after_batch,
                moves,
                value: 0,
            },
        }
    }

    /// The store move of the contract tests, signed by `session` for the player.
    fn session_store(session: &SessionKey, position: u64, nonce: u64) -> VerifiedTransaction {
        let account = player().address();
        Transaction {
            chain_id: CHAIN_ID,
            nonce,
            to: game(),
            value: U256::ZERO,
            data: word(position),
            gas_limit: 100_000,
            gas_price: 0,
            sponsor: None,
            access_list: SpaceAccessList::new([
                session_access(account, &session.public_key(), &game(), 0),
                AccountAccess {
                    storage: vec![SlotAccess {
                        slot: caller_slot(account),
                        write: Some(DeclaredWrite::Exact(U256::from(position))),
                    }],
                    ..AccountAccess::read(game())
                },
            ]),
        }
        .sign_with_session(session, account)
        .verify(CHAIN_ID)
        .expect("a well-formed session move")
    }

    fn run_and_apply(state: &mut InMemoryState, tx: &VerifiedTransaction) -> MoveOutcome {
        let outcome = run(state, tx);
        state.apply(&outcome.diff);
        outcome
    }

    #[test]
    fn a_granted_session_key_moves_for_the_account_and_is_charged() {
        let mut state = genesis();
        let session = SessionKey::from_seed(1);
        let granted = run_and_apply(&mut state, &registry_call(&grant(&session, 10, 2), 0));
        assert_eq!(granted.status, Ok(()));

        let moved = run_and_apply(&mut state, &session_store(&session, 7, 1));
        assert_eq!(moved.status, Ok(()), "{moved:?}");
        assert_eq!(
            state.storage(&game(), &caller_slot(player().address())),
            U256::from(7),
            "the move acted as the account"
        );
        let left = GrantWord::from_word(
            state.storage(&player().address(), &grant_slot(&session.public_key())),
        );
        assert_eq!(left.moves_left, 1);

        run_and_apply(&mut state, &session_store(&session, 8, 2));
        let spent = run_and_apply(&mut state, &session_store(&session, 9, 3));
        assert_eq!(
            spent.status,
            Err(FailureReason::Session(SessionRefusal::MovesSpent))
        );
        assert_eq!(
            spent.diff,
            StateDiff::nonce_only(player().address(), 4),
            "a refused session move consumes its nonce only"
        );
    }

    #[test]
    fn execution_refuses_an_ungranted_expired_or_revoked_key() {
        let session = SessionKey::from_seed(2);
        let mut state = genesis();
        let outcome = run(&state, &session_store(&session, 1, 0));
        assert_eq!(
            outcome.status,
            Err(FailureReason::Session(SessionRefusal::Unknown))
        );

        // The environment's batch is 10: a grant that expired after batch 9 is dead.
        run_and_apply(&mut state, &registry_call(&grant(&session, 9, 5), 0));
        assert_eq!(
            run(&state, &session_store(&session, 1, 1)).status,
            Err(FailureReason::Session(SessionRefusal::Expired {
                expires_after_batch: 9
            }))
        );

        let fresh = SessionKey::from_seed(3);
        run_and_apply(&mut state, &registry_call(&grant(&fresh, 10, 5), 1));
        let revoke = SessionCall::Revoke {
            key: fresh.public_key(),
        };
        assert_eq!(
            run_and_apply(&mut state, &registry_call(&revoke, 2)).status,
            Ok(())
        );
        assert_eq!(
            state.storage(&player().address(), &grant_slot(&fresh.public_key())),
            REVOKED_GRANT
        );
        assert_eq!(
            run(&state, &session_store(&fresh, 1, 3)).status,
            Err(FailureReason::Session(SessionRefusal::Revoked))
        );
        assert_eq!(
            run(&state, &registry_call(&grant(&fresh, 10, 5), 3)).status,
            Err(FailureReason::Session(SessionRefusal::AlreadyGranted)),
            "a revoked key is never granted again"
        );
    }

    #[test]
    fn a_session_move_cannot_claim_the_account_key_authority() {
        let session = SessionKey::from_seed(4);
        let mut state = genesis();
        run_and_apply(&mut state, &registry_call(&grant(&session, 10, 5), 0));
        let mut forged = session_store(&session, 1, 1);
        // A registry call presented as if the session key were the account key is refused
        // at execution too, not only at verification.
        forged.authority = Authority::Session(session.public_key());
        forged.signed.tx.to = SESSION_REGISTRY;
        let slice = state.slice(&forged.tx().access_list);
        let outcome = execute(&env(), &forged, &slice).expect("the slice matches");
        assert_eq!(
            outcome.status,
            Err(FailureReason::Session(SessionRefusal::NotAccountKey))
        );
    }
}
