//! Ingress over the real path: session keys granted, used, refused and executed; every stateless
//! and stateful refusal typed and harmless; per-sender rate limits.

use std::time::Duration;

use client_sdk::{Client, ClientError};
use primitives::{
    AccountKey, Address, Bytes, FinalityLevel, SessionKey, U256,
    api::Refusal,
    session::{self, SessionRefusal},
};
use sequencer::{constants::MOVE_BYTES_MAX, ingress::RateLimit, node::IngressConfig};
use sim::{
    devnet::{Devnet, DevnetConfig},
    game::{GAME_ADDRESS, grant_game_session, move_piece, move_piece_with_session, slot_of},
};

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

async fn next_value(
    changes: &mut tokio::sync::mpsc::UnboundedReceiver<client_sdk::StateChange>,
    item: primitives::finality::StateItem,
) -> U256 {
    let change = tokio::time::timeout(LIVENESS_BOUND, changes.recv())
        .await
        .expect("a change arrives")
        .expect("the session stays open");
    assert_eq!(change.item, item);
    change.value.expect("subscription accepted")
}

fn refused(result: Result<primitives::TxHash, ClientError>) -> Refusal {
    match result {
        Err(ClientError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_key_plays_for_its_account_within_its_scope_and_is_executed() {
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .expect("devnet starts");
    let chain_id = devnet.chain_id;
    let client = Client::connect(devnet.sequencer_addr(0))
        .await
        .expect("connects");
    let player = AccountKey::from_seed(501);
    let session = SessionKey::from_seed(501);

    assert_eq!(
        refused(
            client
                .submit_and_ack(move_piece_with_session(&player, &session, chain_id, 0, 5))
                .await
        ),
        Refusal::Session(SessionRefusal::Unknown),
        "no grant yet"
    );

    let grant = client
        .submit_and_ack(grant_game_session(
            &player,
            &session,
            chain_id,
            0,
            2,
            u64::MAX,
        ))
        .await
        .expect("the grant is acked");
    // The grant is in pending state at once: the session key plays before it executes.
    let first = client
        .submit_and_ack(move_piece_with_session(&player, &session, chain_id, 1, 5))
        .await
        .expect("a session move is acked");

    // A move to a contract outside the scope.
    let elsewhere = primitives::Transaction {
        to: Address::repeat_byte(0x99),
        ..move_piece(&player, chain_id, 2, 6).tx
    };
    let mut elsewhere = elsewhere;
    elsewhere.access_list = primitives::SpaceAccessList::new(
        elsewhere
            .access_list
            .accounts()
            .iter()
            .cloned()
            .chain([primitives::AccountAccess::read(Address::repeat_byte(0x99))]),
    );
    let elsewhere =
        session::with_session_access(elsewhere, player.address(), &session.public_key())
            .expect("costs nothing")
            .sign_with_session(&session, player.address());
    assert_eq!(
        refused(client.submit_and_ack(elsewhere).await),
        Refusal::Session(SessionRefusal::OutOfScope)
    );

    assert_eq!(wait_final(&client, grant).await, FinalityLevel::Executed);
    assert_eq!(wait_final(&client, first).await, FinalityLevel::Executed);
    assert_eq!(
        client
            .pending_storage(GAME_ADDRESS, slot_of(&player.address()))
            .await
            .expect("read"),
        U256::from(5),
        "the session move acted as the player"
    );

    let second = client
        .submit_and_ack(move_piece_with_session(&player, &session, chain_id, 2, 7))
        .await
        .expect("the second and last granted move");
    assert_eq!(wait_final(&client, second).await, FinalityLevel::Executed);
    assert_eq!(
        refused(
            client
                .submit_and_ack(move_piece_with_session(&player, &session, chain_id, 3, 8))
                .await
        ),
        Refusal::Session(SessionRefusal::MovesSpent)
    );

    // An expired grant: a key whose last batch is 0 can never act.
    let stale = SessionKey::from_seed(502);
    let stale_grant = client
        .submit_and_ack(grant_game_session(&player, &stale, chain_id, 3, 10, 0))
        .await
        .expect("granting a dead key is allowed, if useless");
    assert_eq!(
        refused(
            client
                .submit_and_ack(move_piece_with_session(&player, &stale, chain_id, 4, 8))
                .await
        ),
        Refusal::Session(SessionRefusal::Expired {
            expires_after_batch: 0
        })
    );
    assert_eq!(
        wait_final(&client, stale_grant).await,
        FinalityLevel::Executed
    );

    // Revocation by the account key ends the session at once.
    let revoke = session::revoke_transaction(chain_id, 4, player.address(), session.public_key())
        .sign(&player);
    client
        .submit_and_ack(revoke)
        .await
        .expect("revocation acked");
    assert_eq!(
        refused(
            client
                .submit_and_ack(move_piece_with_session(&player, &session, chain_id, 5, 9))
                .await
        ),
        Refusal::Session(SessionRefusal::Revoked)
    );
    assert_eq!(
        client.pending_nonce(player.address()).await.expect("read"),
        5,
        "refusals consumed no nonce"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_replayed_and_flooding_moves_are_refused_and_change_nothing() {
    let devnet = Devnet::start(DevnetConfig {
        ingress: IngressConfig {
            // Five moves a sender and no refill, so that the test cannot depend on timing.
            sender_rate: RateLimit {
                per_second: 0,
                burst: 5,
            },
            ..IngressConfig::default()
        },
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let chain_id = devnet.chain_id;
    let client = Client::connect(devnet.sequencer_addr(1))
        .await
        .expect("connects");
    let player = AccountKey::from_seed(601);

    let mut oversized = move_piece(&player, chain_id, 0, 1).tx;
    oversized.data = Bytes::from(vec![0u8; MOVE_BYTES_MAX + 1]);
    assert!(matches!(
        refused(client.submit_and_ack(oversized.sign(&player)).await),
        Refusal::TooLarge { max, .. } if max as usize == MOVE_BYTES_MAX
    ));

    let first = move_piece(&player, chain_id, 0, 1);
    let promised = client
        .submit(first.clone())
        .await
        .expect("sent")
        .ack()
        .await
        .expect("the first move is acked");
    // Submission is idempotent: a replay of an acked move is answered with the original's ack
    // (a client that cannot tell whether its first copy arrived sends it again) and takes
    // nothing, neither a nonce nor the sender's rate.
    assert_eq!(
        client
            .submit(first)
            .await
            .expect("sent")
            .ack()
            .await
            .expect("a replay is answered, not refused"),
        promised,
        "a replay of an acked move gets the same promise"
    );
    assert_eq!(
        client.pending_nonce(player.address()).await.expect("read"),
        1,
        "the replay took no nonce"
    );

    // Five moves a sender: the first took one (the replay was answered before the rate).
    let mut outcomes = Vec::new();
    for nonce in 1..8 {
        outcomes.push(
            client
                .submit_and_ack(move_piece(&player, chain_id, nonce, nonce))
                .await,
        );
    }
    let acked = outcomes
        .iter()
        .take_while(|outcome| outcome.is_ok())
        .count();
    assert_eq!(acked, 4, "{outcomes:?}");
    assert!(
        outcomes[acked..]
            .iter()
            .all(|outcome| matches!(outcome, Err(ClientError::Refused(Refusal::RateLimited)))),
        "{outcomes:?}"
    );
    assert_eq!(
        client.pending_nonce(player.address()).await.expect("read"),
        5,
        "refused moves left pending state and the mempool unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_a_pending_write_and_its_retraction_when_the_move_fails() {
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .expect("devnet starts");
    let chain_id = devnet.chain_id;
    let watcher = Client::connect(devnet.sequencer_addr(0))
        .await
        .expect("connects");
    let mover = Client::connect(devnet.sequencer_addr(0))
        .await
        .expect("connects");
    let player = AccountKey::from_seed(701);
    let item = primitives::finality::StateItem::Storage(GAME_ADDRESS, slot_of(&player.address()));
    let mut changes = watcher.changes();
    watcher.subscribe(item).await.expect("sent");
    assert_eq!(
        next_value(&mut changes, item).await,
        U256::ZERO,
        "the value when subscribed"
    );

    let honest = mover
        .submit_and_ack(move_piece(&player, chain_id, 0, 7))
        .await
        .expect("acked");
    assert_eq!(
        next_value(&mut changes, item).await,
        U256::from(7),
        "the acked move's write"
    );
    assert_eq!(wait_final(&mover, honest).await, FinalityLevel::Executed);

    // Cell 64 is off the board: the contract reverts, so the declared 9 never happens.
    let failing = mover
        .submit_and_ack(sim::game::move_with_declaration(
            &player, chain_id, 1, 64, 9,
        ))
        .await
        .expect("acked: the sequencer does not execute");
    assert_eq!(next_value(&mut changes, item).await, U256::from(9));
    assert!(matches!(
        wait_final(&mover, failing).await,
        FinalityLevel::Failed(_)
    ));
    assert_eq!(
        next_value(&mut changes, item).await,
        U256::from(7),
        "the failed move's write left pending state, and the watcher was told"
    );
    assert_eq!(
        mover
            .pending_storage(GAME_ADDRESS, slot_of(&player.address()))
            .await
            .expect("read"),
        U256::from(7)
    );
}
