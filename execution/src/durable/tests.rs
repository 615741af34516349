#![allow(clippy::unwrap_used)]

use primitives::{
    AccountKey,
    tx::{AccountAccess, SlotAccess},
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::{proof::SliceProofError, trie::ProofError};

/// Addresses that share long prefixes (the first two differ in the last bit) and some that do not.
fn address(index: u8) -> Address {
    match index % 4 {
        0 => Address::repeat_byte(index),
        1 => {
            let mut bytes = [0x42; 20];
            bytes[19] = index;
            Address::from(bytes)
        }
        2 => AccountKey::from_seed(u64::from(index) + 1).address(),
        _ => {
            let mut bytes = [0u8; 20];
            bytes[0] = index;
            Address::from(bytes)
        }
    }
}

fn slot(index: u8) -> B256 {
    if index < 4 {
        B256::from(U256::from(index))
    } else {
        B256::repeat_byte(index)
    }
}

/// A random diff over a small world, so that batches overwrite, clear and re-create items.
fn random_diff(rng: &mut ChaCha8Rng) -> StateDiff {
    let mut diff = StateDiff::default();
    for _ in 0..rng.random_range(1..6) {
        let mut change = AccountDiff::default();
        if rng.random_bool(0.5) {
            change.balance = Some(U256::from(rng.random_range(0u64..3)));
        }
        if rng.random_bool(0.4) {
            change.nonce = Some(rng.random_range(0u64..3));
        }
        if rng.random_bool(0.1) {
            let code: Vec<u8> = (0..rng.random_range(0usize..4))
                .map(|_| rng.random())
                .collect();
            change.code = Some(Bytes::from(code));
        }
        for _ in 0..rng.random_range(0..4) {
            let value = if rng.random_bool(0.3) {
                U256::ZERO
            } else {
                U256::from(rng.random_range(1u64..1_000))
            };
            change.storage.insert(slot(rng.random_range(0..8)), value);
        }
        if !change.is_empty() {
            diff.accounts
                .insert(address(rng.random_range(0..16)), change);
        }
    }
    diff
}

fn full_list() -> SpaceAccessList {
    SpaceAccessList::new((0..16).map(|index| {
        AccountAccess {
            storage: (0..8)
                .map(|index| SlotAccess {
                    slot: slot(index),
                    write: None,
                })
                .collect(),
            ..AccountAccess::read(address(index))
        }
    }))
}

fn genesis() -> InMemoryState {
    let mut state = InMemoryState::new();
    for index in 0..6 {
        state.insert_account(
            address(index),
            AccountState {
                balance: U256::from(1_000 + u64::from(index)),
                nonce: 1,
                code: if index == 3 {
                    Bytes::from_static(&[0x60, 0x00])
                } else {
                    Bytes::new()
                },
                storage: BTreeMap::from([(slot(1), U256::from(7)), (slot(6), U256::from(9))]),
            },
        );
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Batch after batch, the stored root is the in-memory state's authenticated root, and the
    /// stored values are its values.
    #[test]
    fn the_stored_state_follows_the_in_memory_state(seed in any::<u64>(), batches in 1usize..12) {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = DurableState::open(dir.path()).unwrap();
        let mut reference = genesis();
        durable.apply_genesis(&reference).unwrap();
        prop_assert_eq!(durable.root(), reference.authenticated_root());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for number in 1..=batches as u64 {
            let diffs: Vec<StateDiff> = (0..rng.random_range(1..5)).map(|_| random_diff(&mut rng)).collect();
            for diff in &diffs {
                reference.apply(diff);
            }
            let root = durable.apply(number, &diffs).unwrap();
            prop_assert_eq!(root, reference.authenticated_root());
        }
        let list = full_list();
        prop_assert_eq!(durable.slice(&list).unwrap(), reference.slice(&list));
    }
}

#[test]
fn roots_after_a_restart_equal_the_roots_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let batches: Vec<Vec<StateDiff>> = (0..20)
        .map(|_| (0..4).map(|_| random_diff(&mut rng)).collect())
        .collect();
    let (root, height) = {
        let mut durable = DurableState::open(dir.path()).unwrap();
        durable.apply_genesis(&genesis()).unwrap();
        for (index, diffs) in batches[..10].iter().enumerate() {
            durable.apply(index as u64 + 1, diffs).unwrap();
        }
        (durable.root(), durable.height())
    };
    let mut reopened = DurableState::open(dir.path()).unwrap();
    assert_eq!((reopened.root(), reopened.height()), (root, height));
    assert_eq!(height, Some(10));

    // The reopened store continues exactly where a store that never stopped goes.
    let mut reference = genesis();
    for diff in batches.iter().flatten() {
        reference.apply(diff);
    }
    for (index, diffs) in batches[10..].iter().enumerate() {
        reopened.apply(index as u64 + 11, diffs).unwrap();
    }
    assert_eq!(reopened.root(), reference.authenticated_root());
}

#[test]
fn a_batch_out_of_order_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut durable = DurableState::open(dir.path()).unwrap();
    let diff = random_diff(&mut ChaCha8Rng::seed_from_u64(1));
    assert!(matches!(
        durable.apply(1, [&diff]),
        Err(StateError::OutOfOrder {
            height: None,
            expected: 0,
            got: 1
        })
    ));
    durable.apply_genesis(&genesis()).unwrap();
    let root = durable.root();
    let staged = durable.stage(1, [&diff]).unwrap();
    durable.apply(1, [&diff]).unwrap();
    // A batch staged against the earlier height cannot be written over the newer one.
    let after = durable.root();
    assert!(matches!(
        durable.commit(staged),
        Err(StateError::OutOfOrder {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        durable.apply(5, [&diff]),
        Err(StateError::OutOfOrder {
            expected: 2,
            got: 5,
            ..
        })
    ));
    assert_eq!(durable.root(), after);
    assert_ne!(root, after);
    assert_eq!(durable.height(), Some(1));
}

fn proven_store() -> (tempfile::TempDir, DurableState, SpaceAccessList) {
    let dir = tempfile::tempdir().unwrap();
    let mut durable = DurableState::open(dir.path()).unwrap();
    durable.apply_genesis(&genesis()).unwrap();
    // Present accounts with set and unset slots, and absent accounts.
    let list = SpaceAccessList::new([0u8, 2, 3, 9, 14].map(|index| {
        AccountAccess {
            storage: [1u8, 2, 6]
                .map(|index| SlotAccess {
                    slot: slot(index),
                    write: None,
                })
                .to_vec(),
            ..AccountAccess::read(address(index))
        }
    }));
    (dir, durable, list)
}

#[test]
fn a_slice_proof_verifies_and_fails_when_any_byte_is_changed() {
    let (_dir, durable, list) = proven_store();
    let slice = durable.slice(&list).unwrap();
    let proof = durable.prove(&list).unwrap();
    assert_eq!(proof.verify(&durable.root(), &slice), Ok(()));

    let bytes = proof.to_bytes();
    assert_eq!(SliceProof::from_bytes(&bytes), Ok(proof.clone()));
    for index in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut tampered = bytes.clone();
            tampered[index] ^= flip;
            if let Ok(decoded) = SliceProof::from_bytes(&tampered) {
                assert!(
                    decoded.verify(&durable.root(), &slice).is_err(),
                    "flipping bit {flip:#x} of byte {index} still verifies"
                );
            }
        }
    }
}

