//! The Web3-compatible JSON-RPC gateway: Ethereum wallets, explorers and scripts talk to a
//! sequencer unchanged, over HTTP or WebSocket on one port (`jsonrpsee`).
//!
//! The gateway speaks to its sequencer's core through a [`GatewayLink`], the same commands a
//! native client session sends after decoding: a transaction is admitted, logged, acked and
//! tracked like any move. It follows execution results ([`ExecutedBatch`]es) to keep the
//! executed state, one block per batch and the receipts of its transactions ([`chain`]).
//!
//! - **Transactions.** `eth_sendRawTransaction` takes legacy (EIP-155), EIP-2930 and EIP-1559
//!   envelopes ([`primitives::ethereum`]), with or without an EIP-2930 access list. The
//!   gateway estimates the Space Access List, which Ethereum transactions do not carry, over
//!   the executed state with the declared writes of this gateway's submitted, unexecuted
//!   moves on top and the sender's pending nonce ([`chain::ChainView::with_pending`]), so that
//!   a second move that reads what a pending first one writes is declared against that write.
//!   **Access lists:** a transaction's own EIP-2930 list is estimated with, as execution runs
//!   it (warm items, intrinsic gas), and every address and slot it names is in the Space Access
//!   List, a read at least: the list only adds items, never writes, and a move whose Space
//!   Access List missed one would be refused by every sequencer and execution node. The
//!   Ethereum hash (keccak-256 of the envelope) names the transaction to the client; the
//!   gateway maps it to the move's hash. A creation's address is Ethereum's, from sender and
//!   nonce.
//! - **Block tags.** `pending` reads the sequencer's pending state (the `Pending` level: acked
//!   moves' declared writes over executed state). `latest`, `safe` and `finalized` read the
//!   executed state (the `Executed` level: groups agreed on the post-state root, which no later
//!   step revises); a numbered block is accepted only if it is the head. Code reads executed
//!   state whatever the tag, since pending state holds no code. `eth_call` with `pending`,
//!   and `eth_estimateGas` and `eth_createAccessList` unless given another tag, run over the
//!   executed state with this gateway's pending writes on top, as a transaction sent now will.
//! - **Logs.** `eth_getLogs` filters the logs of this gateway's transactions in the blocks it
//!   keeps, over at most [`RPC_LOGS_BLOCK_RANGE_MAX`] blocks and [`RPC_LOGS_MAX`] logs (-32005
//!   beyond either, with the bound as data); `eth_subscribe` pushes `newHeads` and `logs`.
//! - **Pending state** (an extension): `eth_subscribe("tickrate_pendingState", [items])`, each
//!   item `{"balance": address}`, `{"nonce": address}` or `{"storage": [address, slot]}` (at
//!   most [`RPC_PENDING_ITEMS_MAX`]), pushes `{"type": "changed", "item", "value"}` for each
//!   new pending value (the first is the value when subscribed) and `{"type": "retracted",
//!   "move", "reason", "corrected": [{"item", "value"}], "tick"}` when pending state changes
//!   for a cause other than a new move, in the order the sequencer sent them.
//! - **Tick diffs** (an extension): `eth_subscribe("tickrate_tickDiff", [items])`, items as
//!   above, pushes `{"tick", "changes": [{"item", "value"}]}` once per sequencer tick in which
//!   any of the items' pending values changed, each value as it stands at the tick's end (the
//!   first push holds every item's value when subscribed), so that a game loop applies one diff
//!   per frame. The gateway's session follows the union of its subscribers' items (at most
//!   [`TICK_DIFF_ENTITIES_MAX`]); a subscriber sees only its own, and may be pushed the values
//!   again, unchanged, when another subscriber comes or goes.
//! - **Tick-keyed acks** (an extension): `tickrate_sendRawTransaction` takes what
//!   `eth_sendRawTransaction` takes and answers `{"hash", "tick", "seq"}` once the sequencer
//!   acked it: the Ethereum hash, the tick by which the sequencer promised the move in a block
//!   and its place in the sequencer's ack order, from its signed preconfirmation (both `null`
//!   for a transaction executed already).
//! - **Restarts.** The gateway outlives its sequencer's core: [`RpcHandle::repoint`] opens its
//!   session on a restarted core, and moves waiting for an ack from the stopped one fail at
//!   once (-32603) rather than at the ack timeout.
//! - **Fees.** Tickrate has no base fee and devnet moves are sponsored: `eth_gasPrice`,
//!   `eth_maxPriorityFeePerGas` and the history of `eth_feeHistory` are zero. A transaction pays
//!   its own effective price ([`primitives::ethereum`]).
//! - **Errors** use EIP-1474's codes: -32602 invalid params, -32000 invalid input (nonce, chain,
//!   signature), -32003 transaction rejected, -32005 limit exceeded, -32603 internal error, and 3
//!   with the revert data for a reverted call, as geth does.

pub mod chain;
mod convert;
mod error;

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use alloy_rpc_types_eth::{
    BlockId, BlockNumberOrTag, Filter, FilterBlockOption, Log, TransactionRequest,
};
use execution::{AccountState, Estimate, ExecutedBatch, ExecutionEnv, InMemoryState};
use jsonrpsee::{
    PendingSubscriptionSink, RpcModule,
    server::{Server, ServerHandle},
    types::{ErrorObjectOwned, Params},
};
use parking_lot::{Mutex, RwLock};
use primitives::{
    Address, B256, Bytes, MoveSignature, SignedTransaction, TxHash, U256,
    api::{ClientRequest, Entity, ItemValue, Refusal, RetractionReason, ServerMessage},
    codec::Decode,
    ethereum::decode_envelope,
    finality::StateItem,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

pub use self::error::RpcError;
use self::{
    chain::{ChainView, NewBlock, TransactionRecord},
    error::{internal, invalid_params, refusal_error, reverted},
};
use crate::{
    constants::{
        MOVE_BYTES_MAX, RPC_ACK_TIMEOUT, RPC_CALL_GAS_MAX, RPC_FEE_HISTORY_BLOCKS_MAX,
        RPC_LOGS_BLOCK_RANGE_MAX, RPC_LOGS_MAX, RPC_NEW_BLOCKS_QUEUE_MAX, RPC_OUTBOUND_MAX,
        RPC_PENDING_EVENTS_QUEUE_MAX, RPC_PENDING_ITEMS_MAX,
    },
    node::GatewayLink,
    subscriptions::ClientId,
};
use primitives::constants::TICK_DIFF_ENTITIES_MAX;

/// The `web3_clientVersion` answer.
pub const CLIENT_VERSION: &str = concat!("tickrate/", env!("CARGO_PKG_VERSION"));

/// How a gateway runs.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// Where it listens (HTTP and WebSocket).
    pub listen: SocketAddr,
    /// The network's chain id.
    pub chain_id: u64,
    /// The state before the first batch, as the shard groups hold it.
    pub genesis: Vec<(Address, AccountState)>,
}

/// A running gateway.
pub struct RpcHandle {
    /// Where it listens.
    pub local_addr: SocketAddr,
    server: ServerHandle,
    gateway: Arc<Gateway>,
}

