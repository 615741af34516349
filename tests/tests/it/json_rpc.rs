//! An Ethereum client, unchanged, drives the devnet through its Web3-compatible JSON-RPC:
//! alloy's HTTP provider with a local signer and its default fillers (chain id, nonce, gas,
//! EIP-1559 fees), as a wallet or a script would use it.

use std::time::Duration;

use alloy::{
    consensus::TxType,
    eips::BlockNumberOrTag,
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, B256, Bytes, U256},
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
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

    assert_eq!(
        provider
            .get_transaction_count(sender)
            .pending()
            .await
            .expect("pending nonce"),
        legacy_nonce + 2
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