#[test]
fn a_slice_with_any_value_changed_fails_its_proof() {
    let (_dir, durable, list) = proven_store();
    let slice = durable.slice(&list).unwrap();
    let proof = durable.prove(&list).unwrap();
    let root = durable.root();
    for (address, account) in &slice.accounts {
        let mut forged = slice.clone();
        forged.accounts.get_mut(address).unwrap().balance += U256::from(1);
        assert_eq!(
            proof.verify(&root, &forged),
            Err(SliceProofError::Value(
                primitives::finality::StateItem::Balance(*address)
            ))
        );
        let mut forged = slice.clone();
        forged.accounts.get_mut(address).unwrap().nonce += 1;
        assert!(proof.verify(&root, &forged).is_err());
        for slot in account.storage.keys() {
            let mut forged = slice.clone();
            *forged
                .accounts
                .get_mut(address)
                .unwrap()
                .storage
                .get_mut(slot)
                .unwrap() += U256::from(1);
            assert_eq!(
                proof.verify(&root, &forged),
                Err(SliceProofError::Value(
                    primitives::finality::StateItem::Storage(*address, *slot)
                ))
            );
        }
    }
    // A slice missing an item, or holding one more, is not covered.
    let mut short = slice.clone();
    short.accounts.pop_last();
    assert!(matches!(
        proof.verify(&root, &short),
        Err(SliceProofError::Coverage(_))
    ));
    let mut long = slice.clone();
    long.accounts.insert(address(15), AccountSlice::default());
    assert!(matches!(
        proof.verify(&root, &long),
        Err(SliceProofError::Coverage(_))
    ));
    // Against another root every path fails.
    assert!(matches!(
        proof.verify(&B256::repeat_byte(1), &slice),
        Err(SliceProofError::Path {
            error: ProofError::RootMismatch,
            ..
        })
    ));
}

