//! The asset rollup's contracts on an EVM chain, through alloy: `AssetBridge` (locks ERC-20
//! tokens and ERC-721 items, emits `Deposit`, releases proven withdrawals once) and the
//! `AssetRollup` it deploys (the root of the bridge group's output tree, moved only by Groth16
//! proofs checked by verifier contracts generated from the verifying keys).
//!
//! This module knows contracts, not circuits: proofs, roots and public values are plain
//! `uint256` words here, and the `assets` crate makes them (`assets::solidity`). Every write is
//! simulated with `eth_call` first, so a refusal comes back as the contract's custom error
//! ([`RollupError`]), costs no gas and changes nothing; only then is it signed, sent and waited
//! for. Writes through one [`EvmAssets`] are serialized (one sender, its pending nonce).
//!
//! The `PayoutDirectory` contract, next to them, is where a reward wallet registers the asset
//! address its rollup payouts go to; [`EvmAssets::tree_updates`] reads the tree's changes back
//! from the rollup's events, so anyone can rebuild the tree and prove a spend of their outputs.
//!
//! Wallets read the rollup's whole published history ([`EvmAssets::history`]: deposits minted,
//! transfers applied, output notes, withdrawals proven) to rebuild its tree and find their
//! outputs, and submit their transfers with the notes of the new outputs
//! ([`EvmAssets::transfer_with_notes`]).
//!
//! `devnode::compile_solidity` compiles a generated verifier with the repository's solc-js,
//! for tests and benchmarks that deploy one.

use std::{future::Future, time::Duration};

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{
        client::RpcClient,
        types::{Filter, TransactionReceipt, TransactionRequest},
    },
    signers::local::PrivateKeySigner,
    sol_types::{SolCall, SolConstructor, SolEvent, SolInterface},
    transports::TransportError,
};
use parking_lot::Mutex;
use primitives::{AccountKey, Address, B256, U256};

use crate::ChainError;

mod bindings {
    // Generated from the committed ABIs; the generated items carry no docs.
    #![allow(missing_docs, clippy::too_many_arguments)]
    alloy::sol!(
        #[sol(all_derives)]
        AssetBridge,
        "contracts/AssetBridge.abi.json"
    );
    alloy::sol!(
        #[sol(all_derives)]
        AssetRollup,
        "contracts/AssetRollup.abi.json"
    );
    alloy::sol!(
        #[sol(all_derives)]
        TestERC20,
        "contracts/TestERC20.abi.json"
    );
    alloy::sol!(
        #[sol(all_derives)]
        TestERC721,
        "contracts/TestERC721.abi.json"
    );
    alloy::sol!(
        #[sol(all_derives)]
        PayoutDirectory,
        "contracts/PayoutDirectory.abi.json"
    );
}

use bindings::{AssetBridge, AssetRollup, PayoutDirectory, TestERC20, TestERC721};

const ASSET_BRIDGE_BIN: &str = include_str!("../contracts/AssetBridge.bin");
const TEST_ERC20_BIN: &str = include_str!("../contracts/TestERC20.bin");
const TEST_ERC721_BIN: &str = include_str!("../contracts/TestERC721.bin");
const PAYOUT_DIRECTORY_BIN: &str = include_str!("../contracts/PayoutDirectory.bin");

/// Words of a Groth16 proof as the generated verifiers take it.
pub const PROOF_WORDS: usize = 8;

/// A proof as `[A.x, A.y, B.x.c1, B.x.c0, B.y.c1, B.y.c0, C.x, C.y]`.
pub type ProofWords = [U256; PROOF_WORDS];

