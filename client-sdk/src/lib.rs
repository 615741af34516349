//! The game-facing SDK: connect to a sequencer, submit moves without waiting for the last one,
//! read pending state, and follow each move through the finality levels.
//!
//! A [`Client`] holds one KCP session to one sequencer. [`Client::submit`] sends a signed move
//! and returns at once; its [`Submission`] resolves when the sequencer acks (with the tick it
//! promises the move by) or refuses it with a typed [`Refusal`]. An ack carries the sequencer's
//! signed preconfirmation ([`primitives::preconf`]); the client checks its signature against the
//! sequencer's ID (the one a secure session proved, or [`Client::expect_sequencer`]'s) and keeps
//! it ([`Client::preconfirmation`], [`ClientEvent::preconfirmation`]): held against the
//! sequencer on the upper chain if the move is not where it promised. Its tick and the move's
//! place in the sequencer's ack order key the ack as game netcode does ([`AckKey`],
//! [`Client::ack_key`]). The sequencer then pushes every
//! change of the move's level; [`Client::wait_for`] waits for one, and [`Client::events`] streams
//! them all with the local time each was learned (what the devnet measures latency with).
//!
//! [`FailoverClient`] is what a game holds: it connects to a list of sequencers, fails over to
//! the next when its sequencer dies, re-sends the moves that were sent and not acked (by the
//! same signed bytes, so by the same hash), assigns each account's nonces locally so moves are
//! pipelined, and keeps subscriptions across sessions. [`keys`] signs with an account key or a
//! session key; [`nonce`] is the sans-IO nonce bookkeeping it uses.
//!
//! A move's Space Access List comes from a shard node: [`Estimator`] asks one to run the move on
//! executed state and returns the list to sign it with (a game that knows its contract's
//! layout may also build the list itself, as `examples/` do).
//!
//! With the feature `assets`, [`assets`] is the asset wallet: asset keys, scanning the asset
//! rollup for the wallet's outputs, balances per asset, and transfers and withdrawals proven
//! in zero knowledge.

#[cfg(feature = "assets")]
pub mod assets;
pub mod demo;
pub mod estimator;
pub mod failover;
pub mod keys;
pub mod nonce;
pub mod prediction;

pub use estimator::Estimator;
pub use failover::{FailoverClient, FailoverConfig, MoveHandle};
pub use keys::Signer;
pub use prediction::{Prediction, PredictionError};

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::Instant,
};

use netstack::{
    driver::{KcpClient, KcpConnection, KcpSender},
    kcp::KcpConfig,
};
use parking_lot::Mutex;
use primitives::{
    Address, B256, FinalityLevel, NodeId, SignedTransaction, TxHash, U256,
    api::{ClientRequest, Entity, ItemValue, Refusal, RetractionReason, ServerMessage},
    codec::{Decode, Encode},
    constants::TICK_DIFF_ENTITIES_MAX,
    finality::StateItem,
    preconf::{PreconfirmationError, SignedPreconfirmation},
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The session could not be opened.
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    /// The session is closed.
    #[error("connection closed")]
    Closed,
    /// The sequencer refused the move.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// The move failed at a level past `Pending`.
    #[error("move failed: {0:?}")]
    Failed(primitives::FailureReason),
    /// No sequencer of the list answered.
    #[error("no sequencer reachable ({tried} tried)")]
    NoSequencer {
        /// Addresses tried.
        tried: usize,
    },
    /// The move could not be signed.
    #[error("sign: {0}")]
    Sign(#[from] keys::SignError),
    /// The list of sequencers is empty.
    #[error("no sequencer configured")]
    NoSequencerConfigured,
    /// The shard node did not estimate the move's Space Access List.
    #[error("estimation refused: {0}")]
    Estimate(primitives::estimate::EstimateRefusal),
    /// The move would fail on executed state, so it was not prepared.
    #[error("the move would fail: {0:?}")]
    WouldFail(primitives::FailureReason),
    /// The move could not be stacked for local prediction.
    #[error("prediction: {0}")]
    Prediction(#[from] PredictionError),
    /// A tick-diff subscription named more entities than a sequencer follows for one session.
    #[error("{got} entities named, at most {max} followed")]
    TooManyEntities {
        /// Entities named.
        got: usize,
        /// The bound.
        max: usize,
    },
}

/// A change of a move's level, as the client learned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEvent {
    /// The move.
    pub hash: TxHash,
    /// Its new level, or the refusal.
    pub level: Result<FinalityLevel, Refusal>,
    /// For an ack: the tick by which the sequencer promised the move in a block.
    pub tick: Option<u64>,
    /// For an ack: the sequencer's signed promise, checked (an ack whose promise does not
    /// verify has none here; [`Client::preconfirmation`] says why).
    pub preconfirmation: Option<Box<SignedPreconfirmation>>,
    /// When this client learned it.
    pub at: Instant,
}

/// Where an ack puts a move, as game netcode keys its acks: the tick by which the sequencer
/// promised it in a block and its place in that sequencer's ack order, both from the
/// sequencer's signed preconfirmation ([`primitives::preconf::Preconfirmation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckKey {
    /// The sequencer's tick by which the move will be in a block.
    pub tick: u64,
    /// The move's place in the sequencer's ack order.
    pub seq: u64,
}