#[test]
fn prefix_roots_commit_to_the_accounts_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut durable = DurableState::open(dir.path()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut state = genesis();
    for index in 0..200u64 {
        state.insert_account(
            AccountKey::from_seed(1_000 + index).address(),
            AccountState {
                balance: U256::from(rng.random_range(1u64..1_000)),
                ..AccountState::default()
            },
        );
    }
    durable.apply_genesis(&state).unwrap();
    assert_eq!(
        durable.prefix_root(&Address::ZERO, 0).unwrap(),
        durable.root()
    );
    for (probe, _) in state.accounts().step_by(17) {
        for bits in [1usize, 3, 6, 9, 160] {
            assert_eq!(
                durable.prefix_root(probe, bits).unwrap(),
                state.authenticated_prefix_root(probe, bits),
                "prefix of {bits} bits of {probe}"
            );
        }
    }
    // A prefix no account starts with has the empty root.
    let unused = (0..=u8::MAX)
        .map(Address::repeat_byte)
        .find(|prefix| state.accounts().all(|(address, _)| address[0] != prefix[0]))
        .unwrap();
    assert_eq!(durable.prefix_root(&unused, 8).unwrap(), EMPTY);
}

#[test]
fn a_damaged_record_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let durable = DurableState::open(dir.path()).unwrap();
    durable
        .db
        .put_cf(durable.cf(CF_ACCOUNTS), address(0), [9u8, 9, 9])
        .unwrap();
    assert!(matches!(
        durable.account(&address(0)),
        Err(StateError::Corrupt {
            what: "account record",
            ..
        })
    ));
}

/// `slot[word0] = word1`: a contract whose moves write storage.
const STORE_CODE: [u8; 7] = [0x60, 0x20, 0x35, 0x60, 0x00, 0x35, 0x55];