/// Why the bridge or the rollup refused a call. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollupError {
    /// The verifier refused the proof for these public values.
    #[error("the proof does not verify")]
    ProofInvalid,
    /// The update starts from another root than the rollup's current one.
    #[error("stale root: the rollup is at {current}, the proof starts from {got}")]
    StaleRoot {
        /// The rollup's root.
        current: U256,
        /// The proof's old root.
        got: U256,
    },
    /// The update appends at another leaf than the next one.
    #[error("wrong leaf index: expected {expected}, got {got}")]
    WrongLeafIndex {
        /// The rollup's leaf count.
        expected: u64,
        /// The update's first leaf.
        got: u64,
    },
    /// A nullifier was spent already (a double spend, or a replayed withdraw).
    #[error("nullifier {0} already spent")]
    NullifierSpent(U256),
    /// Both nullifiers of the update are the same.
    #[error("both nullifiers are the same")]
    DuplicateNullifier,
    /// A value is not a canonical BN254 scalar.
    #[error("a value is not below the BN254 scalar field modulus")]
    NotCanonical,
    /// The deposit was minted already (a replayed deposit).
    #[error("deposit {0} was already minted")]
    DepositAlreadyMinted(u64),
    /// Deposits are minted in order.
    #[error("deposit {got} minted out of order: {expected} is next")]
    DepositOutOfOrder {
        /// The next deposit to mint.
        expected: u64,
        /// The deposit offered.
        got: u64,
    },
    /// The deposit's data is not what the bridge recorded.
    #[error("deposit {0}: data differs from the bridge's record")]
    DepositMismatch(u64),
    /// The bridge recorded no such deposit.
    #[error("no deposit {0} on the bridge")]
    UnknownDeposit(u64),
    /// A deposit of nothing.
    #[error("a deposit of zero tokens")]
    ZeroAmount,
    /// ERC-721 ids from 2^96 on do not fit an asset type.
    #[error("item id {0} is 2^96 or more")]
    ItemIdTooLarge(U256),
    /// The token contract is bridged as the other kind (ERC-20 / ERC-721).
    #[error("token {0} is bridged as the other kind")]
    WrongKind(Address),
    /// The token reported a transfer but the bridge did not receive it.
    #[error("token {0}: nothing received")]
    NotReceived(Address),
    /// The rollup has proven no such withdrawal (or with other data).
    #[error("withdrawal {0} is not proven with this data")]
    UnknownWithdrawal(u64),
    /// The withdrawal was released already (a replayed withdrawal).
    #[error("withdrawal {0} was already released")]
    AlreadyReleased(u64),
    /// A withdrawal of nothing.
    #[error("withdrawal {0} releases nothing")]
    NothingToRelease(u64),
    /// More notes than the update creates outputs.
    #[error("{notes} notes for {outputs} outputs")]
    TooManyNotes {
        /// Notes offered.
        notes: u64,
        /// Outputs the update appends.
        outputs: u64,
    },
    /// A note longer than the rollup takes (`MAX_NOTE_BYTES`).
    #[error("a note of {0} bytes is too long")]
    NoteTooLong(u64),
    /// No output at this leaf yet.
    #[error("no output at leaf {0}")]
    NoSuchLeaf(u64),
    /// The token contract refused (allowance, balance, ownership), with its error's name.
    #[error("the token refused: {0}")]
    Token(String),
    /// The endpoint failed or the call reverted without a known error.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// A `Deposit` event of the bridge: what the bridge group mints as one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeDeposit {
    /// The bridge's number of the deposit (from 0); the output's blinding.
    pub deposit_id: u64,
    /// Who locked the tokens.
    pub depositor: Address,
    /// The token contract.
    pub token: Address,
    /// The asset type (token, and an item's id in the high 96 bits).
    pub asset: U256,
    /// The amount locked (1 for an item).
    pub amount: U256,
    /// The owner's asset address: Baby Jubjub key x, y and nullifier-key hash.
    pub owner: [U256; 3],
    /// The block it was recorded in.
    pub block: u64,
}

/// The public values of a transfer or withdraw proof, as the rollup takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferInputs {
    /// The root the proof starts from (must be the rollup's).
    pub old_root: U256,
    /// The root after the update.
    pub new_root: U256,
    /// The leaf index of the first output appended.
    pub leaf_index: u64,
    /// The inputs' nullifiers.
    pub nullifiers: [U256; 2],
    /// The outputs' commitments (the second zero for a withdraw).
    pub commitments: [U256; 2],
    /// Zero for a transfer; the account a withdraw pays.
    pub recipient: Address,
    /// The withdrawn asset type (zero for a transfer).
    pub asset: U256,
    /// The withdrawn amount (zero for a transfer).
    pub amount: U256,
}

/// A withdrawal the rollup proved, for the bridge to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenWithdrawal {
    /// The rollup's number of the withdrawal (from 0).
    pub withdrawal_id: u64,
    /// Who receives it.
    pub recipient: Address,
    /// The asset type.
    pub asset: U256,
    /// The amount.
    pub amount: U256,
}

/// One event of the rollup, as [`EvmAssets::history`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollupEvent {
    /// A bridge deposit minted as the output at `leaf_index`.
    DepositMinted {
        /// The bridge's number of the deposit.
        deposit_id: u64,
        /// Its output's leaf.
        leaf_index: u64,
        /// The root after it.
        new_root: U256,
    },
    /// A transfer or withdraw applied.
    TransferApplied {
        /// The root after it.
        new_root: U256,
        /// The leaf of its first output.
        leaf_index: u64,
        /// The nullifiers it spent.
        nullifiers: [U256; 2],
        /// Its outputs' commitments (the second zero for a withdraw, which appends one leaf).
        commitments: [U256; 2],
    },
    /// A note published for the output at `leaf_index` (unchecked: anyone may publish one).
    OutputNote {
        /// The output's leaf.
        leaf_index: u64,
        /// The note's bytes (at most the rollup's `MAX_NOTE_BYTES`).
        note: Vec<u8>,
    },
    /// A withdrawal proven, for the bridge to release.
    WithdrawalProven(ProvenWithdrawal),
}

/// The rollup's events over a range of blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupHistory {
    /// The events, in chain order.
    pub events: Vec<RollupEvent>,
    /// The last block read.
    pub to_block: u64,
}

/// What a mined update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Gas the transaction used.
    pub gas_used: u64,
    /// The withdrawal a withdraw proved.
    pub withdrawal: Option<ProvenWithdrawal>,
}

fn rpc(what: &str, error: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(format!("{what}: {error}"))
}

/// One change of the rollup's output tree, as the rollup's events tell it, with the
/// transaction that made it: replayed in order from the empty tree, they rebuild the tree whose
/// root the rollup holds (a deposit's leaf is its output's commitment, from the bridge's
/// `Deposit` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeUpdate {
    /// The bridge's deposit `deposit_id` minted as leaf `leaf_index`.
    DepositMinted {
        /// The bridge's number of the deposit.
        deposit_id: u64,
        /// Its leaf.
        leaf_index: u64,
        /// The root after it.
        new_root: U256,
        /// The transaction.
        transaction: B256,
    },
    /// A transfer or withdraw: its nullifiers spent, its commitments appended from
    /// `leaf_index` on (a withdraw's second commitment is zero and is not a leaf).
    TransferApplied {
        /// The first leaf appended.
        leaf_index: u64,
        /// The root after it.
        new_root: U256,
        /// The nullifiers it spent.
        nullifiers: [U256; 2],
        /// The commitments it appended.
        commitments: [U256; 2],
        /// The transaction.
        transaction: B256,
    },
}