impl AckKey {
    /// The key a preconfirmation promises.
    pub fn of(preconfirmation: &SignedPreconfirmation) -> AckKey {
        AckKey {
            tick: preconfirmation.preconfirmation.tick,
            seq: preconfirmation.preconfirmation.seq,
        }
    }
}

impl ClientEvent {
    /// For an ack with a verified preconfirmation: its tick and sequence number.
    pub fn ack_key(&self) -> Option<AckKey> {
        self.preconfirmation.as_deref().map(AckKey::of)
    }
}

/// A watched item's new pending value (see [`Client::subscribe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The item.
    pub item: StateItem,
    /// Its pending value, or why the sequencer will not watch it.
    pub value: Result<U256, SubscriptionRefused>,
    /// When this client learned it.
    pub at: Instant,
}

/// Pending state changed for a cause other than a new move (see
/// [`ServerMessage::Retracted`]), as the client learned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retraction {
    /// The move whose failure, execution result or replacement changed pending state.
    pub hash: TxHash,
    /// Why.
    pub reason: RetractionReason,
    /// The corrected pending values of the watched items it touched.
    pub corrected: Vec<ItemValue>,
    /// The sequencer's tick when it happened.
    pub tick: u64,
    /// When this client learned it.
    pub at: Instant,
}

/// One tick's changes of the followed entities (see [`Client::follow`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TickDiff {
    /// The tick that ended.
    pub tick: u64,
    /// Each changed item and its pending value at the tick's end, in item order.
    pub changes: Vec<ItemValue>,
    /// When this client learned it.
    pub at: Instant,
}

/// The sequencer refused a subscription: the session watches as many items as it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the session already watches {limit} items")]
pub struct SubscriptionRefused {
    /// Items one session may watch.
    pub limit: u32,
}

enum QueryReply {
    Nonce(oneshot::Sender<u64>),
    Storage(oneshot::Sender<U256>),
    Status(oneshot::Sender<Option<FinalityLevel>>),
}

