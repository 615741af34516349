//! The `Registry` contract on any Ethereum JSON-RPC endpoint, through alloy.
//!
//! [`EvmChain`] implements [`UpperChain`] by calling the contract (`contracts/Registry.sol`,
//! deployed from the committed `contracts/Registry.bin`). The calls carry the same signatures
//! and certificates the embedded chain checks; the contract checks them by `ecrecover` and the
//! EIP-2537 precompiles, so the transaction's sender (the configured key, which pays the gas)
//! need not be the node: an operator sending with its own node key is the common case.
//!
//! Every write is simulated with `eth_call` first, so a refusal comes back as the contract's
//! custom error, mapped to the [`ChainError`] the embedded chain returns, and costs no gas; only
//! then is the transaction signed, sent and waited for. Writes through one `EvmChain` are
//! serialized, so each takes the sender's pending nonce and a refused call never leaves a gap.
//!
//! The interface is synchronous and alloy is async: the adapter owns a small tokio runtime and
//! runs each call on it, waiting on a channel. It may be called from inside another tokio
//! runtime (it blocks that thread for the round trip, as any synchronous call does).

use std::{future::Future, time::Duration};

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    primitives::Bytes,
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{
        client::RpcClient,
        types::{Filter, TransactionReceipt, TransactionRequest},
    },
    signers::local::PrivateKeySigner,
    sol_types::{SolCall, SolEvent, SolInterface},
    transports::TransportError,
};
use parking_lot::Mutex;
use primitives::{
    AccountKey, Address, B256, NodeId, Signature, SignatureError, U256,
    bls::{BlsError, BlsPublicKey, BlsSignature, Certificate},
    pbft::{EquivocationEvidence, EvidenceError, EvidenceKind, PbftSignature, Scheme, Signed},
    preconf::{PreconfirmationEvidence, SignedPreconfirmation},
};
use tracing::{debug, info};

use crate::{
    AdminOp, ChainError, Departure, DepartureKind, DepartureProof, Deposit, GroupDecision,
    GroupRootCommitment, NodeRecord, Registration, RegistrySnapshot, SequencerCandidate,
    SequencerEpoch, SequencerRecord, SponsorPolicyRecord, SponsorPolicyUpdate, SyncedRoot,
    UpperChain, WalletChange, WalletUpdate, wallet_as_of,
};

mod bindings {
    // Generated from the committed ABI; the generated items carry no docs.
    #![allow(missing_docs, clippy::too_many_arguments)]
    alloy::sol!(
        #[sol(all_derives)]
        Registry,
        "contracts/Registry.abi.json"
    );
}

use bindings::Registry;

/// The contract's creation bytecode (hex), as `scripts/compile-contract.sh` wrote it.
const REGISTRY_BIN: &str = include_str!("../contracts/Registry.bin");

/// How to reach the `Registry` contract on an EVM chain.
#[derive(Clone, Debug)]
pub struct EvmConfig {
    /// The JSON-RPC endpoint, `http://` or `https://`.
    pub url: String,
    /// The chain id the endpoint must serve (31337 for the Hardhat dev node).
    pub chain_id: u64,
    /// Where the `Registry` contract is deployed.
    pub registry: Address,
    /// The key that signs and pays for transactions (an operator's node key, or any funded key:
    /// the contract authorizes by the signatures inside the calls, not by the sender).
    pub sender: AccountKey,
    /// Deposits are read this many blocks behind the head, so a reorganization shallower than
    /// this never takes back a deposit the bridge has seen. 0 on a dev node.
    pub deposit_confirmations: u64,
    /// The block the contract was deployed in: deposits are looked for from there on.
    pub deploy_block: u64,
    /// The widest block range of one `eth_getLogs` request (public endpoints limit it).
    pub log_range_blocks_max: u64,
    /// How long one JSON-RPC request may take.
    pub request_timeout: Duration,
    /// How long to wait for a sent transaction's receipt.
    pub receipt_timeout: Duration,
}

impl EvmConfig {
    /// A configuration with the defaults: no deposit confirmations, deposits from block 0,
    /// 10,000-block log ranges, 30 s requests and 120 s receipts.
    pub fn new(
        url: impl Into<String>,
        chain_id: u64,
        registry: Address,
        sender: AccountKey,
    ) -> Self {
        EvmConfig {
            url: url.into(),
            chain_id,
            registry,
            sender,
            deposit_confirmations: 0,
            deploy_block: 0,
            log_range_blocks_max: 10_000,
            request_timeout: Duration::from_secs(30),
            receipt_timeout: Duration::from_secs(120),
        }
    }
}

/// Deposits read from the contract's `Deposited` logs so far.
#[derive(Debug, Default)]
struct DepositLog {
    /// The first block not scanned yet.
    next_block: u64,
    /// Every deposit in blocks before `next_block`, by index.
    deposits: Vec<Deposit>,
}

/// The wallet history read from the contract's logs so far. The contract keeps only each
/// node's current wallet; its `NodeRegistered`, `NodeWalletUpdated` and `EpochAdvanced` logs,
/// in order, say which wallet was in force in every epoch.
#[derive(Debug, Default)]
struct WalletLog {
    /// The first block not scanned yet.
    next_block: u64,
    /// The contract's epoch after the blocks scanned (it starts at 0 and only counts up).
    epoch: u64,
    /// Each node's wallet and features as registered.
    registered: std::collections::BTreeMap<NodeId, (Address, Vec<String>)>,
    /// Each node's wallet changes, by the epoch they take effect.
    changes: std::collections::BTreeMap<NodeId, Vec<WalletChange>>,
}

/// The `Registry` contract on an Ethereum JSON-RPC endpoint (see the module doc).
pub struct EvmChain {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    provider: DynProvider,
    config: EvmConfig,
    /// Serializes writes: each takes the sender's pending nonce.
    writes: Mutex<()>,
    deposits: Mutex<DepositLog>,
    wallets: Mutex<WalletLog>,
}

impl std::fmt::Debug for EvmChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmChain")
            .field("url", &self.config.url)
            .field("chain_id", &self.config.chain_id)
            .field("registry", &self.config.registry)
            .field("sender", &self.config.sender.address())
            .finish()
    }
}

