//! A client of the sequencer network rather than of one sequencer: it holds a session with one
//! sequencer of a list, and when that session dies it opens one with the next and carries on.
//!
//! What a failover must get right is the moves in flight. The client records every move it
//! sends, by hash, until the move reaches a final level:
//! - a move **acked** by the dead sequencer is in that sequencer's write-ahead log, and comes
//!   back when it restarts. It is never sent again (a new copy would be a second move in the
//!   log); its status is asked of the new sequencer until it is final ("orphaned" moves).
//! - a move **sent and not acked** may or may not be in the dead sequencer's log. It is sent
//!   again with the same signed bytes, so with the same hash and nonce: if both copies reach a
//!   batch, the first to execute takes the nonce and the second fails for its nonce, so the move
//!   still runs once. The client keeps the first final level it hears for a hash and ignores a
//!   later failure of the copy, so nothing is lost or reported twice.
//! - a move sent to the new sequencer before it has learned the account's earlier moves (they
//!   are in the dead sequencer's log, or in blocks not yet executed) is refused with `BadNonce`
//!   naming an earlier nonce. While an earlier move of the account is still alive here, that
//!   refusal is not final: the move is **held** and sent again every reconcile interval, until
//!   the new sequencer takes it or [`FailoverConfig::held_timeout`] passes.
//!
//! Nonces are assigned locally ([`crate::nonce::NonceTracker`]), so a game sends its next move
//! without waiting for the last ack; a refusal rewinds the account's next nonce.
//! Subscriptions to state items are opened again on every new session, and the levels and
//! values of every session arrive on one stream each ([`FailoverClient::events`],
//! [`FailoverClient::changes`]).

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use netstack::kcp::KcpConfig;
use parking_lot::Mutex;
use primitives::{
    Address, B256, FinalityLevel, NodeId, SignedTransaction, Transaction, TxHash, U256,
    api::{Entity, Refusal},
    constants::TICK_DIFF_ENTITIES_MAX,
    finality::StateItem,
    preconf::SignedPreconfirmation,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::{Client, ClientError, ClientEvent, StateChange, keys::Signer, nonce::NonceTracker};

/// Final levels remembered for [`FailoverClient::wait_for`] after a move leaves the books.
const FINISHED_LEVELS_MAX: usize = 100_000;
/// Orphaned moves whose status is asked in one reconcile round.
const ORPHANS_ASKED_PER_ROUND_MAX: usize = 256;

/// How a [`FailoverClient`] connects and fails over.
#[derive(Clone, Debug)]
pub struct FailoverConfig {
    /// The sequencers, in order of preference.
    pub sequencers: Vec<SocketAddr>,
    /// The KCP sessions' configuration: its idle timeout is how long a dead sequencer takes to
    /// be noticed.
    pub kcp: KcpConfig,
    /// How long a sequencer may take to answer the probe that opens a session.
    pub probe_timeout: Duration,
    /// Rounds over the whole list before a failover gives up.
    pub reconnect_rounds_max: u32,
    /// Pause between two rounds.
    pub reconnect_backoff: Duration,
    /// How often held moves are sent again and orphaned moves' statuses asked.
    pub reconcile_interval: Duration,
    /// How long a move may stay held before its refusal is final.
    pub held_timeout: Duration,
    /// The node ID of each sequencer of the list whose ID is known: a session with it accepts
    /// only preconfirmations it signed ([`Client::expect_sequencer`]).
    pub sequencer_ids: HashMap<SocketAddr, NodeId>,
}

impl FailoverConfig {
    /// Defaults for a game on a LAN or the internet: a dead sequencer is noticed within about
    /// three seconds.
    pub fn new(sequencers: Vec<SocketAddr>) -> Self {
        FailoverConfig {
            sequencers,
            kcp: KcpConfig {
                idle_timeout: Duration::from_secs(3),
                keepalive_interval: Duration::from_secs(1),
                ..KcpConfig::default()
            },
            probe_timeout: Duration::from_secs(2),
            reconnect_rounds_max: 30,
            reconnect_backoff: Duration::from_millis(500),
            reconcile_interval: Duration::from_millis(100),
            held_timeout: Duration::from_secs(60),
            sequencer_ids: HashMap::new(),
        }
    }

    /// The same, with the node ID of each sequencer of the list (in the list's order): every
    /// session then accepts only preconfirmations its sequencer signed.
    pub fn with_sequencer_ids(mut self, ids: impl IntoIterator<Item = NodeId>) -> Self {
        self.sequencer_ids = self.sequencers.iter().copied().zip(ids).collect();
        self
    }
}

/// Where a move stands in the client's books.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Sent on the current session, not acked.
    Sent,
    /// Refused by a sequencer that has not yet learned the account's earlier moves; sent again
    /// each reconcile round.
    Held,
    /// Acked by the current session's sequencer.
    Acked,
    /// Acked by a sequencer whose session died (or found already spent by the new one); its
    /// level is asked each reconcile round.
    Orphaned,
}