#[derive(Default)]
struct Shared {
    acks: HashMap<TxHash, (B256, oneshot::Sender<Result<u64, Refusal>>)>,
    /// keccak-256 of each awaited submit request, to the move's hash: a sequencer that refuses
    /// a request before decoding it (too large, over the connection's rate) names it so.
    request_hashes: HashMap<B256, TxHash>,
    levels: HashMap<TxHash, FinalityLevel>,
    waiters: HashMap<TxHash, Vec<(u8, oneshot::Sender<FinalityLevel>)>>,
    queries: VecDeque<QueryReply>,
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
    changes: Option<mpsc::UnboundedSender<StateChange>>,
    retractions: Option<mpsc::UnboundedSender<Retraction>>,
    tick_diffs: Option<mpsc::UnboundedSender<TickDiff>>,
    /// Fed every message, in order; shared with the sessions before and after a failover.
    prediction: Arc<Mutex<Prediction>>,
    /// The sequencer this session is with, if known: its preconfirmations must name it.
    sequencer: Option<NodeId>,
    /// Each acked move's preconfirmation, or why it was refused.
    preconfirmations: HashMap<TxHash, Result<SignedPreconfirmation, PreconfirmationError>>,
    closed: bool,
}

impl Shared {
    fn emit(
        &self,
        hash: TxHash,
        level: Result<FinalityLevel, Refusal>,
        tick: Option<u64>,
        preconfirmation: Option<Box<SignedPreconfirmation>>,
    ) {
        if let Some(events) = &self.events {
            let _ = events.send(ClientEvent {
                hash,
                level,
                tick,
                preconfirmation,
                at: Instant::now(),
            });
        }
    }

    /// Checks an ack's preconfirmation and keeps it (or why it does not verify); returns it
    /// if it verifies.
    fn keep_preconfirmation(
        &mut self,
        hash: TxHash,
        preconfirmation: Box<SignedPreconfirmation>,
    ) -> Option<Box<SignedPreconfirmation>> {
        let checked = preconfirmation
            .verify(self.sequencer.as_ref())
            .map(|()| *preconfirmation.clone());
        if let Err(error) = &checked {
            warn!(target: "client_sdk", %hash, %error, "the ack's preconfirmation does not verify");
        }
        let verified = checked.is_ok().then_some(preconfirmation);
        self.preconfirmations.insert(hash, checked);
        verified
    }

    fn change(&self, item: StateItem, value: Result<U256, SubscriptionRefused>) {
        if let Some(changes) = &self.changes {
            let _ = changes.send(StateChange {
                item,
                value,
                at: Instant::now(),
            });
        }
    }

    fn record_level(
        &mut self,
        hash: TxHash,
        level: FinalityLevel,
        tick: Option<u64>,
        preconfirmation: Option<Box<SignedPreconfirmation>>,
    ) {
        let known = self.levels.get(&hash).map(FinalityLevel::rank);
        if known.is_some_and(|rank| rank >= level.rank()) {
            return;
        }
        self.emit(hash, Ok(level.clone()), tick, preconfirmation);
        if let Some(waiters) = self.waiters.remove(&hash) {
            let mut still_waiting = Vec::new();
            for (rank, waiter) in waiters {
                if level.rank() >= rank {
                    let _ = waiter.send(level.clone());
                } else {
                    still_waiting.push((rank, waiter));
                }
            }
            if !still_waiting.is_empty() {
                self.waiters.insert(hash, still_waiting);
            }
        }
        self.levels.insert(hash, level);
    }