/// A batch run on the working set loaded from the store, then written back, gives the same
/// outcomes and root as the same batch run sequentially on the whole state in memory.
#[test]
fn a_batch_on_the_working_set_commits_the_root_of_the_whole_state() {
    use primitives::Transaction;

    use crate::{ExecutionEnv, estimate, execute_parallel, execute_sequential};

    let env = ExecutionEnv {
        chain_id: 7,
        block_number: 1,
        timestamp: 1_700_000_000,
    };
    let store = Address::repeat_byte(0x5c);
    let keys: Vec<AccountKey> = (0..24)
        .map(|seed| AccountKey::from_seed(seed + 50))
        .collect();
    let mut reference = genesis();
    for key in &keys {
        reference.insert_account(
            key.address(),
            AccountState {
                balance: U256::from(10_000),
                ..AccountState::default()
            },
        );
    }
    reference.insert_account(
        store,
        AccountState {
            nonce: 1,
            code: Bytes::from_static(&STORE_CODE),
            ..AccountState::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut durable = DurableState::open(dir.path()).unwrap();
    durable.apply_genesis(&reference).unwrap();

    // Transfers to new and existing accounts, and storage writes that set, overwrite and clear.
    let mut running = reference.clone();
    let moves: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let mut body = Transaction {
                chain_id: env.chain_id,
                nonce: 0,
                to: if index % 2 == 0 {
                    store
                } else {
                    address(index as u8 % 8)
                },
                value: U256::from(if index % 2 == 0 { 0 } else { 5 }),
                data: if index % 2 == 0 {
                    let mut data = U256::from(index % 6).to_be_bytes::<32>().to_vec();
                    data.extend_from_slice(&U256::from(index % 3).to_be_bytes::<32>());
                    data.into()
                } else {
                    Bytes::new()
                },
                gas_limit: 100_000,
                gas_price: 0,
                sponsor: None,
                access_list: SpaceAccessList::default(),
            };
            let found = estimate(&env, key.address(), &body, &running, &[]);
            assert_eq!(found.status, Ok(()));
            body.access_list = found.access_list;
            let tx = body.sign(key).verify(env.chain_id).unwrap();
            crate::execute_plain(&env, &tx, &mut running);
            tx
        })
        .collect();

    let expected = execute_sequential(&env, &moves, &mut reference);
    let mut working = durable
        .working_set(moves.iter().map(|tx| &tx.tx().access_list))
        .unwrap();
    let outcomes = execute_parallel(&env, &moves, &mut working);
    assert_eq!(outcomes, expected);
    let root = durable
        .apply(1, outcomes.iter().map(|outcome| &outcome.diff))
        .unwrap();
    assert_eq!(root, reference.authenticated_root());
    assert_eq!(root, running.authenticated_root());
}

#[test]
fn a_store_lists_its_accounts_reads_them_whole_and_imports_others_at_its_height() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = DurableState::open(dir.path().join("source")).unwrap();
    let mut reference = genesis();
    source.apply_genesis(&reference).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for number in 1..=4 {
        let diffs: Vec<StateDiff> = (0..3).map(|_| random_diff(&mut rng)).collect();
        for diff in &diffs {
            reference.apply(diff);
        }
        source.apply(number, &diffs).unwrap();
    }
    let addresses: Vec<Address> = reference.accounts().map(|(address, _)| *address).collect();
    assert_eq!(source.addresses().unwrap(), addresses);
    for (address, account) in reference.accounts() {
        assert_eq!(
            &source.account_state(address).unwrap(),
            account,
            "{address}"
        );
    }
    assert_eq!(
        source.account_state(&address(200)).unwrap(),
        AccountState::default()
    );

    // Another store at the same height takes half the accounts over, whole: its root is that
    // of exactly those accounts, and it stays at its height.
    let mut taker = DurableState::open(dir.path().join("taker")).unwrap();
    assert!(matches!(
        taker
            .import(3, &StateDiff::default())
            .map(|_| taker.height()),
        Ok(Some(3))
    ));
    let mut expected = InMemoryState::new();
    let mut diff = StateDiff::default();
    for address in addresses.iter().step_by(2) {
        let account = source.account_state(address).unwrap();
        expected.insert_account(*address, account.clone());
        diff.accounts.insert(
            *address,
            AccountDiff {
                balance: Some(account.balance),
                nonce: Some(account.nonce),
                code: Some(account.code),
                storage: account.storage,
            },
        );
    }
    let root = taker.import(3, &diff).unwrap();
    assert_eq!(root, expected.authenticated_root());
    assert_eq!(taker.height(), Some(3));
    for address in addresses.iter().step_by(2) {
        assert_eq!(
            source.account(address).unwrap(),
            taker.account(address).unwrap()
        );
    }
    // It goes on with the next batch; an import at another height is refused.
    taker.apply(4, [&StateDiff::default()]).unwrap();
    assert!(matches!(
        taker.import(3, &diff),
        Err(StateError::OutOfOrder { got: 3, .. })
    ));
    assert_eq!(taker.root(), root);
}