struct Move {
    signed: SignedTransaction,
    account: Address,
    nonce: u64,
    stage: Stage,
    /// Whether it was ever sent on a session that died unacked: a `BadNonce` saying its nonce
    /// is spent then means this very move is in a batch.
    resent: bool,
    held_since: Option<std::time::Instant>,
    ack: Option<oneshot::Sender<Result<Option<u64>, ClientError>>>,
}

impl Move {
    fn resolve(&mut self, result: Result<Option<u64>, ClientError>) {
        if let Some(ack) = self.ack.take() {
            let _ = ack.send(result);
        }
    }
}

#[derive(Default)]
struct Books {
    client: Option<Client>,
    index: usize,
    failovers: u64,
    /// The supervisor gave up: no sequencer of the list answers.
    dead: bool,
    moves: HashMap<TxHash, Move>,
    nonces: HashMap<Address, NonceTracker>,
    /// Per account, one past the highest nonce this client saw a move of its own spend in
    /// execution: a sequencer that expects an earlier nonce has not yet learned those results.
    spent_through: HashMap<Address, u64>,
    levels: HashMap<TxHash, FinalityLevel>,
    /// The verified preconfirmation of each move acked with one, as long as its level is kept.
    preconfirmations: HashMap<TxHash, SignedPreconfirmation>,
    finished: VecDeque<TxHash>,
    waiters: HashMap<TxHash, Vec<(u8, oneshot::Sender<FinalityLevel>)>>,
    watched: BTreeSet<StateItem>,
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
    changes: Option<mpsc::UnboundedSender<StateChange>>,
    retractions: Option<mpsc::UnboundedSender<crate::Retraction>>,
    tick_diffs: Option<mpsc::UnboundedSender<crate::TickDiff>>,
    /// The entities followed tick by tick, followed again on every new session.
    followed: Vec<Entity>,
}

/// Whether a move that reached `level` used up its nonce in execution.
fn spends_nonce(level: &FinalityLevel) -> bool {
    use primitives::FailureReason;
    match level {
        FinalityLevel::Executed | FinalityLevel::Settled => true,
        FinalityLevel::Failed(reason) => matches!(
            reason,
            FailureReason::Reverted
                | FailureReason::Halted
                | FailureReason::OutOfAccessList(_)
                | FailureReason::UndeclaredWrite(_)
                | FailureReason::WrongPostValue(_)
                | FailureReason::WrongDelta(_)
        ),
        _ => false,
    }
}

fn is_final(level: &FinalityLevel) -> bool {
    matches!(
        level,
        FinalityLevel::Executed | FinalityLevel::Settled | FinalityLevel::Failed(_)
    )
}

impl Books {
    /// Records a level. The first final level heard for a hash is its outcome: a failure heard
    /// after `Executed` is the nonce refusal of a second copy of the move (sent again after a
    /// failover), not news about the move.
    fn record_level(&mut self, hash: TxHash, level: FinalityLevel, event: Option<&ClientEvent>) {
        match self.levels.get(&hash) {
            Some(FinalityLevel::Failed(_)) => return,
            Some(known) if known.rank() >= level.rank() => return,
            Some(FinalityLevel::Executed | FinalityLevel::Settled)
                if matches!(level, FinalityLevel::Failed(_)) =>
            {
                debug!(target: "client_sdk::failover", %hash, ?level, "a second copy failed; the first executed");
                return;
            }
            _ => {}
        }
        if let Some(events) = &self.events {
            let _ = events.send(ClientEvent {
                hash,
                level: Ok(level.clone()),
                tick: event.and_then(|event| event.tick),
                preconfirmation: event.and_then(|event| event.preconfirmation.clone()),
                at: event.map_or_else(std::time::Instant::now, |event| event.at),
            });
        }
        if let Some(waiters) = self.waiters.remove(&hash) {
            let still: Vec<_> = waiters
                .into_iter()
                .filter_map(|(rank, waiter)| {
                    if level.rank() >= rank {
                        let _ = waiter.send(level.clone());
                        None
                    } else {
                        Some((rank, waiter))
                    }
                })
                .collect();
            if !still.is_empty() {
                self.waiters.insert(hash, still);
            }
        }
        if is_final(&level)
            && let Some(mut finished) = self.moves.remove(&hash)
        {
            if let Some(tracker) = self.nonces.get_mut(&finished.account) {
                tracker.acked(finished.nonce, &hash);
            }
            if spends_nonce(&level) {
                let spent = self.spent_through.entry(finished.account).or_default();
                *spent = (*spent).max(finished.nonce + 1);
            }
            finished.resolve(Ok(None));
            self.finished.push_back(hash);
            if self.finished.len() > FINISHED_LEVELS_MAX
                && let Some(oldest) = self.finished.pop_front()
            {
                self.levels.remove(&oldest);
                self.preconfirmations.remove(&oldest);
            }
        }
        self.levels.insert(hash, level);
    }

