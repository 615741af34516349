use std::time::Duration;

use execution::{AccountState, InMemoryState};
use primitives::{
    AccountAccess, AccountKey, Batch, BlockHeader, Bytes, DeclaredWrite, SignedTransaction,
    SlotAccess, SpaceAccessList, Transaction,
    bls::{BlsSecretKey, Certificate},
    codec::Encode,
};
use upper_chain::EmbeddedChain;

use super::*;

pub(super) const CHAIN_ID: u64 = 9;
pub(super) const COUNTER: Address = Address::repeat_byte(0xc0);

/// `SSTORE(CALLER, CALLDATALOAD(0))`.
fn store_code() -> Bytes {
    Bytes::from_static(&[0x60, 0x00, 0x35, 0x33, 0x55, 0x00])
}

pub(super) fn counter_account() -> AccountState {
    AccountState {
        code: store_code(),
        ..AccountState::default()
    }
}

fn nodes(count: usize) -> Vec<ShardNode> {
    (0..count as u64).map(ShardNode::from_seed).collect()
}

/// A chain with `count` nodes registered and active.
fn chain(count: usize) -> Arc<EmbeddedChain> {
    let chain = Arc::new(EmbeddedChain::new(Vec::new()));
    for node in nodes(count) {
        let (registration, signature) = node.registration("test".into(), Address::ZERO, vec![]);
        chain
            .register_node(registration, &signature)
            .expect("registers");
    }
    chain.advance_epoch();
    chain
}

/// A fresh network of `count` nodes storing under `dir`, with the counter contract at genesis
/// and group roots committed after every batch.
pub(super) fn network(count: usize, dir: &Path) -> (ShardNetwork, Arc<EmbeddedChain>) {
    let chain = chain(count);
    let mut network = ShardNetwork::new(chain.clone(), CHAIN_ID, nodes(count), dir).expect("forms");
    network.set_root_commit_interval(1);
    network
        .insert_genesis(COUNTER, counter_account())
        .expect("before the first batch");
    (network, chain)
}

pub(super) fn slot_of(key: &AccountKey) -> B256 {
    B256::left_padding_from(key.address().as_slice())
}

pub(super) fn store(key: &AccountKey, nonce: u64, value: u64, declared: u64) -> SignedTransaction {
    store_on(CHAIN_ID, key, nonce, value, declared)
}

pub(super) fn store_on(
    chain_id: u64,
    key: &AccountKey,
    nonce: u64,
    value: u64,
    declared: u64,
) -> SignedTransaction {
    Transaction {
        chain_id,
        nonce,
        to: COUNTER,
        value: U256::ZERO,
        data: Bytes::from(U256::from(value).to_be_bytes::<32>().to_vec()),
        gas_limit: 100_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(key.address()),
            AccountAccess {
                storage: vec![SlotAccess {
                    slot: slot_of(key),
                    write: Some(DeclaredWrite::Exact(U256::from(declared))),
                }],
                ..AccountAccess::read(COUNTER)
            },
        ]),
    }
    .sign(key)
}

pub(super) fn finalized(number: u64, bodies: &[BlockBody]) -> FinalizedBatch {
    let sequencer = BlsSecretKey::from_seed(&[1; 32]);
    let headers: Vec<BlockHeader> = bodies
        .iter()
        .enumerate()
        .map(|(height, body)| {
            BlockHeader::seal(
                &AccountKey::from_seed(1),
                height as u64,
                B256::ZERO,
                0,
                body,
                body.to_bytes().len() as u32,
            )
        })
        .collect();
    let batch = Batch {
        number,
        parent: B256::ZERO,
        headers,
    };
    let certificate = Certificate::aggregate(&[(0, sequencer.sign(b"test"))]).expect("one vote");
    FinalizedBatch {
        batch,
        sequence: number,
        view: 0,
        certificate,
    }
}

pub(super) fn players(count: u64) -> Vec<AccountKey> {
    (0..count)
        .map(|seed| AccountKey::from_seed(500 + seed))
        .collect()
}

/// Batch `number` (from 1): every player stores a value of its own, with its next nonce.
pub(super) fn batch_moves(players: &[AccountKey], number: u64) -> BlockBody {
    BlockBody {
        moves: players
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let value = number * 100 + index as u64;
                store(key, number - 1, value, value)
            })
            .collect(),
    }
}