impl TreeUpdate {
    /// The leaves it appends, in order.
    pub fn leaves_added(&self) -> u64 {
        match self {
            TreeUpdate::DepositMinted { .. } => 1,
            TreeUpdate::TransferApplied { commitments, .. } if commitments[1].is_zero() => 1,
            TreeUpdate::TransferApplied { .. } => 2,
        }
    }
}

/// The bridge and rollup on an EVM endpoint, used by one sender (see the module doc).
pub struct EvmAssets {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    provider: DynProvider,
    sender: Address,
    bridge: Address,
    rollup: Address,
    deploy_block: u64,
    receipt_timeout: Duration,
    writes: Mutex<()>,
}

impl std::fmt::Debug for EvmAssets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmAssets")
            .field("sender", &self.sender)
            .field("bridge", &self.bridge)
            .field("rollup", &self.rollup)
            .finish()
    }
}

impl Drop for EvmAssets {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime: let it go instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn new_runtime() -> Result<tokio::runtime::Runtime, ChainError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("upper-chain-rollup")
        .enable_all()
        .build()
        .map_err(|e| rpc("start the adapter's runtime", e))
}

fn provider(url: &str, sender: &AccountKey) -> Result<DynProvider, ChainError> {
    let parsed: reqwest::Url = url.parse().map_err(|_| ChainError::BadUrl(url.into()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ChainError::BadUrl(url.into()));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ChainError::Unreachable {
            url: url.into(),
            reason: format!("HTTP client: {e}"),
        })?;
    let signer = PrivateKeySigner::from_bytes(&B256::from(sender.secret_bytes()))
        .map_err(|e| rpc("sender key", e))?;
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_client(RpcClient::new_http_with_client(client, parsed))
        .erased())
}

/// Runs `future` on `runtime` and waits for it from this (synchronous) thread.
fn run_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = Result<T, RollupError>> + Send + 'static,
) -> Result<T, RollupError> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = done.send(future.await);
    });
    result
        .recv()
        .map_err(|_| RollupError::Chain(rpc("adapter", "its task panicked")))?
}

/// The [`RollupError`] for a refused request: the bridge's, the rollup's or a token's custom
/// error if it reverted with one.
fn refusal(what: &str, error: &TransportError) -> RollupError {
    let Some(payload) = error.as_error_resp() else {
        return rpc(what, error).into();
    };
    let Some(data) = payload.as_revert_data() else {
        return rpc(what, error).into();
    };
    if let Ok(decoded) = AssetRollup::AssetRollupErrors::abi_decode(&data) {
        use AssetRollup::AssetRollupErrors as E;
        return match decoded {
            E::ProofInvalid(_) => RollupError::ProofInvalid,
            E::StaleRoot(e) => RollupError::StaleRoot {
                current: e.current,
                got: e.got,
            },
            E::WrongLeafIndex(e) => RollupError::WrongLeafIndex {
                expected: e.expected,
                got: e.got,
            },
            E::NullifierSpent(e) => RollupError::NullifierSpent(e.nullifier),
            E::DuplicateNullifier(_) => RollupError::DuplicateNullifier,
            E::NotCanonical(_) => RollupError::NotCanonical,
            E::DepositAlreadyMinted(e) => RollupError::DepositAlreadyMinted(e.depositId),
            E::DepositOutOfOrder(e) => RollupError::DepositOutOfOrder {
                expected: e.expected,
                got: e.got,
            },
            E::DepositMismatch(e) => RollupError::DepositMismatch(e.depositId),
            E::UnknownDeposit(e) => RollupError::UnknownDeposit(e.depositId),
            E::TooManyNotes(e) => RollupError::TooManyNotes {
                notes: e.notes.saturating_to(),
                outputs: e.outputs.saturating_to(),
            },
            E::NoteTooLong(e) => RollupError::NoteTooLong(e.length.saturating_to()),
            E::NoSuchLeaf(e) => RollupError::NoSuchLeaf(e.leafIndex),
        };
    }
    if let Ok(decoded) = AssetBridge::AssetBridgeErrors::abi_decode(&data) {
        use AssetBridge::AssetBridgeErrors as E;
        return match decoded {
            E::AlreadyReleased(e) => RollupError::AlreadyReleased(e.withdrawalId),
            E::ItemIdTooLarge(e) => RollupError::ItemIdTooLarge(e.tokenId),
            E::NotCanonical(_) => RollupError::NotCanonical,
            E::NotReceived(e) => RollupError::NotReceived(e.token),
            E::NothingToRelease(e) => RollupError::NothingToRelease(e.withdrawalId),
            E::SafeERC20FailedOperation(e) => {
                RollupError::Token(format!("SafeERC20FailedOperation({})", e.token))
            }
            E::UnknownWithdrawal(e) => RollupError::UnknownWithdrawal(e.withdrawalId),
            E::WrongKind(e) => RollupError::WrongKind(e.token),
            E::ZeroAmount(_) => RollupError::ZeroAmount,
        };
    }
    if let Ok(decoded) = TestERC20::TestERC20Errors::abi_decode(&data) {
        return RollupError::Token(format!("{decoded:?}"));
    }
    if let Ok(decoded) = TestERC721::TestERC721Errors::abi_decode(&data) {
        return RollupError::Token(format!("{decoded:?}"));
    }
    ChainError::Reverted(format!("{what}: {}", payload.message)).into()
}