    fn acked(&mut self, hash: TxHash, tick: Option<u64>, stage: Stage) {
        let Some(found) = self.moves.get_mut(&hash) else {
            return;
        };
        if !matches!(found.stage, Stage::Sent | Stage::Held) {
            return;
        }
        found.stage = stage;
        found.held_since = None;
        found.resolve(Ok(tick));
        let (account, nonce) = (found.account, found.nonce);
        if let Some(tracker) = self.nonces.get_mut(&account) {
            tracker.acked(nonce, &hash);
        }
    }

    /// Whether the sequencer that expects nonce `from` of `account` is only behind this
    /// client: a move of the account with a nonce in `from..to` is alive here (sent, held or
    /// acked, not refused), or this client saw nonce `from` spent in execution already (the
    /// client heard the result from another sequencer before this one did).
    fn sequencer_is_behind(&self, account: Address, from: u64, to: u64) -> bool {
        // Refused moves leave the books, so every move here is alive.
        self.spent_through
            .get(&account)
            .is_some_and(|spent| *spent > from)
            || self
                .moves
                .values()
                .any(|other| other.account == account && (from..to).contains(&other.nonce))
    }

    fn refused(&mut self, hash: TxHash, refusal: Refusal, held_timeout: Duration) {
        let Some(found) = self.moves.get(&hash) else {
            return;
        };
        if !matches!(found.stage, Stage::Sent | Stage::Held) {
            // A copy of a move acked already (sent again after a failover): nothing new.
            return;
        }
        // A held move has been sent more than once: a copy may have been taken.
        let (account, nonce) = (found.account, found.nonce);
        let resent = found.resent || found.stage == Stage::Held;
        let held_since = found.held_since;
        let doomed = self
            .nonces
            .get(&account)
            .is_some_and(|tracker| tracker.is_doomed(&hash));
        if let Refusal::BadNonce { expected, got } = refusal
            && !doomed
        {
            if expected > got && resent {
                // Its nonce is spent, and this client signs one move a nonce: the copy the dead
                // sequencer logged is in a batch.
                info!(target: "client_sdk::failover", %hash, nonce, "a move sent again was found spent: the dead sequencer had it");
                self.acked(hash, None, Stage::Orphaned);
                return;
            }
            let within = held_since.is_none_or(|since| since.elapsed() < held_timeout);
            if expected < got && within && self.sequencer_is_behind(account, expected, got) {
                if let Some(found) = self.moves.get_mut(&hash) {
                    found.stage = Stage::Held;
                    found.held_since.get_or_insert_with(std::time::Instant::now);
                }
                return;
            }
        }
        if let Some(tracker) = self.nonces.get_mut(&account) {
            tracker.refused(nonce, &hash, &refusal);
        }
        if let Some(mut refused) = self.moves.remove(&hash) {
            refused.resolve(Err(ClientError::Refused(refusal.clone())));
        }
        if let Some(events) = &self.events {
            let _ = events.send(ClientEvent {
                hash,
                level: Err(refusal),
                tick: None,
                preconfirmation: None,
                at: std::time::Instant::now(),
            });
        }
        // Whoever waits for this move's level learns that it will never have one.
        self.waiters.remove(&hash);
    }

    fn handle_event(&mut self, event: ClientEvent, held_timeout: Duration) {
        match &event.level {
            Ok(FinalityLevel::Pending) => {
                if let Some(preconfirmation) = &event.preconfirmation {
                    self.preconfirmations
                        .entry(event.hash)
                        .or_insert_with(|| (**preconfirmation).clone());
                }
                self.acked(event.hash, event.tick, Stage::Acked);
                self.record_level(event.hash, FinalityLevel::Pending, Some(&event));
            }
            Ok(level) => {
                // A level past `Pending` from a sequencer implies its ack.
                self.acked(event.hash, None, Stage::Acked);
                self.record_level(event.hash, level.clone(), Some(&event));
            }
            Err(refusal) => self.refused(event.hash, refusal.clone(), held_timeout),
        }
    }

    /// Moves to send again on a new session, in nonce order per account.
    fn take_unacked(&mut self) -> Vec<SignedTransaction> {
        let mut again: Vec<(Address, u64, SignedTransaction)> = Vec::new();
        for found in self.moves.values_mut() {
            match found.stage {
                Stage::Sent | Stage::Held => {
                    found.resent = true;
                    again.push((found.account, found.nonce, found.signed.clone()));
                }
                Stage::Acked => found.stage = Stage::Orphaned,
                Stage::Orphaned => {}
            }
        }
        again.sort_by_key(|(account, nonce, _)| (*account, *nonce));
        again.into_iter().map(|(_, _, signed)| signed).collect()
    }
}

/// A move sent through a [`FailoverClient`].
#[derive(Debug)]
pub struct MoveHandle {
    /// The move's hash.
    pub hash: TxHash,
    /// The nonce it was given.
    pub nonce: u64,
    ack: oneshot::Receiver<Result<Option<u64>, ClientError>>,
}

impl MoveHandle {
    /// Waits for the move to be acked by some sequencer: `Some(tick)` promised, or `None` when
    /// it was found in a batch after a failover (no ack of its own reached this client).
    pub async fn ack(self) -> Result<Option<u64>, ClientError> {
        self.ack.await.unwrap_or(Err(ClientError::Closed))
    }
}