    fn handle(&mut self, message: ServerMessage) {
        self.prediction.lock().handle(&message);
        match message {
            ServerMessage::Ack {
                hash,
                result,
                preconfirmation,
            } => {
                let hash = self.request_hashes.remove(&hash).unwrap_or(hash);
                self.prediction.lock().unstack(&hash);
                if let Some((request_hash, waiter)) = self.acks.remove(&hash) {
                    self.request_hashes.remove(&request_hash);
                    let _ = waiter.send(result.clone());
                }
                match result {
                    Ok(tick) => {
                        let preconfirmation = preconfirmation
                            .and_then(|signed| self.keep_preconfirmation(hash, signed));
                        self.record_level(
                            hash,
                            FinalityLevel::Pending,
                            Some(tick),
                            preconfirmation,
                        );
                    }
                    Err(refusal) => self.emit(hash, Err(refusal), None, None),
                }
            }
            ServerMessage::Status { hash, level } => self.record_level(hash, level, None, None),
            ServerMessage::PendingNonce { nonce, .. } => match self.queries.pop_front() {
                Some(QueryReply::Nonce(reply)) => drop(reply.send(nonce)),
                _ => warn!(target: "client_sdk", "unexpected nonce reply"),
            },
            ServerMessage::PendingStorage { value, .. } => match self.queries.pop_front() {
                Some(QueryReply::Storage(reply)) => drop(reply.send(value)),
                _ => warn!(target: "client_sdk", "unexpected storage reply"),
            },
            ServerMessage::StatusReply { level, .. } => match self.queries.pop_front() {
                Some(QueryReply::Status(reply)) => drop(reply.send(level)),
                _ => warn!(target: "client_sdk", "unexpected status reply"),
            },
            ServerMessage::Changed { item, value } => self.change(item, Ok(value)),
            ServerMessage::SubscriptionRefused { item, limit } => {
                self.change(item, Err(SubscriptionRefused { limit }));
            }
            ServerMessage::Retracted {
                hash,
                reason,
                corrected,
                tick,
            } => {
                // The corrected values are new values of watched items too: a reader of
                // `changes` alone still sees every value, in order.
                for ItemValue { item, value } in &corrected {
                    self.change(*item, Ok(*value));
                }
                if let Some(retractions) = &self.retractions {
                    let _ = retractions.send(Retraction {
                        hash,
                        reason,
                        corrected,
                        tick,
                        at: Instant::now(),
                    });
                }
            }
            ServerMessage::TickDiff { tick, changes } => {
                if let Some(tick_diffs) = &self.tick_diffs {
                    let _ = tick_diffs.send(TickDiff {
                        tick,
                        changes,
                        at: Instant::now(),
                    });
                }
            }
        }
    }
}

/// A move sent and not yet acked.
#[derive(Debug)]
pub struct Submission {
    /// The move's hash.
    pub hash: TxHash,
    ack: oneshot::Receiver<Result<u64, Refusal>>,
}

impl Submission {
    /// Waits for the ack: the tick promised, or the refusal.
    pub async fn ack(self) -> Result<u64, ClientError> {
        match self.ack.await {
            Ok(Ok(tick)) => Ok(tick),
            Ok(Err(refusal)) => Err(ClientError::Refused(refusal)),
            Err(_) => Err(ClientError::Closed),
        }
    }
}

/// A session with one sequencer.
#[derive(Clone)]
pub struct Client {
    sender: KcpSender,
    shared: Arc<Mutex<Shared>>,
    /// Becomes `true` when the session ends.
    closed: watch::Receiver<bool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Opens a session with the sequencer at `sequencer`.
    pub async fn connect(sequencer: SocketAddr) -> Result<Client, ClientError> {
        Self::connect_with(sequencer, KcpConfig::default()).await
    }

    /// Opens a session with the sequencer at `sequencer` with a KCP configuration of the
    /// caller's (a shorter idle timeout finds a dead sequencer sooner).
    pub async fn connect_with(
        sequencer: SocketAddr,
        config: KcpConfig,
    ) -> Result<Client, ClientError> {
        let connection = KcpClient::connect(sequencer, config).await?;
        Ok(Self::over(connection))
    }

    /// A client over an open session. A secure session's proven peer is the sequencer whose
    /// preconfirmations this client accepts.
    pub fn over(mut connection: KcpConnection) -> Client {
        let shared = Arc::new(Mutex::new(Shared {
            sequencer: connection.peer_id(),
            ..Shared::default()
        }));
        let sender = connection.sender();
        let reader = shared.clone();
        let (closed_sender, closed) = watch::channel(false);
        tokio::spawn(async move {
            while let Some(bytes) = connection.recv().await {
                match ServerMessage::from_bytes(&bytes) {
                    Ok(message) => reader.lock().handle(message),
                    Err(error) => {
                        warn!(target: "client_sdk", %error, "undecodable message from sequencer")
                    }
                }
            }
            let mut shared = reader.lock();
            shared.closed = true;
            shared.acks.clear();
            shared.request_hashes.clear();
            shared.waiters.clear();
            shared.queries.clear();
            drop(shared);
            let _ = closed_sender.send(true);
        });
        Client {
            sender,
            shared,
            closed,
        }
    }

