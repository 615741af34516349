//! The game-facing SDK against a devnet: pipelined moves with local nonces, failover when a
//! sequencer is killed mid-stream, and pending-state subscriptions that see writes before
//! finality and their retraction when a move fails.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use client_sdk::{
    ClientError, ClientEvent, FailoverClient, FailoverConfig, MoveHandle, Signer, keys::AccountKey,
};
use primitives::{FinalityLevel, Transaction, TxHash, U256, api::Refusal, finality::StateItem};
use sim::{
    devnet::{Devnet, DevnetConfig, MeshKind},
    game::{GAME_ADDRESS, move_with_declaration, slot_of},
};
use tokio::sync::mpsc::UnboundedReceiver;

/// Bounds how long a broken network can hang a test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

/// A move of `player`'s piece to `cell` declaring `declared` as the cell afterwards; the client
/// sets the nonce.
fn game_move(player: &AccountKey, chain_id: u64, cell: u64, declared: u64) -> Transaction {
    move_with_declaration(player, chain_id, 0, cell, declared).tx
}

async fn executed(client: &FailoverClient, hash: TxHash) -> FinalityLevel {
    tokio::time::timeout(
        LIVENESS_BOUND,
        client.wait_for(hash, FinalityLevel::Executed),
    )
    .await
    .expect("the move reaches a final level")
    .expect("the move was not refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pipelined_moves_from_one_client_all_execute_in_nonce_order() {
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .expect("devnet starts");
    let client = FailoverClient::connect(FailoverConfig::new(
        (0..4).map(|index| devnet.sequencer_addr(index)).collect(),
    ))
    .await
    .expect("connects");
    let player = AccountKey::from_seed(801);
    let signer = Signer::Account(player.clone());
    let mut events = client.events();

    // Every move is sent before any ack is awaited.
    let mut handles: Vec<MoveHandle> = Vec::new();
    for index in 0..200u64 {
        let cell = index % 64;
        handles.push(
            client
                .send(&signer, game_move(&player, devnet.chain_id, cell, cell))
                .await
                .expect("sent"),
        );
    }
    assert_eq!(
        handles
            .iter()
            .map(|handle| handle.nonce)
            .collect::<Vec<_>>(),
        (0..200).collect::<Vec<_>>(),
        "nonces assigned locally, one after another"
    );
    let nonce_of: HashMap<TxHash, u64> = handles
        .iter()
        .map(|handle| (handle.hash, handle.nonce))
        .collect();
    let last = handles.last().expect("200 moves").hash;
    for handle in handles {
        handle.ack().await.expect("every move is acked");
    }
    assert_eq!(executed(&client, last).await, FinalityLevel::Executed);

    // The events of the moves, in the order the client learned them: each `Executed` in nonce
    // order, and none failed.
    let mut executed_order = Vec::new();
    while let Ok(event) = events.try_recv() {
        match event.level {
            Ok(FinalityLevel::Executed) => executed_order.push(nonce_of[&event.hash]),
            Ok(FinalityLevel::Failed(reason)) => panic!("move failed: {reason:?}"),
            Err(refusal) => panic!("move refused: {refusal}"),
            Ok(_) => {}
        }
    }
    assert_eq!(executed_order, (0..200).collect::<Vec<_>>());
    assert_eq!(
        client.pending_nonce(player.address()).await.expect("read"),
        200
    );
    assert_eq!(
        client
            .pending_storage(GAME_ADDRESS, slot_of(&player.address()))
            .await
            .expect("read"),
        U256::from(199 % 64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_move_rewinds_the_local_nonce_and_the_next_move_takes_it() {
    let devnet = Devnet::start(DevnetConfig {
        ingress: sequencer::node::IngressConfig {
            // Three moves a sender and no refill, so the refusal does not depend on timing.
            sender_rate: sequencer::ingress::RateLimit {
                per_second: 0,
                burst: 3,
            },
            ..sequencer::node::IngressConfig::default()
        },
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let client = FailoverClient::connect(FailoverConfig::new(vec![devnet.sequencer_addr(0)]))
        .await
        .expect("connects");
    let player = AccountKey::from_seed(802);
    let signer = Signer::Account(player.clone());
    let mut handles = Vec::new();
    for cell in 0..5 {
        handles.push(
            client
                .send(&signer, game_move(&player, devnet.chain_id, cell, cell))
                .await
                .expect("sent"),
        );
    }
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.ack().await);
    }
    assert!(outcomes[..3].iter().all(Result::is_ok), "{outcomes:?}");
    assert!(
        matches!(outcomes[3], Err(ClientError::Refused(Refusal::RateLimited))),
        "{outcomes:?}"
    );
    assert!(
        matches!(
            outcomes[4],
            Err(ClientError::Refused(
                Refusal::RateLimited | Refusal::BadNonce { .. }
            ))
        ),
        "{outcomes:?}"
    );
    assert_eq!(
        client.next_nonce(&player.address()),
        Some(3),
        "the refused nonces are taken again"
    );
    assert_eq!(
        client.pending_nonce(player.address()).await.expect("read"),
        3
    );
}

/// Receives the next value of `item`, skipping repeats of the value before.
async fn next_value(
    changes: &mut UnboundedReceiver<client_sdk::StateChange>,
    item: StateItem,
    before: U256,
) -> (U256, std::time::Instant) {
    loop {
        let change = tokio::time::timeout(LIVENESS_BOUND, changes.recv())
            .await
            .expect("a change arrives")
            .expect("the client is alive");
        assert_eq!(change.item, item);
        let value = change.value.expect("subscription accepted");
        if value != before {
            return (value, change.at);
        }
    }
}

/// When the client learned that `hash` reached `level`.
fn learned(events: &[ClientEvent], hash: TxHash, rank: u8) -> std::time::Instant {
    events
        .iter()
        .find(|event| {
            event.hash == hash && matches!(&event.level, Ok(level) if level.rank() == rank)
        })
        .map(|event| event.at)
        .expect("the level was learned")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_sees_each_write_before_finality_and_a_failed_moves_write_retracted() {
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .expect("devnet starts");
    let client = FailoverClient::connect(FailoverConfig::new(vec![devnet.sequencer_addr(2)]))
        .await
        .expect("connects");
    let player = AccountKey::from_seed(803);
    let signer = Signer::Account(player.clone());
    let item = StateItem::Storage(GAME_ADDRESS, slot_of(&player.address()));
    let mut changes = client.changes();
    let mut events = client.events();
    client.subscribe(item).await.expect("sent");
    let (initial, _) = next_value(&mut changes, item, U256::MAX).await;
    assert_eq!(initial, U256::ZERO);

    // Three honest moves, pipelined, then one that declares 9 for a cell off the board: the
    // contract reverts, so the 9 never happens.
    let mut hashes = Vec::new();
    for cell in [5, 6, 7] {
        hashes.push(
            client
                .send(&signer, game_move(&player, devnet.chain_id, cell, cell))
                .await
                .expect("sent")
                .hash,
        );
    }
    let failing = client
        .send(&signer, game_move(&player, devnet.chain_id, 64, 9))
        .await
        .expect("sent")
        .hash;
    let mut seen = Vec::new();
    let mut before = initial;
    for _ in 0..4 {
        let (value, at) = next_value(&mut changes, item, before).await;
        seen.push((value, at));
        before = value;
    }
    assert_eq!(
        seen.iter().map(|(value, _)| *value).collect::<Vec<_>>(),
        [5, 6, 7, 9].map(U256::from),
        "each move's declared write, in order"
    );
    assert!(matches!(
        tokio::time::timeout(
            LIVENESS_BOUND,
            client.wait_for(failing, FinalityLevel::Executed)
        )
        .await
        .expect("final")
        .expect("not refused"),
        FinalityLevel::Failed(_)
    ));
    let (retracted, _) = next_value(&mut changes, item, before).await;
    assert_eq!(
        retracted,
        U256::from(7),
        "the failed move's write is retracted"
    );

    let mut learned_events = Vec::new();
    while let Ok(event) = events.try_recv() {
        learned_events.push(event);
    }
    for (hash, (_, write_seen)) in hashes.iter().chain([&failing]).zip(&seen) {
        let final_rank = if *hash == failing {
            FinalityLevel::Failed(primitives::FailureReason::Reverted).rank()
        } else {
            FinalityLevel::Executed.rank()
        };
        assert!(
            *write_seen < learned(&learned_events, *hash, FinalityLevel::Finalized.rank())
                && *write_seen < learned(&learned_events, *hash, final_rank),
            "the write was seen before the move was finalized"
        );
    }
    assert_eq!(
        client
            .pending_storage(GAME_ADDRESS, slot_of(&player.address()))
            .await
            .expect("read"),
        U256::from(7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_killed_mid_stream_loses_and_duplicates_no_acked_move() {
    let mut devnet = Devnet::start(DevnetConfig {
        wal: true,
        mesh: MeshKind::InProcess,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    // Every execution outcome of the run, counted per move as the shards report them.
    let executions: std::sync::Arc<std::sync::Mutex<HashMap<TxHash, u32>>> = Default::default();
    let mut outcomes = devnet.shards.executed.subscribe();
    let counted = executions.clone();
    // A lagging counter is reported by the assertions below, not by a panic in its task,
    // which would only stop the counting.
    let lagged = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let lag = lagged.clone();
    tokio::spawn(async move {
        loop {
            match outcomes.recv().await {
                Ok(batch) => {
                    let mut counted = counted.lock().expect("not poisoned");
                    for outcome in batch
                        .outcomes
                        .iter()
                        .filter(|outcome| outcome.status.is_ok())
                    {
                        *counted.entry(outcome.hash).or_default() += 1;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    lag.fetch_add(missed, std::sync::atomic::Ordering::Relaxed);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    // Sequencer 1 first: it is killed, then restarted from its write-ahead log.
    let client = FailoverClient::connect(FailoverConfig::new(
        [1, 2, 3, 0]
            .into_iter()
            .map(|index| devnet.sequencer_addr(index))
            .collect(),
    ))
    .await
    .expect("connects");
    let killed = devnet.sequencer_addr(1);
    assert_eq!(client.sequencer(), killed);
    let player = AccountKey::from_seed(804);
    let signer = Signer::Account(player.clone());

    let mut handles = Vec::new();
    for index in 0..200u64 {
        let cell = index % 64;
        handles.push(
            client
                .send(&signer, game_move(&player, devnet.chain_id, cell, cell))
                .await
                .expect("sent"),
        );
        if index == 80 {
            // Mid-stream: some moves acked, some in flight, the rest not sent yet.
            tokio::time::timeout(
                LIVENESS_BOUND,
                client.wait_for(handles[40].hash, FinalityLevel::Pending),
            )
            .await
            .expect("acked")
            .expect("acked");
            devnet.crash_sequencer(1).await.expect("crashes");
        }
    }
    // The client notices by its idle timeout and fails over; the killed sequencer comes back
    // from its log, so that what it acked is packed.
    tokio::time::timeout(LIVENESS_BOUND, async {
        while client.failovers() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the client fails over");
    assert_ne!(client.sequencer(), killed);
    devnet.restart_sequencer(1).await.expect("restarts");

    let hashes: Vec<TxHash> = handles.iter().map(|handle| handle.hash).collect();
    let mut acked = 0;
    let mut refusals = Vec::new();
    for handle in handles {
        match tokio::time::timeout(LIVENESS_BOUND, handle.ack())
            .await
            .expect("every move is acked or refused")
        {
            Ok(_) => acked += 1,
            Err(error) => refusals.push(error.to_string()),
        }
    }
    refusals.dedup();
    assert_eq!(
        acked, 200,
        "every move was acked by some sequencer; refusals: {refusals:?}"
    );
    for hash in &hashes {
        assert_eq!(executed(&client, *hash).await, FinalityLevel::Executed);
    }

    // The shards executed each move once: a second copy, if one reached a batch, failed on its
    // nonce and changed nothing.
    let ours: HashSet<TxHash> = hashes.iter().copied().collect();
    // The counter runs beside the client: give it until it has seen every batch the client
    // saw executed (a busy machine may schedule it late).
    for _ in 0..600 {
        let seen = executions
            .lock()
            .expect("not poisoned")
            .keys()
            .filter(|hash| ours.contains(*hash))
            .count();
        if seen == ours.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        lagged.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "executed batches went uncounted"
    );
    let executed_once: HashMap<TxHash, u32> = executions
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(hash, _)| ours.contains(*hash))
        .map(|(hash, count)| (*hash, *count))
        .collect();
    assert_eq!(executed_once.len(), 200);
    assert!(
        executed_once.values().all(|count| *count == 1),
        "a move executed twice"
    );
    assert_eq!(
        client.pending_nonce(player.address()).await.expect("read"),
        200
    );
    assert_eq!(
        client
            .pending_storage(GAME_ADDRESS, slot_of(&player.address()))
            .await
            .expect("read"),
        U256::from(199 % 64)
    );
}

/// A move with no list of its own gets it from a shard node: the estimate names exactly the
/// items the move reads and writes, with the value it writes, and the move signed with it
/// executes. A move that would revert, one for another chain and undecodable bytes are each
/// answered with their typed refusal, and the endpoint goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moves_access_list_is_estimated_by_a_shard_node_and_the_move_executes() {
    use client_sdk::Estimator;
    use primitives::{
        Bytes, Decode,
        estimate::{EstimateRefusal, EstimateReply},
        tx::{AccountAccess, DeclaredWrite, SlotAccess, SpaceAccessList},
    };

    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .expect("devnet starts");
    let estimator = Estimator::connect(devnet.estimator.local_addr())
        .await
        .expect("connects");
    let client = FailoverClient::connect(FailoverConfig::new(vec![devnet.sequencer_addr(0)]))
        .await
        .expect("connects");
    let player = AccountKey::from_seed(807);
    let signer = Signer::Account(player.clone());
    let unlisted = |cell: u64| Transaction {
        access_list: SpaceAccessList::default(),
        ..game_move(&player, devnet.chain_id, cell, cell)
    };
    let slot = slot_of(&player.address());

    for cell in [5u64, 9] {
        let prepared = estimator
            .prepare(player.address(), unlisted(cell), &[])
            .await
            .expect("estimated");
        let game = prepared
            .access_list
            .accounts()
            .iter()
            .find(|account| account.address == GAME_ADDRESS)
            .expect("the game is listed");
        assert_eq!(
            game.storage,
            [SlotAccess {
                slot,
                write: Some(DeclaredWrite::Exact(U256::from(cell))),
            }],
            "the player's cell, written with the cell moved to"
        );
        let handle = client.send(&signer, prepared).await.expect("sent");
        let hash = handle.hash;
        handle.ack().await.expect("acked");
        // The second move is estimated on the state the first left once it has executed.
        assert_eq!(executed(&client, hash).await, FinalityLevel::Executed);
    }
    assert_eq!(
        devnet
            .shards
            .network
            .lock()
            .storage(&GAME_ADDRESS, &slot)
            .expect("read"),
        U256::from(9)
    );

    // Off the board: the contract reverts, so the move is not prepared.
    assert!(matches!(
        estimator.prepare(player.address(), unlisted(64), &[]).await,
        Err(ClientError::WouldFail(primitives::FailureReason::Reverted))
    ));
    // Estimated raw, the failing move still gets the list of what it touched.
    let failing = estimator
        .estimate(player.address(), &unlisted(64), &[])
        .await
        .expect("estimated");
    assert!(failing.status.is_err());
    assert!(
        failing
            .access_list
            .accounts()
            .contains(&AccountAccess::read(GAME_ADDRESS))
    );
    let elsewhere = Transaction {
        chain_id: devnet.chain_id + 1,
        ..unlisted(3)
    };
    assert!(matches!(
        estimator.estimate(player.address(), &elsewhere, &[]).await,
        Err(ClientError::Estimate(EstimateRefusal::WrongChain { .. }))
    ));
    let mut raw = netstack::driver::KcpClient::connect(
        devnet.estimator.local_addr(),
        netstack::kcp::KcpConfig::default(),
    )
    .await
    .expect("connects");
    raw.send(Bytes::from_static(&[1, 2, 3]))
        .await
        .expect("sent");
    let reply = tokio::time::timeout(LIVENESS_BOUND, raw.recv())
        .await
        .expect("answered")
        .expect("open");
    assert_eq!(
        EstimateReply::from_bytes(&reply).expect("a reply"),
        EstimateReply {
            id: 0,
            result: Err(EstimateRefusal::Malformed)
        }
    );
    // Still serving.
    assert!(
        estimator
            .estimate(player.address(), &unlisted(1), &[])
            .await
            .expect("estimated")
            .status
            .is_ok()
    );
}