impl Drop for EvmChain {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime: let it go instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn rpc(what: &str, error: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(format!("{what}: {error}"))
}

/// The runtime the adapter's futures run on.
fn new_runtime() -> Result<tokio::runtime::Runtime, ChainError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("upper-chain-evm")
        .enable_all()
        .build()
        .map_err(|e| rpc("start the adapter's runtime", e))
}

/// Runs `future` on `runtime` and waits for it from this (synchronous) thread.
fn run_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = Result<T, ChainError>> + Send + 'static,
) -> Result<T, ChainError> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        // The receiver waits for this; it is gone only if the caller panicked.
        let _ = done.send(future.await);
    });
    result
        .recv()
        .map_err(|_| ChainError::Rpc("the adapter's task panicked".into()))?
}

/// An HTTP provider for `url` whose transactions `sender` signs.
fn provider(
    url: &str,
    sender: &AccountKey,
    request_timeout: Duration,
) -> Result<DynProvider, ChainError> {
    let parsed: reqwest::Url = url.parse().map_err(|_| ChainError::BadUrl(url.into()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ChainError::BadUrl(url.into()));
    }
    // https goes through rustls on ring, the workspace's one TLS stack; installing it twice is
    // harmless (the first wins).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(request_timeout)
        .build()
        .map_err(|e| ChainError::Unreachable {
            url: url.into(),
            reason: format!("HTTP client: {e}"),
        })?;
    let signer = PrivateKeySigner::from_bytes(&B256::from(sender.secret_bytes()))
        .map_err(|e| rpc("sender key", e))?;
    // Gas estimation and the pending nonce per transaction, not a cached nonce: a failed send
    // must not leave a gap that stalls every later transaction.
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_client(RpcClient::new_http_with_client(client, parsed))
        .erased())
}

/// Checks that the endpoint answers and serves `expected`.
async fn check_chain_id(
    provider: &DynProvider,
    url: &str,
    expected: u64,
) -> Result<(), ChainError> {
    let got = provider
        .get_chain_id()
        .await
        .map_err(|e| ChainError::Unreachable {
            url: url.into(),
            reason: e.to_string(),
        })?;
    if got != expected {
        return Err(ChainError::WrongChainId { expected, got });
    }
    Ok(())
}

impl EvmChain {
    /// Connects to the contract: the endpoint must answer, serve `config.chain_id`, and hold
    /// code at `config.registry`.
    pub fn connect(config: EvmConfig) -> Result<Self, ChainError> {
        let runtime = new_runtime()?;
        let provider = provider(&config.url, &config.sender, config.request_timeout)?;
        {
            let provider = provider.clone();
            let url = config.url.clone();
            let (chain_id, registry) = (config.chain_id, config.registry);
            run_on(&runtime, async move {
                check_chain_id(&provider, &url, chain_id).await?;
                let code = provider
                    .get_code_at(registry)
                    .await
                    .map_err(|e| rpc("eth_getCode", e))?;
                if code.is_empty() {
                    return Err(ChainError::NoContract(registry));
                }
                Ok(())
            })?;
        }
        info!(
            target: "upper_chain::evm",
            url = %config.url, chain_id = config.chain_id, registry = %config.registry,
            sender = %config.sender.address(), "connected to the Registry contract"
        );
        let config_deploy_block = config.deploy_block;
        let deposits = DepositLog {
            next_block: config.deploy_block,
            deposits: Vec::new(),
        };
        Ok(EvmChain {
            runtime: Some(runtime),
            provider,
            config,
            writes: Mutex::new(()),
            deposits: Mutex::new(deposits),
            wallets: Mutex::new(WalletLog {
                next_block: config_deploy_block,
                ..WalletLog::default()
            }),
        })
    }

    /// Deploys a `Registry` from the committed bytecode with `admin`, `stake_cap` and
    /// sequencer epochs of `sequencer_epoch_length` sequences (`None`: no epochs), sent by
    /// `sender`; returns its address and the block it was deployed in.
    pub fn deploy(
        url: &str,
        chain_id: u64,
        sender: &AccountKey,
        admin: Address,
        stake_cap: u128,
        sequencer_epoch_length: Option<u64>,
    ) -> Result<(Address, u64), ChainError> {
        let runtime = new_runtime()?;
        let provider = provider(url, sender, Duration::from_secs(30))?;
        let url = url.to_string();
        let from = sender.address();
        let result = run_on(&runtime, async move {
            check_chain_id(&provider, &url, chain_id).await?;
            let mut code = alloy::hex::decode(REGISTRY_BIN.trim())
                .map_err(|e| rpc("the committed Registry.bin", e))?;
            code.extend_from_slice(&alloy::sol_types::SolConstructor::abi_encode(
                &Registry::constructorCall {
                    admin_: admin,
                    stakeCap_: stake_cap,
                    sequencerEpochLength_: sequencer_epoch_length.unwrap_or(0),
                },
            ));
            let tx = TransactionRequest::default()
                .with_from(from)
                .with_deploy_code(code);
            let receipt = provider
                .send_transaction(tx)
                .await
                .map_err(|e| rpc("deploy the Registry", e))?
                .with_timeout(Some(Duration::from_secs(120)))
                .get_receipt()
                .await
                .map_err(|e| rpc("deploy the Registry", e))?;
            let address = receipt
                .contract_address
                .filter(|_| receipt.status())
                .ok_or_else(|| ChainError::Reverted("the Registry deployment failed".into()))?;
            Ok((address, receipt.block_number.unwrap_or_default()))
        });
        runtime.shutdown_background();
        result
    }