struct Inner {
    config: FailoverConfig,
    books: Mutex<Books>,
    /// Bumped on every new session; `send` and reads wait on it while there is none.
    generation: watch::Sender<u64>,
    /// The local prediction every session feeds.
    prediction: Arc<Mutex<crate::Prediction>>,
}

/// A client of a list of sequencers with failover, pipelined moves and local nonces (see the
/// module documentation). Cheap to clone; the session ends when the last clone is dropped.
#[derive(Clone)]
pub struct FailoverClient {
    inner: Arc<Inner>,
    _alive: Arc<oneshot::Sender<()>>,
}

impl std::fmt::Debug for FailoverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverClient")
            .field("sequencers", &self.inner.config.sequencers)
            .finish_non_exhaustive()
    }
}

/// A live session and its streams.
struct Session {
    client: Client,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    changes: mpsc::UnboundedReceiver<StateChange>,
    retractions: mpsc::UnboundedReceiver<crate::Retraction>,
    tick_diffs: mpsc::UnboundedReceiver<crate::TickDiff>,
}

/// Opens a session with the sequencer at `address` and checks that it answers.
async fn open(address: SocketAddr, config: &FailoverConfig) -> Option<Session> {
    let client = Client::connect_with(address, config.kcp.clone())
        .await
        .ok()?;
    if let Some(sequencer) = config.sequencer_ids.get(&address) {
        client.expect_sequencer(*sequencer);
    }
    let events = client.events();
    let changes = client.changes();
    let retractions = client.retractions();
    let tick_diffs = client.tick_diffs();
    let probe = client.pending_nonce(Address::ZERO);
    match tokio::time::timeout(config.probe_timeout, probe).await {
        Ok(Ok(_)) => Some(Session {
            client,
            events,
            changes,
            retractions,
            tick_diffs,
        }),
        _ => {
            debug!(target: "client_sdk::failover", %address, "sequencer does not answer");
            None
        }
    }
}

impl FailoverClient {
    /// Opens a session with the first sequencer of the list that answers.
    pub async fn connect(config: FailoverConfig) -> Result<FailoverClient, ClientError> {
        if config.sequencers.is_empty() {
            return Err(ClientError::NoSequencerConfigured);
        }
        let mut opened = None;
        for (index, address) in config.sequencers.iter().enumerate() {
            if let Some(session) = open(*address, &config).await {
                opened = Some((index, session));
                break;
            }
        }
        let Some((index, session)) = opened else {
            return Err(ClientError::NoSequencer {
                tried: config.sequencers.len(),
            });
        };
        let books = Books {
            client: Some(session.client.clone()),
            index,
            ..Books::default()
        };
        let prediction = session.client.prediction();
        let inner = Arc::new(Inner {
            config,
            books: Mutex::new(books),
            generation: watch::channel(0).0,
            prediction,
        });
        let (alive, dropped) = oneshot::channel();
        tokio::spawn(supervise(inner.clone(), session, dropped));
        Ok(FailoverClient {
            inner,
            _alive: Arc::new(alive),
        })
    }