impl EvmAssets {
    /// Deploys an `AssetBridge` (which deploys its `AssetRollup`) over the two verifiers'
    /// creation bytecode, starting from `genesis_root` (the empty tree's root); returns the
    /// adapter for `sender`.
    pub fn deploy(
        url: &str,
        chain_id: u64,
        sender: &AccountKey,
        transfer_verifier_code: Vec<u8>,
        deposit_verifier_code: Vec<u8>,
        genesis_root: U256,
    ) -> Result<Self, RollupError> {
        let runtime = new_runtime()?;
        let provider = provider(url, sender)?;
        let from = sender.address();
        let url_owned = url.to_string();
        let deployed = {
            let provider = provider.clone();
            run_on(&runtime, async move {
                check_chain_id(&provider, &url_owned, chain_id).await?;
                let (transfer_verifier, _) =
                    deploy_code(&provider, from, transfer_verifier_code).await?;
                let (deposit_verifier, _) =
                    deploy_code(&provider, from, deposit_verifier_code).await?;
                let mut code = alloy::hex::decode(ASSET_BRIDGE_BIN.trim())
                    .map_err(|e| rpc("the committed AssetBridge.bin", e))?;
                code.extend_from_slice(&AssetBridge::constructorCall::abi_encode(
                    &AssetBridge::constructorCall {
                        transferVerifier: transfer_verifier,
                        depositVerifier: deposit_verifier,
                        genesisRoot: genesis_root,
                    },
                ));
                deploy_code(&provider, from, code).await
            })
        };
        let (bridge, block) = match deployed {
            Ok(deployed) => deployed,
            Err(error) => {
                runtime.shutdown_background();
                return Err(error);
            }
        };
        drop(runtime);
        Self::connect(url, chain_id, sender, bridge, block)
    }

    /// The adapter for `sender` to the bridge at `bridge` (deployed in `deploy_block`, where
    /// deposits are looked for from).
    pub fn connect(
        url: &str,
        chain_id: u64,
        sender: &AccountKey,
        bridge: Address,
        deploy_block: u64,
    ) -> Result<Self, RollupError> {
        let runtime = new_runtime()?;
        let provider = provider(url, sender)?;
        let rollup = {
            let provider = provider.clone();
            let url = url.to_string();
            run_on(&runtime, async move {
                check_chain_id(&provider, &url, chain_id).await?;
                view(&provider, bridge, AssetBridge::rollupCall {}).await
            })
        };
        let rollup = match rollup {
            Ok(rollup) => rollup,
            Err(error) => {
                runtime.shutdown_background();
                return Err(error);
            }
        };
        Ok(Self {
            runtime: Some(runtime),
            provider,
            sender: sender.address(),
            bridge,
            rollup,
            deploy_block,
            receipt_timeout: Duration::from_secs(120),
            writes: Mutex::new(()),
        })
    }

    /// The bridge's address.
    pub fn bridge(&self) -> Address {
        self.bridge
    }

    /// The rollup's address.
    pub fn rollup(&self) -> Address {
        self.rollup
    }