    /// The configuration.
    pub fn config(&self) -> &EvmConfig {
        &self.config
    }

    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, ChainError>> + Send + 'static,
    ) -> Result<T, ChainError> {
        run_on(
            self.runtime
                .as_ref()
                .expect("the runtime lives until the adapter is dropped"),
            future,
        )
    }

    /// Calls a view of the contract.
    fn view<C>(&self, call: C) -> Result<C::Return, ChainError>
    where
        C: SolCall + Send + 'static,
        C::Return: Send + 'static,
    {
        let provider = self.provider.clone();
        let registry = self.config.registry;
        self.run(async move { view(&provider, registry, call).await })
    }

    /// Simulates, sends and waits for a call to the contract. `signed` is the signature inside
    /// the call and the hash it signs, to report a bad signature exactly as the embedded chain.
    fn transact<C: SolCall + Send + 'static>(
        &self,
        call: C,
        value: U256,
        signed: Option<(&Signature, B256)>,
    ) -> Result<TransactionReceipt, ChainError> {
        let signature_error =
            signed.and_then(|(signature, hash)| signature.recover_address(&hash).err());
        let provider = self.provider.clone();
        let tx = TransactionRequest::default()
            .with_from(self.config.sender.address())
            .with_to(self.config.registry)
            .with_input(call.abi_encode())
            .with_value(value);
        let timeout = self.config.receipt_timeout;
        let _serialized = self.writes.lock();
        self.run(async move {
            provider
                .call(tx.clone())
                .await
                .map_err(|e| refusal(C::SIGNATURE, &e, signature_error.clone()))?;
            let pending = provider
                .send_transaction(tx)
                .await
                .map_err(|e| refusal(C::SIGNATURE, &e, signature_error))?;
            let hash = *pending.tx_hash();
            let receipt = pending
                .with_timeout(Some(timeout))
                .get_receipt()
                .await
                .map_err(|e| rpc(&format!("{} receipt of {hash}", C::SIGNATURE), e))?;
            if !receipt.status() {
                // The simulation passed, so the chain changed in between (another sender).
                return Err(ChainError::Reverted(format!(
                    "{} in transaction {hash}",
                    C::SIGNATURE
                )));
            }
            debug!(target: "upper_chain::evm", call = C::SIGNATURE, %hash, gas = receipt.gas_used, "mined");
            Ok(receipt)
        })
    }

    /// A bridge deposit by the sender of `amount` wei for `recipient` (what a user's deposit
    /// transaction does); returns it with its index.
    pub fn deposit(&self, recipient: Address, amount: U256) -> Result<Deposit, ChainError> {
        let receipt = self.transact(Registry::depositCall { recipient }, amount, None)?;
        receipt
            .logs()
            .iter()
            .filter(|log| log.address() == self.config.registry)
            .find_map(|log| log.log_decode::<Registry::Deposited>().ok())
            .map(|log| deposit_of(&log.inner.data))
            .ok_or_else(|| rpc("deposit", "no Deposited event in the receipt"))
    }

    /// Sends `amount` wei from the sender to `recipient`, with `memo` as the transaction's input
    /// (a payout names itself there, so the transfer can be found by it later); returns the
    /// transaction hash once it is mined.
    pub fn transfer(
        &self,
        recipient: Address,
        amount: U256,
        memo: Vec<u8>,
    ) -> Result<B256, ChainError> {
        let provider = self.provider.clone();
        let tx = TransactionRequest::default()
            .with_from(self.config.sender.address())
            .with_to(recipient)
            .with_input(Bytes::from(memo))
            .with_value(amount);
        let timeout = self.config.receipt_timeout;
        let _serialized = self.writes.lock();
        self.run(async move {
            let pending = provider
                .send_transaction(tx)
                .await
                .map_err(|e| rpc("value transfer", e))?;
            let hash = *pending.tx_hash();
            let receipt = pending
                .with_timeout(Some(timeout))
                .get_receipt()
                .await
                .map_err(|e| rpc(&format!("receipt of transfer {hash}"), e))?;
            if !receipt.status() {
                return Err(ChainError::Reverted(format!("value transfer {hash}")));
            }
            debug!(target: "upper_chain::evm", %hash, %recipient, %amount, "transfer mined");
            Ok(hash)
        })
    }

    /// The balance of `account` in wei, at the latest block.
    pub fn balance(&self, account: Address) -> Result<U256, ChainError> {
        let provider = self.provider.clone();
        self.run(async move {
            provider
                .get_balance(account)
                .await
                .map_err(|e| rpc("eth_getBalance", e))
        })
    }

    /// Brings `log` up to the head: every registration, wallet update and epoch advance in
    /// blocks not scanned yet, applied in order. A wallet update takes effect in the epoch
    /// after the one it was made in (see [`UpperChain::update_wallet`]).
    fn scan_wallets(&self, log: &mut WalletLog) -> Result<(), ChainError> {
        let provider = self.provider.clone();
        let registry = self.config.registry;
        let range = self.config.log_range_blocks_max.max(1);
        let from = log.next_block;
        let (next_block, logs) = self.run(async move {
            let head = provider
                .get_block_number()
                .await
                .map_err(|e| rpc("eth_blockNumber", e))?;
            let mut found = Vec::new();
            let mut start = from;
            while start <= head {
                let end = head.min(start.saturating_add(range - 1));
                let filter = Filter::new()
                    .address(registry)
                    .event_signature(vec![
                        Registry::NodeRegistered::SIGNATURE_HASH,
                        Registry::NodeWalletUpdated::SIGNATURE_HASH,
                        Registry::EpochAdvanced::SIGNATURE_HASH,
                    ])
                    .from_block(start)
                    .to_block(end);
                found.extend(
                    provider
                        .get_logs(&filter)
                        .await
                        .map_err(|e| rpc("eth_getLogs", e))?,
                );
                start = end + 1;
            }
            found.sort_by_key(|log| (log.block_number, log.log_index));
            Ok((head.max(from.saturating_sub(1)) + 1, found))
        })?;
        for entry in logs {
            if entry.removed {
                continue;
            }
            match entry.topic0() {
                Some(topic) if *topic == Registry::EpochAdvanced::SIGNATURE_HASH => {
                    let advanced = entry
                        .log_decode::<Registry::EpochAdvanced>()
                        .map_err(|e| rpc("EpochAdvanced log", e))?;
                    log.epoch = advanced.inner.data.epoch;
                }
                Some(topic) if *topic == Registry::NodeRegistered::SIGNATURE_HASH => {
                    let registered = entry
                        .log_decode::<Registry::NodeRegistered>()
                        .map_err(|e| rpc("NodeRegistered log", e))?;
                    let data = registered.inner.data;
                    log.registered
                        .insert(NodeId(data.node), (data.rewardWallet, data.features));
                }
                Some(topic) if *topic == Registry::NodeWalletUpdated::SIGNATURE_HASH => {
                    let updated = entry
                        .log_decode::<Registry::NodeWalletUpdated>()
                        .map_err(|e| rpc("NodeWalletUpdated log", e))?;
                    let data = updated.inner.data;
                    // Registrations take effect in the next epoch too: never before the first.
                    let from_epoch = log.epoch + 1;
                    let changes = log.changes.entry(NodeId(data.node)).or_default();
                    changes.retain(|earlier| earlier.from_epoch != from_epoch);
                    changes.push(WalletChange {
                        from_epoch,
                        reward_wallet: data.rewardWallet,
                        wallet_features: data.features,
                    });
                }
                _ => {}
            }
        }
        log.next_block = next_block;
        Ok(())
    }

    /// Reads the `Deposited` logs up to the safe head, checking the count against the
    /// contract's `depositCount` there (a provider that drops a log is caught, not trusted).
    fn scan_deposits(&self, log: &mut DepositLog) -> Result<(), ChainError> {
        let provider = self.provider.clone();
        let registry = self.config.registry;
        let confirmations = self.config.deposit_confirmations;
        let range = self.config.log_range_blocks_max.max(1);
        let from = log.next_block;
        let known = log.deposits.len() as u64;
        let (next_block, found) = self.run(async move {
            let head = provider
                .get_block_number()
                .await
                .map_err(|e| rpc("eth_blockNumber", e))?;
            let Some(safe) = head.checked_sub(confirmations) else {
                return Ok((from, Vec::new()));
            };
            if safe < from {
                return Ok((from, Vec::new()));
            }
            let mut found: Vec<Deposit> = Vec::new();
            let mut start = from;
            while start <= safe {
                let end = safe.min(start.saturating_add(range - 1));
                let filter = Filter::new()
                    .address(registry)
                    .event_signature(Registry::Deposited::SIGNATURE_HASH)
                    .from_block(start)
                    .to_block(end);
                let logs = provider
                    .get_logs(&filter)
                    .await
                    .map_err(|e| rpc("eth_getLogs", e))?;
                for log in logs {
                    if log.removed {
                        return Err(rpc("eth_getLogs", "a removed log below the safe head"));
                    }
                    let decoded = log
                        .log_decode::<Registry::Deposited>()
                        .map_err(|e| rpc("Deposited log", e))?;
                    let deposit = deposit_of(&decoded.inner.data);
                    let expected = known + found.len() as u64;
                    if deposit.index != expected {
                        return Err(rpc(
                            "eth_getLogs",
                            format!("deposit {} where {expected} was next", deposit.index),
                        ));
                    }
                    found.push(deposit);
                }
                start = end + 1;
            }
            let count = provider
                .call(
                    TransactionRequest::default()
                        .with_to(registry)
                        .with_input(Registry::depositCountCall {}.abi_encode()),
                )
                .block(safe.into())
                .await
                .map_err(|e| rpc("depositCount", e))?;
            let count = Registry::depositCountCall::abi_decode_returns(&count)
                .map_err(|e| rpc("depositCount", e))?;
            if count != known + found.len() as u64 {
                return Err(rpc(
                    "eth_getLogs",
                    format!(
                        "{} deposit logs up to block {safe}, but the contract counts {count}",
                        known + found.len() as u64
                    ),
                ));
            }
            Ok((safe + 1, found))
        })?;
        log.next_block = next_block;
        log.deposits.extend(found);
        Ok(())
    }
}