    /// The current session, waiting for a failover in progress.
    async fn client(&self) -> Result<Client, ClientError> {
        let mut generation = self.inner.generation.subscribe();
        loop {
            {
                let books = self.inner.books.lock();
                if books.dead {
                    return Err(ClientError::NoSequencer {
                        tried: self.inner.config.sequencers.len(),
                    });
                }
                if let Some(client) = &books.client
                    && !client.is_closed()
                {
                    return Ok(client.clone());
                }
            }
            if generation.changed().await.is_err() {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Runs `read` on the current session, once more on the next if the session dies under it.
    async fn read<T, F, Fut>(&self, read: F) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        match read(self.client().await?).await {
            Err(ClientError::Closed) => read(self.client().await?).await,
            other => other,
        }
    }

    /// Sends a move of `signer`'s account with the account's next nonce (set in `tx` before
    /// signing) and returns without waiting for the ack. A move sent while a failover is in
    /// progress goes to the next sequencer.
    pub async fn send(&self, signer: &Signer, tx: Transaction) -> Result<MoveHandle, ClientError> {
        let account = signer.account();
        let known = self.inner.books.lock().nonces.contains_key(&account);
        if !known {
            let next = self
                .read(move |client| async move { client.pending_nonce(account).await })
                .await?;
            self.inner
                .books
                .lock()
                .nonces
                .entry(account)
                .or_insert_with(|| NonceTracker::new(next));
        }
        let client = self.client().await?;
        let (reply, ack) = oneshot::channel();
        let (signed, hash, nonce, client) = {
            let mut books = self.inner.books.lock();
            let tracker = books.nonces.entry(account).or_default();
            let nonce = tracker.allocate();
            let signed = match signer.sign(Transaction { nonce, ..tx }) {
                Ok(signed) => signed,
                Err(error) => {
                    // Nothing was sent: give the nonce back.
                    let _ = tracker.refused(nonce, &B256::ZERO, &Refusal::Malformed);
                    return Err(ClientError::Sign(error));
                }
            };
            let hash = signed.hash();
            tracker.sent(nonce, hash);
            books.moves.insert(
                hash,
                Move {
                    signed: signed.clone(),
                    account,
                    nonce,
                    stage: Stage::Sent,
                    resent: false,
                    held_since: None,
                    ack: Some(reply),
                },
            );
            // The session may have changed since `client()`: the books now hold the move, so
            // either this send reaches the current session or the failover sends it again.
            let current = books.client.clone().unwrap_or(client);
            (signed, hash, nonce, current)
        };
        // A move the prediction cannot stack (its stack full) is sent all the same.
        let sent = match client.submit_stacked(account, signed.clone()).await {
            Err(ClientError::Prediction(error)) => {
                debug!(target: "client_sdk::failover", %hash, %error, "not stacked for prediction");
                client.submit(signed).await
            }
            other => other,
        };
        if let Err(error) = sent {
            debug!(target: "client_sdk::failover", %hash, %error, "send failed; the failover sends it again");
        }
        Ok(MoveHandle { hash, nonce, ack })
    }

    /// Sends a move and waits for its ack.
    pub async fn send_and_ack(
        &self,
        signer: &Signer,
        tx: Transaction,
    ) -> Result<TxHash, ClientError> {
        let handle = self.send(signer, tx).await?;
        let hash = handle.hash;
        handle.ack().await?;
        Ok(hash)
    }

    /// The nonce the account's next move will take, as this client assigns it (`None` before
    /// the client sent any move of the account).
    pub fn next_nonce(&self, account: &Address) -> Option<u64> {
        self.inner
            .books
            .lock()
            .nonces
            .get(account)
            .map(NonceTracker::next)
    }

    /// Waits until the move reaches `level` (by rank) or fails, across failovers; returns the
    /// level reached. A move refused meanwhile ends the wait with [`ClientError::Closed`].
    pub async fn wait_for(
        &self,
        hash: TxHash,
        level: FinalityLevel,
    ) -> Result<FinalityLevel, ClientError> {
        let receiver = {
            let mut books = self.inner.books.lock();
            if let Some(known) = books.levels.get(&hash)
                && known.rank() >= level.rank()
            {
                return Ok(known.clone());
            }
            let (sender, receiver) = oneshot::channel();
            books
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
        self.inner.books.lock().levels.get(hash).cloned()
    }

    /// The verified preconfirmation the move's ack carried: the sequencer's signed promise
    /// that the move will be in one of its blocks, which anyone may submit to the upper chain
    /// as evidence if the move is not there ([`primitives::preconf`]). `None` if no ack with a
    /// valid one reached this client (a move found in a batch after a failover has none).
    pub fn preconfirmation(&self, hash: &TxHash) -> Option<SignedPreconfirmation> {
        self.inner.books.lock().preconfirmations.get(hash).cloned()
    }

    /// The tick and sequence number the move's ack promised, from its verified
    /// preconfirmation (see [`FailoverClient::preconfirmation`]).
    pub fn ack_key(&self, hash: &TxHash) -> Option<crate::AckKey> {
        self.preconfirmation(hash).as_ref().map(crate::AckKey::of)
    }

    /// Every level change and refusal of the moves sent through this client, across sessions,
    /// each hash's levels rising and at most one final outcome. One stream exists; a second
    /// call replaces the first.
    pub fn events(&self) -> mpsc::UnboundedReceiver<ClientEvent> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.inner.books.lock().events = Some(sender);
        receiver
    }

    /// Every pushed value of the watched items, across sessions (a new session pushes each
    /// item's value at the new sequencer first). One stream exists; a second call replaces the
    /// first.
    pub fn changes(&self) -> mpsc::UnboundedReceiver<StateChange> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.inner.books.lock().changes = Some(sender);
        receiver
    }

    /// Every retraction of a watched item's pending value, across sessions (see
    /// [`Client::retractions`]). One stream exists; a second call replaces the first.
    pub fn retractions(&self) -> mpsc::UnboundedReceiver<crate::Retraction> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.inner.books.lock().retractions = Some(sender);
        receiver
    }