pub(super) fn run(network: &mut ShardNetwork, number: u64, body: BlockBody) -> ExecutedBatch {
    network
        .execute_batch(&finalized(number, std::slice::from_ref(&body)), &[body])
        .expect("executes")
}

/// The whole state after `bodies`, executed by one node that holds everything.
pub(super) fn reference(bodies: &[BlockBody]) -> InMemoryState {
    let mut state = InMemoryState::new();
    state.insert_account(COUNTER, counter_account());
    for (index, body) in bodies.iter().enumerate() {
        let env = ExecutionEnv {
            chain_id: CHAIN_ID,
            block_number: index as u64 + 1,
            timestamp: index as u64 + 1,
        };
        for signed in &body.moves {
            let Ok(verified) = signed.clone().verify(CHAIN_ID) else {
                continue; // refused before execution: changes nothing
            };
            let slice = state.slice(&verified.tx().access_list);
            let outcome = execute(&env, &verified, &slice).expect("executes");
            state.apply(&outcome.diff);
        }
    }
    state
}

/// The root of exactly `group`'s accounts in `state`.
pub(super) fn reference_root(
    state: &InMemoryState,
    network: &mut ShardNetwork,
    group: &B256,
) -> B256 {
    let mut own = InMemoryState::new();
    for (address, account) in state.accounts() {
        if upper_chain::group_id(&network.group_of(address)) == *group {
            own.insert_account(*address, account.clone());
        }
    }
    own.authenticated_root()
}

fn statuses(network: &ShardNetwork) -> Vec<(Option<u64>, B256)> {
    network
        .ids
        .iter()
        .map(|id| network.node_status(id).expect("a member"))
        .collect()
}

#[test]
fn cross_group_moves_execute_once_agreed_and_groups_commit_the_roots_of_their_own_addresses() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut network, chain) = network(16, dir.path());
    let players = players(12);
    // Many players' groups differ from the contract's: their slices are shipped.
    let counter_group = network.group_of(&COUNTER);
    assert!(
        players
            .iter()
            .any(|key| network.group_of(&key.address()) != counter_group)
    );

    let body = BlockBody {
        moves: players
            .iter()
            .enumerate()
            .map(|(index, key)| store(key, 0, index as u64 + 1, index as u64 + 1))
            .chain([store(&players[0], 1, 50, 51)]) // a wrong declaration
            .collect(),
    };
    let batch = finalized(1, std::slice::from_ref(&body));
    assert_eq!(
        network.execute_batch(&batch, &[]),
        Err(ShardError::BodyMismatch { index: 0 })
    );
    let executed = network
        .execute_batch(&batch, std::slice::from_ref(&body))
        .expect("executes");
    assert_eq!(executed.outcomes.len(), players.len() + 1);
    assert!(
        executed.outcomes[..players.len()]
            .iter()
            .all(MoveOutcome::is_success)
    );
    let wrong = FailureReason::WrongPostValue(primitives::finality::StateItem::Storage(
        COUNTER,
        slot_of(&players[0]),
    ));
    assert_eq!(executed.outcomes[players.len()].status, Err(wrong));
    assert_eq!(network.refused_slices(), 0, "honest members' slices prove");

    for (index, key) in players.iter().enumerate() {
        assert_eq!(
            network.storage(&COUNTER, &slot_of(key)),
            Ok(U256::from(index as u64 + 1))
        );
        let expected_nonce = if index == 0 { 2 } else { 1 };
        assert_eq!(network.nonce(&key.address()), Ok(expected_nonce));
    }
    // Every touched group committed the root of exactly its own accounts, as a node holding
    // all the state computes it from the same moves.
    let reference = reference(&[body]);
    let commitments = network.last_group_roots().to_vec();
    assert!(commitments.len() > 1);
    for commitment in &commitments {
        assert_eq!(
            chain
                .group_root(&commitment.group)
                .expect("the embedded chain reads")
                .as_ref(),
            Some(commitment)
        );
        assert_eq!(
            commitment.root,
            reference_root(&reference, &mut network, &commitment.group)
        );
    }
    for address in reference.accounts().map(|(address, _)| *address) {
        let (group, root) = network.group_root_of(&address).expect("agreed");
        assert_eq!(root, reference_root(&reference, &mut network, &group));
    }
    // Batches run in order.
    assert_eq!(
        network.execute_batch(&finalized(3, &[]), &[]),
        Err(ShardError::NotNext {
            expected: 2,
            got: 3
        })
    );
}