/// Calls a view of the contract at `registry`.
async fn view<C: SolCall>(
    provider: &DynProvider,
    registry: Address,
    call: C,
) -> Result<C::Return, ChainError> {
    let tx = TransactionRequest::default()
        .with_to(registry)
        .with_input(call.abi_encode());
    let answer = provider
        .call(tx)
        .await
        .map_err(|e| refusal(C::SIGNATURE, &e, None))?;
    C::abi_decode_returns(&answer)
        .map_err(|e| rpc(C::SIGNATURE, format!("undecodable answer: {e}")))
}

fn deposit_of(event: &Registry::Deposited) -> Deposit {
    Deposit {
        index: event.index,
        from: event.from,
        recipient: event.recipient,
        amount: event.amount,
    }
}

fn count(value: U256) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The [`ChainError`] for a request the endpoint refused: the contract's custom error if it
/// reverted with one, else an RPC failure.
fn refusal(
    what: &str,
    error: &TransportError,
    signature_error: Option<SignatureError>,
) -> ChainError {
    use Registry::RegistryErrors as E;
    let Some(payload) = error.as_error_resp() else {
        return rpc(what, error);
    };
    let Some(data) = payload.as_revert_data() else {
        return rpc(what, error);
    };
    let Ok(decoded) = E::abi_decode(&data) else {
        return ChainError::Reverted(format!("{what}: {}", payload.message));
    };
    match decoded {
        E::BadSignature(_) => {
            ChainError::BadSignature(signature_error.unwrap_or(SignatureError::Unrecoverable))
        }
        E::AlreadyRegistered(e) => ChainError::AlreadyRegistered(NodeId(e.node)),
        E::BlsKeyTaken(_) => ChainError::BlsKeyTaken,
        E::BadPossession(_) => ChainError::BadPossession,
        E::BadKeyEncoding(_) => ChainError::Reverted(format!("{what}: BLS key encoding refused")),
        E::TooFewSigners(e) => ChainError::BadCertificate(BlsError::TooFewSigners {
            signers: count(e.signers),
            quorum: count(e.quorum),
        }),
        E::UnknownSigner(e) => ChainError::BadCertificate(BlsError::UnknownSigner {
            index: count(e.index),
            validators: count(e.validators),
        }),
        E::BadBlsSignature(_) => ChainError::BadCertificate(BlsError::BadSignature),
        E::BatchOutOfOrder(e) => ChainError::BatchOutOfOrder {
            expected: e.expected,
            got: e.got,
        },
        E::UnknownMember(e) => ChainError::UnknownMember(NodeId(e.node)),
        E::DuplicateMember(e) => ChainError::DuplicateMember(NodeId(e.node)),
        E::NotRegistered(e) => ChainError::NotRegistered(NodeId(e.node)),
        E::WrongSigner(e) => ChainError::WrongSigner {
            node: NodeId(e.node),
            signer: e.signer,
        },
        E::NotAdmin(e) => ChainError::NotAdmin(e.signer),
        E::StakeCapExceeded(e) => ChainError::StakeCapExceeded {
            stake: e.stake,
            cap: e.cap,
        },
        E::UnknownSequencer(e) => ChainError::UnknownSequencer(NodeId(e.id)),
        E::AlreadyWhitelisted(e) => ChainError::AlreadyWhitelisted(NodeId(e.id)),
        E::BadRotation(e) => ChainError::BadRotation {
            size: e.size,
            candidates: e.candidates,
        },
        E::BadEpoch(e) => ChainError::BadEpoch {
            got: e.got,
            current: e.current,
        },
        E::Stale(e) => ChainError::Stale {
            recorded: e.recorded,
            got: e.got,
        },
        E::AlreadyDeparted(e) => ChainError::AlreadyDeparted(NodeId(e.node)),
        E::BadDepartureProof(_) => ChainError::BadDepartureProof,
        E::EquivocationRecorded(e) => ChainError::EquivocationRecorded(NodeId(e.offender)),
        E::Expelled(e) => ChainError::Expelled(NodeId(e.id)),
        E::EvidenceNotCanonical(_) => ChainError::InvalidEvidence(EvidenceError::NotCanonical),
        E::BadEvidenceSignature(_) => ChainError::InvalidEvidence(EvidenceError::BadSignature),
        E::BadWalletNonce(e) => ChainError::WalletNonce {
            expected: e.expected,
            got: e.got,
        },
        E::UnknownSequencerEpoch(e) => ChainError::UnknownSequencerEpoch(e.epoch),
        E::BadCommitMessage(_) => ChainError::BadCommitMessage,
    }
}