    /// Every tick diff of the followed entities, across sessions (see [`Client::follow`]; a
    /// new session's first diff holds the items' values at the new sequencer). One stream
    /// exists; a second call replaces the first.
    pub fn tick_diffs(&self) -> mpsc::UnboundedReceiver<crate::TickDiff> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.inner.books.lock().tick_diffs = Some(sender);
        receiver
    }

    /// Follows `entities` tick by tick in place of what this client followed (see
    /// [`Client::follow`]); kept across failovers. An empty list stops.
    pub async fn follow(&self, entities: Vec<Entity>) -> Result<(), ClientError> {
        if entities.len() > TICK_DIFF_ENTITIES_MAX {
            return Err(ClientError::TooManyEntities {
                got: entities.len(),
                max: TICK_DIFF_ENTITIES_MAX,
            });
        }
        self.inner.books.lock().followed = entities.clone();
        self.read(move |client| {
            let entities = entities.clone();
            async move { client.follow(entities).await }
        })
        .await
    }

    /// The predicted pending value of `item` (see [`crate::prediction`]): the value the
    /// sequencer last told, with this client's moves not yet included stacked on top in nonce
    /// order. Watch the item, and each sending account's nonce, for it to be exact.
    pub fn predicted(&self, item: &StateItem) -> U256 {
        self.inner.prediction.lock().value(item)
    }

    /// Watches an item of pending state (an account's balance or nonce, a storage slot): its
    /// value now, then each new one, on [`changes`](Self::changes); kept across failovers.
    pub async fn subscribe(&self, item: StateItem) -> Result<(), ClientError> {
        self.inner.books.lock().watched.insert(item);
        self.read(move |client| async move { client.subscribe(item).await })
            .await
    }

    /// Stops watching an item.
    pub async fn unsubscribe(&self, item: StateItem) -> Result<(), ClientError> {
        self.inner.books.lock().watched.remove(&item);
        self.read(move |client| async move { client.unsubscribe(item).await })
            .await
    }

    /// The account's next nonce in the current sequencer's pending state.
    pub async fn pending_nonce(&self, account: Address) -> Result<u64, ClientError> {
        self.read(move |client| async move { client.pending_nonce(account).await })
            .await
    }

    /// A storage slot's value in the current sequencer's pending state.
    pub async fn pending_storage(&self, address: Address, slot: B256) -> Result<U256, ClientError> {
        self.read(move |client| async move { client.pending_storage(address, slot).await })
            .await
    }

    /// A move's level as the current sequencer knows it.
    pub async fn status(&self, hash: TxHash) -> Result<Option<FinalityLevel>, ClientError> {
        self.read(move |client| async move { client.status(hash).await })
            .await
    }

    /// The address of the sequencer of the current session.
    pub fn sequencer(&self) -> SocketAddr {
        let index = self.inner.books.lock().index;
        self.inner.config.sequencers[index]
    }

    /// Sessions opened after the first one died.
    pub fn failovers(&self) -> u64 {
        self.inner.books.lock().failovers
    }

    /// Moves sent and not yet final.
    pub fn in_flight(&self) -> usize {
        self.inner.books.lock().moves.len()
    }
}

/// Follows the current session: applies its events, forwards its changes, reconciles held and
/// orphaned moves, and fails over when it dies. Ends when every client handle is dropped or no
/// sequencer answers.
async fn supervise(inner: Arc<Inner>, mut session: Session, mut dropped: oneshot::Receiver<()>) {
    let held_timeout = inner.config.held_timeout;
    loop {
        let mut reconcile = tokio::time::interval(inner.config.reconcile_interval);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut dropped => return,
                Some(event) = session.events.recv() => {
                    inner.books.lock().handle_event(event, held_timeout);
                }
                Some(change) = session.changes.recv() => {
                    if let Some(changes) = &inner.books.lock().changes {
                        let _ = changes.send(change);
                    }
                }
                Some(retraction) = session.retractions.recv() => {
                    if let Some(retractions) = &inner.books.lock().retractions {
                        let _ = retractions.send(retraction);
                    }
                }
                Some(diff) = session.tick_diffs.recv() => {
                    if let Some(tick_diffs) = &inner.books.lock().tick_diffs {
                        let _ = tick_diffs.send(diff);
                    }
                }
                () = session.client.closed() => break,
                _ = reconcile.tick() => reconcile_round(&inner, &session.client).await,
            }
        }
        // What arrived before the session ended still counts.
        while let Ok(event) = session.events.try_recv() {
            inner.books.lock().handle_event(event, held_timeout);
        }
        match fail_over(&inner).await {
            Some(next) => session = next,
            None => {
                let mut books = inner.books.lock();
                books.dead = true;
                books.client = None;
                let tried = inner.config.sequencers.len();
                for found in books.moves.values_mut() {
                    found.resolve(Err(ClientError::NoSequencer { tried }));
                }
                books.waiters.clear();
                drop(books);
                inner.generation.send_modify(|generation| *generation += 1);
                warn!(target: "client_sdk::failover", tried, "no sequencer answers; the client stops");
                return;
            }
        }
    }
}

/// Opens a session with the next sequencer that answers (the dead one last: it may have
/// restarted), then subscribes the watched items and sends again the moves not acked.
async fn fail_over(inner: &Inner) -> Option<Session> {
    let config = &inner.config;
    let count = config.sequencers.len();
    let start = {
        let mut books = inner.books.lock();
        books.client = None;
        books.index
    };
    for round in 0..config.reconnect_rounds_max {
        if round > 0 {
            tokio::time::sleep(config.reconnect_backoff).await;
        }
        for offset in 1..=count {
            let index = (start + offset) % count;
            let address = config.sequencers[index];
            let Some(session) = open(address, config).await else {
                continue;
            };
            // The stack goes on (its moves are sent again); what the dead sequencer told
            // does not hold at this one, which tells each watched item again.
            inner.prediction.lock().failed_over();
            session.client.use_prediction(inner.prediction.clone());
            let (again, watched, followed) = {
                let mut books = inner.books.lock();
                books.client = Some(session.client.clone());
                books.index = index;
                books.failovers += 1;
                (
                    books.take_unacked(),
                    books.watched.clone(),
                    books.followed.clone(),
                )
            };
            info!(target: "client_sdk::failover", %address, again = again.len(), "failed over");
            for item in watched {
                let _ = session.client.subscribe(item).await;
            }
            if !followed.is_empty() {
                let _ = session.client.follow(followed).await;
            }
            for signed in again {
                let _ = session.client.submit(signed).await;
            }
            inner.generation.send_modify(|generation| *generation += 1);
            return Some(session);
        }
    }
    None
}