#[test]
fn a_member_shipping_a_slice_its_group_did_not_agree_on_is_refused_and_the_next_is_asked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut network, chain) = network(16, dir.path());
    let counter_group = network.group_of(&COUNTER);
    // A player none of whose holders execute the counter's moves, so its slice is shipped.
    let players = players(40);
    let player = players
        .iter()
        .find(|key| {
            network
                .group_of(&key.address())
                .iter()
                .all(|member| !counter_group.contains(member))
        })
        .or_else(|| {
            players
                .iter()
                .find(|key| network.group_of(&key.address()) != counter_group)
        })
        .expect("some player is held by another group")
        .clone();
    // The first holder, which is asked first, holds a balance its group never agreed on.
    let liar = network.group_of(&player.address())[0];
    let forged = StateDiff {
        accounts: BTreeMap::from([(
            player.address(),
            AccountDiff {
                balance: Some(U256::from(1)),
                ..AccountDiff::default()
            },
        )]),
    };
    network
        .members
        .get_mut(&liar)
        .expect("a member")
        .state
        .apply(&forged);

    let body = BlockBody {
        moves: vec![store(&player, 0, 7, 7)],
    };
    let executed = run(&mut network, 1, body.clone());
    assert!(executed.outcomes[0].is_success());
    assert!(
        network.refused_slices() >= 1,
        "the forged slice was refused"
    );
    assert_eq!(
        network.storage(&COUNTER, &slot_of(&player)),
        Ok(U256::from(7))
    );
    assert_eq!(network.nonce(&player.address()), Ok(1));
    // The quorum's root is the honest one; the liar's differs and did not sign.
    let reference = reference(&[body]);
    let (group, root) = network.group_root_of(&player.address()).expect("agreed");
    assert_eq!(root, reference_root(&reference, &mut network, &group));
    // The liar, first in ID order, is the primary of the group's first view and proposed its
    // own root: each of the 7 others refused it, so nothing was certified in that view. Their
    // view timers fire; the next primary proposes the honest root, which is certified.
    let stats = network.group_stats(&group);
    for (id, stats) in &stats {
        let refused = u64::from(*id != liar);
        assert_eq!(stats.roots_refused, refused, "{id} refused the liar's root");
    }
    for _ in 0..60 {
        if network.certified_root(&group).is_some() {
            break;
        }
        let now = network.now() + Duration::from_micros(consensus::constants::VIEW_TIMEOUT_US);
        network.advance(now).expect("advances");
    }
    let commitment = network
        .certified_root(&group)
        .expect("the player's group certified its root")
        .clone();
    assert_eq!((commitment.batch, commitment.root), (1, root));
    assert_eq!(chain.group_root(&group).expect("reads"), Some(commitment));
}