/// A G1 point (public key) in the EIP-2537 encoding: x and y, each in 64 bytes.
pub(crate) fn g1_eip2537(key: &BlsPublicKey) -> Vec<u8> {
    let point = blst::min_pk::PublicKey::uncompress(&key.to_bytes())
        .expect("a BlsPublicKey is a valid point");
    let raw = point.serialize(); // x || y, 48 bytes each
    let mut out = vec![0u8; 128];
    out[16..64].copy_from_slice(&raw[..48]);
    out[80..128].copy_from_slice(&raw[48..96]);
    out
}

/// A G2 point (signature) in the EIP-2537 encoding (x.c0, x.c1, y.c0, y.c1, each in 64 bytes),
/// or `None` if it does not decompress to a point.
pub(crate) fn g2_eip2537(signature: &BlsSignature) -> Option<Vec<u8>> {
    let point = blst::min_pk::Signature::uncompress(&signature.to_bytes()).ok()?;
    // The ZCash serialization orders each coordinate c1 then c0.
    let raw = point.serialize();
    let mut out = vec![0u8; 256];
    out[16..64].copy_from_slice(&raw[48..96]);
    out[80..128].copy_from_slice(&raw[0..48]);
    out[144..192].copy_from_slice(&raw[144..192]);
    out[208..256].copy_from_slice(&raw[96..144]);
    Some(out)
}

/// The compressed signature of an EIP-2537 G2 point, or `None` if it is not one.
pub(crate) fn g2_from_eip2537(bytes: &[u8]) -> Option<BlsSignature> {
    if bytes.len() != 256 || (0..4).any(|i| bytes[i * 64..i * 64 + 16].iter().any(|b| *b != 0)) {
        return None;
    }
    let mut raw = [0u8; 192];
    raw[48..96].copy_from_slice(&bytes[16..64]);
    raw[0..48].copy_from_slice(&bytes[80..128]);
    raw[144..192].copy_from_slice(&bytes[144..192]);
    raw[96..144].copy_from_slice(&bytes[208..256]);
    let point = blst::min_pk::Signature::deserialize(&raw).ok()?;
    BlsSignature::from_bytes(&point.compress()).ok()
}

/// A signature the contract cannot verify if it does not decompress (verification then fails,
/// which the caller reports as [`BlsError::Malformed`] where the embedded chain does).
fn g2_or_empty(signature: &BlsSignature) -> Bytes {
    g2_eip2537(signature).map(Bytes::from).unwrap_or_default()
}

fn certificate(certificate: &Certificate) -> Registry::Certificate {
    let mut signers = Vec::new();
    for index in certificate.signers.signers() {
        if signers.len() <= index / 8 {
            signers.resize(index / 8 + 1, 0u8);
        }
        signers[index / 8] |= 1 << (index % 8);
    }
    Registry::Certificate {
        signers: signers.into(),
        signatureG2: g2_or_empty(&certificate.signature),
    }
}

/// A certificate whose aggregate does not decompress is malformed, as the embedded chain says.
fn malformed_certificate(error: ChainError, certificate: &Certificate) -> ChainError {
    match error {
        ChainError::BadCertificate(BlsError::BadSignature)
            if g2_eip2537(&certificate.signature).is_none() =>
        {
            ChainError::BadCertificate(BlsError::Malformed { what: "signature" })
        }
        other => other,
    }
}

fn bls_key(bytes: &[u8]) -> Result<BlsPublicKey, ChainError> {
    let array: [u8; 48] = bytes
        .try_into()
        .map_err(|_| rpc("BLS key", "not 48 bytes"))?;
    BlsPublicKey::from_bytes(&array).map_err(|e| rpc("BLS key", e))
}

fn bls_signature(bytes: &[u8]) -> Result<BlsSignature, ChainError> {
    let array: [u8; 96] = bytes
        .try_into()
        .map_err(|_| rpc("BLS signature", "not 96 bytes"))?;
    BlsSignature::from_bytes(&array).map_err(|e| rpc("BLS signature", e))
}

fn node_record(node: Registry::Node) -> Result<NodeRecord, ChainError> {
    Ok(NodeRecord {
        id: NodeId(node.id),
        registration: Registration {
            endpoint: node.endpoint,
            reward_wallet: node.rewardWallet,
            wallet_features: node.features,
            bls_key: bls_key(&node.blsKey)?,
            bls_possession: bls_signature(&node.possession)?,
        },
        active_from_epoch: node.activeFrom,
        left_at_epoch: (node.leftAt != 0).then_some(node.leftAt),
    })
}

fn sequencer_record(sequencer: &Registry::Sequencer) -> Result<SequencerRecord, ChainError> {
    Ok(SequencerRecord {
        id: NodeId(sequencer.id),
        bls_key: bls_key(&sequencer.blsKey)?,
    })
}