impl std::fmt::Debug for RpcHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RpcHandle {
    /// The `http://` URL of the gateway.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The `ws://` URL of the gateway.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.local_addr)
    }

    /// Stops the server.
    pub fn stop(&self) {
        let _ = self.server.stop();
    }

    /// Points the gateway at its sequencer's restarted core: opens its session there, and
    /// sends what it submits from now on there. Clients keep their connections; what they
    /// sent before the restart keeps its records, and its receipts come as its batches execute.
    pub async fn repoint(&self, link: GatewayLink) -> Result<(), RpcError> {
        connect(&self.gateway, link).await?;
        info!(target: "sequencer::rpc", "gateway re-pointed to a restarted sequencer");
        Ok(())
    }
}

/// The session a gateway holds with its sequencer's core.
struct LinkState {
    link: GatewayLink,
    client: ClientId,
    /// Counts the sessions opened, so that a stopped core's acks reader fails only the
    /// submissions made through it.
    generation: u64,
}

/// A submission waiting for its ack, and the session it went through.
struct Waiting {
    generation: u64,
    ack: oneshot::Sender<Result<AckKey, Refusal>>,
}

/// Where the sequencer's ack put a move (see `tickrate_sendRawTransaction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
struct AckKey {
    /// The tick by which the sequencer promised the move in a block.
    tick: u64,
    /// The move's place in the sequencer's ack order, from its preconfirmation.
    seq: Option<u64>,
}

/// `tickrate_sendRawTransaction`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
struct RpcAck {
    hash: B256,
    tick: Option<u64>,
    seq: Option<u64>,
}

/// What every method shares.
struct Gateway {
    chain_id: u64,
    link: RwLock<LinkState>,
    chain: RwLock<ChainView>,
    /// Submitted moves waiting for their ack, by move hash.
    waiting: Mutex<HashMap<TxHash, Waiting>>,
    /// New blocks, for subscribers.
    blocks: broadcast::Sender<Arc<NewBlock>>,
    /// Pending-state messages of the core (changes, retractions, refusals), in its order.
    pending_events: broadcast::Sender<Arc<ServerMessage>>,
    /// How many `tickrate_pendingState` subscriptions watch each item: the gateway's session
    /// watches an item while one does.
    watched: Mutex<HashMap<StateItem, usize>>,
    /// How many `tickrate_tickDiff` subscriptions follow each item: the gateway's session
    /// follows their union. Held across the request that changes it, so that the union the
    /// core has is the last one computed.
    followed: tokio::sync::Mutex<HashMap<StateItem, usize>>,
    /// Set if execution results were missed: the executed state is wrong from then on.
    stale: std::sync::atomic::AtomicBool,
}

/// Starts a gateway for the sequencer behind `link`, following `executed`.
pub async fn serve(
    config: RpcConfig,
    link: GatewayLink,
    executed: broadcast::Receiver<Arc<ExecutedBatch>>,
) -> Result<RpcHandle, RpcError> {
    let (blocks, _) = broadcast::channel(RPC_NEW_BLOCKS_QUEUE_MAX);
    let (pending_events, _) = broadcast::channel(RPC_PENDING_EVENTS_QUEUE_MAX);
    let gateway = Arc::new(Gateway {
        chain_id: config.chain_id,
        link: RwLock::new(LinkState {
            link: link.clone(),
            client: 0,
            generation: 0,
        }),
        chain: RwLock::new(ChainView::new(config.genesis)),
        waiting: Mutex::new(HashMap::new()),
        blocks,
        pending_events,
        watched: Mutex::new(HashMap::new()),
        followed: tokio::sync::Mutex::new(HashMap::new()),
        stale: std::sync::atomic::AtomicBool::new(false),
    });
    connect(&gateway, link).await?;
    tokio::spawn(follow_execution(gateway.clone(), executed));

    let server = Server::builder()
        .build(config.listen)
        .await
        .map_err(RpcError::Io)?;
    let local_addr = server.local_addr().map_err(RpcError::Io)?;
    let module = methods(gateway.clone())?;
    let server = server.start(module);
    info!(target: "sequencer::rpc", %local_addr, "JSON-RPC listening (HTTP and WebSocket)");
    Ok(RpcHandle {
        local_addr,
        server,
        gateway,
    })
}

/// Opens a session on the core behind `link`, makes it the gateway's, and reads its acks.
async fn connect(gateway: &Arc<Gateway>, link: GatewayLink) -> Result<(), RpcError> {
    let (outbound, inbound) = mpsc::channel(RPC_OUTBOUND_MAX);
    let client = link
        .open(0, outbound)
        .await
        .map_err(|_| RpcError::SequencerStopped)?;
    let generation = {
        let mut current = gateway.link.write();
        current.generation += 1;
        current.link = link;
        current.client = client;
        current.generation
    };
    tokio::spawn(read_acks(gateway.clone(), inbound, generation));
    Ok(())
}

/// Hands each ack the core sends to the submission waiting for it. Statuses are not needed:
/// receipts come from the executed batches themselves. When the core stops (its end of the
/// session closes), the submissions still waiting on this session learn it at once.
async fn read_acks(gateway: Arc<Gateway>, mut inbound: mpsc::Receiver<Vec<u8>>, generation: u64) {
    while let Some(bytes) = inbound.recv().await {
        match ServerMessage::from_bytes(&bytes) {
            Ok(ServerMessage::Ack {
                hash,
                result,
                preconfirmation,
            }) => {
                if let Some(waiting) = gateway.waiting.lock().remove(&hash) {
                    let seq = preconfirmation.map(|signed| signed.preconfirmation.seq);
                    let _ = waiting.ack.send(result.map(|tick| AckKey { tick, seq }));
                }
            }
            Ok(
                message @ (ServerMessage::Changed { .. }
                | ServerMessage::Retracted { .. }
                | ServerMessage::SubscriptionRefused { .. }
                | ServerMessage::TickDiff { .. }),
            ) => {
                // No subscriber is no error.
                let _ = gateway.pending_events.send(Arc::new(message));
            }
            Ok(_) => {}
            Err(error) => {
                warn!(target: "sequencer::rpc", %error, "undecodable message from the core")
            }
        }
    }
    // Dropping their ack senders tells the waiting submissions that no ack will come.
    gateway
        .waiting
        .lock()
        .retain(|_, waiting| waiting.generation != generation);
    warn!(target: "sequencer::rpc", generation, "the sequencer's core closed the gateway session");
}