#[test]
fn a_restarted_network_and_a_restarted_node_resume_from_their_stores_without_re_executing() {
    let players = players(10);
    let bodies: Vec<BlockBody> = (1..=4)
        .map(|number| batch_moves(&players, number))
        .collect();

    // The network that never stops.
    let steady_dir = tempfile::tempdir().expect("temporary directory");
    let (mut steady, _steady_chain) = network(16, steady_dir.path());
    let mut steady_statuses = Vec::new();
    let mut steady_roots = Vec::new();
    for (index, body) in bodies.iter().enumerate() {
        run(&mut steady, index as u64 + 1, body.clone());
        steady_statuses.push(statuses(&steady));
        steady_roots.push(steady.last_group_roots().to_vec());
    }

    // The network that stops after batch 2.
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut first, chain) = network(16, dir.path());
    for (index, body) in bodies[..2].iter().enumerate() {
        run(&mut first, index as u64 + 1, body.clone());
    }
    assert_eq!(statuses(&first), steady_statuses[1]);
    drop(first);

    let mut resumed =
        ShardNetwork::new(chain.clone(), CHAIN_ID, nodes(16), dir.path()).expect("reopens");
    resumed.set_root_commit_interval(1);
    // Same height and roots, the state is there, and history is not run again.
    assert_eq!(resumed.last_batch(), 2);
    assert_eq!(statuses(&resumed), steady_statuses[1]);
    assert_eq!(
        resumed.storage(&COUNTER, &slot_of(&players[3])),
        Ok(U256::from(203))
    );
    assert_eq!(resumed.nonce(&players[3].address()), Ok(2));
    assert_eq!(
        resumed.execute_batch(
            &finalized(2, std::slice::from_ref(&bodies[1])),
            &[bodies[1].clone()]
        ),
        Err(ShardError::NotNext {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        resumed.insert_genesis(COUNTER, counter_account()),
        Err(ShardError::GenesisStored)
    );

    // The next batch leads to the same node states and group roots as never stopping.
    run(&mut resumed, 3, bodies[2].clone());
    assert_eq!(statuses(&resumed), steady_statuses[2]);
    let roots = |commitments: &[GroupRootCommitment]| -> BTreeMap<B256, B256> {
        commitments
            .iter()
            .map(|commitment| (commitment.group, commitment.root))
            .collect()
    };
    // After a restart every group commits (which were touched before is not known), so
    // compare the groups the steady network committed.
    let resumed_roots = roots(resumed.last_group_roots());
    for (group, root) in roots(&steady_roots[2]) {
        assert_eq!(resumed_roots.get(&group), Some(&root));
    }

    // One node restarts alone between batches.
    let restarted = resumed.ids[5];
    let before = resumed.node_status(&restarted);
    resumed.restart_node(&restarted).expect("reopens");
    assert_eq!(resumed.node_status(&restarted), before);
    run(&mut resumed, 4, bodies[3].clone());
    assert_eq!(statuses(&resumed), steady_statuses[3]);
    assert_eq!(roots(resumed.last_group_roots()), roots(&steady_roots[3]));
    drop(resumed);

    // A node whose store is lost cannot run batches with the others: a typed refusal.
    let lost = nodes(16)[0].id();
    std::fs::remove_dir_all(node_dir(dir.path(), &lost)).expect("removes");
    assert!(matches!(
        ShardNetwork::new(chain, CHAIN_ID, nodes(16), dir.path()),
        Err(ShardError::HeightsDiffer { .. })
    ));
}

#[test]
fn waves_keep_conflicting_moves_apart_and_leave_the_rest_together() {
    let players = players(3);
    let moves: Vec<Result<VerifiedTransaction, ()>> = [
        store(&players[0], 0, 1, 1),
        store(&players[1], 0, 1, 1),
        store(&players[0], 1, 2, 2), // the same sender and slot as move 0
        store(&players[2], 0, 1, 1),
    ]
    .into_iter()
    .map(|signed| signed.verify(CHAIN_ID).map_err(|_| ()))
    .chain([Err(())]) // a move that did not verify touches nothing
    .collect();
    assert_eq!(waves(&moves), vec![vec![0, 1, 3, 4], vec![2]]);
}

#[test]
fn batches_run_on_several_threads_give_exactly_the_results_of_one_by_one() {
    // Enough moves that signatures are checked on several threads too.
    let players = players(16);
    // Every player stores a value; players 2 and 3 move a second time in the same batch (a
    // later wave), the second move of player 3 with a wrong declaration; a move signed for
    // another chain does not verify.
    let body = |number: u64| -> BlockBody {
        let mut moves: Vec<SignedTransaction> = players
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let nonce = if index == 2 || index == 3 {
                    2 * (number - 1)
                } else {
                    number - 1
                };
                let value = number * 100 + index as u64;
                store(key, nonce, value, value)
            })
            .collect();
        let second = 2 * (number - 1) + 1;
        moves.push(store(&players[2], second, 9_000 + number, 9_000 + number));
        moves.push(store(&players[3], second, 1, 2));
        moves.push(store_on(CHAIN_ID + 1, &players[4], number, 5, 5));
        BlockBody { moves }
    };
    let one_dir = tempfile::tempdir().expect("temporary directory");
    let (mut one_by_one, _one_chain) = network(16, one_dir.path());
    one_by_one.set_execution_threads(1);
    let many_dir = tempfile::tempdir().expect("temporary directory");
    let (mut parallel, _many_chain) = network(16, many_dir.path());
    parallel.set_execution_threads(4);
    let mut bodies = Vec::new();
    for number in 1..=3 {
        let body = body(number);
        let batch = finalized(number, std::slice::from_ref(&body));
        let expected = one_by_one
            .execute_batch(&batch, std::slice::from_ref(&body))
            .expect("executes one by one");
        let got = parallel
            .execute_batch(&batch, std::slice::from_ref(&body))
            .expect("executes in waves");
        assert_eq!(got, expected, "batch {number}");
        assert!(
            statuses(&parallel) == statuses(&one_by_one),
            "node states after batch {number}"
        );
        assert_eq!(parallel.last_group_roots(), one_by_one.last_group_roots());
        let statuses: Vec<_> = got.outcomes.iter().map(|outcome| &outcome.status).collect();
        let players_count = players.len();
        assert!(
            statuses[..=players_count]
                .iter()
                .all(|status| status.is_ok())
        );
        assert!(matches!(
            statuses[players_count + 1],
            Err(FailureReason::WrongPostValue(_))
        ));
        assert_eq!(
            statuses[players_count + 2],
            &Err(FailureReason::InvalidMove)
        );
        bodies.push(body);
    }
    // Both equal a node that holds everything and runs the moves in order.
    let reference = reference(&bodies);
    for key in &players {
        assert_eq!(
            parallel.storage(&COUNTER, &slot_of(key)),
            Ok(reference.storage(&COUNTER, &slot_of(key)))
        );
        let nonce = reference
            .account(&key.address())
            .map_or(0, |account| account.nonce);
        assert_eq!(parallel.nonce(&key.address()), Ok(nonce));
    }
}