    /// The block the bridge was deployed in.
    pub fn deploy_block(&self) -> u64 {
        self.deploy_block
    }

    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, RollupError>> + Send + 'static,
    ) -> Result<T, RollupError> {
        run_on(
            self.runtime
                .as_ref()
                .expect("the runtime lives until the adapter is dropped"),
            future,
        )
    }

    fn view_of<C>(&self, to: Address, call: C) -> Result<C::Return, RollupError>
    where
        C: SolCall + Send + 'static,
        C::Return: Send + 'static,
    {
        let provider = self.provider.clone();
        self.run(async move { view(&provider, to, call).await })
    }

    /// Simulates, sends and waits for `data` to `to`.
    fn transact(
        &self,
        what: &'static str,
        to: Address,
        data: Vec<u8>,
    ) -> Result<TransactionReceipt, RollupError> {
        let provider = self.provider.clone();
        let tx = TransactionRequest::default()
            .with_from(self.sender)
            .with_to(to)
            .with_input(data);
        let timeout = self.receipt_timeout;
        let _serialized = self.writes.lock();
        self.run(async move {
            provider
                .call(tx.clone())
                .await
                .map_err(|e| refusal(what, &e))?;
            let pending = provider
                .send_transaction(tx)
                .await
                .map_err(|e| refusal(what, &e))?;
            let hash = *pending.tx_hash();
            let receipt = pending
                .with_timeout(Some(timeout))
                .get_receipt()
                .await
                .map_err(|e| rpc(&format!("{what} receipt of {hash}"), e))?;
            if !receipt.status() {
                return Err(ChainError::Reverted(format!("{what} in transaction {hash}")).into());
            }
            Ok(receipt)
        })
    }

    /// Deploys `code` (creation bytecode with its constructor arguments) from the sender.
    pub fn deploy_code(&self, code: Vec<u8>) -> Result<Address, RollupError> {
        let provider = self.provider.clone();
        let from = self.sender;
        let _serialized = self.writes.lock();
        self.run(async move { deploy_code(&provider, from, code).await.map(|(a, _)| a) })
    }

    /// Calls `to` with `data` (no transaction) and returns the answer.
    pub fn call_raw(&self, to: Address, data: Vec<u8>) -> Result<Vec<u8>, RollupError> {
        let provider = self.provider.clone();
        let tx = TransactionRequest::default().with_to(to).with_input(data);
        self.run(async move {
            let answer = provider.call(tx).await.map_err(|e| refusal("call", &e))?;
            Ok(answer.to_vec())
        })
    }

    /// Sends `data` to `to` as a transaction and returns the gas it used: how the benchmark
    /// measures a verifier's cost on chain.
    pub fn send_raw(&self, to: Address, data: Vec<u8>) -> Result<u64, RollupError> {
        self.transact("raw call", to, data).map(|r| r.gas_used)
    }

    /// The rollup's current root.
    pub fn root(&self) -> Result<U256, RollupError> {
        self.view_of(self.rollup, AssetRollup::rootCall {})
    }

    /// The rollup's leaf count (the next output's index).
    pub fn leaf_count(&self) -> Result<u64, RollupError> {
        self.view_of(self.rollup, AssetRollup::leafCountCall {})
    }

    /// Deposits minted in the rollup.
    pub fn deposits_minted(&self) -> Result<u64, RollupError> {
        self.view_of(self.rollup, AssetRollup::depositsMintedCall {})
    }

    /// Deposits the bridge recorded.
    pub fn deposit_count(&self) -> Result<u64, RollupError> {
        self.view_of(self.bridge, AssetBridge::depositCountCall {})
    }

    /// Withdrawals the rollup proved.
    pub fn withdrawal_count(&self) -> Result<u64, RollupError> {
        self.view_of(self.rollup, AssetRollup::withdrawalCountCall {})
    }

    /// Whether the rollup holds `nullifier` as spent.
    pub fn is_spent(&self, nullifier: U256) -> Result<bool, RollupError> {
        self.view_of(
            self.rollup,
            AssetRollup::nullifierSpentCall::new((nullifier,)),
        )
    }

    /// Whether the bridge released withdrawal `withdrawal_id`.
    pub fn is_released(&self, withdrawal_id: u64) -> Result<bool, RollupError> {
        self.view_of(
            self.bridge,
            AssetBridge::releasedCall::new((withdrawal_id,)),
        )
    }

    /// The verifier contracts the rollup calls: (transfer, deposit).
    pub fn verifiers(&self) -> Result<(Address, Address), RollupError> {
        Ok((
            self.view_of(self.rollup, AssetRollup::transferVerifierCall {})?,
            self.view_of(self.rollup, AssetRollup::depositVerifierCall {})?,
        ))
    }

    /// Locks `amount` of the ERC-20 `token` (approved to the bridge by the sender) for `owner`
    /// (Baby Jubjub key x, y and nullifier-key hash); returns the deposit and its gas.
    pub fn deposit_erc20(
        &self,
        token: Address,
        amount: U256,
        owner: [U256; 3],
    ) -> Result<(BridgeDeposit, u64), RollupError> {
        let call = AssetBridge::depositERC20Call {
            token,
            amount,
            ownerX: owner[0],
            ownerY: owner[1],
            nullifierKeyHash: owner[2],
        };
        let receipt = self.transact("depositERC20", self.bridge, call.abi_encode())?;
        self.deposit_in(&receipt)
    }

    /// Locks item `token_id` of the ERC-721 `token` (approved to the bridge) for `owner`.
    pub fn deposit_erc721(
        &self,
        token: Address,
        token_id: U256,
        owner: [U256; 3],
    ) -> Result<(BridgeDeposit, u64), RollupError> {
        let call = AssetBridge::depositERC721Call {
            token,
            tokenId: token_id,
            ownerX: owner[0],
            ownerY: owner[1],
            nullifierKeyHash: owner[2],
        };
        let receipt = self.transact("depositERC721", self.bridge, call.abi_encode())?;
        self.deposit_in(&receipt)
    }

    fn deposit_in(
        &self,
        receipt: &TransactionReceipt,
    ) -> Result<(BridgeDeposit, u64), RollupError> {
        let block = receipt.block_number.unwrap_or_default();
        receipt
            .logs()
            .iter()
            .filter(|log| log.address() == self.bridge)
            .find_map(|log| log.log_decode::<AssetBridge::Deposit>().ok())
            .map(|log| (deposit_of(&log.inner.data, block), receipt.gas_used))
            .ok_or_else(|| rpc("deposit", "no Deposit event in the receipt").into())
    }

    /// Every `Deposit` event of the bridge from deposit `from_id` on, in order, read from the
    /// logs (from the deploy block to the head) and checked to number on without a gap.
    pub fn deposits(&self, from_id: u64) -> Result<Vec<BridgeDeposit>, RollupError> {
        let provider = self.provider.clone();
        let bridge = self.bridge;
        let from_block = self.deploy_block;
        let found = self.run(async move {
            let filter = Filter::new()
                .address(bridge)
                .event_signature(AssetBridge::Deposit::SIGNATURE_HASH)
                .from_block(from_block);
            let logs = provider
                .get_logs(&filter)
                .await
                .map_err(|e| rpc("eth_getLogs", e))?;
            let mut found = Vec::with_capacity(logs.len());
            for log in logs {
                let block = log.block_number.unwrap_or_default();
                let decoded = log
                    .log_decode::<AssetBridge::Deposit>()
                    .map_err(|e| rpc("Deposit log", e))?;
                found.push(deposit_of(&decoded.inner.data, block));
            }
            Ok(found)
        })?;
        for (expected, deposit) in found.iter().enumerate() {
            if deposit.deposit_id != expected as u64 {
                return Err(rpc(
                    "eth_getLogs",
                    format!("deposit {} where {expected} was next", deposit.deposit_id),
                )
                .into());
            }
        }
        Ok(found
            .into_iter()
            .filter(|deposit| deposit.deposit_id >= from_id)
            .collect())
    }

    /// Mints the bridge's deposit `deposit` in the rollup with a proof that it takes the
    /// rollup's root to `new_root`; returns the gas used.
    pub fn mint_deposit(
        &self,
        deposit: &BridgeDeposit,
        new_root: U256,
        proof: ProofWords,
    ) -> Result<u64, RollupError> {
        let call = AssetRollup::mintDepositCall {
            depositId: deposit.deposit_id,
            data: AssetRollup::DepositData {
                ownerX: deposit.owner[0],
                ownerY: deposit.owner[1],
                nullifierKeyHash: deposit.owner[2],
                asset: deposit.asset,
                amount: deposit.amount,
            },
            newRoot: new_root,
            proof,
        };
        self.transact("mintDeposit", self.rollup, call.abi_encode())
            .map(|receipt| receipt.gas_used)
    }

    /// Applies a proven transfer or withdraw; returns the gas used and, for a withdraw, the
    /// withdrawal the bridge may now release.
    pub fn transfer(
        &self,
        inputs: &TransferInputs,
        proof: ProofWords,
    ) -> Result<Applied, RollupError> {
        let call = AssetRollup::transferCall {
            t: transfer_inputs(inputs),
            proof,
        };
        let receipt = self.transact("transfer", self.rollup, call.abi_encode())?;
        Ok(self.applied(&receipt))
    }

    /// [`EvmAssets::transfer`], publishing with it the notes of its new outputs (`notes[i]` is
    /// the note of the output at leaf `inputs.leaf_index + i`; at most two for a transfer, one
    /// for a withdraw), as `OutputNote` events that recipients scan ([`EvmAssets::history`]).
    pub fn transfer_with_notes(
        &self,
        inputs: &TransferInputs,
        proof: ProofWords,
        notes: &[Vec<u8>],
    ) -> Result<Applied, RollupError> {
        let call = AssetRollup::transferWithNotesCall {
            t: transfer_inputs(inputs),
            proof,
            notes: notes.iter().map(|note| note.clone().into()).collect(),
        };
        let receipt = self.transact("transferWithNotes", self.rollup, call.abi_encode())?;
        Ok(self.applied(&receipt))
    }

    /// Publishes a note again for the output at `leaf_index` (already in the tree).
    pub fn publish_note(&self, leaf_index: u64, note: Vec<u8>) -> Result<(), RollupError> {
        let call = AssetRollup::publishNoteCall {
            leafIndex: leaf_index,
            note: note.into(),
        };
        self.transact("publishNote", self.rollup, call.abi_encode())
            .map(|_| ())
    }

    fn applied(&self, receipt: &TransactionReceipt) -> Applied {
        let withdrawal = receipt
            .logs()
            .iter()
            .filter(|log| log.address() == self.rollup)
            .find_map(|log| log.log_decode::<AssetRollup::WithdrawalProven>().ok())
            .map(|log| withdrawal_of(&log.inner.data));
        Applied {
            gas_used: receipt.gas_used,
            withdrawal,
        }
    }

    /// Everything the rollup published from block `from_block` to the head, in chain order, and
    /// the last block read (the next read starts after it): what a wallet replays to rebuild
    /// the output tree, find its outputs and its withdrawals.
    pub fn history(&self, from_block: u64) -> Result<RollupHistory, RollupError> {
        let provider = self.provider.clone();
        let rollup = self.rollup;
        self.run(async move {
            let head = provider
                .get_block_number()
                .await
                .map_err(|e| rpc("eth_blockNumber", e))?;
            if head < from_block {
                return Ok(RollupHistory {
                    events: Vec::new(),
                    to_block: head,
                });
            }
            let filter = Filter::new()
                .address(rollup)
                .event_signature(vec![
                    AssetRollup::DepositMinted::SIGNATURE_HASH,
                    AssetRollup::TransferApplied::SIGNATURE_HASH,
                    AssetRollup::OutputNote::SIGNATURE_HASH,
                    AssetRollup::WithdrawalProven::SIGNATURE_HASH,
                ])
                .from_block(from_block)
                .to_block(head);
            let mut logs = provider
                .get_logs(&filter)
                .await
                .map_err(|e| rpc("eth_getLogs", e))?;
            logs.sort_by_key(|log| (log.block_number, log.log_index));
            let mut events = Vec::with_capacity(logs.len());
            for log in logs {
                let malformed = |e| rpc("rollup log", e);
                let topic = log.topic0().copied().unwrap_or_default();
                let event = if topic == AssetRollup::DepositMinted::SIGNATURE_HASH {
                    let event = log
                        .log_decode::<AssetRollup::DepositMinted>()
                        .map_err(malformed)?
                        .inner
                        .data;
                    RollupEvent::DepositMinted {
                        deposit_id: event.depositId,
                        leaf_index: event.leafIndex,
                        new_root: event.newRoot,
                    }
                } else if topic == AssetRollup::TransferApplied::SIGNATURE_HASH {
                    let event = log
                        .log_decode::<AssetRollup::TransferApplied>()
                        .map_err(malformed)?
                        .inner
                        .data;
                    RollupEvent::TransferApplied {
                        new_root: event.newRoot,
                        leaf_index: event.leafIndex,
                        nullifiers: event.nullifiers,
                        commitments: event.commitments,
                    }
                } else if topic == AssetRollup::OutputNote::SIGNATURE_HASH {
                    let event = log
                        .log_decode::<AssetRollup::OutputNote>()
                        .map_err(malformed)?
                        .inner
                        .data;
                    RollupEvent::OutputNote {
                        leaf_index: event.leafIndex,
                        note: event.note.to_vec(),
                    }
                } else {
                    let event = log
                        .log_decode::<AssetRollup::WithdrawalProven>()
                        .map_err(malformed)?
                        .inner
                        .data;
                    RollupEvent::WithdrawalProven(withdrawal_of(&event))
                };
                events.push(event);
            }
            Ok(RollupHistory {
                events,
                to_block: head,
            })
        })
    }

    /// Releases a proven withdrawal from the bridge to its recipient; returns the gas used.
    pub fn release(&self, withdrawal: &ProvenWithdrawal) -> Result<u64, RollupError> {
        let call = AssetBridge::releaseCall {
            withdrawalId: withdrawal.withdrawal_id,
            recipient: withdrawal.recipient,
            asset: withdrawal.asset,
            amount: withdrawal.amount,
        };
        self.transact("release", self.bridge, call.abi_encode())
            .map(|receipt| receipt.gas_used)
    }

    /// Deploys an OpenZeppelin ERC-20 (`contracts/TestERC20.sol`) whose whole `supply` the
    /// sender holds.
    pub fn deploy_test_erc20(&self, name: &str, supply: U256) -> Result<Address, RollupError> {
        let mut code = alloy::hex::decode(TEST_ERC20_BIN.trim())
            .map_err(|e| rpc("the committed TestERC20.bin", e))?;
        code.extend_from_slice(&TestERC20::constructorCall::abi_encode(
            &TestERC20::constructorCall {
                name_: name.into(),
                symbol_: name.into(),
                supply,
            },
        ));
        self.deploy_code(code)
    }

    /// Deploys an OpenZeppelin ERC-721 (`contracts/TestERC721.sol`) the sender mints.
    pub fn deploy_test_erc721(&self, name: &str) -> Result<Address, RollupError> {
        let mut code = alloy::hex::decode(TEST_ERC721_BIN.trim())
            .map_err(|e| rpc("the committed TestERC721.bin", e))?;
        code.extend_from_slice(&TestERC721::constructorCall::abi_encode(
            &TestERC721::constructorCall {
                name_: name.into(),
                symbol_: name.into(),
            },
        ));
        self.deploy_code(code)
    }

    /// Mints item `token_id` of a test ERC-721 to `to` (the sender must have deployed it).
    pub fn mint_item(
        &self,
        token: Address,
        to: Address,
        token_id: U256,
    ) -> Result<(), RollupError> {
        let call = TestERC721::mintCall {
            to,
            tokenId: token_id,
        };
        self.transact("mint", token, call.abi_encode()).map(|_| ())
    }

    /// Approves `amount` of ERC-20 `token` to the bridge.
    pub fn approve_erc20(&self, token: Address, amount: U256) -> Result<(), RollupError> {
        let call = TestERC20::approveCall {
            spender: self.bridge,
            value: amount,
        };
        self.transact("approve", token, call.abi_encode())
            .map(|_| ())
    }

    /// Approves item `token_id` of ERC-721 `token` to the bridge.
    pub fn approve_item(&self, token: Address, token_id: U256) -> Result<(), RollupError> {
        let call = TestERC721::approveCall {
            to: self.bridge,
            tokenId: token_id,
        };
        self.transact("approve", token, call.abi_encode())
            .map(|_| ())
    }

    /// Sends `amount` of ERC-20 `token` to `to`.
    pub fn transfer_erc20(
        &self,
        token: Address,
        to: Address,
        amount: U256,
    ) -> Result<(), RollupError> {
        let call = TestERC20::transferCall { to, value: amount };
        self.transact("transfer", token, call.abi_encode())
            .map(|_| ())
    }

    /// `account`'s balance of ERC-20 `token`.
    pub fn erc20_balance(&self, token: Address, account: Address) -> Result<U256, RollupError> {
        self.view_of(token, TestERC20::balanceOfCall { account })
    }

    /// The owner of item `token_id` of ERC-721 `token`.
    pub fn item_owner(&self, token: Address, token_id: U256) -> Result<Address, RollupError> {
        self.view_of(token, TestERC721::ownerOfCall { tokenId: token_id })
    }
}