async fn follow_execution(
    gateway: Arc<Gateway>,
    mut executed: broadcast::Receiver<Arc<ExecutedBatch>>,
) {
    loop {
        match executed.recv().await {
            Ok(batch) => {
                let new_block = gateway.chain.write().handle_executed(&batch);
                if let Some(new_block) = new_block {
                    // No subscriber is no error.
                    let _ = gateway.blocks.send(Arc::new(new_block));
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // The state is wrong from here on; a gateway that could not keep up says so
                // rather than serve it.
                gateway
                    .stale
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                warn!(target: "sequencer::rpc", missed, "execution results lagged: executed state is stale from here on");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

type MethodResult<T> = Result<T, ErrorObjectOwned>;

/// Which state a block tag reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StateLevel {
    Pending,
    Executed,
}

impl Gateway {
    fn level_of(&self, block: Option<BlockId>) -> MethodResult<StateLevel> {
        let level = self.tag_level(block)?;
        if level == StateLevel::Executed && self.stale.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(internal(
                &"execution results were missed: the executed state is stale",
            ));
        }
        Ok(level)
    }

    fn tag_level(&self, block: Option<BlockId>) -> MethodResult<StateLevel> {
        match block {
            None => Ok(StateLevel::Executed),
            Some(BlockId::Number(tag)) => match tag {
                BlockNumberOrTag::Pending => Ok(StateLevel::Pending),
                BlockNumberOrTag::Latest | BlockNumberOrTag::Safe | BlockNumberOrTag::Finalized => {
                    Ok(StateLevel::Executed)
                }
                BlockNumberOrTag::Number(number) if number == self.chain.read().head() => {
                    Ok(StateLevel::Executed)
                }
                BlockNumberOrTag::Earliest | BlockNumberOrTag::Number(_) => Err(invalid_params(
                    "only the head's state is kept: use latest, safe, finalized or pending",
                )),
            },
            Some(BlockId::Hash(hash)) => {
                let chain = self.chain.read();
                if chain.block(chain.head()).map(|block| block.hash) == Some(hash.block_hash) {
                    Ok(StateLevel::Executed)
                } else {
                    Err(invalid_params("only the head's state is kept"))
                }
            }
        }
    }

    async fn read(&self, item: StateItem, level: StateLevel) -> MethodResult<U256> {
        match level {
            StateLevel::Pending => {
                let link = self.link.read().link.clone();
                link.pending_value(item)
                    .await
                    .map_err(|error| internal(&error))
            }
            StateLevel::Executed => {
                let chain = self.chain.read();
                let state = chain.state();
                Ok(match item {
                    StateItem::Balance(address) => state
                        .account(&address)
                        .map(|a| a.balance)
                        .unwrap_or_default(),
                    StateItem::Nonce(address) => {
                        U256::from(state.account(&address).map(|a| a.nonce).unwrap_or_default())
                    }
                    StateItem::Storage(address, slot) => state.storage(&address, &slot),
                    StateItem::Code(_) => U256::ZERO,
                })
            }
        }
    }

    fn env(&self, head: u64) -> ExecutionEnv {
        // The next batch is the one a move sent now runs in.
        ExecutionEnv {
            chain_id: self.chain_id,
            block_number: head + 1,
            timestamp: head + 1,
        }
    }

    /// Runs `run` over the state `level` names: the executed state, or for `Pending` the
    /// executed state with this gateway's pending writes on top. Nothing `run` does is kept.
    fn with_state<R>(&self, level: StateLevel, run: impl FnOnce(&InMemoryState, u64) -> R) -> R {
        match level {
            StateLevel::Executed => {
                let chain = self.chain.read();
                run(chain.state(), chain.head())
            }
            StateLevel::Pending => self.chain.write().with_pending(None, run),
        }
    }

    /// Runs a call request over `state` (nothing is kept), with the access list it names.
    fn call_on(
        &self,
        state: &InMemoryState,
        head: u64,
        request: &TransactionRequest,
        gas_limit: u64,
    ) -> Estimate {
        let (sender, body, create) = convert::call_body(request, self.chain_id, gas_limit, state);
        let access_list = request.access_list.clone().unwrap_or_default();
        execution::estimate_move(
            &self.env(head),
            sender,
            &body,
            (create, &access_list),
            state,
            &[],
        )
    }

    /// Runs a call request over the state `level` names.
    fn call(&self, request: &TransactionRequest, gas_limit: u64, level: StateLevel) -> Estimate {
        self.with_state(level, |state, head| {
            self.call_on(state, head, request, gas_limit)
        })
    }

    /// The least gas limit under which `request` succeeds, found as geth does: a bisection
    /// between what one run used and the cap.
    fn estimate_gas(&self, request: &TransactionRequest, level: StateLevel) -> MethodResult<u64> {
        let cap = request
            .gas
            .unwrap_or(RPC_CALL_GAS_MAX)
            .min(RPC_CALL_GAS_MAX);
        self.with_state(level, |state, head| {
            let first = self.call_on(state, head, request, cap);
            if let Err(reason) = &first.status {
                return Err(match reason {
                    primitives::FailureReason::Reverted => reverted(&first.output),
                    other => error::invalid_input(&format!("execution failed: {other:?}")),
                });
            }
            let (mut low, mut high) = (first.gas_used.saturating_sub(1), cap);
            while low + 1 < high {
                let middle = low + (high - low) / 2;
                if self.call_on(state, head, request, middle).status.is_ok() {
                    high = middle;
                } else {
                    low = middle;
                }
            }
            Ok(high)
        })
    }

    /// `eth_getLogs`: the logs of this gateway's transactions in a range of kept blocks (or one
    /// block by hash) that match the filter's addresses and topics.
    fn logs(&self, filter: &Filter) -> MethodResult<Vec<Log>> {
        let chain = self.chain.read();
        let head = chain.head();
        let (from, to) = match filter.block_option {
            FilterBlockOption::AtBlockHash(hash) => {
                let block = chain
                    .block_by_hash(&hash)
                    .ok_or_else(|| invalid_params("unknown block hash"))?;
                (block.number, block.number)
            }
            FilterBlockOption::Range {
                from_block,
                to_block,
            } => {
                let resolve = |tag: Option<BlockNumberOrTag>| match tag {
                    Some(BlockNumberOrTag::Number(number)) => number,
                    Some(BlockNumberOrTag::Earliest) => 0,
                    None
                    | Some(
                        BlockNumberOrTag::Latest
                        | BlockNumberOrTag::Safe
                        | BlockNumberOrTag::Finalized
                        | BlockNumberOrTag::Pending,
                    ) => head,
                };
                (resolve(from_block), resolve(to_block))
            }
        };
        if from > to {
            return Err(invalid_params(&format!(
                "invalid block range: from {from} is after to {to}"
            )));
        }
        let blocks = to - from + 1;
        if blocks > RPC_LOGS_BLOCK_RANGE_MAX {
            return Err(error::limit_exceeded_with(
                &format!(
                    "block range too large: {blocks} blocks, at most {RPC_LOGS_BLOCK_RANGE_MAX}"
                ),
                RPC_LOGS_BLOCK_RANGE_MAX,
            ));
        }
        if from < chain.oldest_kept() {
            return Err(invalid_params(&format!(
                "blocks before {} are no longer kept",
                chain.oldest_kept()
            )));
        }
        let mut logs = Vec::new();
        // Blocks after the head have not executed yet: they hold no logs.
        for number in from..=to.min(head) {
            let Some(receipts) = chain.block_receipts(number) else {
                continue;
            };
            logs.extend(
                convert::block_logs(receipts)
                    .into_iter()
                    .filter(|log| filter.matches(&log.inner)),
            );
            if logs.len() > RPC_LOGS_MAX {
                return Err(error::limit_exceeded_with(
                    &format!("more than {RPC_LOGS_MAX} logs: narrow the range or the filter"),
                    RPC_LOGS_MAX as u64,
                ));
            }
        }
        Ok(logs)
    }

    /// Decodes, estimates, verifies and submits a raw transaction; returns its Ethereum hash
    /// once the sequencer has acked it, with where the ack put it (`None` for a transaction
    /// executed already).
    async fn send_raw(&self, raw: Bytes) -> MethodResult<(B256, Option<AckKey>)> {
        if raw.len() > MOVE_BYTES_MAX {
            return Err(error::limit_exceeded("transaction too large"));
        }
        let ethereum = decode_envelope(&raw).map_err(|error| error::rejected(&error))?;
        if ethereum.tx.chain_id != self.chain_id {
            return Err(refusal_error(&Refusal::WrongChain {
                expected: self.chain_id,
                got: ethereum.tx.chain_id,
            }));
        }
        if self.chain.read().transaction(&ethereum.hash).is_some() {
            return Ok((ethereum.hash, None));
        }
        let nonce = self
            .read(StateItem::Nonce(ethereum.sender), StateLevel::Pending)
            .await?;
        let mut tx = ethereum.tx;
        let signature = ethereum.signature;
        tx.access_list = self.chain.write().with_pending(
            Some((ethereum.sender, nonce.saturating_to())),
            |state, head| {
                execution::estimate_move(
                    &self.env(head),
                    ethereum.sender,
                    &tx,
                    (signature.create, &signature.access_list),
                    state,
                    &[],
                )
                .access_list
            },
        );
        let created = signature.create;
        let signed = SignedTransaction {
            tx,
            signature: MoveSignature::Ethereum(signature),
        };
        let verified = signed
            .verify(self.chain_id)
            .map_err(|error| refusal_error(&crate::ingress::refusal_of(error)))?;
        let move_hash = verified.hash;
        let (link, client, generation) = {
            let current = self.link.read();
            (current.link.clone(), current.client, current.generation)
        };
        let (acked, ack) = oneshot::channel();
        self.waiting.lock().insert(
            move_hash,
            Waiting {
                generation,
                ack: acked,
            },
        );
        {
            // Recorded before it is submitted, so that its batch, however soon it executes,
            // finds the record and retires the pending writes.
            let mut chain = self.chain.write();
            chain.record(
                ethereum.hash,
                TransactionRecord {
                    envelope: raw,
                    sender: ethereum.sender,
                    move_hash,
                    gas_price: verified.tx().gas_price,
                    created: created.then_some(verified.tx().to),
                    receipt: None,
                },
            );
            chain.admit_pending(move_hash, crate::pending::declared_writes(&verified));
        }
        let forget = || {
            self.waiting.lock().remove(&move_hash);
            self.chain.write().forget(&ethereum.hash);
        };
        if link.submit(client, vec![verified]).await.is_err() {
            forget();
            return Err(internal(&"the sequencer has stopped"));
        }
        match tokio::time::timeout(RPC_ACK_TIMEOUT, ack).await {
            Ok(Ok(Ok(key))) => {
                debug!(target: "sequencer::rpc", hash = %ethereum.hash, %move_hash, "transaction acked");
                Ok((ethereum.hash, Some(key)))
            }
            Ok(Ok(Err(refusal))) => {
                forget();
                Err(refusal_error(&refusal))
            }
            Ok(Err(_)) | Err(_) => {
                forget();
                Err(internal(&"no ack from the sequencer"))
            }
        }
    }
}

fn parse_block(params: &Params<'_>, index: usize) -> MethodResult<Option<BlockId>> {
    let mut sequence = params.sequence();
    for _ in 0..index {
        let _: serde_json::Value = sequence.next()?;
    }
    sequence.optional_next()
}

/// Registers every method.
fn methods(gateway: Arc<Gateway>) -> Result<RpcModule<Arc<Gateway>>, RpcError> {
    let mut module = RpcModule::new(gateway);
    module.register_method("eth_chainId", |_, gateway, _| {
        MethodResult::Ok(alloy_primitives::U64::from(gateway.chain_id))
    })?;
    module.register_method("net_version", |_, gateway, _| {
        MethodResult::Ok(gateway.chain_id.to_string())
    })?;
    module.register_method("web3_clientVersion", |_, _, _| {
        MethodResult::Ok(CLIENT_VERSION)
    })?;
    module.register_method("eth_blockNumber", |_, gateway, _| {
        MethodResult::Ok(alloy_primitives::U64::from(gateway.chain.read().head()))
    })?;
    module.register_method("eth_gasPrice", |_, _, _| MethodResult::Ok(U256::ZERO))?;
    module.register_method("eth_maxPriorityFeePerGas", |_, _, _| {
        MethodResult::Ok(U256::ZERO)
    })?;
    module.register_method("eth_feeHistory", |params, gateway, _| {
        let mut sequence = params.sequence();
        let count: alloy_primitives::U64 = sequence.next()?;
        let newest: BlockNumberOrTag = sequence.next()?;
        let percentiles: Option<Vec<f64>> = sequence.optional_next()?;
        let head = gateway.chain.read().head();
        MethodResult::Ok(convert::fee_history(
            count.to::<u64>().min(RPC_FEE_HISTORY_BLOCKS_MAX),
            newest.as_number().unwrap_or(head).min(head),
            percentiles.map_or(0, |percentiles| percentiles.len()),
        ))
    })?;
    for (name, item) in [
        (
            "eth_getBalance",
            StateItem::Balance as fn(Address) -> StateItem,
        ),
        ("eth_getTransactionCount", StateItem::Nonce),
    ] {
        module.register_async_method(name, move |params, gateway, _| async move {
            let address: Address = params.sequence().next()?;
            let level = gateway.level_of(parse_block(&params, 1)?)?;
            let value = gateway.read(item(address), level).await?;
            MethodResult::Ok(value)
        })?;
    }
    module.register_async_method("eth_getStorageAt", |params, gateway, _| async move {
        let mut sequence = params.sequence();
        let address: Address = sequence.next()?;
        let slot: U256 = sequence.next()?;
        let level = gateway.level_of(parse_block(&params, 2)?)?;
        let value = gateway
            .read(StateItem::Storage(address, B256::from(slot)), level)
            .await?;
        MethodResult::Ok(B256::from(value))
    })?;
    module.register_method("eth_getCode", |params, gateway, _| {
        let address: Address = params.sequence().next()?;
        gateway.level_of(parse_block(&params, 1)?)?;
        let chain = gateway.chain.read();
        let code = chain
            .state()
            .account(&address)
            .map(|account| account.code.clone())
            .unwrap_or_default();
        MethodResult::Ok(code)
    })?;
    module.register_async_method("eth_sendRawTransaction", |params, gateway, _| async move {
        let raw: Bytes = params.sequence().next()?;
        gateway.send_raw(raw).await.map(|(hash, _)| hash)
    })?;
    module.register_async_method(
        "tickrate_sendRawTransaction",
        |params, gateway, _| async move {
            let raw: Bytes = params.sequence().next()?;
            let (hash, key) = gateway.send_raw(raw).await?;
            MethodResult::Ok(RpcAck {
                hash,
                tick: key.map(|key| key.tick),
                seq: key.and_then(|key| key.seq),
            })
        },
    )?;
    module.register_method("eth_call", |params, gateway, _| {
        let request: TransactionRequest = params.sequence().next()?;
        let level = gateway.level_of(parse_block(&params, 1)?)?;
        let gas = request
            .gas
            .unwrap_or(RPC_CALL_GAS_MAX)
            .min(RPC_CALL_GAS_MAX);
        let outcome = gateway.call(&request, gas, level);
        match outcome.status {
            Ok(()) => Ok(outcome.output),
            Err(primitives::FailureReason::Reverted) => Err(reverted(&outcome.output)),
            Err(other) => Err(error::invalid_input(&format!(
                "execution failed: {other:?}"
            ))),
        }
    })?;
    module.register_method("eth_estimateGas", |params, gateway, _| {
        let request: TransactionRequest = params.sequence().next()?;
        let level =
            gateway.level_of(Some(parse_block(&params, 1)?.unwrap_or(BlockId::pending())))?;
        gateway
            .estimate_gas(&request, level)
            .map(alloy_primitives::U64::from)
    })?;
    module.register_method("eth_createAccessList", |params, gateway, _| {
        let request: TransactionRequest = params.sequence().next()?;
        let level =
            gateway.level_of(Some(parse_block(&params, 1)?.unwrap_or(BlockId::pending())))?;
        let gas = request
            .gas
            .unwrap_or(RPC_CALL_GAS_MAX)
            .min(RPC_CALL_GAS_MAX);
        let estimate = gateway.call(&request, gas, level);
        let sender = request.from.unwrap_or_default();
        MethodResult::Ok(convert::access_list_result(&estimate, sender))
    })?;
    module.register_method("eth_getLogs", |params, gateway, _| {
        let filter: Filter = params.sequence().next()?;
        gateway.logs(&filter)
    })?;
    module.register_method("eth_getTransactionByHash", |params, gateway, _| {
        let hash: B256 = params.sequence().next()?;
        let chain = gateway.chain.read();
        MethodResult::Ok(
            chain
                .transaction(&hash)
                .and_then(|record| convert::rpc_transaction(&chain, record)),
        )
    })?;
    module.register_method("eth_getTransactionReceipt", |params, gateway, _| {
        let hash: B256 = params.sequence().next()?;
        let chain = gateway.chain.read();
        MethodResult::Ok(
            chain
                .transaction(&hash)
                .and_then(|record| convert::rpc_receipt(&chain, hash, record)),
        )
    })?;
    module.register_method("eth_getBlockByNumber", |params, gateway, _| {
        let mut sequence = params.sequence();
        let tag: BlockNumberOrTag = sequence.next()?;
        let full: Option<bool> = sequence.optional_next()?;
        let chain = gateway.chain.read();
        let number = match tag {
            BlockNumberOrTag::Number(number) => number,
            BlockNumberOrTag::Earliest => 0,
            _ => chain.head(),
        };
        MethodResult::Ok(
            chain
                .block(number)
                .map(|block| convert::rpc_block(&chain, block, full.unwrap_or(false))),
        )
    })?;
    module.register_method("eth_getBlockByHash", |params, gateway, _| {
        let mut sequence = params.sequence();
        let hash: B256 = sequence.next()?;
        let full: Option<bool> = sequence.optional_next()?;
        let chain = gateway.chain.read();
        MethodResult::Ok(
            chain
                .block_by_hash(&hash)
                .map(|block| convert::rpc_block(&chain, block, full.unwrap_or(false))),
        )
    })?;
    module.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |params, pending, gateway, _| async move {
            subscribe(params, pending, (*gateway).clone()).await
        },
    )?;
    Ok(module)
}

/// `eth_subscribe`: `newHeads` pushes each new block's header, `logs` each log matching the
/// filter, of this gateway's transactions.
async fn subscribe(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    gateway: Arc<Gateway>,
) -> jsonrpsee::core::SubscriptionResult {
    let mut sequence = params.sequence();
    let kind: String = sequence.next()?;
    if kind == "tickrate_pendingState" {
        // A malformed list is refused in so many words (a sink dropped unanswered would
        // leave the caller waiting).
        let items: Vec<RpcItem> = match sequence.next() {
            Ok(items) => items,
            Err(error) => {
                pending.reject(error).await;
                return Ok(());
            }
        };
        return subscribe_pending(items, pending, gateway).await;
    }
    if kind == "tickrate_tickDiff" {
        let items: Vec<RpcItem> = match sequence.next() {
            Ok(items) => items,
            Err(error) => {
                pending.reject(error).await;
                return Ok(());
            }
        };
        return subscribe_tick_diffs(items, pending, gateway).await;
    }
    let filter = match kind.as_str() {
        "newHeads" => None,
        "logs" => Some(
            sequence
                .optional_next::<alloy_rpc_types_eth::Filter>()?
                .unwrap_or_default(),
        ),
        other => {
            pending
                .reject(invalid_params(&format!("unsupported subscription {other}")))
                .await;
            return Ok(());
        }
    };
    let mut blocks = gateway.blocks.subscribe();
    let sink = pending.accept().await?;
    loop {
        let new_block = tokio::select! {
            () = sink.closed() => return Ok(()),
            received = blocks.recv() => match received {
                Ok(new_block) => new_block,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        };
        let messages: Vec<serde_json::Value> = match &filter {
            None => {
                let chain = gateway.chain.read();
                vec![serde_json::to_value(convert::rpc_header(
                    &chain,
                    &new_block.block,
                ))?]
            }
            Some(filter) => convert::rpc_logs(&new_block)
                .into_iter()
                .filter(|log| filter.matches(&log.inner))
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?,
        };
        for message in messages {
            let message = serde_json::value::to_raw_value(&message)?;
            if sink.send(message).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// A pending-state item as the `tickrate_pendingState` subscription names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum RpcItem {
    /// An account's balance.
    Balance(Address),
    /// An account's nonce.
    Nonce(Address),
    /// A storage slot.
    Storage(Address, B256),
}

impl From<RpcItem> for StateItem {
    fn from(item: RpcItem) -> Self {
        match item {
            RpcItem::Balance(address) => StateItem::Balance(address),
            RpcItem::Nonce(address) => StateItem::Nonce(address),
            RpcItem::Storage(address, slot) => StateItem::Storage(address, slot),
        }
    }
}

/// The JSON form of an item; code is never watched, so it has none (and is never sent).
fn rpc_item(item: &StateItem) -> Option<RpcItem> {
    match item {
        StateItem::Balance(address) => Some(RpcItem::Balance(*address)),
        StateItem::Nonce(address) => Some(RpcItem::Nonce(*address)),
        StateItem::Storage(address, slot) => Some(RpcItem::Storage(*address, *slot)),
        StateItem::Code(_) => None,
    }
}

/// A retraction's reason in JSON: `{"kind": "failed", "failure": "<reason>"}`, `{"kind":
/// "rebased"}`, `{"kind": "replaced", "by": hash}` or `{"kind": "failover"}`.
fn rpc_reason(reason: &RetractionReason) -> serde_json::Value {
    match reason {
        RetractionReason::Failed(failure) => {
            serde_json::json!({"kind": "failed", "failure": format!("{failure:?}")})
        }
        RetractionReason::Rebased => serde_json::json!({"kind": "rebased"}),
        RetractionReason::Replaced { by } => serde_json::json!({"kind": "replaced", "by": by}),
        RetractionReason::Failover => serde_json::json!({"kind": "failover"}),
    }
}

/// What one `tickrate_pendingState` subscriber is told of a core message, if anything: only
/// its own items.
fn pending_event_json(
    message: &ServerMessage,
    items: &std::collections::HashSet<StateItem>,
) -> Option<serde_json::Value> {
    match message {
        ServerMessage::Changed { item, value } if items.contains(item) => {
            Some(serde_json::json!({"type": "changed", "item": rpc_item(item)?, "value": value}))
        }
        ServerMessage::SubscriptionRefused { item, limit } if items.contains(item) => {
            Some(serde_json::json!({"type": "refused", "item": rpc_item(item)?, "limit": limit}))
        }
        ServerMessage::Retracted {
            hash,
            reason,
            corrected,
            tick,
        } => {
            let corrected: Vec<serde_json::Value> = corrected
                .iter()
                .filter(|ItemValue { item, .. }| items.contains(item))
                .filter_map(|ItemValue { item, value }| {
                    Some(serde_json::json!({"item": rpc_item(item)?, "value": value}))
                })
                .collect();
            (!corrected.is_empty()).then(|| {
                serde_json::json!({"type": "retracted", "move": hash, "reason": rpc_reason(reason),
                    "corrected": corrected, "tick": tick})
            })
        }
        _ => None,
    }
}

/// `tickrate_pendingState`: the gateway's session watches the items (the core sends each one's
/// current value, then every change and retraction, in its order), and this subscriber gets
/// the messages about its own items. A subscriber that falls too far behind is closed rather
/// than skip a message.
async fn subscribe_pending(
    items: Vec<RpcItem>,
    pending: PendingSubscriptionSink,
    gateway: Arc<Gateway>,
) -> jsonrpsee::core::SubscriptionResult {
    if items.is_empty() || items.len() > RPC_PENDING_ITEMS_MAX {
        pending
            .reject(invalid_params(&format!(
                "tickrate_pendingState watches 1 to {RPC_PENDING_ITEMS_MAX} items, got {}",
                items.len()
            )))
            .await;
        return Ok(());
    }
    let items: std::collections::HashSet<StateItem> =
        items.into_iter().map(StateItem::from).collect();
    // Listen before asking, so the value the core answers with is not missed.
    let mut events = gateway.pending_events.subscribe();
    let sink = pending.accept().await?;
    let (link, client) = {
        let state = gateway.link.read();
        (state.link.clone(), state.client)
    };
    for item in &items {
        *gateway.watched.lock().entry(*item).or_default() += 1;
        // Asked even if the session watches it already: the answer is this subscriber's
        // first value, in order with what follows.
        if link
            .request(client, ClientRequest::Subscribe(*item))
            .await
            .is_err()
        {
            break;
        }
    }
    let result = forward_events(
        &sink,
        &mut events,
        &items,
        "pendingState",
        pending_event_json,
    )
    .await;
    for item in &items {
        let last = {
            let mut watched = gateway.watched.lock();
            match watched.get_mut(item) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                _ => {
                    watched.remove(item);
                    true
                }
            }
        };
        if last {
            let _ = link
                .request(client, ClientRequest::Unsubscribe(*item))
                .await;
        }
    }
    result
}

/// Sends a subscriber, until it leaves or falls behind, the JSON `to_json` makes of each event
/// for its `items` (events with nothing for them are skipped). `kind` names the subscription in
/// logs.
async fn forward_events(
    sink: &jsonrpsee::SubscriptionSink,
    events: &mut broadcast::Receiver<Arc<ServerMessage>>,
    items: &std::collections::HashSet<StateItem>,
    kind: &'static str,
    to_json: fn(&ServerMessage, &std::collections::HashSet<StateItem>) -> Option<serde_json::Value>,
) -> jsonrpsee::core::SubscriptionResult {
    loop {
        let message = tokio::select! {
            () = sink.closed() => return Ok(()),
            received = events.recv() => match received {
                Ok(message) => message,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(target: "sequencer::rpc", missed, kind, "a subscriber fell behind; closed");
                    return Ok(());
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        };
        let Some(json) = to_json(&message, items) else {
            continue;
        };
        let json = serde_json::value::to_raw_value(&json)?;
        if sink.send(json).await.is_err() {
            return Ok(());
        }
    }
}

/// The `tickrate_tickDiff` push of a core message, for a subscriber of `items`: only a tick
/// diff, only its changes of those items, and nothing if none.
fn tick_diff_json(
    message: &ServerMessage,
    items: &std::collections::HashSet<StateItem>,
) -> Option<serde_json::Value> {
    let ServerMessage::TickDiff { tick, changes } = message else {
        return None;
    };
    let changes: Vec<serde_json::Value> = changes
        .iter()
        .filter(|ItemValue { item, .. }| items.contains(item))
        .filter_map(|ItemValue { item, value }| {
            Some(serde_json::json!({"item": rpc_item(item)?, "value": value}))
        })
        .collect();
    (!changes.is_empty()).then(|| serde_json::json!({"tick": tick, "changes": changes}))
}

/// Has the gateway's session follow the union of what its `tickrate_tickDiff` subscribers
/// follow, after `change` updated the counts (under the lock, so the core ends with the last
/// union computed). Refused, with the counts unchanged, if the union would pass
/// [`TICK_DIFF_ENTITIES_MAX`] or the core has stopped.
async fn refollow(
    gateway: &Gateway,
    change: impl FnOnce(&mut HashMap<StateItem, usize>),
) -> Result<(), ErrorObjectOwned> {
    let mut followed = gateway.followed.lock().await;
    let mut next = followed.clone();
    change(&mut next);
    next.retain(|_, count| *count > 0);
    if next.len() > TICK_DIFF_ENTITIES_MAX {
        return Err(error::limit_exceeded_with(
            &format!("the gateway follows at most {TICK_DIFF_ENTITIES_MAX} items"),
            TICK_DIFF_ENTITIES_MAX as u64,
        ));
    }
    let mut union: Vec<StateItem> = next.keys().copied().collect();
    union.sort_unstable();
    let (link, client) = {
        let state = gateway.link.read();
        (state.link.clone(), state.client)
    };
    link.request(
        client,
        ClientRequest::SubscribeEntities(union.into_iter().map(Entity::Item).collect()),
    )
    .await
    .map_err(|_| internal(&"the sequencer has stopped"))?;
    // Counted only once the core has the union: a refused subscriber leaves nothing behind.
    *followed = next;
    Ok(())
}

/// `tickrate_tickDiff`: the gateway's session follows the subscriber's items too (the core
/// sends a diff of every followed item's current value, then one per tick that changed any),
/// and this subscriber gets the diffs' changes of its own items.
async fn subscribe_tick_diffs(
    items: Vec<RpcItem>,
    pending: PendingSubscriptionSink,
    gateway: Arc<Gateway>,
) -> jsonrpsee::core::SubscriptionResult {
    if items.is_empty() || items.len() > TICK_DIFF_ENTITIES_MAX {
        pending
            .reject(invalid_params(&format!(
                "tickrate_tickDiff follows 1 to {TICK_DIFF_ENTITIES_MAX} items, got {}",
                items.len()
            )))
            .await;
        return Ok(());
    }
    let items: std::collections::HashSet<StateItem> =
        items.into_iter().map(StateItem::from).collect();
    // Listen before asking, so the first diff the core answers with is not missed.
    let mut events = gateway.pending_events.subscribe();
    let added = refollow(&gateway, |followed| {
        for item in &items {
            *followed.entry(*item).or_default() += 1;
        }
    })
    .await;
    if let Err(error) = added {
        pending.reject(error).await;
        return Ok(());
    }
    let result: jsonrpsee::core::SubscriptionResult = async {
        let sink = pending.accept().await?;
        forward_events(&sink, &mut events, &items, "tickDiff", tick_diff_json).await
    }
    .await;
    let removed = refollow(&gateway, |followed| {
        for item in &items {
            if let Some(count) = followed.get_mut(item) {
                *count = count.saturating_sub(1);
            }
        }
    })
    .await;
    if let Err(error) = removed {
        debug!(target: "sequencer::rpc", %error, "could not stop following a subscriber's items");
    }
    result
}

#[cfg(test)]
mod tests {
    use alloy_rpc_types_eth::Header;
    use execution::{AccountDiff, MoveOutcome, StateDiff};

    use super::*;

    const ACCOUNT: Address = Address::repeat_byte(3);

    /// A gateway over a chain view alone: its link leads to a queue nobody serves, so only the
    /// methods that read the executed chain answer.
    fn gateway() -> (Arc<Gateway>, mpsc::Receiver<crate::node::Command>) {
        let (commands, queue) = mpsc::channel(16);
        let (blocks, _) = broadcast::channel(16);
        let genesis = AccountState {
            balance: U256::from(77),
            ..AccountState::default()
        };
        let gateway = Arc::new(Gateway {
            chain_id: 4242,
            link: RwLock::new(LinkState {
                link: GatewayLink::for_tests(commands),
                client: 1,
                generation: 1,
            }),
            chain: RwLock::new(ChainView::new([(ACCOUNT, genesis)])),
            waiting: Mutex::new(HashMap::new()),
            blocks,
            pending_events: broadcast::channel(16).0,
            watched: Mutex::new(HashMap::new()),
            followed: tokio::sync::Mutex::new(HashMap::new()),
            stale: std::sync::atomic::AtomicBool::new(false),
        });
        (gateway, queue)
    }

    fn executed_batch(number: u64) -> ExecutedBatch {
        ExecutedBatch {
            number,
            outcomes: vec![MoveOutcome {
                hash: B256::repeat_byte(9),
                status: Ok(()),
                gas_used: 30_000,
                logs: vec![alloy_primitives::Log::new_unchecked(
                    ACCOUNT,
                    vec![B256::repeat_byte(1)],
                    Bytes::from_static(b"x"),
                )],
                diff: StateDiff {
                    accounts: [(
                        ACCOUNT,
                        AccountDiff {
                            balance: Some(U256::from(70)),
                            ..AccountDiff::default()
                        },
                    )]
                    .into(),
                },
            }],
        }
    }

    #[tokio::test]
    async fn executed_state_and_new_heads_are_served() {
        let (gateway, _queue) = gateway();
        let module = methods(gateway.clone()).expect("methods register");
        let chain_id: alloy_primitives::U64 =
            module.call("eth_chainId", [(); 0]).await.expect("answers");
        assert_eq!(chain_id.to::<u64>(), 4242);
        let balance: U256 = module
            .call("eth_getBalance", (ACCOUNT, "latest"))
            .await
            .expect("answers");
        assert_eq!(balance, U256::from(77));
        let refused = module
            .call::<_, U256>("eth_getBalance", (ACCOUNT, "0x99"))
            .await
            .expect_err("an old block is refused");
        assert!(refused.to_string().contains("head"), "{refused}");

        let mut heads = module
            .subscribe_unbounded("eth_subscribe", ["newHeads"])
            .await
            .expect("subscribed");
        let mut logs = module
            .subscribe_unbounded("eth_subscribe", ["logs"])
            .await
            .expect("subscribed");
        gateway.chain.write().record(
            B256::repeat_byte(0xee),
            chain::TransactionRecord {
                envelope: Bytes::new(),
                sender: ACCOUNT,
                move_hash: B256::repeat_byte(9),
                gas_price: 0,
                created: None,
                receipt: None,
            },
        );
        let new_block = gateway
            .chain
            .write()
            .handle_executed(&executed_batch(1))
            .expect("a new block");
        gateway
            .blocks
            .send(Arc::new(new_block))
            .expect("subscribers listen");
        let (head, _) = heads
            .next::<Header>()
            .await
            .expect("a head")
            .expect("decodes");
        assert_eq!(head.number, 1);
        let (log, _) = logs.next::<Log>().await.expect("a log").expect("decodes");
        assert_eq!(log.transaction_hash, Some(B256::repeat_byte(0xee)));
        assert_eq!(log.inner.address, ACCOUNT);

        let balance: U256 = module
            .call("eth_getBalance", (ACCOUNT, "latest"))
            .await
            .expect("answers");
        assert_eq!(balance, U256::from(70));
        let number: alloy_primitives::U64 = module
            .call("eth_blockNumber", [(); 0])
            .await
            .expect("answers");
        assert_eq!(number.to::<u64>(), 1);

        // eth_getLogs over a range, and by block hash.
        let logs: Vec<Log> = module
            .call(
                "eth_getLogs",
                [
                    serde_json::json!({"fromBlock": "earliest", "toBlock": "latest",
                    "address": ACCOUNT, "topics": [B256::repeat_byte(1)]}),
                ],
            )
            .await
            .expect("answers");
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].transaction_hash, Some(B256::repeat_byte(0xee)));
        let by_hash: Vec<Log> = module
            .call("eth_getLogs", [serde_json::json!({"blockHash": head.hash})])
            .await
            .expect("answers");
        assert_eq!(by_hash, logs);
        let other_topic: Vec<Log> = module
            .call(
                "eth_getLogs",
                [serde_json::json!({"fromBlock": "0x0", "topics": [B256::repeat_byte(2)]})],
            )
            .await
            .expect("answers");
        assert!(other_topic.is_empty());
        // Beyond the range bound: -32005 with the bound as data.
        let too_wide = module
            .call::<_, Vec<Log>>(
                "eth_getLogs",
                [serde_json::json!({"fromBlock": "0x0",
                    "toBlock": format!("{:#x}", RPC_LOGS_BLOCK_RANGE_MAX)})],
            )
            .await
            .expect_err("too wide a range is refused");
        let jsonrpsee::core::server::MethodsError::JsonRpc(too_wide) = too_wide else {
            panic!("a JSON-RPC error: {too_wide}")
        };
        assert_eq!(too_wide.code(), error::LIMIT_EXCEEDED);
        assert_eq!(
            too_wide.data().map(|data| data.get()),
            Some(RPC_LOGS_BLOCK_RANGE_MAX.to_string().as_str())
        );
        let backwards = module
            .call::<_, Vec<Log>>(
                "eth_getLogs",
                [serde_json::json!({"fromBlock": "0x1", "toBlock": "0x0"})],
            )
            .await
            .expect_err("a backwards range is refused");
        assert!(
            backwards.to_string().contains("invalid block range"),
            "{backwards}"
        );
    }

    #[tokio::test]
    async fn pending_state_subscribers_get_changes_and_retractions_of_their_items_in_order() {
        let (gateway, mut queue) = gateway();
        let module = methods(gateway.clone()).expect("methods register");
        let mine = StateItem::Storage(ACCOUNT, B256::repeat_byte(1));
        let other = StateItem::Balance(Address::repeat_byte(8));
        let mut subscription = module
            .subscribe_unbounded(
                "eth_subscribe",
                (
                    "tickrate_pendingState",
                    [serde_json::json!({"storage": [ACCOUNT, B256::repeat_byte(1)]})],
                ),
            )
            .await
            .expect("subscribed");
        match queue.recv().await {
            Some(crate::node::Command::Query(1, request)) => {
                assert_eq!(*request, ClientRequest::Subscribe(mine));
            }
            _ => panic!("the gateway's session subscribes the item"),
        }
        let hash = B256::repeat_byte(5);
        for message in [
            ServerMessage::Changed {
                item: other,
                value: U256::from(1),
            },
            ServerMessage::Changed {
                item: mine,
                value: U256::from(9),
            },
            ServerMessage::Retracted {
                hash,
                reason: RetractionReason::Rebased,
                corrected: vec![ItemValue {
                    item: other,
                    value: U256::from(2),
                }],
                tick: 3,
            },
            ServerMessage::Retracted {
                hash,
                reason: RetractionReason::Failed(primitives::FailureReason::Reverted),
                corrected: vec![
                    ItemValue {
                        item: mine,
                        value: U256::from(7),
                    },
                    ItemValue {
                        item: other,
                        value: U256::from(3),
                    },
                ],
                tick: 4,
            },
        ] {
            gateway
                .pending_events
                .send(Arc::new(message))
                .expect("a subscriber listens");
        }
        let (changed, _) = subscription
            .next::<serde_json::Value>()
            .await
            .expect("a message")
            .expect("decodes");
        assert_eq!(
            changed,
            serde_json::json!({"type": "changed",
                "item": {"storage": [ACCOUNT, B256::repeat_byte(1)]}, "value": "0x9"})
        );
        let (retracted, _) = subscription
            .next::<serde_json::Value>()
            .await
            .expect("a message")
            .expect("decodes");
        assert_eq!(
            retracted,
            serde_json::json!({"type": "retracted", "move": hash,
                "reason": {"kind": "failed", "failure": "Reverted"},
                "corrected": [{"item": {"storage": [ACCOUNT, B256::repeat_byte(1)]}, "value": "0x7"}],
                "tick": 4}),
            "only its own items; a retraction of others' items is not sent to it"
        );
        drop(subscription);

        let too_many: Vec<serde_json::Value> = (0..=RPC_PENDING_ITEMS_MAX)
            .map(|n| serde_json::json!({"nonce": Address::with_last_byte(n as u8)}))
            .collect();
        let refused = module
            .subscribe_unbounded("eth_subscribe", ("tickrate_pendingState", too_many))
            .await
            .expect_err("too many items are refused");
        assert!(refused.to_string().contains("items"), "{refused}");
        let malformed = module
            .subscribe_unbounded(
                "eth_subscribe",
                (
                    "tickrate_pendingState",
                    [serde_json::json!({"code": ACCOUNT})],
                ),
            )
            .await
            .expect_err("an unknown item kind is refused");
        assert!(!malformed.to_string().is_empty());
    }

    #[tokio::test]
    async fn tick_diff_subscribers_share_the_sessions_union_and_get_their_own_items() {
        let (gateway, mut queue) = gateway();
        let module = methods(gateway.clone()).expect("methods register");
        let mine = StateItem::Storage(ACCOUNT, B256::repeat_byte(1));
        let theirs = StateItem::Nonce(Address::repeat_byte(8));
        let mut followed = |expected: Vec<StateItem>| {
            let request = queue.try_recv();
            match request {
                Ok(crate::node::Command::Query(1, request)) => assert_eq!(
                    *request,
                    ClientRequest::SubscribeEntities(
                        expected.into_iter().map(Entity::Item).collect()
                    )
                ),
                _ => panic!("the gateway's session follows the union"),
            }
        };
        let mut subscription = module
            .subscribe_unbounded(
                "eth_subscribe",
                (
                    "tickrate_tickDiff",
                    [serde_json::json!({"storage": [ACCOUNT, B256::repeat_byte(1)]})],
                ),
            )
            .await
            .expect("subscribed");
        followed(vec![mine]);
        let other = module
            .subscribe_unbounded(
                "eth_subscribe",
                (
                    "tickrate_tickDiff",
                    [serde_json::json!({"nonce": Address::repeat_byte(8)})],
                ),
            )
            .await
            .expect("subscribed");
        let mut union = vec![mine, theirs];
        union.sort_unstable();
        followed(union);
        for message in [
            ServerMessage::TickDiff {
                tick: 6,
                changes: vec![ItemValue {
                    item: theirs,
                    value: U256::from(1),
                }],
            },
            ServerMessage::TickDiff {
                tick: 7,
                changes: vec![
                    ItemValue {
                        item: theirs,
                        value: U256::from(2),
                    },
                    ItemValue {
                        item: mine,
                        value: U256::from(40),
                    },
                ],
            },
        ] {
            gateway
                .pending_events
                .send(Arc::new(message))
                .expect("subscribers listen");
        }
        let (diff, _) = subscription
            .next::<serde_json::Value>()
            .await
            .expect("a message")
            .expect("decodes");
        assert_eq!(
            diff,
            serde_json::json!({"tick": 7,
                "changes": [{"item": {"storage": [ACCOUNT, B256::repeat_byte(1)]}, "value": "0x28"}]}),
            "only ticks that changed its items, and only those items"
        );
        drop(other);
        // The other subscriber leaves: the session follows what is left.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match queue.try_recv() {
                Ok(crate::node::Command::Query(1, request)) => {
                    assert_eq!(
                        *request,
                        ClientRequest::SubscribeEntities(vec![Entity::Item(mine)])
                    );
                    break;
                }
                Ok(_) => panic!("only the union is asked for"),
                Err(_) => {
                    assert!(tokio::time::Instant::now() < deadline, "the union shrinks");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn tickrate_send_raw_transaction_answers_the_acks_tick_and_seq() {
        let (gateway, _queue) = gateway();
        let (acked, ack) = oneshot::channel();
        let hash = B256::repeat_byte(4);
        gateway.waiting.lock().insert(
            hash,
            Waiting {
                generation: 1,
                ack: acked,
            },
        );
        let (outbound, inbound) = mpsc::channel(4);
        let reader = tokio::spawn(read_acks(gateway.clone(), inbound, 1));
        use primitives::codec::Encode;
        let key = primitives::AccountKey::from_seed(3);
        let promise = primitives::preconf::Preconfirmation {
            hash,
            sequencer: primitives::NodeId(key.address()),
            seq: 41,
            tick: 12,
            height_first: 2,
            height_last: 2,
        };
        let signed =
            primitives::preconf::SignedPreconfirmation::sign_group(&key, &[promise]).remove(0);
        outbound
            .send(
                ServerMessage::Ack {
                    hash,
                    result: Ok(12),
                    preconfirmation: Some(Box::new(signed)),
                }
                .to_bytes(),
            )
            .await
            .expect("the reader listens");
        assert_eq!(
            ack.await.expect("acked"),
            Ok(AckKey {
                tick: 12,
                seq: Some(41)
            })
        );
        drop(outbound);
        reader.await.expect("the reader ends with its session");
        assert_eq!(
            serde_json::to_value(RpcAck {
                hash,
                tick: Some(12),
                seq: Some(41)
            })
            .expect("serializes"),
            serde_json::json!({"hash": hash, "tick": 12, "seq": 41})
        );
    }
}