#[test]
fn a_move_whose_slice_no_holder_ships_fails_with_a_typed_reason_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut network, _chain) = network(16, dir.path());
    let counter_group = network.group_of(&COUNTER);
    let players = players(40);
    // A player held by a group other than the counter's, so some executing member needs its
    // slice shipped; and a second player held by yet another group.
    let cut_off = players
        .iter()
        .find(|key| network.group_of(&key.address()) != counter_group)
        .expect("some player is held by another group")
        .clone();
    let cut_off_group = network.group_of(&cut_off.address());
    let other = players
        .iter()
        .find(|key| network.group_of(&key.address()) != cut_off_group)
        .expect("some player is held by a third group")
        .clone();
    // Every holder of the first player is down: nobody can ship its slice.
    for member in cut_off_group.iter() {
        network.stop_member(member).expect("a member");
    }

    let body = BlockBody {
        moves: vec![store(&cut_off, 0, 7, 7), store(&other, 0, 8, 8)],
    };
    let executed = run(&mut network, 1, body);
    assert_eq!(
        executed.outcomes[0].status,
        Err(FailureReason::SliceUnavailable(cut_off.address())),
        "one typed failure, the same for the whole executing group"
    );
    assert_eq!(executed.outcomes[0].diff, StateDiff::default());
    assert_eq!(executed.outcomes[0].gas_used, 0);
    assert!(executed.outcomes[1].is_success(), "the batch goes on");
    // The failed move consumed nothing: not even its nonce.
    assert_eq!(network.nonce(&cut_off.address()), Ok(0));
    assert_eq!(
        network.storage(&COUNTER, &slot_of(&cut_off)),
        Ok(U256::ZERO)
    );
    assert_eq!(
        network.storage(&COUNTER, &slot_of(&other)),
        Ok(U256::from(8))
    );

    // Once the holders are back, the same move runs.
    for member in cut_off_group.iter() {
        network.resume_member(member).expect("stopped");
    }
    let executed = run(
        &mut network,
        2,
        BlockBody {
            moves: vec![store(&cut_off, 0, 7, 7)],
        },
    );
    assert!(executed.outcomes[0].is_success());
    assert_eq!(network.nonce(&cut_off.address()), Ok(1));
    assert_eq!(
        network.storage(&COUNTER, &slot_of(&cut_off)),
        Ok(U256::from(7))
    );
}
