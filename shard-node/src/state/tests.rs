use execution::{AccountState, InMemoryState, SliceProofError};
use primitives::{AccountKey, NodeId, SlotAccess};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;

fn random_address(rng: &mut StdRng) -> Address {
    let mut raw = [0u8; 20];
    rng.fill(&mut raw);
    Address::from(raw)
}

fn slot(n: u64) -> B256 {
    B256::from(U256::from(n))
}

/// 300 accounts: balances, nonces, some with code and storage.
fn genesis(rng: &mut StdRng) -> BTreeMap<Address, AccountState> {
    (0..300)
        .map(|index| {
            let account = AccountState {
                balance: U256::from(rng.random_range(1..1_000u64)),
                nonce: rng.random_range(0..5),
                code: if index % 10 == 0 {
                    Bytes::from(vec![0x60, 0x00, index as u8])
                } else {
                    Bytes::new()
                },
                storage: (0..index % 4)
                    .map(|n| (slot(n), U256::from(rng.random_range(1..100u64))))
                    .collect(),
            };
            (random_address(rng), account)
        })
        .collect()
}

fn as_diff(accounts: &BTreeMap<Address, AccountState>) -> StateDiff {
    StateDiff {
        accounts: accounts
            .iter()
            .map(|(address, account)| {
                let change = AccountDiff {
                    balance: Some(account.balance),
                    nonce: Some(account.nonce),
                    code: Some(account.code.clone()),
                    storage: account.storage.clone(),
                };
                (*address, change)
            })
            .collect(),
    }
}

/// Checks every group's root against the root of its accounts alone, computed from scratch.
fn check_roots(state: &mut NodeState, groups: &mut GroupMap, reference: &InMemoryState) {
    let all = groups.all_groups();
    let mut seen = 0;
    for group in &all {
        let mut own = InMemoryState::new();
        for (address, account) in reference.accounts() {
            if groups.group_of(address).id == group.id {
                own.insert_account(*address, account.clone());
                seen += 1;
            }
        }
        assert_eq!(
            state.group_root(group, groups).expect("reads"),
            own.authenticated_root(),
            "root of group {}",
            group.id
        );
    }
    assert_eq!(seen, reference.len(), "every account is in one group");
}

fn access(address: Address, slots: &[u64]) -> AccountAccess {
    AccountAccess {
        storage: slots
            .iter()
            .map(|n| SlotAccess {
                slot: slot(*n),
                write: None,
            })
            .collect(),
        ..AccountAccess::read(address)
    }
}

fn check_shipping(
    state: &mut NodeState,
    groups: &mut GroupMap,
    reference: &InMemoryState,
    addresses: &[Address],
) {
    for address in addresses {
        let group = groups.group_of(address);
        let root = state.group_root(&group, groups).expect("reads");
        let access = access(*address, &[0, 1, 7]);
        let (slice, proof) = state.ship(&access, &group, groups).expect("ships");
        assert_eq!(
            slice,
            reference.slice(&SpaceAccessList::new([access.clone()]))
        );
        assert_eq!(proof.verify(&root, &slice), Ok(()));
        // A changed value, or another group's root, does not pass.
        let mut forged = slice.clone();
        let account = forged.accounts.get_mut(address).expect("listed");
        account.balance += U256::from(1);
        assert!(matches!(
            proof.verify(&root, &forged),
            Err(SliceProofError::Value(_))
        ));
        let mut forged = slice.clone();
        let account = forged.accounts.get_mut(address).expect("listed");
        account.storage.insert(slot(7), U256::from(5));
        assert!(proof.verify(&root, &forged).is_err());
        let other_root = groups
            .all_groups()
            .iter()
            .map(|other| state.group_root(other, groups).expect("reads"))
            .find(|other_root| *other_root != root)
            .expect("groups with other roots");
        assert!(proof.verify(&other_root, &slice).is_err());
    }
}

fn run_scenario(ids: &[NodeId], k: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut state = NodeState::open(dir.path()).expect("opens");
    let mut groups = GroupMap::new(ids, k);
    let accounts = genesis(&mut rng);
    let mut reference = InMemoryState::new();
    for (address, account) in &accounts {
        reference.insert_account(*address, account.clone());
    }
    state.apply(&as_diff(&accounts));
    assert_eq!(
        state.commit(0, &mut groups).expect("stores"),
        reference.authenticated_root()
    );
    check_roots(&mut state, &mut groups, &reference);
    let addresses: Vec<Address> = accounts.keys().copied().step_by(15).collect();
    let mut probes = addresses.clone();
    probes.push(random_address(&mut rng)); // absent: its slice is empty and proven so
    check_shipping(&mut state, &mut groups, &reference, &probes);

    // A batch changes some accounts, empties others and creates new ones; the cached
    // summaries along those paths are forgotten and every root still matches.
    let mut batch = StateDiff::default();
    for (index, address) in accounts
        .keys()
        .enumerate()
        .filter(|(index, _)| index % 7 == 0)
    {
        let change = if index % 2 == 0 {
            AccountDiff {
                balance: Some(U256::from(index as u64 + 5_000)),
                storage: BTreeMap::from([(slot(1), U256::from(9)), (slot(0), U256::ZERO)]),
                ..AccountDiff::default()
            }
        } else {
            AccountDiff {
                balance: Some(U256::ZERO),
                nonce: Some(0),
                code: Some(Bytes::new()),
                storage: (0..4).map(|n| (slot(n), U256::ZERO)).collect(),
            }
        };
        batch.accounts.insert(*address, change);
    }
    for _ in 0..20 {
        batch.accounts.insert(
            random_address(&mut rng),
            AccountDiff {
                nonce: Some(1),
                ..AccountDiff::default()
            },
        );
    }
    // Before it is stored, reads see the batch's writes and roots do not.
    let (changed, change) = batch.accounts.iter().next().expect("some change");
    state.apply(&batch);
    if let Some(balance) = change.balance {
        let read = state.account_slice(&access(*changed, &[])).expect("reads");
        assert_eq!(read.balance, balance);
    }
    check_roots(&mut state, &mut groups, &reference);
    reference.apply(&batch);
    assert_eq!(
        state.commit(1, &mut groups).expect("stores"),
        reference.authenticated_root()
    );
    check_roots(&mut state, &mut groups, &reference);
    check_shipping(&mut state, &mut groups, &reference, &probes);
    drop(state);

    // Reopened, the node is at the same height and root, and proves the same.
    let mut state = NodeState::open(dir.path()).expect("reopens");
    assert_eq!(state.height(), Some(1));
    assert_eq!(state.root(), reference.authenticated_root());
    let mut groups = GroupMap::new(ids, k);
    check_roots(&mut state, &mut groups, &reference);
}

#[test]
fn group_roots_cover_exactly_their_accounts_and_shipped_slices_prove_against_them() {
    let ids: Vec<NodeId> = (0..16)
        .map(|seed| NodeId(AccountKey::from_seed(seed).address()))
        .collect();
    run_scenario(&ids, 8, 1);
}

#[test]
fn group_roots_hold_when_node_ids_share_long_prefixes() {
    // The walk reads bits 152 and deeper for every address: groups interleave far below the
    // prefixes the accounts are spread over, and roots are found by descending the trie.
    let ids: Vec<NodeId> = (0..12u8)
        .map(|index| {
            let mut raw = [0xabu8; 20];
            raw[19] = index.wrapping_mul(37);
            NodeId(Address::from(raw))
        })
        .collect();
    run_scenario(&ids, 3, 2);
}
