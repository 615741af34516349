//! An Ethereum client, unchanged, drives the devnet through its Web3-compatible JSON-RPC:
//! alloy's HTTP and WebSocket providers with a local signer and their default fillers (chain
//! id, nonce, gas, EIP-1559 fees), as a wallet or a script would use them.

use std::time::Duration;

use alloy::{
    consensus::{Transaction as _, TxType},
    eips::{
        BlockNumberOrTag,
        eip2930::{AccessList, AccessListItem},
    },
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, B256, Bytes, U256, keccak256},
    providers::{Provider, ProviderBuilder, WsConnect},
    rpc::types::{Filter, TransactionRequest},
    signers::local::PrivateKeySigner,
    transports::RpcError,
};
use sim::devnet::{Devnet, DevnetConfig};

/// Bounds how long a broken network can hang a test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

/// Runtime code that returns storage slot 0 as one 32-byte word, whatever the call:
/// `PUSH1 0 SLOAD PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN`.
const RUNTIME: [u8; 11] = [
    0x60, 0x00, 0x54, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3,
];

/// Creation code: stores 42 in slot 0, then returns [`RUNTIME`] (copied from after itself).
fn creation_code() -> Bytes {
    let mut code = vec![
        0x60, 0x2a, 0x60, 0x00, 0x55, // PUSH1 42 PUSH1 0 SSTORE
        0x60, 0x0b, 0x60, 0x11, 0x60, 0x00, 0x39, // CODECOPY(0, 17, 11)
        0x60, 0x0b, 0x60, 0x00, 0xf3, // RETURN(0, 11)
    ];
    assert_eq!(
        code.len(),
        0x11,
        "the runtime starts where CODECOPY reads it"
    );
    code.extend_from_slice(&RUNTIME);
    code.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_alloy_provider_transfers_deploys_calls_and_lists_accesses() {
    // reqwest is built without a bundled TLS provider in this workspace (one crypto stack,
    // ring); a process default must exist before the first client, as for any such program.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x11)).expect("a valid key");
    let sender = signer.address();
    let funds = U256::from(10u64).pow(U256::from(21u64));
    let devnet = Devnet::start(DevnetConfig {
        shard_nodes: 8,
        rpc_listen: Some(([127, 0, 0, 1], 0).into()),
        funded: vec![(sender, funds)],
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let url = devnet
        .rpc
        .as_ref()
        .expect("the devnet serves JSON-RPC")
        .http_url()
        .parse()
        .expect("a URL");
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url);

    assert_eq!(
        provider.get_chain_id().await.expect("eth_chainId"),
        devnet.chain_id
    );
    assert_eq!(
        provider
            .get_transaction_count(sender)
            .pending()
            .await
            .expect("pending nonce"),
        0
    );
    assert_eq!(provider.get_balance(sender).await.expect("balance"), funds);

    // An EIP-1559 transfer, fees and gas filled in by the provider.
    let recipient = Address::repeat_byte(0x22);
    let transfer = TransactionRequest::default()
        .with_to(recipient)
        .with_value(U256::from(1_000));
    let pending = provider
        .send_transaction(transfer)
        .await
        .expect("eth_sendRawTransaction");
    let hash = *pending.tx_hash();
    let receipt = tokio::time::timeout(LIVENESS_BOUND, pending.get_receipt())
        .await
        .expect("the transfer executes")
        .expect("a receipt");
    assert!(receipt.status(), "the transfer succeeded: {receipt:?}");
    assert_eq!(receipt.transaction_hash, hash);
    assert_eq!(receipt.from, sender);
    assert_eq!(receipt.to, Some(recipient));
    assert_eq!(receipt.gas_used, 21_000);
    // The hash the gateway returned is Ethereum's: keccak-256 of the signed envelope, which the
    // client recomputes from the transaction the gateway serves back.
    let served = provider
        .get_transaction_by_hash(hash)
        .await
        .expect("eth_getTransactionByHash")
        .expect("known");
    assert_eq!(*served.inner.tx_hash(), hash);
    assert_eq!(served.inner.signer(), sender);
    assert_eq!(served.inner.tx_type(), TxType::Eip1559);
    assert_eq!(
        provider.get_balance(recipient).await.expect("balance"),
        U256::from(1_000)
    );

    // A legacy transfer at a zero gas price (sponsored: fees are zero).
    let legacy = TransactionRequest::default()
        .with_to(recipient)
        .with_value(U256::from(5))
        .with_gas_price(0);
    let receipt = provider
        .send_transaction(legacy)
        .await
        .expect("legacy sent")
        .get_receipt()
        .await
        .expect("legacy receipt");
    assert!(receipt.status());
    assert_eq!(receipt.effective_gas_price, 0);
    let legacy_nonce = 1;

    // A contract deployment: the address is Ethereum's, from sender and nonce.
    let deployment = TransactionRequest::default().with_deploy_code(creation_code());
    let receipt = tokio::time::timeout(
        LIVENESS_BOUND,
        provider
            .send_transaction(deployment)
            .await
            .expect("deployment sent")
            .get_receipt(),
    )
    .await
    .expect("the deployment executes")
    .expect("a receipt");
    assert!(receipt.status(), "the deployment succeeded: {receipt:?}");
    let contract = receipt.contract_address.expect("a created address");
    assert_eq!(contract, sender.create(legacy_nonce + 1));
    assert_eq!(
        provider.get_code_at(contract).await.expect("eth_getCode"),
        Bytes::from(RUNTIME.to_vec())
    );
    assert_eq!(
        provider
            .get_storage_at(contract, U256::ZERO)
            .await
            .expect("eth_getStorageAt"),
        U256::from(42)
    );

    // A call to the contract, and its access list.
    let call = TransactionRequest::default()
        .with_from(sender)
        .with_to(contract);
    let output = provider.call(call.clone()).await.expect("eth_call");
    assert_eq!(U256::from_be_slice(&output), U256::from(42));
    let listed = provider
        .create_access_list(&call)
        .await
        .expect("eth_createAccessList");
    let entry = listed
        .access_list
        .0
        .iter()
        .find(|item| item.address == contract)
        .expect("the contract is listed");
    assert_eq!(entry.storage_keys, vec![B256::ZERO]);
    assert!(listed.gas_used > U256::from(21_000));

    // Transactions that bring their own EIP-2930 access list. A type-1 call to the contract
    // listing the slot it reads and an address and slot it never touches: the gateway's Space
    // Access List names all of them, and gas is Ethereum's (2,400 per listed address, 1,900
    // per listed slot, and the listed slot's first read is warm: 2,000 less).
    let unused = Address::repeat_byte(0x44);
    let own_list = AccessList(vec![
        AccessListItem {
            address: contract,
            storage_keys: vec![B256::ZERO],
        },
        AccessListItem {
            address: unused,
            storage_keys: vec![B256::repeat_byte(7)],
        },
    ]);
    let eip2930 = TransactionRequest::default()
        .with_to(contract)
        .with_gas_price(0)
        .with_access_list(own_list.clone());
    let receipt = tokio::time::timeout(
        LIVENESS_BOUND,
        provider
            .send_transaction(eip2930)
            .await
            .expect("a type-1 transaction with an access list is accepted")
            .get_receipt(),
    )
    .await
    .expect("it executes")
    .expect("a receipt");
    assert!(receipt.status(), "the type-1 call succeeded: {receipt:?}");
    assert_eq!(
        U256::from(receipt.gas_used),
        listed.gas_used + U256::from(2 * 2_400 + 2 * 1_900 - 2_000)
    );
    let served = provider
        .get_transaction_by_hash(receipt.transaction_hash)
        .await
        .expect("eth_getTransactionByHash")
        .expect("known");
    assert_eq!(served.inner.tx_type(), TxType::Eip2930);
    assert_eq!(served.inner.access_list(), Some(&own_list));
    assert_eq!(*served.inner.tx_hash(), receipt.transaction_hash);

    // A type-2 transfer with a list naming the recipient: 21,000 + 2,400.
    let eip1559 = TransactionRequest::default()
        .with_to(recipient)
        .with_value(U256::from(7))
        .with_access_list(AccessList(vec![AccessListItem {
            address: recipient,
            storage_keys: vec![],
        }]));
    let receipt = tokio::time::timeout(
        LIVENESS_BOUND,
        provider
            .send_transaction(eip1559)
            .await
            .expect("a type-2 transaction with an access list is accepted")
            .get_receipt(),
    )
    .await
    .expect("it executes")
    .expect("a receipt");
    assert!(
        receipt.status(),
        "the type-2 transfer succeeded: {receipt:?}"
    );
    assert_eq!(receipt.gas_used, 21_000 + 2_400);
    assert_eq!(receipt.inner.tx_type(), TxType::Eip1559);
    assert_eq!(
        provider.get_balance(recipient).await.expect("balance"),
        U256::from(1_000 + 5 + 7)
    );

    assert_eq!(
        provider
            .get_transaction_count(sender)
            .pending()
            .await
            .expect("pending nonce"),
        legacy_nonce + 4
    );
    let head = provider.get_block_number().await.expect("eth_blockNumber");
    let block = provider
        .get_block_by_number(BlockNumberOrTag::Number(
            receipt.block_number.expect("mined"),
        ))
        .await
        .expect("eth_getBlockByNumber")
        .expect("kept");
    assert!(head >= block.header.number);
    assert!(
        block
            .transactions
            .hashes()
            .any(|listed| listed == receipt.transaction_hash)
    );
}

/// The event [`COUNTER_RUNTIME`] emits: `Bumped(uint256)`.
fn bumped_topic() -> B256 {
    keccak256(b"Bumped(uint256)")
}

/// Runtime code of a counter: every call adds one to slot 0 and emits `Bumped(value)` (LOG1,
/// the new value as data): `PUSH1 0 SLOAD PUSH1 1 ADD DUP1 PUSH1 0 SSTORE PUSH1 0 MSTORE
/// PUSH32 topic PUSH1 32 PUSH1 0 LOG1 STOP`.
fn counter_runtime() -> Vec<u8> {
    let mut code = vec![
        0x60, 0x00, 0x54, 0x60, 0x01, 0x01, 0x80, 0x60, 0x00, 0x55, 0x60, 0x00, 0x52, 0x7f,
    ];
    code.extend_from_slice(bumped_topic().as_slice());
    code.extend_from_slice(&[0x60, 0x20, 0x60, 0x00, 0xa1, 0x00]);
    code
}

/// Creation code returning [`counter_runtime`] (copied from after itself).
fn counter_creation_code() -> Bytes {
    let runtime = counter_runtime();
    let length = u8::try_from(runtime.len()).expect("a short runtime");
    let mut code = vec![
        0x60, length, 0x60, 0x0c, 0x60, 0x00, 0x39, // CODECOPY(0, 12, length)
        0x60, length, 0x60, 0x00, 0xf3, // RETURN(0, length)
    ];
    assert_eq!(
        code.len(),
        0x0c,
        "the runtime starts where CODECOPY reads it"
    );
    code.extend_from_slice(&runtime);
    code.into()
}

/// Over WebSocket: `newHeads` and `logs` subscriptions (by address and topic) see the heads and
/// a contract's events as moves execute; moves sent back to back, each reading the slot the one
/// before writes, are estimated against the pending writes and all succeed; `eth_getLogs` over
/// a block range returns the same logs and refuses a range beyond its bound (-32005).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alloy_websocket_provider_subscribes_to_heads_and_logs() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x12)).expect("a valid key");
    let sender = signer.address();
    let devnet = Devnet::start(DevnetConfig {
        shard_nodes: 8,
        rpc_listen: Some(([127, 0, 0, 1], 0).into()),
        funded: vec![(sender, U256::from(10u64).pow(U256::from(21u64)))],
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let url = devnet.rpc.as_ref().expect("JSON-RPC").ws_url();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_ws(WsConnect::new(url))
        .await
        .expect("a WebSocket connection");

    let deployment = TransactionRequest::default().with_deploy_code(counter_creation_code());
    let receipt = tokio::time::timeout(
        LIVENESS_BOUND,
        provider
            .send_transaction(deployment)
            .await
            .expect("deployment sent")
            .get_receipt(),
    )
    .await
    .expect("the deployment executes")
    .expect("a receipt");
    assert!(receipt.status(), "the deployment succeeded: {receipt:?}");
    let counter = receipt.contract_address.expect("a created address");
    let deployed_in = receipt.block_number.expect("mined");

    let mut heads = provider
        .subscribe_blocks()
        .await
        .expect("eth_subscribe newHeads");
    let filter = Filter::new()
        .address(counter)
        .event_signature(bumped_topic());
    let mut logs = provider
        .subscribe_logs(&filter)
        .await
        .expect("eth_subscribe logs");

    // Three bumps sent back to back, without waiting for receipts: each is acked while the
    // ones before it are still pending, so the gateway estimates each against their writes.
    const BUMPS: u64 = 3;
    let mut pending = Vec::new();
    for _ in 0..BUMPS {
        let bump = TransactionRequest::default().with_to(counter);
        pending.push(provider.send_transaction(bump).await.expect("bump sent"));
    }
    let mut hashes = Vec::new();
    let mut last_block = 0;
    for sent in pending {
        let receipt = tokio::time::timeout(LIVENESS_BOUND, sent.get_receipt())
            .await
            .expect("the bump executes")
            .expect("a receipt");
        assert!(receipt.status(), "every bump succeeded: {receipt:?}");
        hashes.push(receipt.transaction_hash);
        last_block = last_block.max(receipt.block_number.expect("mined"));
    }
    assert_eq!(
        provider
            .get_storage_at(counter, U256::ZERO)
            .await
            .expect("eth_getStorageAt"),
        U256::from(BUMPS)
    );

    // Each bump's event came through the logs subscription, in order, with its value.
    let mut pushed = Vec::new();
    for expected in 1..=BUMPS {
        let log = tokio::time::timeout(LIVENESS_BOUND, logs.recv())
            .await
            .expect("a log is pushed")
            .expect("the subscription is open");
        assert_eq!(log.address(), counter);
        assert_eq!(log.topics(), &[bumped_topic()]);
        assert_eq!(U256::from_be_slice(&log.data().data), U256::from(expected));
        pushed.push(log);
    }
    assert_eq!(
        pushed
            .iter()
            .map(|log| log.transaction_hash.expect("a transaction"))
            .collect::<Vec<_>>(),
        hashes
    );
    // New heads keep coming, up to the last bump's block at least.
    let mut seen_head = 0;
    while seen_head < last_block {
        let head = tokio::time::timeout(LIVENESS_BOUND, heads.recv())
            .await
            .expect("a head is pushed")
            .expect("the subscription is open");
        assert!(head.number > seen_head, "heads in order");
        seen_head = head.number;
    }

    // eth_getLogs over the blocks since the deployment: the same logs.
    let ranged = provider
        .get_logs(&filter.clone().from_block(deployed_in).to_block(last_block))
        .await
        .expect("eth_getLogs");
    assert_eq!(ranged, pushed);
    let other_topic = Filter::new()
        .address(counter)
        .event_signature(keccak256(b"Other()"))
        .from_block(deployed_in);
    assert!(
        provider
            .get_logs(&other_topic)
            .await
            .expect("eth_getLogs")
            .is_empty()
    );
    let too_wide = provider
        .get_logs(&filter.from_block(0).to_block(100_000))
        .await
        .expect_err("too wide a range is refused");
    match too_wide {
        RpcError::ErrorResp(payload) => assert_eq!(payload.code, -32005, "{payload:?}"),
        other => panic!("a JSON-RPC error: {other:?}"),
    }
}

/// The gateway keeps serving across a restart of its sequencer: while the core is down, a
/// transaction is refused at once (-32603); once the devnet restarts it, the gateway's link
/// points at the new core and transactions are acked and executed, with receipts, again.
///
/// The transaction after the restart comes from a second sender: a restarted core's pending
/// state knows only what executed after it started, so it takes the first sender's next nonce
/// (1) for "too high" (next nonce 0) until that sender's account executes again. That is the
/// sequencer's restart, not the gateway's; this test does not depend on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_its_sequencer_through_a_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let before = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x13)).expect("a valid key");
    let after = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x14)).expect("a valid key");
    let funds = U256::from(10u64).pow(U256::from(21u64));
    let mut devnet = Devnet::start(DevnetConfig {
        shard_nodes: 8,
        wal: true,
        rpc_listen: Some(([127, 0, 0, 1], 0).into()),
        funded: vec![(before.address(), funds), (after.address(), funds)],
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let url = devnet.rpc.as_ref().expect("JSON-RPC").http_url();
    let provider_before = ProviderBuilder::new()
        .wallet(EthereumWallet::from(before))
        .connect_http(url.parse().expect("a URL"));
    let provider_after = ProviderBuilder::new()
        .wallet(EthereumWallet::from(after.clone()))
        .connect_http(url.parse().expect("a URL"));
    let recipient = Address::repeat_byte(0x23);
    let transfer = |value: u64| {
        TransactionRequest::default()
            .with_to(recipient)
            .with_value(U256::from(value))
    };

    let receipt = tokio::time::timeout(
        LIVENESS_BOUND,
        provider_before
            .send_transaction(transfer(1))
            .await
            .expect("sent")
            .get_receipt(),
    )
    .await
    .expect("executes")
    .expect("a receipt");
    assert!(receipt.status());

    devnet.crash_sequencer(0).await.expect("crashes");
    let refused = provider_after
        .send_transaction(transfer(2).with_nonce(0).with_gas_limit(21_000))
        .await
        .expect_err("no sequencer behind the gateway");
    match refused {
        RpcError::ErrorResp(payload) => assert_eq!(payload.code, -32603, "{payload:?}"),
        other => panic!("a JSON-RPC error: {other:?}"),
    }
    devnet.restart_sequencer(0).await.expect("restarts");

    let receipt = tokio::time::timeout(
        LIVENESS_BOUND,
        provider_after
            .send_transaction(transfer(3))
            .await
            .expect("sent through the restarted sequencer")
            .get_receipt(),
    )
    .await
    .expect("executes")
    .expect("a receipt");
    assert!(receipt.status(), "{receipt:?}");
    assert_eq!(receipt.from, after.address());
    assert_eq!(
        provider_after
            .get_transaction_count(after.address())
            .pending()
            .await
            .expect("pending nonce"),
        1
    );
    assert_eq!(
        provider_after
            .get_balance(recipient)
            .await
            .expect("balance"),
        U256::from(1 + 3)
    );
}