/// Sends the held moves again, in nonce order, and asks the sequencer the level of orphaned
/// ones.
async fn reconcile_round(inner: &Inner, client: &Client) {
    let (held, orphans) = {
        let books = inner.books.lock();
        let mut held: Vec<(Address, u64, SignedTransaction)> = Vec::new();
        let mut orphans = Vec::new();
        for (hash, found) in &books.moves {
            match found.stage {
                Stage::Held => held.push((found.account, found.nonce, found.signed.clone())),
                Stage::Orphaned if orphans.len() < ORPHANS_ASKED_PER_ROUND_MAX => {
                    orphans.push(*hash)
                }
                _ => {}
            }
        }
        held.sort_by_key(|(account, nonce, _)| (*account, *nonce));
        (held, orphans)
    };
    for (_, _, signed) in held {
        if client.submit(signed).await.is_err() {
            return;
        }
    }
    for hash in orphans {
        match client.status(hash).await {
            Ok(Some(level)) if level.rank() > FinalityLevel::Pending.rank() => {
                inner.books.lock().record_level(hash, level, None);
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountAccess, AccountKey, Bytes, SpaceAccessList};

    use super::*;

    const HELD_TIMEOUT: Duration = Duration::from_secs(60);

    fn signed(key: &AccountKey, nonce: u64) -> SignedTransaction {
        Transaction {
            chain_id: 1,
            nonce,
            to: Address::repeat_byte(9),
            value: U256::ZERO,
            data: Bytes::new(),
            gas_limit: 21_000,
            gas_price: 0,
            sponsor: None,
            access_list: SpaceAccessList::new([AccountAccess::read(key.address())]),
        }
        .sign(key)
    }

    /// Books with `count` moves of one account sent (nonces from 0), and their ack receivers.
    #[allow(clippy::type_complexity)]
    fn books_with(
        count: u64,
    ) -> (
        Books,
        Vec<(TxHash, oneshot::Receiver<Result<Option<u64>, ClientError>>)>,
    ) {
        let key = AccountKey::from_seed(3);
        let mut books = Books::default();
        let mut tracker = NonceTracker::new(0);
        let mut acks = Vec::new();
        for _ in 0..count {
            let nonce = tracker.allocate();
            let signed = signed(&key, nonce);
            let hash = signed.hash();
            tracker.sent(nonce, hash);
            let (reply, ack) = oneshot::channel();
            books.moves.insert(
                hash,
                Move {
                    signed,
                    account: key.address(),
                    nonce,
                    stage: Stage::Sent,
                    resent: false,
                    held_since: None,
                    ack: Some(reply),
                },
            );
            acks.push((hash, ack));
        }
        books.nonces.insert(key.address(), tracker);
        (books, acks)
    }

    fn event(hash: TxHash, level: Result<FinalityLevel, Refusal>) -> ClientEvent {
        ClientEvent {
            hash,
            level,
            tick: Some(1),
            preconfirmation: None,
            at: std::time::Instant::now(),
        }
    }

    #[test]
    fn the_first_final_level_of_a_hash_is_its_outcome() {
        let (mut books, mut acks) = books_with(1);
        let (hash, ack) = &mut acks[0];
        let (sender, mut events) = mpsc::unbounded_channel();
        books.events = Some(sender);
        books.handle_event(event(*hash, Ok(FinalityLevel::Pending)), HELD_TIMEOUT);
        assert_eq!(ack.try_recv().expect("resolved").expect("acked"), Some(1));
        books.handle_event(event(*hash, Ok(FinalityLevel::Executed)), HELD_TIMEOUT);
        // The nonce refusal of a second copy of the move, sent again after a failover.
        let copy_failed = FinalityLevel::Failed(primitives::FailureReason::BadNonce {
            expected: 1,
            got: 0,
        });
        books.handle_event(event(*hash, Ok(copy_failed)), HELD_TIMEOUT);
        assert_eq!(books.levels.get(hash), Some(&FinalityLevel::Executed));
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(event.level.expect("no refusal"));
        }
        assert_eq!(seen, [FinalityLevel::Pending, FinalityLevel::Executed]);
        assert!(books.moves.is_empty(), "a final move leaves the books");
    }

    #[test]
    fn a_failover_sends_again_only_what_was_not_acked_in_nonce_order() {
        let (mut books, acks) = books_with(4);
        books.handle_event(event(acks[0].0, Ok(FinalityLevel::Pending)), HELD_TIMEOUT);
        books.handle_event(event(acks[1].0, Ok(FinalityLevel::Sequenced)), HELD_TIMEOUT);
        let again: Vec<TxHash> = books.take_unacked().iter().map(|s| s.hash()).collect();
        assert_eq!(again, [acks[2].0, acks[3].0]);
        assert_eq!(books.moves[&acks[0].0].stage, Stage::Orphaned);
        assert_eq!(books.moves[&acks[1].0].stage, Stage::Orphaned);
        assert!(books.moves[&acks[2].0].resent);
    }

    #[test]
    fn a_new_sequencer_behind_the_dead_ones_log_holds_moves_instead_of_refusing_them() {
        let (mut books, mut acks) = books_with(3);
        books.handle_event(event(acks[0].0, Ok(FinalityLevel::Pending)), HELD_TIMEOUT);
        let _ = books.take_unacked();
        // The new sequencer has not learned move 0 (acked by the dead one, in its log).
        let behind = Refusal::BadNonce {
            expected: 0,
            got: 1,
        };
        books.handle_event(event(acks[1].0, Err(behind)), HELD_TIMEOUT);
        assert_eq!(books.moves[&acks[1].0].stage, Stage::Held);
        assert!(acks[1].1.try_recv().is_err(), "not resolved: held");
        // Move 0 is executed and the new sequencer takes move 1 when it is sent again.
        books.record_level(acks[0].0, FinalityLevel::Executed, None);
        books.handle_event(event(acks[1].0, Ok(FinalityLevel::Pending)), HELD_TIMEOUT);
        assert_eq!(books.moves[&acks[1].0].stage, Stage::Acked);
        // Move 2 was in the dead sequencer's log unacked, and is already spent here.
        let spent = Refusal::BadNonce {
            expected: 3,
            got: 2,
        };
        books.handle_event(event(acks[2].0, Err(spent)), HELD_TIMEOUT);
        assert_eq!(books.moves[&acks[2].0].stage, Stage::Orphaned);
        assert_eq!(
            acks[2].1.try_recv().expect("resolved").expect("found"),
            None
        );
        assert_eq!(
            books.nonces.values().next().map(NonceTracker::next),
            Some(3)
        );
    }

    #[test]
    fn a_refusal_with_no_earlier_move_alive_is_final_and_rewinds_the_nonce() {
        let (mut books, mut acks) = books_with(3);
        books.handle_event(event(acks[0].0, Ok(FinalityLevel::Pending)), HELD_TIMEOUT);
        books.handle_event(event(acks[1].0, Err(Refusal::MempoolFull)), HELD_TIMEOUT);
        let consequence = Refusal::BadNonce {
            expected: 1,
            got: 2,
        };
        books.handle_event(event(acks[2].0, Err(consequence.clone())), HELD_TIMEOUT);
        assert!(matches!(
            acks[1].1.try_recv().expect("resolved"),
            Err(ClientError::Refused(Refusal::MempoolFull))
        ));
        assert!(matches!(
            acks[2].1.try_recv().expect("resolved"),
            Err(ClientError::Refused(refusal)) if refusal == consequence
        ));
        assert_eq!(
            books.nonces.values().next().map(NonceTracker::next),
            Some(1)
        );
        assert_eq!(books.moves.len(), 1);
    }

    #[test]
    fn a_sequencer_that_has_not_heard_a_result_the_client_heard_holds_the_move() {
        let (mut books, mut acks) = books_with(3);
        for (hash, _) in &acks[..2] {
            books.handle_event(event(*hash, Ok(FinalityLevel::Pending)), HELD_TIMEOUT);
            books.handle_event(event(*hash, Ok(FinalityLevel::Executed)), HELD_TIMEOUT);
        }
        let _ = books.take_unacked();
        // Moves 0 and 1 left the books executed; the new sequencer has not heard of them yet.
        let behind = Refusal::BadNonce {
            expected: 0,
            got: 2,
        };
        books.handle_event(event(acks[2].0, Err(behind)), HELD_TIMEOUT);
        assert_eq!(books.moves[&acks[2].0].stage, Stage::Held);
        assert!(acks[2].1.try_recv().is_err(), "not resolved: held");
    }

    #[test]
    fn a_held_move_found_spent_was_taken_by_one_of_its_copies() {
        let (mut books, mut acks) = books_with(2);
        books.handle_event(event(acks[0].0, Ok(FinalityLevel::Pending)), HELD_TIMEOUT);
        let behind = Refusal::BadNonce {
            expected: 0,
            got: 1,
        };
        books.handle_event(event(acks[1].0, Err(behind)), HELD_TIMEOUT);
        assert_eq!(books.moves[&acks[1].0].stage, Stage::Held);
        // A copy sent again while held was taken; a later copy's refusal is no news.
        let spent = Refusal::BadNonce {
            expected: 2,
            got: 1,
        };
        books.handle_event(event(acks[1].0, Err(spent)), HELD_TIMEOUT);
        assert_eq!(books.moves[&acks[1].0].stage, Stage::Orphaned);
        assert_eq!(
            acks[1].1.try_recv().expect("resolved").expect("found"),
            None
        );
    }
}