fn evidence_of(e: &Registry::Equivocation) -> Result<EquivocationEvidence, ChainError> {
    let kind = EvidenceKind::from_tag(e.kind).map_err(|err| rpc("equivocation", err))?;
    let signature = |bytes: &[u8]| match kind.scheme() {
        Scheme::Operator => <[u8; 65]>::try_from(bytes)
            .map(|raw| PbftSignature::Operator(Signature(raw)))
            .map_err(|_| rpc("equivocation", "operator signature not 65 bytes")),
        Scheme::Bls => g2_from_eip2537(bytes)
            .map(PbftSignature::Bls)
            .ok_or_else(|| rpc("equivocation", "signature not a G2 point")),
    };
    Ok(EquivocationEvidence {
        kind,
        offender: e.index,
        view: e.viewNumber,
        sequence: e.sequence,
        first: Signed {
            digest: e.firstDigest,
            signature: signature(&e.firstSignature)?,
        },
        second: Signed {
            digest: e.secondDigest,
            signature: signature(&e.secondSignature)?,
        },
    })
}

/// A signature of equivocation evidence as the contract takes it: an operator signature's 65
/// bytes, a BLS one in the EIP-2537 encoding.
fn evidence_signature_bytes(signature: &PbftSignature) -> Bytes {
    match signature {
        PbftSignature::Operator(signature) => signature_bytes(signature),
        PbftSignature::Bls(signature) => g2_or_empty(signature),
    }
}

fn signature_bytes(signature: &Signature) -> Bytes {
    Bytes::copy_from_slice(&signature.0)
}

impl UpperChain for EvmChain {
    fn register_node(
        &self,
        registration: Registration,
        signature: &Signature,
    ) -> Result<NodeId, ChainError> {
        let hash = registration.signing_hash();
        // A signature that recovers to nobody is refused before anything is sent, as the
        // contract (and the embedded chain) would.
        signature.recover_address(&hash)?;
        let Some(possession) = g2_eip2537(&registration.bls_possession) else {
            return Err(ChainError::BadPossession);
        };
        let call = Registry::registerCall {
            r: Registry::Registration {
                endpoint: registration.endpoint.clone(),
                rewardWallet: registration.reward_wallet,
                features: registration.wallet_features.clone(),
                blsKey: registration.bls_key.to_bytes().to_vec().into(),
                blsKeyG1: g1_eip2537(&registration.bls_key).into(),
                possession: registration.bls_possession.to_bytes().to_vec().into(),
                possessionG2: possession.into(),
            },
            signature: signature_bytes(signature),
        };
        let receipt = self.transact(call, U256::ZERO, Some((signature, hash)))?;
        receipt
            .logs()
            .iter()
            .filter(|log| log.address() == self.config.registry)
            .find_map(|log| log.log_decode::<Registry::NodeRegistered>().ok())
            .map(|log| NodeId(log.inner.data.node))
            .ok_or_else(|| rpc("register", "no NodeRegistered event in the receipt"))
    }

    fn registry_snapshot(&self, epoch: u64) -> Result<RegistrySnapshot, ChainError> {
        let nodes = self.view(Registry::allNodesCall {})?;
        let mut wallets = self.wallets.lock();
        self.scan_wallets(&mut wallets)?;
        let mut records = Vec::with_capacity(nodes.len());
        for node in nodes {
            let mut record = node_record(node)?;
            if record.active_in(epoch) {
                // The contract holds the current wallet; the logs say which was in force then.
                if let (Some(changes), Some((wallet, features))) = (
                    wallets.changes.get(&record.id),
                    wallets.registered.get(&record.id),
                ) {
                    record.registration.reward_wallet = *wallet;
                    record.registration.wallet_features.clone_from(features);
                    wallet_as_of(&mut record, changes, epoch);
                }
                records.push(NodeRecord {
                    left_at_epoch: None,
                    ..record
                });
            }
        }
        records.sort_by_key(|record| record.id);
        Ok(RegistrySnapshot {
            epoch,
            nodes: records,
        })
    }

    fn epoch(&self) -> Result<u64, ChainError> {
        self.view(Registry::epochCall {})
    }

    fn sequencer_set(&self) -> Result<Vec<SequencerRecord>, ChainError> {
        self.view(Registry::activeSequencersCall {})?
            .into_iter()
            .map(|s| sequencer_record(&s))
            .collect()
    }

    /// A `Registry` deployed without sequencer epochs has one open-ended epoch 0 whose set is the
    /// active set (a rotation changes it at once); with them, the first rotation fixes epoch 0
    /// and each epoch's last commitment the next.
    fn sequencer_epoch(&self, epoch: u64) -> Result<Option<SequencerEpoch>, ChainError> {
        let length = self.view(Registry::sequencerEpochLengthCall {})?;
        let answer = self.view(Registry::sequencerEpochCall { e: epoch })?;
        if !answer.found {
            return Ok(None);
        }
        let sequencers = answer
            .members
            .iter()
            .map(sequencer_record)
            .collect::<Result<Vec<_>, _>>()?;
        let length = (length > 0).then_some(length);
        Ok(Some(SequencerEpoch {
            epoch,
            first: length.map_or(1, |length| epoch * length + 1),
            length,
            sequencers,
        }))
    }

    fn commit_batch(
        &self,
        number: u64,
        batch_hash: B256,
        commit_message: &[u8],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        let call = Registry::commitBatchCall {
            number,
            digest: batch_hash,
            message: Bytes::copy_from_slice(commit_message),
            certificate: self::certificate(certificate),
        };
        self.transact(call, U256::ZERO, None)
            .map(drop)
            .map_err(|e| malformed_certificate(e, certificate))
    }

    fn commit_group_root(
        &self,
        commitment: GroupRootCommitment,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        let call = Registry::commitGroupRootCall {
            c: Registry::GroupRoot {
                epoch: commitment.epoch,
                group: commitment.group,
                batch: commitment.batch,
                root: commitment.root,
            },
            members: members.iter().map(|member| member.0).collect(),
            certificate: self::certificate(certificate),
        };
        self.transact(call, U256::ZERO, None)
            .map(drop)
            .map_err(|e| malformed_certificate(e, certificate))
    }