impl EvmAssets {
    /// Every change of the rollup's output tree since its deployment, in chain order (see
    /// [`TreeUpdate`]), checked to append leaf after leaf without a gap.
    pub fn tree_updates(&self) -> Result<Vec<TreeUpdate>, RollupError> {
        let provider = self.provider.clone();
        let rollup = self.rollup;
        let from_block = self.deploy_block;
        let mut found = self.run(async move {
            let filter = Filter::new()
                .address(rollup)
                .event_signature(vec![
                    AssetRollup::DepositMinted::SIGNATURE_HASH,
                    AssetRollup::TransferApplied::SIGNATURE_HASH,
                ])
                .from_block(from_block);
            let logs = provider
                .get_logs(&filter)
                .await
                .map_err(|e| rpc("eth_getLogs", e))?;
            let mut found = Vec::with_capacity(logs.len());
            for log in logs {
                let order = (
                    log.block_number.unwrap_or_default(),
                    log.log_index.unwrap_or_default(),
                );
                let transaction = log.transaction_hash.unwrap_or_default();
                let update = if let Ok(minted) = log.log_decode::<AssetRollup::DepositMinted>() {
                    let event = &minted.inner.data;
                    TreeUpdate::DepositMinted {
                        deposit_id: event.depositId,
                        leaf_index: event.leafIndex,
                        new_root: event.newRoot,
                        transaction,
                    }
                } else {
                    let applied = log
                        .log_decode::<AssetRollup::TransferApplied>()
                        .map_err(|e| rpc("TransferApplied log", e))?;
                    let event = &applied.inner.data;
                    TreeUpdate::TransferApplied {
                        leaf_index: event.leafIndex,
                        new_root: event.newRoot,
                        nullifiers: event.nullifiers,
                        commitments: event.commitments,
                        transaction,
                    }
                };
                found.push((order, update));
            }
            Ok(found)
        })?;
        found.sort_by_key(|(order, _)| *order);
        let mut next_leaf = 0;
        let mut updates = Vec::with_capacity(found.len());
        for (_, update) in found {
            let leaf_index = match update {
                TreeUpdate::DepositMinted { leaf_index, .. }
                | TreeUpdate::TransferApplied { leaf_index, .. } => leaf_index,
            };
            if leaf_index != next_leaf {
                return Err(rpc(
                    "eth_getLogs",
                    format!("a tree update at leaf {leaf_index} where {next_leaf} was next"),
                )
                .into());
            }
            next_leaf += update.leaves_added();
            updates.push(update);
        }
        Ok(updates)
    }

