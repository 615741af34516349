//! A move that fails in real execution on the devnet is retracted exactly once, with the
//! corrected value, at every subscriber of the item it wrote: a native session of the SDK and an
//! `eth_subscribe("tickrate_pendingState")` subscriber of the JSON-RPC gateway, each in order
//! with the other events of that item.

use std::time::Duration;

use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use client_sdk::{Client, StateChange};
use primitives::{
    AccountKey, FailureReason, FinalityLevel, TxHash, U256,
    api::{ItemValue, RetractionReason},
    finality::StateItem,
};
use sim::{
    devnet::{Devnet, DevnetConfig},
    game::{GAME_ADDRESS, move_piece, move_with_declaration, slot_of},
};
use tokio::sync::mpsc::UnboundedReceiver;

/// Bounds how long a broken network can hang the test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

async fn final_level(client: &Client, hash: TxHash) -> FinalityLevel {
    tokio::time::timeout(
        LIVENESS_BOUND,
        client.wait_for(hash, FinalityLevel::Executed),
    )
    .await
    .expect("the move reaches a final level")
    .expect("the session stays open")
}

/// The values the native session was told, in order, up to and including `last`.
async fn native_values_until(
    changes: &mut UnboundedReceiver<StateChange>,
    last: U256,
) -> Vec<U256> {
    let mut values = Vec::new();
    loop {
        let change = tokio::time::timeout(LIVENESS_BOUND, changes.recv())
            .await
            .expect("a change in time")
            .expect("the session stays open");
        let value = change.value.expect("the sequencer watches the item");
        values.push(value);
        if value == last {
            return values;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_failed_in_execution_is_retracted_once_with_its_corrected_value_at_every_subscriber_in_order()
 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let devnet = Devnet::start(DevnetConfig {
        shard_nodes: 8,
        rpc_listen: Some(([127, 0, 0, 1], 0).into()),
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let key = AccountKey::from_seed(96_001);
    let slot = slot_of(&key.address());
    let item = StateItem::Storage(GAME_ADDRESS, slot);
    let rpc_item = serde_json::json!({"storage": [GAME_ADDRESS, slot]});

    // A native session with the sequencer behind the gateway, watching the player's cell.
    let client = Client::connect(devnet.sequencer_addr(0))
        .await
        .expect("connects");
    let mut changes = client.changes();
    let mut retractions = client.retractions();
    client.subscribe(item).await.expect("subscribed");
    // A gateway subscriber watching the same cell.
    let provider = ProviderBuilder::new()
        .connect_ws(WsConnect::new(
            devnet.rpc.as_ref().expect("JSON-RPC").ws_url(),
        ))
        .await
        .expect("a WebSocket connection");
    let mut pushed = provider
        .subscribe::<_, serde_json::Value>(("tickrate_pendingState", [rpc_item.clone()]))
        .await
        .expect("eth_subscribe tickrate_pendingState");

    // An honest move to cell 5 executes; a move to 9 that declares 10 fails in execution; an
    // honest move to 7 follows, after the failure.
    let honest = client
        .submit_and_ack(move_piece(&key, devnet.chain_id, 0, 5))
        .await
        .expect("acked");
    assert_eq!(final_level(&client, honest).await, FinalityLevel::Executed);
    let lying = client
        .submit_and_ack(move_with_declaration(&key, devnet.chain_id, 1, 9, 10))
        .await
        .expect("acked: the sequencer does not execute");
    assert_eq!(
        final_level(&client, lying).await,
        FinalityLevel::Failed(FailureReason::WrongPostValue(item))
    );
    // The sequencer sends a result's retraction before the move's level: it is here already.
    let retraction = retractions
        .try_recv()
        .expect("the retraction came before the failure");
    assert_eq!(retraction.hash, lying);
    assert_eq!(
        retraction.reason,
        RetractionReason::Failed(FailureReason::WrongPostValue(item))
    );
    assert_eq!(
        retraction.corrected,
        vec![ItemValue {
            item,
            value: U256::from(5)
        }],
        "the cell is back where the executed move left it"
    );
    client
        .submit_and_ack(move_piece(&key, devnet.chain_id, 2, 7))
        .await
        .expect("acked");

    // Native: the value when subscribed, each admitted move's value, the corrected value at
    // the retraction's place, and nothing else; the one retraction only.
    let values = native_values_until(&mut changes, U256::from(7)).await;
    assert_eq!(
        values,
        [0u64, 5, 10, 5, 7].map(U256::from).to_vec(),
        "in order"
    );
    assert!(
        retractions.try_recv().is_err(),
        "exactly one retraction reached the native session"
    );

    // The gateway's subscriber: the same events in the same order.
    let mut events = Vec::new();
    loop {
        let event = tokio::time::timeout(LIVENESS_BOUND, pushed.recv())
            .await
            .expect("an event in time")
            .expect("the subscription stays open");
        let last = event["type"] == "changed" && event["value"] == "0x7";
        events.push(event);
        if last {
            break;
        }
    }
    let changed =
        |value: &str| serde_json::json!({"type": "changed", "item": rpc_item, "value": value});
    assert_eq!(events.len(), 5, "{events:#?}");
    assert_eq!(events[0], changed("0x0"));
    assert_eq!(events[1], changed("0x5"));
    assert_eq!(events[2], changed("0xa"));
    let retracted = &events[3];
    assert_eq!(retracted["type"], "retracted", "{events:#?}");
    assert_eq!(retracted["move"], serde_json::json!(lying));
    assert_eq!(retracted["reason"]["kind"], "failed");
    assert!(
        retracted["reason"]["failure"]
            .as_str()
            .is_some_and(|failure| failure.starts_with("WrongPostValue")),
        "{retracted}"
    );
    assert_eq!(
        retracted["corrected"],
        serde_json::json!([{"item": rpc_item, "value": "0x5"}])
    );
    assert_eq!(retracted["tick"], serde_json::json!(retraction.tick));
    assert_eq!(events[4], changed("0x7"));
}