    /// The deployed `Registry` checks group roots against the members' signatures over
    /// [`GroupRootCommitment::signing_bytes`] only; it has no entry point for a PBFT commit
    /// certificate yet, so a decided root is refused here rather than sent to revert.
    fn commit_group_root_decided(
        &self,
        commitment: GroupRootCommitment,
        decision: GroupDecision,
        _members: &[NodeId],
        _certificate: &Certificate,
    ) -> Result<(), ChainError> {
        Err(ChainError::Reverted(format!(
            "the Registry contract has no commitGroupRootDecided: root of group {} at batch {} \
             (view {}, sequence {}) not committed",
            commitment.group, commitment.batch, decision.view, decision.sequence
        )))
    }

    fn last_batch(&self) -> Result<u64, ChainError> {
        self.view(Registry::lastBatchCall {})
    }

    fn group_root(&self, group: &B256) -> Result<Option<GroupRootCommitment>, ChainError> {
        let answer = self.view(Registry::groupRootCall { group: *group })?;
        Ok(answer.found.then_some(GroupRootCommitment {
            epoch: answer.root.epoch,
            group: answer.root.group,
            batch: answer.root.batch,
            root: answer.root.root,
        }))
    }

    fn batch_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        let answer = self.view(Registry::batchHashCall { number })?;
        Ok(answer.found.then_some(answer.hash))
    }

    fn record_synced_root(
        &self,
        synced: SyncedRoot,
        signature: &Signature,
    ) -> Result<(), ChainError> {
        let hash = synced.signing_hash();
        let call = Registry::recordSyncedRootCall {
            s: Registry::SyncedRoot {
                node: synced.node.0,
                epoch: synced.epoch,
                group: synced.group,
                batch: synced.batch,
                root: synced.root,
            },
            signature: signature_bytes(signature),
        };
        self.transact(call, U256::ZERO, Some((signature, hash)))
            .map(drop)
    }

    fn synced_root(&self, node: &NodeId) -> Result<Option<SyncedRoot>, ChainError> {
        let answer = self.view(Registry::syncedRootCall { node: node.0 })?;
        Ok(answer.found.then_some(SyncedRoot {
            node: NodeId(answer.root.node),
            epoch: answer.root.epoch,
            group: answer.root.group,
            batch: answer.root.batch,
            root: answer.root.root,
        }))
    }

    fn update_wallet(&self, update: WalletUpdate, signature: &Signature) -> Result<(), ChainError> {
        let hash = update.signing_hash();
        let call = Registry::updateWalletCall {
            node: update.node.0,
            rewardWallet: update.reward_wallet,
            features: update.wallet_features,
            nonce: update.nonce,
            signature: signature_bytes(signature),
        };
        self.transact(call, U256::ZERO, Some((signature, hash)))
            .map(drop)
    }

    fn wallet_nonce(&self, node: &NodeId) -> Result<u64, ChainError> {
        self.view(Registry::walletNonceCall { node: node.0 })
    }

    fn record_departure(
        &self,
        departure: Departure,
        proof: &DepartureProof,
    ) -> Result<(), ChainError> {
        match (departure.kind, proof) {
            (DepartureKind::Exit, DepartureProof::NodeSignature(signature)) => {
                let call = Registry::exitNodeCall {
                    node: departure.node.0,
                    effectiveEpoch: departure.epoch,
                    evidence: departure.evidence.clone().into(),
                    signature: signature_bytes(signature),
                };
                self.transact(
                    call,
                    U256::ZERO,
                    Some((signature, departure.signing_hash())),
                )
                .map(drop)
            }
            (
                DepartureKind::Eviction,
                DepartureProof::GroupCertificate {
                    members,
                    certificate,
                },
            ) => {
                let call = Registry::evictNodeCall {
                    node: departure.node.0,
                    effectiveEpoch: departure.epoch,
                    evidence: departure.evidence.clone().into(),
                    members: members.iter().map(|member| member.0).collect(),
                    certificate: self::certificate(certificate),
                };
                self.transact(call, U256::ZERO, None)
                    .map(drop)
                    .map_err(|e| malformed_certificate(e, certificate))
            }
            // The contract has one function for each kind, each taking its own proof.
            _ => Err(ChainError::BadDepartureProof),
        }
    }

    fn departure(&self, node: &NodeId) -> Result<Option<Departure>, ChainError> {
        let answer = self.view(Registry::departureOfCall { node: node.0 })?;
        if !answer.found {
            return Ok(None);
        }
        let d = answer.departure;
        let kind = match d.kind {
            0 => DepartureKind::Exit,
            1 => DepartureKind::Eviction,
            other => return Err(rpc("departureOf", format!("unknown kind {other}"))),
        };
        Ok(Some(Departure {
            node: NodeId(d.node),
            kind,
            epoch: d.epoch,
            evidence: d.evidence.to_vec(),
        }))
    }

    fn admin(&self, op: AdminOp, signature: &Signature) -> Result<(), ChainError> {
        // The hash the contract checks names its nonce; a bad signature is reported against the
        // current one, as the embedded chain does.
        let nonce = self.admin_nonce()?;
        let signed = Some((signature, op.signing_hash(nonce)));
        let sig = signature_bytes(signature);
        match op {
            AdminOp::Whitelist {
                record,
                possession,
                stake,
            } => {
                let Some(possession_g2) = g2_eip2537(&possession) else {
                    return Err(ChainError::BadPossession);
                };
                let call = Registry::whitelistSequencerCall {
                    s: Registry::Sequencer {
                        id: record.id.0,
                        blsKey: record.bls_key.to_bytes().to_vec().into(),
                        blsKeyG1: g1_eip2537(&record.bls_key).into(),
                        stake,
                    },
                    possession: possession.to_bytes().to_vec().into(),
                    possessionG2: possession_g2.into(),
                    signature: sig,
                };
                self.transact(call, U256::ZERO, signed).map(drop)
            }
            AdminOp::Remove(id) => self
                .transact(
                    Registry::removeSequencerCall {
                        id: id.0,
                        signature: sig,
                    },
                    U256::ZERO,
                    signed,
                )
                .map(drop),
            AdminOp::SetStakeCap(cap) => self
                .transact(
                    Registry::setStakeCapCall {
                        cap,
                        signature: sig,
                    },
                    U256::ZERO,
                    signed,
                )
                .map(drop),
            AdminOp::Rotate { size } => self
                .transact(
                    Registry::rotateSequencersCall {
                        size,
                        signature: sig,
                    },
                    U256::ZERO,
                    signed,
                )
                .map(drop),
            AdminOp::AdvanceEpoch => self
                .transact(
                    Registry::advanceEpochCall { signature: sig },
                    U256::ZERO,
                    signed,
                )
                .map(drop),
        }
    }

    fn admin_nonce(&self) -> Result<u64, ChainError> {
        self.view(Registry::adminNonceCall {})
    }

    fn sequencer_candidates(&self) -> Result<Vec<SequencerCandidate>, ChainError> {
        let mut candidates = self
            .view(Registry::sequencerCandidatesCall {})?
            .iter()
            .map(|s| {
                Ok(SequencerCandidate {
                    record: sequencer_record(s)?,
                    stake: s.stake,
                })
            })
            .collect::<Result<Vec<_>, ChainError>>()?;
        candidates.sort_by_key(|c| c.record.id);
        Ok(candidates)
    }

    fn stake_cap(&self) -> Result<u128, ChainError> {
        self.view(Registry::stakeCapCall {})
    }

    fn deposits_since(&self, from: u64, limit: usize) -> Result<Vec<Deposit>, ChainError> {
        let mut log = self.deposits.lock();
        self.scan_deposits(&mut log)?;
        Ok(log
            .deposits
            .iter()
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
            .take(limit)
            .cloned()
            .collect())
    }

    fn report_equivocation(
        &self,
        evidence: &EquivocationEvidence,
        offender: NodeId,
    ) -> Result<(), ChainError> {
        let call = Registry::reportEquivocationCall {
            offender: offender.0,
            e: Registry::Equivocation {
                kind: evidence.kind.tag(),
                index: evidence.offender,
                viewNumber: evidence.view,
                sequence: evidence.sequence,
                firstDigest: evidence.first.digest,
                firstSignature: evidence_signature_bytes(&evidence.first.signature),
                secondDigest: evidence.second.digest,
                secondSignature: evidence_signature_bytes(&evidence.second.signature),
            },
        };
        self.transact(call, U256::ZERO, None).map(drop)
    }

    fn equivocations(&self) -> Result<Vec<(NodeId, EquivocationEvidence)>, ChainError> {
        let answer = self.view(Registry::allEquivocationsCall {})?;
        if answer.offenders.len() != answer.evidence.len() {
            return Err(rpc(
                "allEquivocations",
                "offenders and evidence differ in length",
            ));
        }
        let mut out = answer
            .offenders
            .iter()
            .zip(&answer.evidence)
            .map(|(offender, e)| Ok((NodeId(*offender), evidence_of(e)?)))
            .collect::<Result<Vec<_>, ChainError>>()?;
        out.sort_by_key(|(offender, _)| *offender);
        Ok(out)
    }

    // The `Registry` contract keeps no sponsorship policies yet: an EVM-settled network sets
    // them in each sequencer's configuration. The calls say so rather than answer "none".
    fn set_sponsor_policy(
        &self,
        _update: SponsorPolicyUpdate,
        _signature: &Signature,
    ) -> Result<(), ChainError> {
        Err(no_sponsor_policies())
    }

    fn sponsor_nonce(&self, _sponsor: &Address) -> Result<u64, ChainError> {
        Err(no_sponsor_policies())
    }

    fn sponsor_policies(&self) -> Result<Vec<SponsorPolicyRecord>, ChainError> {
        Err(no_sponsor_policies())
    }

    fn da_committee(&self) -> Result<Option<crate::DaCommittee>, ChainError> {
        Err(no_strong_da())
    }

    fn record_availability(&self, _record: crate::AvailabilityRecord) -> Result<(), ChainError> {
        Err(no_strong_da())
    }

    fn availability(
        &self,
        _kind: crate::AvailabilityKind,
        _number: u64,
    ) -> Result<Option<crate::AvailabilityRecord>, ChainError> {
        Err(no_strong_da())
    }

    fn report_broken_preconfirmation(
        &self,
        _evidence: &PreconfirmationEvidence,
    ) -> Result<(), ChainError> {
        Err(no_preconfirmation_evidence())
    }

    fn broken_preconfirmations(&self) -> Result<Vec<(NodeId, SignedPreconfirmation)>, ChainError> {
        Err(no_preconfirmation_evidence())
    }
}

