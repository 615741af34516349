//! Execution records of a 16-node network replayed by a verifier: an honest run checks, and a
//! tampered outcome, slice or root is pinned to where it diverges.

use execution::InMemoryState;
use primitives::{Decode, Encode, finality::StateItem};

use super::tests::{
    CHAIN_ID, COUNTER, batch_moves, counter_account, network, players, run, slot_of, store,
    store_on,
};
use super::*;
use crate::record::{Divergence, Verifier, group_root_in};

fn genesis() -> InMemoryState {
    let mut state = InMemoryState::new();
    state.insert_account(COUNTER, counter_account());
    state
}

/// Three batches of 12 players' moves (the second with a wrong declaration and a move signed
/// for another chain), with each batch's record and the roots committed after it.
fn honest_run() -> (
    Vec<ExecutionRecord>,
    Vec<Vec<GroupRootCommitment>>,
    RegistrySnapshot,
) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut network, _chain) = network(16, dir.path());
    let players = players(12);
    let mut records = Vec::new();
    let mut roots = Vec::new();
    for number in 1..=3 {
        let mut body = batch_moves(&players, number);
        if number == 2 {
            body.moves.push(store(&players[0], 2, 5, 6));
            body.moves
                .push(store_on(CHAIN_ID + 1, &players[1], 2, 5, 5));
        }
        run(&mut network, number, body);
        // Records travel encoded: what is replayed is what was decoded.
        let bytes = network.last_record().to_bytes();
        records.push(ExecutionRecord::from_bytes(&bytes).expect("decodes"));
        roots.push(network.last_group_roots().to_vec());
    }
    (records, roots, network.snapshot().clone())
}

#[test]
fn an_honest_run_replays_move_by_move_and_every_committed_root_checks() {
    let (records, roots, snapshot) = honest_run();
    assert_eq!(records[1].moves.len(), 14);
    assert_eq!(
        records[1].moves[12].outcome.status,
        Err(FailureReason::WrongPostValue(StateItem::Storage(
            COUNTER,
            slot_of(&players(1)[0])
        )))
    );
    assert_eq!(
        records[1].moves[13].outcome.status,
        Err(FailureReason::InvalidMove)
    );
    let mut verifier = Verifier::new(CHAIN_ID, genesis());
    let mut checked = 0;
    for (record, committed) in records.iter().zip(&roots) {
        verifier.replay(record).expect("an honest record replays");
        assert!(!committed.is_empty());
        for commitment in committed {
            verifier
                .check_root(&snapshot, commitment)
                .expect("an honest root checks");
            checked += 1;
        }
    }
    assert!(checked > 3, "several groups committed after each batch");
    // Out of order is refused, and changes nothing.
    let before = verifier.state().authenticated_root();
    assert_eq!(
        verifier.replay(&records[0]),
        Err(Divergence::OutOfOrder {
            expected: 4,
            got: 1
        })
    );
    assert_eq!(verifier.state().authenticated_root(), before);
    // A root is checked only against the replay of its own batch.
    assert_eq!(
        verifier.check_root(&snapshot, &roots[0][0]),
        Err(Divergence::RootNotAtReplay {
            batch: 1,
            replayed: 3
        })
    );
}

#[test]
fn a_tampered_root_is_pinned_to_the_move_whose_recorded_outcome_it_rests_on() {
    let (mut records, roots, snapshot) = honest_run();
    // A faulty quorum records a wrong value for move 4 of batch 2, and commits the root of the
    // state that value leads to.
    let player = players(12)[4].clone();
    let slot = slot_of(&player);
    let forged = U256::from(999_999);
    let tampered = &mut records[1].moves[4];
    tampered
        .outcome
        .diff
        .accounts
        .get_mut(&COUNTER)
        .expect("the move writes the counter")
        .storage
        .insert(slot, forged);
    let hash = tampered.signed.hash();
    let mut forged_state = genesis();
    for record in &records[..2] {
        for recorded in &record.moves {
            forged_state.apply(&recorded.outcome.diff);
        }
    }
    assert_eq!(forged_state.storage(&COUNTER, &slot), forged);
    let counter_group = upper_chain::group_id(&snapshot.group_of(&COUNTER));
    let honest = roots[1]
        .iter()
        .find(|commitment| commitment.group == counter_group)
        .expect("the counter's group committed after batch 2");
    let forged_root = GroupRootCommitment {
        root: group_root_in(&forged_state, &snapshot, &counter_group),
        ..honest.clone()
    };
    assert_ne!(forged_root.root, honest.root);

    let mut verifier = Verifier::new(CHAIN_ID, genesis());
    verifier.replay(&records[0]).expect("batch 1 is honest");
    match verifier.replay(&records[1]) {
        Err(Divergence::Outcome {
            batch,
            index,
            hash: pinned,
            recorded,
            reexecuted,
        }) => {
            assert_eq!((batch, index, pinned), (2, 4, hash));
            assert_eq!(recorded.diff.accounts[&COUNTER].storage[&slot], forged);
            assert_ne!(reexecuted.diff.accounts[&COUNTER].storage[&slot], forged);
        }
        other => panic!("expected the tampered move to be pinned, got {other:?}"),
    }
    // The replay stopped before the batch: the honest record goes on from there, and the forged
    // root does not check where the honest one does.
    let mut honest_records = honest_run().0;
    verifier
        .replay(&honest_records.remove(1))
        .expect("the honest record of batch 2 replays");
    assert!(matches!(
        verifier.check_root(&snapshot, &forged_root),
        Err(Divergence::Root { batch: 2, .. })
    ));
    assert_eq!(verifier.check_root(&snapshot, honest), Ok(()));
}

#[test]
fn a_move_recorded_on_a_wrong_slice_is_pinned_with_the_item() {
    let (mut records, _roots, _snapshot) = honest_run();
    let player = players(12)[7].clone();
    let recorded = &mut records[0].moves[7];
    recorded
        .slice
        .accounts
        .get_mut(&player.address())
        .expect("the player's account is listed")
        .balance = U256::from(1);
    let hash = recorded.signed.hash();
    let mut verifier = Verifier::new(CHAIN_ID, genesis());
    assert_eq!(
        verifier.replay(&records[0]),
        Err(Divergence::PreState {
            batch: 1,
            index: 7,
            hash,
            item: StateItem::Balance(player.address()),
        })
    );
    assert_eq!(verifier.next_batch(), 1, "nothing of the batch was kept");
}
