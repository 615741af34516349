//! A move travels the whole path: client → sequencer → block → PBFT batch → group execution →
//! pending state corrected → the client sees `Executed` or `Failed`.

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

use client_sdk::{Client, ClientError};
use primitives::{
    AccountKey, Address, FailureReason, FinalityLevel, U256, api::Refusal, finality::StateItem,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::{
    devnet::{Devnet, DevnetConfig},
    game::{BOARD_CELLS, GAME_ADDRESS, move_piece, move_with_declaration, slot_of},
    load::player_key,
};
use upper_chain::UpperChain;

/// Bounds how long a broken network can hang a test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

async fn wait_final(client: &Client, hash: primitives::TxHash) -> FinalityLevel {
    tokio::time::timeout(
        LIVENESS_BOUND,
        client.wait_for(hash, FinalityLevel::Executed),
    )
    .await
    .expect("the move reaches a final level")
    .expect("the session stays open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_moves_from_fifty_players_all_execute_and_the_board_matches_a_replay() {
    let config = DevnetConfig {
        root_commit_interval_batches: 1,
        ..DevnetConfig::default()
    };
    let devnet = Devnet::start(config).await.expect("devnet starts");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut players = Vec::new();
    for index in 0..50 {
        let client = Client::connect(devnet.sequencer_addr(index))
            .await
            .expect("connects");
        players.push((player_key(11, index), client));
    }

    // Every player pipelines 20 moves without waiting for acks in between.
    let mut board: HashMap<Address, u64> = HashMap::new();
    let mut submissions = Vec::new();
    for nonce in 0..20 {
        for (key, client) in &players {
            let cell = rng.random_range(0..BOARD_CELLS);
            board.insert(key.address(), cell);
            let submission = client
                .submit(move_piece(key, devnet.chain_id, nonce, cell))
                .await
                .expect("sent");
            submissions.push((client.clone(), submission));
        }
    }
    assert_eq!(submissions.len(), 1_000);
    let mut hashes = Vec::new();
    for (client, submission) in submissions {
        let hash = submission.hash;
        submission.ack().await.expect("acked as pending");
        hashes.push((client, hash));
    }
    for (client, hash) in &hashes {
        assert_eq!(wait_final(client, *hash).await, FinalityLevel::Executed);
    }

    // The board as the shard groups hold it equals a replay of the moves.
    let mut network = devnet.shards.network.lock();
    for (key, _) in &players {
        let cell = network
            .storage(&GAME_ADDRESS, &slot_of(&key.address()))
            .expect("group agrees");
        assert_eq!(cell, U256::from(board[&key.address()]));
        assert_eq!(network.nonce(&key.address()).expect("group agrees"), 20);
    }
    assert!(network.last_batch() >= 1);
    // The group holding the board committed its root on the upper chain, certified by a quorum.
    let game_group = upper_chain::group_id(&network.group_of(&GAME_ADDRESS));
    let committed = devnet
        .chain
        .group_root(&game_group)
        .expect("the embedded chain reads")
        .expect("the game's group root is committed");
    assert_eq!(committed.batch, network.last_batch());
    drop(network);
    assert!(
        devnet.chain.last_batch().expect("the embedded chain reads") >= 1,
        "batches are committed on the upper chain"
    );
    // Peers' bodies came from their origin sequencers over QUIC, none refused.
    let pulled: u64 = devnet
        .sequencers
        .iter()
        .map(|sequencer| sequencer.stats.bodies_from_origin.load(Ordering::Relaxed))
        .sum();
    let refused: u64 = devnet
        .sequencers
        .iter()
        .map(|sequencer| sequencer.stats.bodies_refused.load(Ordering::Relaxed))
        .sum();
    assert!(pulled > 0, "bodies pulled from their origin");
    assert_eq!(refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_declared_write_fails_and_changes_nothing_but_the_nonce() {
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .expect("devnet starts");
    let key = AccountKey::from_seed(77);
    let player = key.address();
    let client = Client::connect(devnet.sequencer_addr(1))
        .await
        .expect("connects");

    let honest = client
        .submit_and_ack(move_piece(&key, devnet.chain_id, 0, 5))
        .await
        .expect("acked");
    assert_eq!(wait_final(&client, honest).await, FinalityLevel::Executed);

    // Moves to cell 9 but declares 10: pending state shows the declaration at once...
    let lying = move_with_declaration(&key, devnet.chain_id, 1, 9, 10);
    let hash = client
        .submit_and_ack(lying)
        .await
        .expect("acked: the sequencer does not execute");
    assert_eq!(
        client
            .pending_storage(GAME_ADDRESS, slot_of(&player))
            .await
            .expect("read"),
        U256::from(10)
    );

    // ...execution fails it with the typed reason, and pending state retracts it.
    let expected =
        FailureReason::WrongPostValue(StateItem::Storage(GAME_ADDRESS, slot_of(&player)));
    assert_eq!(
        wait_final(&client, hash).await,
        FinalityLevel::Failed(expected)
    );
    assert_eq!(
        client
            .pending_storage(GAME_ADDRESS, slot_of(&player))
            .await
            .expect("read"),
        U256::from(5)
    );
    assert_eq!(client.pending_nonce(player).await.expect("read"), 2);

    let mut network = devnet.shards.network.lock();
    assert_eq!(
        network
            .storage(&GAME_ADDRESS, &slot_of(&player))
            .expect("agreed"),
        U256::from(5)
    );
    assert_eq!(
        network.nonce(&player).expect("agreed"),
        2,
        "only the nonce was consumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_bad_nonces_are_refused_at_ingress_with_typed_errors() {
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .expect("devnet starts");
    let key = AccountKey::from_seed(78);
    let client = Client::connect(devnet.sequencer_addr(0))
        .await
        .expect("connects");

    let mut forged = move_piece(&key, devnet.chain_id, 0, 3);
    if let primitives::MoveSignature::Account(signature) = &mut forged.signature {
        signature.0[64] = 9;
    }
    let refused = client.submit_and_ack(forged).await;
    assert!(
        matches!(refused, Err(ClientError::Refused(Refusal::BadSignature))),
        "{refused:?}"
    );

    let wrong_chain = move_piece(&key, devnet.chain_id + 1, 0, 3);
    let refused = client.submit_and_ack(wrong_chain).await;
    assert!(
        matches!(refused, Err(ClientError::Refused(Refusal::WrongChain { got, .. })) if got == devnet.chain_id + 1),
        "{refused:?}"
    );

    let future_nonce = move_piece(&key, devnet.chain_id, 4, 3);
    let refused = client.submit_and_ack(future_nonce).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused(Refusal::BadNonce {
                expected: 0,
                got: 4
            }))
        ),
        "{refused:?}"
    );

    // None of them changed pending state; the next honest move is still nonce 0.
    assert_eq!(client.pending_nonce(key.address()).await.expect("read"), 0);
    let hash = client
        .submit_and_ack(move_piece(&key, devnet.chain_id, 0, 3))
        .await
        .expect("acked");
    assert_eq!(wait_final(&client, hash).await, FinalityLevel::Executed);
}