/// The contract cannot check a broken preconfirmation: that needs the finalized batches'
/// headers and the blocks' bodies (blake3 Merkle roots, moves' senders), where it keeps only
/// each batch's hash and checks secp256k1 and BLS signatures.
fn no_preconfirmation_evidence() -> ChainError {
    ChainError::Unsupported(
        "the Registry contract cannot check preconfirmation evidence (blake3 block roots)".into(),
    )
}

/// The contract keeps no strong-DA commitments: its runtime code is 24,548 of the 24,576 bytes
/// EIP-170 allows, no room for a DA committee and its certificate check.
fn no_strong_da() -> ChainError {
    ChainError::Unsupported(
        "the Registry contract keeps no strong-DA commitments (it is at the EIP-170 size limit)"
            .into(),
    )
}

fn no_sponsor_policies() -> ChainError {
    ChainError::Unsupported("the Registry contract keeps no sponsorship policies".into())
}

#[cfg(test)]
mod tests {
    use primitives::bls::BlsSecretKey;

    use super::*;

    #[test]
    fn g2_encoding_round_trips() {
        let secret = BlsSecretKey::from_seed(&[3; 32]);
        let signature = secret.sign(b"round trip");
        let encoded = g2_eip2537(&signature).expect("a real signature");
        assert_eq!(encoded.len(), 256);
        assert_eq!(g2_from_eip2537(&encoded), Some(signature));
        assert_eq!(g2_from_eip2537(&encoded[1..]), None);
        let mut padded = encoded.clone();
        padded[0] = 1;
        assert_eq!(g2_from_eip2537(&padded), None);
    }

    #[test]
    fn g1_encoding_pads_each_coordinate() {
        let key = BlsSecretKey::from_seed(&[4; 32]).public_key();
        let encoded = g1_eip2537(&key);
        assert_eq!(encoded.len(), 128);
        assert!(
            encoded[..16]
                .iter()
                .chain(&encoded[64..80])
                .all(|b| *b == 0)
        );
        // The x coordinate is the compressed key without its flag bits.
        let compressed = key.to_bytes();
        assert_eq!(encoded[16], compressed[0] & 0x1f);
        assert_eq!(&encoded[17..64], &compressed[1..]);
    }
}