    /// Accepts only preconfirmations signed by `sequencer` from now on: the ID of the
    /// sequencer this session was opened with, when the session itself does not prove it (a
    /// plain KCP session). Without it, a preconfirmation must only be signed by the sequencer
    /// it names.
    pub fn expect_sequencer(&self, sequencer: NodeId) {
        self.shared.lock().sequencer = Some(sequencer);
    }

    /// The sequencer whose preconfirmations this client accepts, if known.
    pub fn sequencer_id(&self) -> Option<NodeId> {
        self.shared.lock().sequencer
    }

    /// The preconfirmation the ack of `hash` carried: `Ok` if it verified, else why not;
    /// `None` if the move is not acked here or its ack carried none.
    pub fn preconfirmation(
        &self,
        hash: &TxHash,
    ) -> Option<Result<SignedPreconfirmation, PreconfirmationError>> {
        self.shared.lock().preconfirmations.get(hash).cloned()
    }

    /// The tick and sequence number the ack of `hash` promised, if it carried a preconfirmation
    /// that verified.
    pub fn ack_key(&self, hash: &TxHash) -> Option<AckKey> {
        match self.shared.lock().preconfirmations.get(hash) {
            Some(Ok(preconfirmation)) => Some(AckKey::of(preconfirmation)),
            _ => None,
        }
    }