    /// Deploys a `PayoutDirectory` (`contracts/PayoutDirectory.sol`): where reward wallets
    /// register the asset address their rollup payouts go to.
    pub fn deploy_payout_directory(&self) -> Result<Address, RollupError> {
        let code = alloy::hex::decode(PAYOUT_DIRECTORY_BIN.trim())
            .map_err(|e| rpc("the committed PayoutDirectory.bin", e))?;
        self.deploy_code(code)
    }

    /// Registers, in the payout directory at `directory`, the sender's (a reward wallet's)
    /// asset address: Baby Jubjub key x, y and nullifier-key hash, each below the BN254 scalar
    /// field modulus ([`RollupError::NotCanonical`] otherwise).
    pub fn set_payout_recipient(
        &self,
        directory: Address,
        owner: [U256; 3],
    ) -> Result<(), RollupError> {
        let call = PayoutDirectory::setPayoutRecipientCall {
            ownerX: owner[0],
            ownerY: owner[1],
            nullifierKeyHash: owner[2],
        };
        self.transact("setPayoutRecipient", directory, call.abi_encode())
            .map(drop)
    }

    /// The asset address `wallet` registered in the payout directory at `directory`, if any.
    pub fn payout_recipient(
        &self,
        directory: Address,
        wallet: Address,
    ) -> Result<Option<[U256; 3]>, RollupError> {
        let answer = self.view_of(directory, PayoutDirectory::payoutRecipientCall { wallet })?;
        let owner = [answer.ownerX, answer.ownerY, answer.nullifierKeyHash];
        Ok((owner != [U256::ZERO; 3]).then_some(owner))
    }
}