    /// Resolves once the session has ended (dead link, idle timeout, closed by the sequencer).
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Every level change from now on, with the time it was learned. Only one stream exists;
    /// a second call replaces the first.
    pub fn events(&self) -> mpsc::UnboundedReceiver<ClientEvent> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.shared.lock().events = Some(sender);
        receiver
    }

    /// Every pushed value of a watched item from now on. Only one stream exists; a second
    /// call replaces the first.
    pub fn changes(&self) -> mpsc::UnboundedReceiver<StateChange> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.shared.lock().changes = Some(sender);
        receiver
    }

    /// Every retraction from now on: pending state of a watched item changed for a cause other
    /// than a new move (a move failed in execution, a result re-based it, a move was
    /// replaced). Its corrected values also arrive on [`Client::changes`]. Only one stream
    /// exists; a second call replaces the first.
    pub fn retractions(&self) -> mpsc::UnboundedReceiver<Retraction> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.shared.lock().retractions = Some(sender);
        receiver
    }

    /// Every tick diff of the followed entities from now on (see [`Client::follow`]). Only
    /// one stream exists; a second call replaces the first.
    pub fn tick_diffs(&self) -> mpsc::UnboundedReceiver<TickDiff> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.shared.lock().tick_diffs = Some(sender);
        receiver
    }

    /// Follows `entities` (whole accounts or single items, at most
    /// [`TICK_DIFF_ENTITIES_MAX`]) tick by tick, in place of what this session followed: a
    /// diff with the single items' current values comes at once, then one diff per tick in
    /// which any of their pending values changed, on [`Client::tick_diffs`]. An empty list
    /// stops.
    pub async fn follow(&self, entities: Vec<Entity>) -> Result<(), ClientError> {
        if entities.len() > TICK_DIFF_ENTITIES_MAX {
            return Err(ClientError::TooManyEntities {
                got: entities.len(),
                max: TICK_DIFF_ENTITIES_MAX,
            });
        }
        self.send(&ClientRequest::SubscribeEntities(entities)).await
    }

    /// Watches an item of the sequencer's pending state: its current value, then each new one,
    /// arrive on [`Client::changes`] (a move acked that writes it, an execution report that
    /// re-bases it).
    pub async fn subscribe(&self, item: StateItem) -> Result<(), ClientError> {
        self.send(&ClientRequest::Subscribe(item)).await
    }

    /// Stops watching an item.
    pub async fn unsubscribe(&self, item: StateItem) -> Result<(), ClientError> {
        self.send(&ClientRequest::Unsubscribe(item)).await
    }

    async fn send(&self, request: &ClientRequest) -> Result<(), ClientError> {
        self.sender
            .send(request.to_bytes())
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a move of `sender` and stacks its declared writes on the local prediction
    /// ([`Client::predicted`]) until the sequencer's values include it; returns without
    /// waiting for the ack.
    pub async fn submit_stacked(
        &self,
        sender: Address,
        signed: SignedTransaction,
    ) -> Result<Submission, ClientError> {
        let hash = signed.hash();
        self.shared
            .lock()
            .prediction
            .lock()
            .submitted(hash, sender, &signed.tx)?;
        let submitted = self.submit(signed).await;
        if submitted.is_err() {
            self.shared.lock().prediction.lock().unstack(&hash);
        }
        submitted
    }

    /// The predicted pending value of `item`: the value the sequencer last told (a watched
    /// item's), with this client's own moves not yet included stacked on top in order.
    pub fn predicted(&self, item: &StateItem) -> U256 {
        self.shared.lock().prediction.lock().value(item)
    }

    /// The prediction this session feeds.
    pub fn prediction(&self) -> Arc<Mutex<Prediction>> {
        self.shared.lock().prediction.clone()
    }

    /// Feeds `prediction` from now on instead of this session's own (a client that fails
    /// over keeps one prediction across sessions).
    pub fn use_prediction(&self, prediction: Arc<Mutex<Prediction>>) {
        self.shared.lock().prediction = prediction;
    }

    /// Sends a move and returns without waiting for its ack.
    pub async fn submit(&self, signed: SignedTransaction) -> Result<Submission, ClientError> {
        let hash = signed.hash();
        let request = ClientRequest::Submit(signed).to_bytes();
        let request_hash = primitives::keccak256(&request);
        let (reply, ack) = oneshot::channel();
        {
            let mut shared = self.shared.lock();
            if shared.closed {
                return Err(ClientError::Closed);
            }
            shared.acks.insert(hash, (request_hash, reply));
            shared.request_hashes.insert(request_hash, hash);
        }
        self.sender
            .send(request)
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(Submission { hash, ack })
    }

    /// Sends a move and waits for its ack.
    pub async fn submit_and_ack(&self, signed: SignedTransaction) -> Result<TxHash, ClientError> {
        let submission = self.submit(signed).await?;
        let hash = submission.hash;
        submission.ack().await?;
        Ok(hash)
    }

    /// Waits until the move reaches `level` (by rank) or fails; returns the level reached.
    pub async fn wait_for(
        &self,
        hash: TxHash,
        level: FinalityLevel,
    ) -> Result<FinalityLevel, ClientError> {
        let receiver = {
            let mut shared = self.shared.lock();
            if let Some(known) = shared.levels.get(&hash)
                && (known.rank() >= level.rank())
            {
                return Ok(known.clone());
            }
            if shared.closed {
                return Err(ClientError::Closed);
            }
            let (sender, receiver) = oneshot::channel();
            // A failure ends the path, so waiting for any level also wakes on `Failed`.
            shared
                .waiters
                .entry(hash)
                .or_default()
                .push((level.rank(), sender));
            receiver
        };
        receiver.await.map_err(|_| ClientError::Closed)
    }

    /// The level this client last learned for a move.
    pub fn level(&self, hash: &TxHash) -> Option<FinalityLevel> {
        self.shared.lock().levels.get(hash).cloned()
    }

    async fn query<T>(
        &self,
        request: ClientRequest,
        wrap: impl FnOnce(oneshot::Sender<T>) -> QueryReply,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        {
            let mut shared = self.shared.lock();
            if shared.closed {
                return Err(ClientError::Closed);
            }
            shared.queries.push_back(wrap(reply));
        }
        self.send(&request).await?;
        answer.await.map_err(|_| ClientError::Closed)
    }

    /// The sender's next nonce in the sequencer's pending state.
    pub async fn pending_nonce(&self, address: Address) -> Result<u64, ClientError> {
        self.query(ClientRequest::PendingNonce(address), QueryReply::Nonce)
            .await
    }

    /// A storage slot's value in the sequencer's pending state.
    pub async fn pending_storage(&self, address: Address, slot: B256) -> Result<U256, ClientError> {
        self.query(
            ClientRequest::PendingStorage(address, slot),
            QueryReply::Storage,
        )
        .await
    }

    /// A move's level as the sequencer knows it.
    pub async fn status(&self, hash: TxHash) -> Result<Option<FinalityLevel>, ClientError> {
        self.query(ClientRequest::Status(hash), QueryReply::Status)
            .await
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountKey, preconf::Preconfirmation};

    use super::*;

    fn signed_by(key: &AccountKey, sequencer: NodeId, hash: TxHash) -> SignedPreconfirmation {
        let promise = Preconfirmation {
            hash,
            sequencer,
            seq: 0,
            tick: 4,
            height_first: 2,
            height_last: 2,
        };
        SignedPreconfirmation::sign_group(key, &[promise]).remove(0)
    }

    fn ack(preconfirmation: SignedPreconfirmation) -> ServerMessage {
        ServerMessage::Ack {
            hash: preconfirmation.preconfirmation.hash,
            result: Ok(4),
            preconfirmation: Some(Box::new(preconfirmation)),
        }
    }

    #[test]
    fn acks_keep_the_expected_sequencers_promise_and_refuse_any_other() {
        let sequencer = AccountKey::from_seed(1);
        let impostor = AccountKey::from_seed(2);
        let id = NodeId(sequencer.address());
        let mut shared = Shared {
            sequencer: Some(id),
            ..Shared::default()
        };
        let (events, mut received) = mpsc::unbounded_channel();
        shared.events = Some(events);

        let honest = signed_by(&sequencer, id, B256::repeat_byte(1));
        shared.handle(ack(honest.clone()));
        assert_eq!(
            shared.preconfirmations.get(&B256::repeat_byte(1)),
            Some(&Ok(honest.clone()))
        );
        let event = received.try_recv().expect("the ack is an event");
        assert_eq!(event.preconfirmation.as_deref(), Some(&honest));
        assert_eq!(event.ack_key(), Some(AckKey { tick: 4, seq: 0 }));

        // Signed by someone else in the sequencer's name: kept as refused, not on the event.
        let forged = signed_by(&impostor, id, B256::repeat_byte(2));
        shared.handle(ack(forged));
        assert_eq!(
            shared.preconfirmations.get(&B256::repeat_byte(2)),
            Some(&Err(PreconfirmationError::WrongSigner {
                sequencer: id,
                signer: impostor.address(),
            }))
        );
        let event = received.try_recv().expect("the ack is an event");
        assert_eq!(event.level, Ok(FinalityLevel::Pending));
        assert_eq!(event.preconfirmation, None);
        assert_eq!(
            event.ack_key(),
            None,
            "no key from a promise that does not verify"
        );

        // Validly signed, but by another sequencer than this session's.
        let foreign = signed_by(&impostor, NodeId(impostor.address()), B256::repeat_byte(3));
        shared.handle(ack(foreign));
        assert_eq!(
            shared.preconfirmations.get(&B256::repeat_byte(3)),
            Some(&Err(PreconfirmationError::UnexpectedSequencer {
                expected: id,
                got: NodeId(impostor.address()),
            }))
        );
    }
}