fn transfer_inputs(inputs: &TransferInputs) -> AssetRollup::TransferInputs {
    AssetRollup::TransferInputs {
        oldRoot: inputs.old_root,
        newRoot: inputs.new_root,
        leafIndex: inputs.leaf_index,
        nullifiers: inputs.nullifiers,
        commitments: inputs.commitments,
        recipient: inputs.recipient,
        asset: inputs.asset,
        amount: inputs.amount,
    }
}

fn withdrawal_of(event: &AssetRollup::WithdrawalProven) -> ProvenWithdrawal {
    ProvenWithdrawal {
        withdrawal_id: event.withdrawalId,
        recipient: event.recipient,
        asset: event.asset,
        amount: event.amount,
    }
}

fn deposit_of(event: &AssetBridge::Deposit, block: u64) -> BridgeDeposit {
    BridgeDeposit {
        deposit_id: event.depositId,
        depositor: event.depositor,
        token: event.token,
        asset: event.asset,
        amount: event.amount,
        owner: [event.ownerX, event.ownerY, event.nullifierKeyHash],
        block,
    }
}

async fn check_chain_id(
    provider: &DynProvider,
    url: &str,
    expected: u64,
) -> Result<(), RollupError> {
    let got = provider
        .get_chain_id()
        .await
        .map_err(|e| ChainError::Unreachable {
            url: url.into(),
            reason: e.to_string(),
        })?;
    if got != expected {
        return Err(ChainError::WrongChainId { expected, got }.into());
    }
    Ok(())
}

async fn view<C: SolCall>(
    provider: &DynProvider,
    to: Address,
    call: C,
) -> Result<C::Return, RollupError> {
    let tx = TransactionRequest::default()
        .with_to(to)
        .with_input(call.abi_encode());
    let answer = provider
        .call(tx)
        .await
        .map_err(|e| refusal(C::SIGNATURE, &e))?;
    C::abi_decode_returns(&answer)
        .map_err(|e| rpc(C::SIGNATURE, format!("undecodable answer: {e}")).into())
}

async fn deploy_code(
    provider: &DynProvider,
    from: Address,
    code: Vec<u8>,
) -> Result<(Address, u64), RollupError> {
    let tx = TransactionRequest::default()
        .with_from(from)
        .with_deploy_code(code);
    let receipt = provider
        .send_transaction(tx)
        .await
        .map_err(|e| refusal("deploy", &e))?
        .with_timeout(Some(Duration::from_secs(120)))
        .get_receipt()
        .await
        .map_err(|e| rpc("deploy", e))?;
    let address = receipt
        .contract_address
        .filter(|_| receipt.status())
        .ok_or_else(|| ChainError::Reverted("a deployment failed".into()))?;
    Ok((address, receipt.block_number.unwrap_or_default()))
}
