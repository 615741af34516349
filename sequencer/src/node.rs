//! The tokio driver of one sequencer: client sessions, the tick, weak DA, peers, PBFT and the
//! execution results, around the sans-IO cores.
//!
//! One core task owns all sequencer state and takes inputs from one bounded queue. Client
//! sessions run in their own tasks and do the expensive, stateless part of ingress (decoding
//! with bounds and recovering the signature) before handing a verified move to the core, so
//! signature checks run in parallel on every core of the machine.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use consensus::{
    Replica, ReplicaConfig, ReplicaEvent, ReplicaInput, ReplicaKeys, ReplicaState, Validator,
    ValidatorSet,
};
use da_weak::WeakDa;
use execution::ExecutedBatch;
use hdrhistogram::Histogram;
use netstack::{
    driver::{KcpConnection, KcpSender, KcpServer},
    kcp::KcpConfig,
};
use parking_lot::Mutex;
use primitives::{
    AccountKey, Batch, BlockHeader, BlockId, FailureReason, FinalityLevel, FinalizedBatch, NodeId,
    TxHash, VerifiedTransaction,
    api::{ClientRequest, Entity, ItemValue, Refusal, RetractionReason, ServerMessage},
    bls::{BlsPublicKey, BlsSecretKey},
    codec::{Decode, Encode},
    constants::RETRACTION_ITEMS_MAX,
    finality::StateItem,
    machine::{Machine, Origin},
    preconf::{PRECONFIRMATION_GROUP_MAX, Preconfirmation, SignedPreconfirmation},
    session::SessionKeyCache,
    time::Instant,
};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};
use upper_chain::{ChainError, SequencerEpoch, UpperChain};

use crate::{
    batcher::Batcher,
    constants::{
        BLOCK_MOVES_PER_TICK_MAX, CLIENT_OUTBOUND_MAX, COMMAND_QUEUE_MAX, FINISHED_STATUSES_MAX,
        FOREIGN_STATUSES_MAX, INGRESS_BURST_MAX, MOVE_BYTES_MAX, SESSION_KEYS_CACHED_MAX,
        SUBSCRIPTIONS_PER_CLIENT_MAX, TICK_DIFF_BACKLOG_MAX,
    },
    ingress::{Admission, Checked, RateLimit, SponsorPolicy, TokenBucket, check_requests},
    mempool::{Mempool, ReplacementPolicy},
    mesh::{PeerDelivery, PeerLinks, PeerMessage},
    packer::{PackedBlock, Packer},
    pending::{PendingState, declared_writes},
    replica_store::{ReplicaStore, ReplicaStoreError, Restored},
    subscriptions::{Subscriptions, TickDiffs, TooManySubscriptions},
    upstream::{Upstream, UpstreamCommit},
};

/// How a sequencer runs.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// The network's chain id.
    pub chain_id: u64,
    /// Time between blocks.
    pub tick: Duration,
    /// Where clients connect (KCP over UDP).
    pub client_listen: SocketAddr,
    /// Rate limits and sponsorship policies of ingress.
    pub ingress: IngressConfig,
}

/// What ingress allows.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// Requests a second one client connection may send.
    pub connection_rate: RateLimit,
    /// Moves a second one sender may submit, over all its connections.
    pub sender_rate: RateLimit,
    /// Largest encoded request decoded.
    pub move_bytes_max: usize,
    /// Who pays for whose moves.
    pub sponsors: Vec<SponsorPolicy>,
    /// When a move may replace an unpacked one of the same sender and nonce.
    pub replacement: ReplacementPolicy,
    /// How often the sponsorship policies published on the upper chain are read again (they
    /// are read once at start); `None`: only the configured `sponsors` count. A policy read
    /// from the chain wins over a configured one for the same sponsor (see
    /// [`crate::ingress::Admission`]).
    pub sponsor_refresh: Option<Duration>,
}

impl Default for IngressConfig {
    /// Generous for one game client (a move a frame is 60 a second), tight enough that one
    /// connection cannot take the whole machine.
    fn default() -> Self {
        IngressConfig {
            connection_rate: RateLimit {
                per_second: 50_000,
                burst: 50_000,
            },
            sender_rate: RateLimit {
                per_second: 10_000,
                burst: 10_000,
            },
            move_bytes_max: MOVE_BYTES_MAX,
            sponsors: Vec::new(),
            replacement: ReplacementPolicy::default(),
            sponsor_refresh: Some(Duration::from_secs(1)),
        }
    }
}

/// Everything a sequencer is wired to.
pub struct SequencerWiring {
    /// This sequencer's operator key (its ID is the key's address; it signs block headers).
    pub key: AccountKey,
    /// Its BLS key for PBFT votes and batch certificates.
    pub bls: BlsSecretKey,
    /// The sequencer set, in validator order.
    pub sequencers: Vec<(NodeId, BlsPublicKey)>,
    /// Links to the other sequencers.
    pub mesh: Arc<dyn PeerLinks>,
    /// What the other sequencers send.
    pub inbound: mpsc::Receiver<PeerDelivery>,
    /// Where block bodies go.
    pub weak_da: WeakDa,
    /// The upper chain (batch commitments).
    pub chain: Arc<dyn UpperChain>,
    /// Where finalized batches go to be executed.
    pub finalized: mpsc::Sender<FinalizedBatch>,
    /// Execution results.
    pub executed: broadcast::Receiver<Arc<ExecutedBatch>>,
    /// The write-ahead log of acked moves and what it recovered at open: a move is acked only
    /// once it is durable, and the recovered moves are back in the mempool before the first
    /// tick. `None`: acks are not durable (in-process tests and benches).
    pub wal: Option<(crate::wal::Wal, crate::wal::Recovered)>,
    /// Where the PBFT replica keeps its log ([`crate::replica_store`]): a sequencer restarted
    /// on the same directory resumes its view, sequence and prepared certificates from it.
    /// `None`: the replica lives in memory and must not be restarted (in-process tests and
    /// benches).
    pub consensus_dir: Option<std::path::PathBuf>,
    /// The body exchange with the other sequencers over QUIC ([`crate::bodies`]): this
    /// sequencer serves what it packs and pulls peers' bodies from their origin first. `None`:
    /// bodies come from weak DA only.
    pub bodies: Option<Bodies>,
}

/// A sequencer's side of the body exchange ([`crate::bodies`]).
#[derive(Debug)]
pub struct Bodies {
    /// What its server serves; the core keeps every body it packs here.
    pub cache: Arc<crate::bodies::BodyCache>,
    /// Its server, bound by the caller (so peers' directories can name its address).
    pub server: crate::bodies::BodyServer,
    /// The other sequencers' body endpoints.
    pub origins: Arc<crate::bodies::Origins>,
}

/// A running sequencer.
#[derive(Clone, Debug)]
pub struct SequencerHandle {
    /// Its operator ID.
    pub id: NodeId,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Counters, readable while it runs.
    pub stats: Arc<SequencerStats>,
    /// The way in for a gateway in this process (the JSON-RPC of [`crate::rpc`]).
    pub gateway: GatewayLink,
}

/// How a gateway in the sequencer's process speaks to its core: the same commands a client
/// session sends after decoding, so that a move from a gateway is admitted, logged, acked and
/// tracked exactly as a native client's.
#[derive(Clone, Debug)]
pub struct GatewayLink {
    commands: mpsc::Sender<Command>,
}

#[cfg(test)]
impl GatewayLink {
    /// A link to a queue the test holds.
    pub(crate) fn for_tests(commands: mpsc::Sender<Command>) -> Self {
        GatewayLink { commands }
    }
}

/// Client IDs of gateways count down from here; sessions count up from 1.
const GATEWAY_CLIENT_FIRST: ClientId = ClientId::MAX;

impl GatewayLink {
    /// Opens a gateway session with the core: acks and statuses of the moves it submits, as
    /// encoded [`ServerMessage`]s, go to `outbound`. Returns the session's client ID.
    pub async fn open(
        &self,
        id_offset: u64,
        outbound: mpsc::Sender<Vec<u8>>,
    ) -> Result<ClientId, GatewayClosed> {
        let client = GATEWAY_CLIENT_FIRST - id_offset;
        self.commands
            .send(Command::GatewayOpened(client, outbound))
            .await
            .map_err(|_| GatewayClosed)?;
        Ok(client)
    }

    /// Submits verified moves in order, as the session `client`.
    pub async fn submit(
        &self,
        client: ClientId,
        moves: Vec<VerifiedTransaction>,
    ) -> Result<(), GatewayClosed> {
        self.commands
            .send(Command::Submit(client, moves))
            .await
            .map_err(|_| GatewayClosed)
    }

    /// Sends a request other than a submission (a subscription, a query) as the session
    /// `client`; its answer comes on the session's outbound queue, in order with the rest.
    pub async fn request(
        &self,
        client: ClientId,
        request: ClientRequest,
    ) -> Result<(), GatewayClosed> {
        self.commands
            .send(Command::Query(client, Box::new(request)))
            .await
            .map_err(|_| GatewayClosed)
    }

    /// An item's value in pending state.
    pub async fn pending_value(&self, item: StateItem) -> Result<primitives::U256, GatewayClosed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::PendingValue(item, reply))
            .await
            .map_err(|_| GatewayClosed)?;
        answer.await.map_err(|_| GatewayClosed)
    }
}

/// The sequencer's core has stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the sequencer has stopped")]
pub struct GatewayClosed;

/// Counters of one sequencer.
#[derive(Debug)]
pub struct SequencerStats {
    /// Moves acked as pending.
    pub moves_acked: AtomicU64,
    /// Peers' block bodies pulled from their origin over QUIC ([`crate::bodies`]).
    pub bodies_from_origin: AtomicU64,
    /// Peers' block bodies read from weak DA.
    pub bodies_from_weak_da: AtomicU64,
    /// Bodies an origin sent that did not match their header (refused).
    pub bodies_refused: AtomicU64,
    /// Moves refused at ingress.
    pub moves_refused: AtomicU64,
    /// Moves that replaced an unpacked move of the same sender and nonce.
    pub moves_replaced: AtomicU64,
    /// Blocks packed.
    pub blocks_packed: AtomicU64,
    /// Batches committed by PBFT.
    pub batches_committed: AtomicU64,
    /// Moves reported executed (successfully or not) to clients of this sequencer.
    pub moves_executed: AtomicU64,
    /// Messages to clients dropped because a client stopped reading.
    pub client_messages_dropped: AtomicU64,
    /// Consensus messages sent to peers.
    pub consensus_messages_sent: AtomicU64,
    /// Their bytes.
    pub consensus_bytes_sent: AtomicU64,
    /// As primary, microseconds from proposing a batch to committing it.
    pub commit_latency_us: Mutex<Histogram<u64>>,
    /// The PBFT view the replica is in.
    pub replica_view: AtomicU64,
    /// The last PBFT sequence the replica committed.
    pub replica_last_committed: AtomicU64,
    /// The sequencer epoch the replica is in.
    pub replica_epoch: AtomicU64,
    /// The replica left the sequencer set at an epoch boundary and takes no part any more.
    pub retired: std::sync::atomic::AtomicBool,
    /// Committed batches whose certificate carries this sequencer's commit signature.
    pub commits_signed: AtomicU64,
    /// The last committed sequence the replica log held when the sequencer started (0 for a
    /// replica in memory or a new log).
    pub restored_sequence: AtomicU64,
    /// The view the replica log held when the sequencer started (0 for a replica in memory or a
    /// new log).
    pub restored_view: AtomicU64,
    /// The number and hash of the last batch this sequencer saw committed (each batch names its
    /// parent's hash, so equal pairs mean equal histories).
    pub last_batch: Mutex<(u64, primitives::B256)>,
}

impl Default for SequencerStats {
    fn default() -> Self {
        SequencerStats {
            moves_acked: AtomicU64::default(),
            bodies_from_origin: AtomicU64::default(),
            bodies_from_weak_da: AtomicU64::default(),
            bodies_refused: AtomicU64::default(),
            moves_refused: AtomicU64::default(),
            moves_replaced: AtomicU64::default(),
            blocks_packed: AtomicU64::default(),
            batches_committed: AtomicU64::default(),
            moves_executed: AtomicU64::default(),
            client_messages_dropped: AtomicU64::default(),
            consensus_messages_sent: AtomicU64::default(),
            consensus_bytes_sent: AtomicU64::default(),
            // Three significant figures up to an hour: a fixed footprint of a few tens of KiB.
            commit_latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            ),
            replica_view: AtomicU64::default(),
            replica_last_committed: AtomicU64::default(),
            restored_sequence: AtomicU64::default(),
            restored_view: AtomicU64::default(),
            last_batch: Mutex::default(),
            replica_epoch: AtomicU64::default(),
            retired: std::sync::atomic::AtomicBool::default(),
            commits_signed: AtomicU64::default(),
        }
    }
}

use crate::subscriptions::ClientId;

pub(crate) enum Command {
    ClientOpened(ClientId, KcpSender),
    /// A gateway in this process: its messages go straight to this queue.
    GatewayOpened(ClientId, mpsc::Sender<Vec<u8>>),
    /// A gateway reads one item of pending state.
    PendingValue(StateItem, tokio::sync::oneshot::Sender<primitives::U256>),
    ClientClosed(ClientId),
    /// A client's verified moves, in the order it sent them.
    Submit(ClientId, Vec<VerifiedTransaction>),
    Query(ClientId, Box<ClientRequest>),
    BodyStored(Box<PackedBlock>),
    /// A peer's block body was read back from weak DA and matched its header's root
    /// (`fetched`), or could not be within the attempts of one fetch.
    BodyFetched {
        id: BlockId,
        root: primitives::B256,
        fetched: bool,
    },
    BatchChecked {
        sequence: u64,
        digest: primitives::B256,
        valid: bool,
    },
    /// The upper chain has fixed this sequencer epoch.
    NextEpoch(Box<SequencerEpoch>),
    /// The sponsorship policies in force on the upper chain changed to these.
    SponsorPolicies(Vec<SponsorPolicy>),
    /// The write-ahead log has these moves on disk: their acks (hash, encoded ack) may go.
    Durable {
        client: ClientId,
        acks: Vec<(TxHash, Vec<u8>)>,
        admitted: std::time::Instant,
    },
}

/// Reads a block body from its origin sequencer ([`crate::bodies`]) or else from weak DA, and
/// checks it against its header's root, retrying weak DA a while (its sequencer stores it
/// before it broadcasts the header, but a store may lag); whether it was found and matched.
async fn fetch_body(
    origins: Option<&crate::bodies::Origins>,
    weak_da: &WeakDa,
    header: &BlockHeader,
    stats: &SequencerStats,
) -> bool {
    if let Some(origins) = origins {
        match origins.fetch(header).await {
            Ok(_) => {
                stats.bodies_from_origin.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Err(error @ crate::bodies::BodyError::Refused(_)) => {
                stats.bodies_refused.fetch_add(1, Ordering::Relaxed);
                warn!(target: "sequencer", origin = %header.sequencer, height = header.height, %error,
                    "origin sent a body that does not match its header; reading weak DA");
            }
            Err(error) => {
                debug!(target: "sequencer", origin = %header.sequencer, height = header.height, %error,
                    "body not pulled from its origin; reading weak DA");
            }
        }
    }
    match retrying(Duration::from_millis(5), || weak_da.get_body(header)).await {
        Ok(_) => {
            stats.bodies_from_weak_da.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(error) => {
            warn!(target: "sequencer", %error, "body unavailable; batch not prepared");
            false
        }
    }
}

/// Runs a weak-DA operation until it succeeds, [`WEAK_DA_ATTEMPTS`] times at most, `pause`
/// apart; the last error if none did.
async fn retrying<T, F, Fut>(pause: Duration, mut operation: F) -> Result<T, da_weak::WeakDaError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, da_weak::WeakDaError>>,
{
    let mut attempts = 1u32;
    loop {
        match operation().await {
            Err(error) if attempts < WEAK_DA_ATTEMPTS => {
                attempts += 1;
                debug!(target: "sequencer", %error, attempts, "weak DA operation failed; retrying");
                tokio::time::sleep(pause).await;
            }
            result => return result,
        }
    }
}

/// How often a weak-DA read or write is tried before the sequencer gives up on it.
const WEAK_DA_ATTEMPTS: u32 = 21;

/// Starts a sequencer: binds its client port and spawns its tasks.
pub async fn spawn(
    config: SequencerConfig,
    mut wiring: SequencerWiring,
) -> std::io::Result<SequencerHandle> {
    let mut recovered = wiring
        .wal
        .as_mut()
        .map(|(_, recovered)| std::mem::take(recovered));
    let confirmed = match (&mut recovered, &wiring.wal) {
        (Some(recovered), Some((wal, _))) => {
            settle_in_doubt(
                recovered,
                &wiring.weak_da,
                wal,
                NodeId(wiring.key.address()),
            )
            .await
        }
        _ => Vec::new(),
    };
    let (server, incoming) = KcpServer::bind(config.client_listen, KcpConfig::default()).await?;
    let client_addr = server.local_addr();
    let (commands, queue) = mpsc::channel(COMMAND_QUEUE_MAX);
    let stats = Arc::new(SequencerStats::default());
    let epoch = std::time::Instant::now();
    tokio::spawn(accept_clients(
        incoming,
        Ingress {
            commands: commands.clone(),
            chain_id: config.chain_id,
            limits: config.ingress.clone(),
            epoch,
            session_keys: Arc::new(SessionKeyCache::new(SESSION_KEYS_CACHED_MAX)),
            stats: stats.clone(),
        },
    ));
    let handle = SequencerHandle {
        id: NodeId(wiring.key.address()),
        client_addr,
        stats: stats.clone(),
        gateway: GatewayLink {
            commands: commands.clone(),
        },
    };
    let opened = open_replica_store(&wiring, &stats).map_err(io::Error::other)?;
    let upstream = Upstream::spawn(wiring.chain.clone())?;
    // A sequencer that joins at a later epoch waits for the chain to name it before its core
    // runs; its clients' requests wait in the queue meanwhile.
    tokio::spawn(async move {
        let keys = ReplicaKeys {
            operator: wiring.key.clone(),
            bls: wiring.bls.clone(),
        };
        let start = match start_consensus(opened, keys, &wiring.sequencers, &wiring.chain, &stats)
            .await
        {
            Ok(start) => start,
            Err(error) => {
                tracing::error!(target: "sequencer", %error, "the replica cannot start: the sequencer stops");
                return;
            }
        };
        if let Some(next) = start.follow_from() {
            tokio::spawn(follow_epochs(wiring.chain.clone(), next, commands.clone()));
        }
        let sponsor_refresh = config.ingress.sponsor_refresh;
        let chain_policies = match sponsor_refresh {
            Some(_) => read_sponsor_policies(&wiring.chain).await,
            None => SponsorPolicyRead::NotKept,
        };
        let mut core = Core::new(config, wiring, start, commands.clone(), stats, upstream);
        let mut last_read = None;
        let keep_reading = match chain_policies {
            SponsorPolicyRead::Read(policies) => {
                info!(target: "sequencer", count = policies.len(), "sponsorship policies read from the upper chain");
                let now = core.now();
                core.admission.set_chain_policies(policies.clone(), now);
                last_read = Some(policies);
                true
            }
            SponsorPolicyRead::NotKept => false,
            SponsorPolicyRead::Failed => true,
        };
        if let Some(every) = sponsor_refresh
            && keep_reading
        {
            tokio::spawn(follow_sponsor_policies(
                core.chain.clone(),
                every,
                last_read,
                commands,
            ));
        }
        if let Some(recovered) = recovered {
            core.replay(recovered, confirmed);
        }
        run_on_own_thread(core, queue, server);
    });
    Ok(handle)
}

/// Runs the core on a thread of its own, with a single-threaded runtime for its timers.
///
/// The core signs and checks BLS votes, about a millisecond each: on the runtime's workers that
/// would stall every task behind it (the mesh's and clients' sessions, weak-DA reads), so a vote
/// would wait for another sequencer's signature work before it is even read. On its own thread
/// the kernel schedules it beside the IO tasks, which the core reaches through channels and
/// spawns on the runtime it was started from.
fn run_on_own_thread(core: Core, queue: mpsc::Receiver<Command>, server: KcpServer) {
    let id = core.id;
    let spawned = std::thread::Builder::new()
        .name("sequencer-core".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(core.run(queue, server)),
                Err(error) => {
                    tracing::error!(target: "sequencer", %id, %error, "no runtime for the core: the sequencer stops");
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(target: "sequencer", %id, %error, "no thread for the core: the sequencer stops");
    }
}

/// What every client task shares.
#[derive(Clone)]
struct Ingress {
    commands: mpsc::Sender<Command>,
    chain_id: u64,
    limits: IngressConfig,
    epoch: std::time::Instant,
    session_keys: Arc<SessionKeyCache>,
    stats: Arc<SequencerStats>,
}

async fn accept_clients(mut incoming: mpsc::Receiver<KcpConnection>, ingress: Ingress) {
    let mut next_id: ClientId = 0;
    while let Some(connection) = incoming.recv().await {
        next_id += 1;
        tokio::spawn(serve_client(next_id, connection, ingress.clone()));
    }
}

/// Decodes and verifies a client's requests; refusals that need no state are answered here.
/// Requests that arrived together are verified together (see [`check_requests`]), on rayon's
/// pool so that the signature work of every client spreads over every core.
async fn serve_client(client: ClientId, mut connection: KcpConnection, ingress: Ingress) {
    use futures::FutureExt;

    let Ingress {
        commands,
        chain_id,
        limits,
        epoch,
        session_keys,
        stats,
    } = ingress;

    let sender = connection.sender();
    if commands
        .send(Command::ClientOpened(client, sender.clone()))
        .await
        .is_err()
    {
        return;
    }
    let mut rate = TokenBucket::new(limits.connection_rate, instant_since(epoch));
    while let Some(first) = connection.recv().await {
        let mut burst = vec![first];
        while burst.len() < INGRESS_BURST_MAX {
            match connection.recv().now_or_never() {
                Some(Some(bytes)) => burst.push(bytes),
                _ => break,
            }
        }
        let now = instant_since(epoch);
        let mut admitted = Vec::with_capacity(burst.len());
        for bytes in burst {
            if rate.try_take(now) {
                admitted.push(bytes);
            } else {
                refuse(
                    &sender,
                    &stats,
                    primitives::keccak256(&bytes),
                    Refusal::RateLimited,
                )
                .await;
            }
        }
        let move_bytes_max = limits.move_bytes_max;
        let (done, checked) = tokio::sync::oneshot::channel();
        let keys = session_keys.clone();
        rayon::spawn(move || {
            let _ = done.send(check_requests(admitted, chain_id, move_bytes_max, &keys));
        });
        let Ok(checked) = checked.await else {
            return;
        };
        // The burst's moves go to the core together; a query goes after the moves sent before
        // it, so that it sees them.
        let mut moves = Vec::new();
        for checked in checked {
            match checked {
                Checked::Move(verified) => moves.push(*verified),
                Checked::Query(query) => {
                    if !moves.is_empty()
                        && commands
                            .send(Command::Submit(client, std::mem::take(&mut moves)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    if commands.send(Command::Query(client, query)).await.is_err() {
                        return;
                    }
                }
                Checked::Refused { hash, refusal } => {
                    debug!(target: "sequencer::ingress", client, %hash, %refusal, "refused before the core");
                    refuse(&sender, &stats, hash, refusal).await;
                }
            }
        }
        if !moves.is_empty() && commands.send(Command::Submit(client, moves)).await.is_err() {
            return;
        }
    }
    let _ = commands.send(Command::ClientClosed(client)).await;
}

async fn refuse(sender: &KcpSender, stats: &SequencerStats, hash: TxHash, refusal: Refusal) {
    stats.moves_refused.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("sequencer_refusals_total", "reason" => refusal_label(&refusal)).increment(1);
    let ack = ServerMessage::Ack {
        hash,
        result: Err(refusal),
        preconfirmation: None,
    };
    let _ = sender.send(ack.to_bytes()).await;
}

/// The `reason` label of the refusal counter.
fn retraction_label(reason: &RetractionReason) -> &'static str {
    match reason {
        RetractionReason::Failed(_) => "failed",
        RetractionReason::Rebased => "rebased",
        RetractionReason::Replaced { .. } => "replaced",
        RetractionReason::Failover => "failover",
    }
}

fn refusal_label(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::Malformed => "malformed",
        Refusal::BadSignature => "bad_signature",
        Refusal::WrongChain { .. } => "wrong_chain",
        Refusal::BadNonce { .. } => "bad_nonce",
        Refusal::MissingFromAccessList(_) => "missing_from_access_list",
        Refusal::MempoolFull => "mempool_full",
        Refusal::Session(_) => "session",
        Refusal::RateLimited => "rate_limited",
        Refusal::TooLarge { .. } => "too_large",
        Refusal::Sponsorship(_) => "sponsorship",
        Refusal::Replacement(_) => "replacement",
    }
}

fn instant_since(epoch: std::time::Instant) -> Instant {
    Instant::from_micros(epoch.elapsed().as_micros() as u64)
}

/// What the core remembers of a move acked here.
struct Tracked {
    client: ClientId,
    level: FinalityLevel,
    /// Whether the client has its ack: statuses wait for it, so that a client never hears of
    /// `Proposed` or `Finalized` before `Pending` (a block can be packed and finalized within
    /// the time one fsync of the write-ahead log takes).
    acked: bool,
    /// The tick its ack promised (a copy of the move sent again is answered with the same).
    tick: u64,
    /// The signed promise its ack carried, if it carried one (a copy gets the same).
    preconfirmation: Option<Box<SignedPreconfirmation>>,
    /// Sessions that sent a copy of the move before its ack was durable: they get the ack too.
    copies_from: Vec<ClientId>,
    /// The move it replaced, until its ack is durable: only then is the replaced move's
    /// sender told (a crash before would bring the replaced move back from the log).
    replaces: Option<TxHash>,
}

/// A move the core admitted.
struct Admitted {
    /// The tick its ack promises.
    tick: u64,
    /// What its ack promises, to be signed with the rest of its group; `None` if the mempool
    /// is too deep to promise a window of heights the evidence can cover.
    promise: Option<Preconfirmation>,
    /// The move it replaced in the mempool, if any.
    replaces: Option<TxHash>,
}

struct Core {
    config: SequencerConfig,
    /// What this sequencer's body server serves ([`crate::bodies`]).
    body_cache: Option<Arc<crate::bodies::BodyCache>>,
    /// Where peers' bodies are pulled from first.
    origins: Option<Arc<crate::bodies::Origins>>,
    /// Kept for as long as the core runs.
    _body_server: Option<crate::bodies::BodyServer>,
    id: NodeId,
    /// The operator key: signs preconfirmations here (the packer signs headers with it).
    key: AccountKey,
    /// The ack sequence number the next accepted move gets (a preconfirmation's `seq`).
    next_ack_seq: u64,
    packer: Packer,
    mempool: Mempool,
    pending: PendingState,
    admission: Admission,
    subscriptions: Subscriptions,
    /// Sessions following entities tick by tick.
    tick_diffs: TickDiffs,
    batcher: Batcher,
    replica: Replica<Batch>,
    mesh: Arc<dyn PeerLinks>,
    inbound: mpsc::Receiver<PeerDelivery>,
    weak_da: WeakDa,
    chain: Arc<dyn UpperChain>,
    /// Records committed batches on the upper chain, off this task.
    upstream: Upstream,
    /// The write-ahead log: acks wait for it.
    wal: Option<crate::wal::Wal>,
    finalized: mpsc::Sender<FinalizedBatch>,
    executed: broadcast::Receiver<Arc<ExecutedBatch>>,
    commands: mpsc::Sender<Command>,
    stats: Arc<SequencerStats>,
    /// The runtime the sequencer was started on: the core's IO tasks run there, not on the
    /// core's own thread.
    io: tokio::runtime::Handle,
    clients: HashMap<ClientId, mpsc::Sender<Vec<u8>>>,
    tracked: HashMap<TxHash, Tracked>,
    finished: VecDeque<TxHash>,
    /// Final levels of moves acked by other sequencers, for status queries: a client whose
    /// sequencer died asks the next one what became of the moves the dead one acked.
    foreign: HashMap<TxHash, FinalityLevel>,
    foreign_finished: VecDeque<TxHash>,
    own_blocks: HashMap<BlockId, Vec<TxHash>>,
    own_bodies: HashMap<BlockId, primitives::BlockBody>,
    /// Peers' blocks whose bodies were read back from weak DA and checked, fetched as soon as
    /// their headers arrive so that a proposal naming them waits for no read; dropped once no
    /// longer waiting to be batched. Keyed by root too: a sequencer that signs two blocks at one
    /// height does not get the second one's body counted as checked.
    fetched_bodies: HashSet<(BlockId, primitives::B256)>,
    /// Bodies being fetched; a waiting block whose fetch gave up is fetched again at a tick.
    prefetching: HashSet<(BlockId, primitives::B256)>,
    /// Proposals that name a batch beyond the next one, by sequence: a backup can receive the
    /// pre-prepare of batch n + 1 before it has committed batch n (the primary proposes once
    /// it has), so these are checked when the commits catch up. The replica asks only within
    /// its window, which bounds the map.
    deferred: BTreeMap<u64, Batch>,
    tick_number: u64,
    epoch: std::time::Instant,
    /// The sequence this node last proposed as primary, and when.
    proposed: Option<(u64, std::time::Instant)>,
    /// Set while the replica's events are handled: a proposal then waits until they all are
    /// (see [`Core::maybe_propose`]).
    handling_events: bool,
    /// A proposal was asked for while events were handled.
    propose_after_events: bool,
    /// The sequencer set of each epoch known, in validator order: evidence names an offender by
    /// its index in the set of its view's epoch.
    members: BTreeMap<u64, Vec<NodeId>>,
    /// Sets of epochs after the replica's, read from the chain, by epoch.
    future_epochs: BTreeMap<u64, ValidatorSet>,
    /// The epoch whose set was last given to the replica.
    epoch_given: Option<u64>,
    /// The replica's log and the batcher's position on disk, if the replica is durable.
    store: Option<ReplicaStore>,
    /// The replica log could not be written: nothing more may be sent.
    store_failed: bool,
}

/// The replica a sequencer starts with, and what goes with it.
struct ConsensusStart {
    replica: Replica<Batch>,
    batcher: Batcher,
    store: Option<ReplicaStore>,
    /// The set of the replica's epoch (and any other known), by epoch, in validator order.
    members: BTreeMap<u64, Vec<NodeId>>,
    /// Whether the chain has sequencer epochs (then the core follows it for the next set).
    epochs: bool,
}

impl ConsensusStart {
    /// The first epoch to read from the chain, if the chain has sequencer epochs.
    fn follow_from(&self) -> Option<u64> {
        self.epochs.then(|| self.replica.epoch() + 1)
    }
}

/// Why a sequencer cannot start its replica.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusStartError {
    /// The replica log or the batcher's position failed.
    #[error("{0}")]
    Store(#[from] ReplicaStoreError),
    /// The sequencer set from the chain is unusable, or the chain could not be read.
    #[error("{0}")]
    Epoch(#[from] crate::epochs::EpochError),
    /// This sequencer is not in the set it would start in (or its log says it left).
    #[error("sequencer {0} is not a member of the sequencer set it starts in")]
    NotAMember(NodeId),
}

impl From<ChainError> for ConsensusStartError {
    fn from(error: ChainError) -> Self {
        ConsensusStartError::Epoch(error.into())
    }
}

/// Opens the replica's log, if the sequencer has one, and says what it holds.
#[allow(clippy::type_complexity, reason = "a pair, once")]
fn open_replica_store(
    wiring: &SequencerWiring,
    stats: &SequencerStats,
) -> Result<(Option<ReplicaStore>, Option<Restored>), ReplicaStoreError> {
    match &wiring.consensus_dir {
        Some(dir) => {
            let (store, restored) = ReplicaStore::open(dir)?;
            info!(target: "sequencer", dir = %dir.display(), frames = restored.recovery.frames,
                truncated = restored.recovery.truncated, view = restored.state.view(),
                last_committed = restored.state.last_committed(), "replica log opened");
            stats
                .restored_sequence
                .store(restored.state.last_committed(), Ordering::Relaxed);
            stats
                .restored_view
                .store(restored.state.view(), Ordering::Relaxed);
            Ok((Some(store), Some(restored)))
        }
        None => Ok((None, None)),
    }
}

/// Builds the replica: from its log if it has one, in the epoch its log is in; otherwise in
/// epoch 0 if it is in the first set, or, with sequencer epochs, joining the latest epoch fixed
/// on the chain that names it (waiting until one does). A chain without sequencer epochs
/// leaves the fixed set of the wiring.
async fn start_consensus(
    (mut store, restored): (Option<ReplicaStore>, Option<Restored>),
    keys: ReplicaKeys,
    sequencers: &[(NodeId, BlsPublicKey)],
    chain: &Arc<dyn UpperChain>,
    stats: &SequencerStats,
) -> Result<ConsensusStart, ConsensusStartError> {
    let me = NodeId(keys.operator.address());
    let state = restored
        .as_ref()
        .map_or_else(ReplicaState::genesis, |restored| restored.state.clone());
    let first = crate::epochs::read_epoch(chain, 0)
        .await?
        .filter(|epoch| epoch.length.is_some());
    let epochs = first.is_some();
    let (validators, state) = match first {
        // One fixed set, as the wiring gives it.
        None => {
            let validators = ValidatorSet::new(
                sequencers
                    .iter()
                    .map(|(id, key)| Validator { id: *id, key: *key })
                    .collect(),
            );
            (validators, state)
        }
        Some(first) => match state.epoch().cloned() {
            Some(set) => (set, state),
            None if state != ReplicaState::genesis()
                || first.sequencers.iter().any(|record| record.id == me) =>
            {
                (crate::epochs::validator_set(&first)?, state)
            }
            None => {
                info!(target: "sequencer", id = %me, "not in the first sequencer set: waiting for an epoch that names this sequencer");
                let epoch = crate::epochs::wait_for_membership(chain, me).await?;
                let set = crate::epochs::validator_set(&epoch)?;
                let joining = ReplicaState::joining(&set);
                if let Some(store) = &mut store {
                    store.start_from(joining.clone())?;
                }
                info!(target: "sequencer", epoch = set.epoch(), after = set.start(), "joining the sequencer set");
                (set, joining)
            }
        },
    };
    let index = validators
        .index_of(&me)
        .ok_or(ConsensusStartError::NotAMember(me))?;
    let members = crate::epochs::members(&validators);
    let batcher = match &restored {
        Some(restored) => restored.batcher(members.iter().copied()),
        None => Batcher::new(members.iter().copied()),
    };
    // The core's clock starts at zero when it is built. A replica without a log in a network
    // with one fixed set is the in-memory one; every other replica records what it promises
    // (records of one without a log are dropped: it has nowhere to keep them).
    let replica = if store.is_none() && !epochs {
        Replica::new(validators.clone(), index, keys)
    } else {
        Replica::restore(
            validators.clone(),
            index,
            keys,
            ReplicaConfig::default(),
            Instant::ZERO,
            state,
        )
    };
    stats
        .replica_epoch
        .store(replica.epoch(), Ordering::Relaxed);
    stats.replica_view.store(replica.view(), Ordering::Relaxed);
    stats
        .replica_last_committed
        .store(replica.last_committed(), Ordering::Relaxed);
    let members = BTreeMap::from([(validators.epoch(), members)]);
    Ok(ConsensusStart {
        replica,
        batcher,
        store,
        members,
        epochs,
    })
}

/// Reads each sequencer epoch from `next` on from the chain once it is fixed, and hands it to
/// the core, in order, until the core stops.
async fn follow_epochs(chain: Arc<dyn UpperChain>, mut next: u64, commands: mpsc::Sender<Command>) {
    loop {
        match crate::epochs::read_epoch(&chain, next).await {
            Ok(Some(epoch)) => {
                if commands
                    .send(Command::NextEpoch(Box::new(epoch)))
                    .await
                    .is_err()
                {
                    return;
                }
                next += 1;
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                debug!(target: "sequencer", %error, epoch = next, "sequencer epoch not read; retrying");
            }
        }
        if commands.is_closed() {
            return;
        }
        tokio::time::sleep(crate::epochs::EPOCH_POLL).await;
    }
}

/// What a read of the sponsorship policies on the upper chain gave.
#[derive(Debug)]
enum SponsorPolicyRead {
    /// The policies in force.
    Read(Vec<SponsorPolicy>),
    /// The chain keeps none (the EVM `Registry` contract): only configured policies count.
    NotKept,
    /// The read failed; the next one may not.
    Failed,
}

/// Reads the sponsorship policies in force on the chain, off the runtime's workers (the chain's
/// calls block).
async fn read_sponsor_policies(chain: &Arc<dyn UpperChain>) -> SponsorPolicyRead {
    let chain = chain.clone();
    let read = tokio::task::spawn_blocking(move || chain.sponsor_policies())
        .await
        .map_err(|join| ChainError::Rpc(join.to_string()))
        .and_then(|read| read);
    match read {
        Ok(records) => {
            let mut policies: Vec<SponsorPolicy> =
                records.iter().map(SponsorPolicy::from).collect();
            policies.sort_by_key(|policy| policy.sponsor);
            SponsorPolicyRead::Read(policies)
        }
        Err(ChainError::Unsupported(why)) => {
            info!(target: "sequencer", %why, "the upper chain keeps no sponsorship policies: configured ones only");
            SponsorPolicyRead::NotKept
        }
        Err(error) => {
            warn!(target: "sequencer", %error, "sponsorship policies not read from the upper chain; retrying");
            SponsorPolicyRead::Failed
        }
    }
}

/// Reads the chain's sponsorship policies every `every` and hands the core each new set, until
/// the core stops.
async fn follow_sponsor_policies(
    chain: Arc<dyn UpperChain>,
    every: Duration,
    mut last: Option<Vec<SponsorPolicy>>,
    commands: mpsc::Sender<Command>,
) {
    loop {
        tokio::time::sleep(every).await;
        if commands.is_closed() {
            return;
        }
        match read_sponsor_policies(&chain).await {
            SponsorPolicyRead::Read(policies) => {
                if last.as_ref() == Some(&policies) {
                    continue;
                }
                last = Some(policies.clone());
                if commands
                    .send(Command::SponsorPolicies(policies))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            SponsorPolicyRead::NotKept => return,
            SponsorPolicyRead::Failed => {}
        }
    }
}

/// What became of equivocation evidence reported to the upper chain.
#[derive(Debug, PartialEq, Eq)]
enum EquivocationReport {
    /// Recorded: the offender with this ID is expelled.
    Recorded(NodeId),
    /// Another report of this offender was recorded first.
    AlreadyRecorded(NodeId),
    /// The offender index is outside the validator set.
    UnknownIndex,
    /// The chain refused it (or failed) for another reason.
    Refused(NodeId, ChainError),
}

/// Reports `evidence` against the sequencer whose index it names in `sequencers` (the validator
/// order).
fn report_equivocation(
    chain: &dyn UpperChain,
    sequencers: &[NodeId],
    evidence: &consensus::Evidence,
) -> EquivocationReport {
    let Some(&id) = sequencers.get(usize::from(evidence.offender)) else {
        return EquivocationReport::UnknownIndex;
    };
    match chain.report_equivocation(evidence, id) {
        Ok(()) => EquivocationReport::Recorded(id),
        Err(ChainError::EquivocationRecorded(_)) => EquivocationReport::AlreadyRecorded(id),
        Err(error) => EquivocationReport::Refused(id, error),
    }
}

impl Core {
    fn new(
        config: SequencerConfig,
        wiring: SequencerWiring,
        start: ConsensusStart,
        commands: mpsc::Sender<Command>,
        stats: Arc<SequencerStats>,
        upstream: Upstream,
    ) -> Self {
        let ConsensusStart {
            replica,
            batcher,
            store,
            members,
            epochs: _,
        } = start;
        *stats.last_batch.lock() = (batcher.last_number(), batcher.last_hash());
        let (body_cache, origins, body_server) = match wiring.bodies {
            Some(bodies) => (
                Some(bodies.cache),
                Some(bodies.origins),
                Some(bodies.server),
            ),
            None => (None, None, None),
        };
        Core {
            body_cache,
            origins,
            _body_server: body_server,
            id: NodeId(wiring.key.address()),
            key: wiring.key.clone(),
            next_ack_seq: 0,
            packer: Packer::new(wiring.key),
            batcher,
            store,
            store_failed: false,
            members,
            future_epochs: BTreeMap::new(),
            epoch_given: None,
            mempool: Mempool::default(),
            pending: PendingState::new(),
            subscriptions: Subscriptions::new(SUBSCRIPTIONS_PER_CLIENT_MAX),
            tick_diffs: TickDiffs::new(TICK_DIFF_BACKLOG_MAX),
            admission: Admission::new(config.ingress.sender_rate, config.ingress.sponsors.clone()),
            replica,
            mesh: wiring.mesh,
            inbound: wiring.inbound,
            weak_da: wiring.weak_da,
            chain: wiring.chain,
            upstream,
            wal: wiring.wal.map(|(wal, _)| wal),
            finalized: wiring.finalized,
            executed: wiring.executed,
            commands,
            stats,
            io: tokio::runtime::Handle::current(),
            clients: HashMap::new(),
            tracked: HashMap::new(),
            finished: VecDeque::new(),
            foreign: HashMap::new(),
            foreign_finished: VecDeque::new(),
            own_blocks: HashMap::new(),
            own_bodies: HashMap::new(),
            fetched_bodies: HashSet::new(),
            prefetching: HashSet::new(),
            deferred: BTreeMap::new(),
            tick_number: 0,
            epoch: std::time::Instant::now(),
            proposed: None,
            handling_events: false,
            propose_after_events: false,
            config,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// When the replica's next timer is due, on tokio's clock.
    fn replica_deadline(&self) -> Option<tokio::time::Instant> {
        let deadline = self.replica.poll_timeout()?;
        Some(tokio::time::Instant::from_std(
            self.epoch + Duration::from_micros(deadline.as_micros()),
        ))
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Command>, _server: KcpServer) {
        // The first block one tick after start, not at once: a tick packs what the tick before
        // it acked.
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.tick,
            self.config.tick,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(target: "sequencer", id = %self.id, "sequencer running");
        loop {
            let deadline = self.replica_deadline();
            tokio::select! {
                () = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = self.now();
                    self.replica.handle_timeout(now);
                }
                command = queue.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => return,
                },
                delivery = self.inbound.recv() => match delivery {
                    Some((from, bytes)) => self.handle_peer(from, &bytes),
                    None => return,
                },
                executed = self.executed.recv() => match executed {
                    Ok(batch) => self.handle_executed(&batch),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(target: "sequencer", missed, "execution results lagged; statuses of those moves stay at Finalized");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick() => self.handle_tick(),
            }
            self.drain_replica();
            // With no peer message or command waiting, sign ahead the commits this replica will
            // send, so that a prepared slot's commit waits on the quorum's check alone.
            while self.inbound.is_empty() && queue.is_empty() && self.replica.presign() {}
            if self.wal.as_ref().is_some_and(crate::wal::Wal::failed) {
                tracing::error!(target: "sequencer", "the write-ahead log failed: the sequencer stops rather than ack what it could lose");
                return;
            }
            if self.store_failed {
                tracing::error!(target: "sequencer", "the replica log failed: the sequencer stops rather than vote on what it could forget");
                return;
            }
        }
    }

    /// Queues a message for a client. The core never waits on a client: each client has a
    /// writer task behind a bounded queue, and only a client that stops reading long enough to
    /// fill it loses messages (counted).
    fn push(&self, client: ClientId, message: &ServerMessage) {
        if let Some(outbound) = self.clients.get(&client)
            && outbound.try_send(message.to_bytes()).is_err()
        {
            self.stats
                .client_messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            debug!(target: "sequencer", client, "client outbound queue full or closed; message dropped");
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::ClientOpened(client, sender) => {
                let (outbound, mut queue) = mpsc::channel::<Vec<u8>>(CLIENT_OUTBOUND_MAX);
                self.io.spawn(async move {
                    while let Some(bytes) = queue.recv().await {
                        if sender.send(bytes).await.is_err() {
                            return;
                        }
                    }
                });
                self.clients.insert(client, outbound);
            }
            Command::GatewayOpened(client, outbound) => {
                self.clients.insert(client, outbound);
            }
            Command::PendingValue(item, reply) => {
                let _ = reply.send(self.pending.get(&item));
            }
            Command::ClientClosed(client) => {
                self.clients.remove(&client);
                self.subscriptions.client_closed(client);
                self.tick_diffs.client_closed(client);
                self.pending.record_changes(!self.tick_diffs.is_empty());
            }
            Command::Submit(client, moves) => self.admit_all(client, moves),
            Command::Query(client, request) => self.answer(client, *request),
            Command::BodyStored(block) => self.handle_body_stored(*block),
            Command::BodyFetched { id, root, fetched } => {
                self.prefetching.remove(&(id, root));
                // A body fetched for a block already batched is not needed any more.
                if fetched && self.batcher.is_waiting(&id, &root) {
                    self.fetched_bodies.insert((id, root));
                    self.maybe_propose();
                }
            }
            Command::NextEpoch(epoch) => self.handle_next_epoch(*epoch),
            Command::SponsorPolicies(policies) => {
                info!(target: "sequencer", count = policies.len(), "sponsorship policies on the upper chain changed");
                let now = self.now();
                self.admission.set_chain_policies(policies, now);
            }
            Command::Durable {
                client,
                acks,
                admitted,
            } => self.handle_durable(client, acks, admitted),
            Command::BatchChecked {
                sequence,
                digest,
                valid,
            } => {
                let now = self.now();
                self.replica.handle(
                    now,
                    Origin::Local,
                    ReplicaInput::Verified {
                        sequence,
                        digest,
                        valid,
                    },
                );
            }
        }
    }

    /// Admits a client's moves in order; those with a log go to it together and are acked
    /// when it has them on disk, the rest (and every refusal) are answered at once. The
    /// promises of the moves accepted are signed together ([`primitives::preconf`]): one
    /// secp256k1 signature a burst rather than a move (about 18 µs each here, a third of a core
    /// at 20,000 moves/s), each ack with its Merkle proof.
    fn admit_all(&mut self, client: ClientId, moves: Vec<VerifiedTransaction>) {
        let mut logged = Vec::new();
        let mut acks = Vec::new();
        let mut answers = Vec::with_capacity(moves.len());
        for verified in moves {
            let hash = verified.hash;
            if self.tracked.contains_key(&hash) {
                self.answer_copy(client, hash);
                continue;
            }
            let bytes = self.wal.as_ref().map(|_| verified.signed.to_bytes());
            let result = self.admit(client, verified, logged.len());
            let replaces = result.as_ref().ok().and_then(|admitted| admitted.replaces);
            let promise = result.as_ref().ok().and_then(|admitted| admitted.promise);
            let waits_for_log = match bytes {
                Some(bytes) if result.is_ok() => {
                    logged.push(crate::wal::LoggedMove {
                        hash,
                        bytes,
                        replaces,
                    });
                    true
                }
                _ => false,
            };
            answers.push((
                hash,
                result.map(|admitted| admitted.tick),
                promise,
                waits_for_log,
            ));
        }
        let mut signed = self.sign_promises(answers.iter().filter_map(|answer| answer.2));
        for (hash, result, promise, waits_for_log) in answers {
            let preconfirmation = promise.and_then(|_| signed.next()).map(Box::new);
            if let (Some(preconfirmation), Some(tracked)) =
                (&preconfirmation, self.tracked.get_mut(&hash))
            {
                tracked.preconfirmation = Some(preconfirmation.clone());
            }
            let accepted = result.is_ok();
            let message = ServerMessage::Ack {
                hash,
                result,
                preconfirmation,
            };
            if waits_for_log {
                acks.push((hash, message.to_bytes()));
            } else {
                if accepted {
                    crate::metrics::acked(Duration::ZERO);
                }
                self.push(client, &message);
            }
        }
        if logged.is_empty() {
            return;
        }
        let Some(wal) = &self.wal else { return };
        let commands = self.commands.clone();
        let admitted = std::time::Instant::now();
        // Runs on the log's writer thread, after the fsync: the core sends the acks, in order
        // with the moves' later statuses.
        let on_durable = Box::new(move || {
            let _ = commands.blocking_send(Command::Durable {
                client,
                acks,
                admitted,
            });
        });
        if let Err(error) = wal.append_moves(logged, on_durable) {
            // Only a stopped writer gets here (room was checked): the run loop stops next.
            tracing::error!(target: "sequencer::wal", %error, "moves admitted but not logged; never acked");
        }
    }

    /// A copy of a move this sequencer already took (a client sends a move again when it
    /// cannot tell whether the first copy arrived, e.g. after a failover): submission is
    /// idempotent, so the copy gets the original's ack, and the move's later levels go to the
    /// session that sent the copy, the one the client is listening on now. A copy that arrives
    /// before the original's ack is durable waits for it like the original.
    fn answer_copy(&mut self, client: ClientId, hash: TxHash) {
        let Some(tracked) = self.tracked.get_mut(&hash) else {
            return;
        };
        if !tracked.acked {
            if tracked.client != client && !tracked.copies_from.contains(&client) {
                tracked.copies_from.push(client);
            }
            return;
        }
        tracked.client = client;
        let (tick, level) = (tracked.tick, tracked.level.clone());
        let preconfirmation = tracked.preconfirmation.clone();
        self.push(
            client,
            &ServerMessage::Ack {
                hash,
                result: Ok(tick),
                preconfirmation,
            },
        );
        if level.rank() > FinalityLevel::Pending.rank() {
            self.push(client, &ServerMessage::Status { hash, level });
        }
    }

    /// One move of [`Core::admit_all`]; `unlogged` moves admitted before it wait to be handed
    /// to the log. On success the move is in pending state and the mempool, in the place of the
    /// move it replaces if it has the sender and nonce of one still in the mempool.
    fn admit(
        &mut self,
        client: ClientId,
        verified: VerifiedTransaction,
        unlogged: usize,
    ) -> Result<Admitted, Refusal> {
        let hash = verified.hash;
        let now = self.now();
        let next_batch = self.batcher.last_number() + 1;
        let replacing = self
            .mempool
            .get(&verified.sender, verified.tx().nonce)
            .is_some();
        let result = if self.wal.as_ref().is_some_and(|wal| wal.room() <= unlogged) {
            // The disk is behind: refused before anything changes.
            Err(Refusal::MempoolFull)
        } else if replacing {
            self.admit_replacement(verified, next_batch, now)
        } else if let Err(refusal) = self.admission.admit(
            &verified,
            &self.pending,
            next_batch,
            self.mempool.has_room(),
            now,
        ) {
            Err(refusal)
        } else {
            self.pending.admit(&verified);
            if !self.subscriptions.is_empty() {
                let written = declared_writes(&verified).into_iter().map(|(item, _)| item);
                self.notify_changes(written);
            }
            self.mempool.push(verified);
            Ok(None)
        };
        let result = result.map(|replaces| {
            let (tick, promise) = self.promise(hash);
            self.tracked.insert(
                hash,
                Tracked {
                    client,
                    level: FinalityLevel::Pending,
                    acked: self.wal.is_none(),
                    tick,
                    preconfirmation: None,
                    copies_from: Vec::new(),
                    replaces: replaces.filter(|_| self.wal.is_some()),
                },
            );
            if let Some(replaced) = replaces
                && self.wal.is_none()
            {
                self.set_level(
                    &replaced,
                    FinalityLevel::Failed(FailureReason::Replaced { by: hash }),
                );
            }
            Admitted {
                tick,
                promise,
                replaces,
            }
        });
        match &result {
            Ok(_) => self.stats.moves_acked.fetch_add(1, Ordering::Relaxed),
            Err(refusal) => {
                metrics::counter!("sequencer_refusals_total", "reason" => refusal_label(refusal))
                    .increment(1);
                self.stats.moves_refused.fetch_add(1, Ordering::Relaxed)
            }
        };
        result
    }

    /// What the ack of a move just put in the mempool promises: the tick and, if the window
    /// is short enough to prove, the preconfirmation to sign. The mempool is packed in ack
    /// order, [`BLOCK_MOVES_PER_TICK_MAX`] moves a block and one block a tick while it holds
    /// moves, so the moves ahead of this one fill `ahead` blocks before its own; a replacement
    /// takes an earlier place, never a later one.
    fn promise(&mut self, hash: TxHash) -> (u64, Option<Preconfirmation>) {
        let ahead = (self.mempool.len().saturating_sub(1) / BLOCK_MOVES_PER_TICK_MAX) as u64;
        let height_first = self.packer.next_height();
        let tick = self.tick_number + 1 + ahead;
        let promise = Preconfirmation {
            hash,
            sequencer: self.id,
            seq: self.next_ack_seq,
            tick,
            height_first,
            height_last: height_first + ahead,
        };
        self.next_ack_seq += 1;
        (tick, promise.window().is_ok().then_some(promise))
    }

    /// Signs promises in groups of at most [`PRECONFIRMATION_GROUP_MAX`], one signature a
    /// group; the signed ones come back in order.
    fn sign_promises(
        &self,
        promises: impl Iterator<Item = Preconfirmation>,
    ) -> std::vec::IntoIter<SignedPreconfirmation> {
        let promises: Vec<Preconfirmation> = promises.collect();
        let mut signed = Vec::with_capacity(promises.len());
        for group in promises.chunks(PRECONFIRMATION_GROUP_MAX) {
            signed.extend(SignedPreconfirmation::sign_group(&self.key, group));
        }
        signed.into_iter()
    }

    /// A move with the sender and nonce of one in the mempool: it takes that move's place if
    /// the replacement policy allows (see [`Admission::replace`]). Returns the replaced hash.
    fn admit_replacement(
        &mut self,
        verified: VerifiedTransaction,
        next_batch: u64,
        now: Instant,
    ) -> Result<Option<TxHash>, Refusal> {
        let by = verified.hash;
        let replacement = self.admission.replace(
            verified,
            &mut self.mempool,
            &mut self.pending,
            self.config.ingress.replacement,
            next_batch,
            now,
        )?;
        let replaced = replacement.replaced.hash;
        self.stats.moves_replaced.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sequencer_moves_replaced_total").increment(1);
        debug!(target: "sequencer::ingress", %replaced, sender = %replacement.replaced.sender,
            nonce = replacement.replaced.tx().nonce, "pending move replaced");
        self.notify_retraction(
            replaced,
            &RetractionReason::Replaced { by },
            replacement.touched,
            true,
        );
        Ok(Some(replaced))
    }

    fn answer(&mut self, client: ClientId, request: ClientRequest) {
        let reply = match request {
            ClientRequest::PendingNonce(address) => ServerMessage::PendingNonce {
                address,
                nonce: self.pending.next_nonce(&address),
            },
            ClientRequest::PendingStorage(address, slot) => ServerMessage::PendingStorage {
                address,
                slot,
                value: self.pending.storage(&address, &slot),
            },
            ClientRequest::Status(hash) => ServerMessage::StatusReply {
                hash,
                level: self
                    .tracked
                    .get(&hash)
                    .map(|tracked| tracked.level.clone())
                    .or_else(|| self.foreign.get(&hash).cloned()),
            },
            ClientRequest::Subscribe(item) => {
                let value = self.pending.get(&item);
                match self.subscriptions.subscribe(client, item, value) {
                    Ok(()) => ServerMessage::Changed { item, value },
                    Err(TooManySubscriptions { limit }) => ServerMessage::SubscriptionRefused {
                        item,
                        limit: u32::try_from(limit).unwrap_or(u32::MAX),
                    },
                }
            }
            ClientRequest::Unsubscribe(item) => {
                self.subscriptions.unsubscribe(client, &item);
                return;
            }
            ClientRequest::SubscribeEntities(entities) => {
                // The single items start at their current values, as a subscription does;
                // a whole account's items come as they change.
                let changes = entities
                    .iter()
                    .filter_map(|entity| match entity {
                        Entity::Item(item) => Some(ItemValue {
                            item: *item,
                            value: self.pending.get(item),
                        }),
                        Entity::Account(_) => None,
                    })
                    .collect();
                self.tick_diffs.follow(client, entities);
                self.pending.record_changes(!self.tick_diffs.is_empty());
                ServerMessage::TickDiff {
                    tick: self.tick_number,
                    changes,
                }
            }
            ClientRequest::Submit(_) => {
                unreachable!("submissions are verified before they reach the core")
            }
        };
        self.push(client, &reply);
    }

    /// Pushes the new pending values of `touched` items to the sessions that watch them.
    fn notify_changes(&mut self, touched: impl IntoIterator<Item = StateItem>) {
        if self.subscriptions.is_empty() {
            return;
        }
        let pending = &self.pending;
        let changes = self
            .subscriptions
            .changes(touched, |item| pending.get(item));
        for (client, item, value) in changes {
            self.push(client, &ServerMessage::Changed { item, value });
        }
    }

    /// Tells each session that watches an item `touched` for a cause other than a new move
    /// (`reason`, about the move `hash`) the corrected values of its items, in one message
    /// (more only past [`RETRACTION_ITEMS_MAX`] items). With `always`, every watched touched
    /// item is reported even if its value did not move; otherwise only real changes are.
    fn notify_retraction(
        &mut self,
        hash: TxHash,
        reason: &RetractionReason,
        touched: impl IntoIterator<Item = StateItem>,
        always: bool,
    ) {
        if self.subscriptions.is_empty() {
            return;
        }
        let pending = &self.pending;
        let told = self
            .subscriptions
            .retractions(touched, |item| pending.get(item), always);
        self.push_retractions(hash, reason, told);
    }

    /// Sends each session its retraction message (more than one only past
    /// [`RETRACTION_ITEMS_MAX`] items).
    fn push_retractions(
        &mut self,
        hash: TxHash,
        reason: &RetractionReason,
        told: std::collections::BTreeMap<ClientId, Vec<ItemValue>>,
    ) {
        if told.is_empty() {
            return;
        }
        metrics::counter!("sequencer_retractions_total", "reason" => retraction_label(reason))
            .increment(1);
        // Changes made while tick t runs are the ones its diff carries.
        let tick = self.tick_number + 1;
        for (client, corrected) in told {
            for part in corrected.chunks(RETRACTION_ITEMS_MAX) {
                self.push(
                    client,
                    &ServerMessage::Retracted {
                        hash,
                        reason: reason.clone(),
                        corrected: part.to_vec(),
                        tick,
                    },
                );
            }
        }
    }

    fn set_level(&mut self, hash: &TxHash, level: FinalityLevel) {
        let Some(tracked) = self.tracked.get_mut(hash) else {
            return;
        };
        if tracked.level.rank() >= level.rank() {
            return;
        }
        tracked.level = level.clone();
        let client = tracked.client;
        let acked = tracked.acked;
        if matches!(level, FinalityLevel::Executed | FinalityLevel::Failed(_)) {
            self.finished.push_back(*hash);
            if self.finished.len() > FINISHED_STATUSES_MAX
                && let Some(oldest) = self.finished.pop_front()
            {
                self.tracked.remove(&oldest);
            }
        }
        if acked {
            self.push(client, &ServerMessage::Status { hash: *hash, level });
        }
    }

    /// Sends an ack the write-ahead log made durable, then the move's level if it moved on
    /// meanwhile.
    fn handle_durable(
        &mut self,
        client: ClientId,
        acks: Vec<(TxHash, Vec<u8>)>,
        admitted: std::time::Instant,
    ) {
        let waited = admitted.elapsed();
        for (hash, ack) in acks {
            crate::metrics::acked(waited);
            if let Some(outbound) = self.clients.get(&client)
                && outbound.try_send(ack).is_err()
            {
                self.stats
                    .client_messages_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
            let Some(tracked) = self.tracked.get_mut(&hash) else {
                continue;
            };
            tracked.acked = true;
            let replaced = tracked.replaces.take();
            let copies_from = std::mem::take(&mut tracked.copies_from);
            let (tick, level) = (tracked.tick, tracked.level.clone());
            let preconfirmation = tracked.preconfirmation.clone();
            if let Some(latest) = copies_from.last() {
                tracked.client = *latest;
            }
            for copy_client in copies_from {
                self.push(
                    copy_client,
                    &ServerMessage::Ack {
                        hash,
                        result: Ok(tick),
                        preconfirmation: preconfirmation.clone(),
                    },
                );
            }
            if level.rank() > FinalityLevel::Pending.rank() {
                let to = self
                    .tracked
                    .get(&hash)
                    .map_or(client, |tracked| tracked.client);
                self.push(to, &ServerMessage::Status { hash, level });
            }
            if let Some(replaced) = replaced {
                self.set_level(
                    &replaced,
                    FinalityLevel::Failed(FailureReason::Replaced { by: hash }),
                );
            }
        }
    }

    fn handle_tick(&mut self) {
        self.tick_number += 1;
        if !self.tick_diffs.is_empty() {
            let changed = self.pending.take_changes();
            let pending = &self.pending;
            let diffs = self.tick_diffs.end_tick(&changed, |item| pending.get(item));
            for (client, changes) in diffs {
                self.push(
                    client,
                    &ServerMessage::TickDiff {
                        tick: self.tick_number,
                        changes,
                    },
                );
            }
        }
        crate::metrics::mempool(self.mempool.len());
        if !self.mempool.is_empty() {
            let moves = self.mempool.take(BLOCK_MOVES_PER_TICK_MAX);
            let block = self.packer.pack(self.now(), moves);
            self.stats.blocks_packed.fetch_add(1, Ordering::Relaxed);
            crate::metrics::block_packed();
            self.wal_packing(&block);
            if let Some(cache) = &self.body_cache {
                cache.insert(block.header.id(), block.encoded_body.clone());
            }
            let weak_da = self.weak_da.clone();
            let commands = self.commands.clone();
            self.io.spawn(async move {
                let put = retrying(Duration::from_millis(10), || {
                    weak_da.put_body(&block.header, block.encoded_body.clone())
                });
                if let Err(error) = put.await {
                    warn!(target: "sequencer", %error, "weak DA put failed; block dropped");
                    return;
                }
                let _ = commands.send(Command::BodyStored(Box::new(block))).await;
            });
        }
        // At the end of its epoch the replica waits for the next set, not for a primary: no
        // backlog, so no view change.
        let at_epoch_end = self.replica.validators().end() == Some(self.replica.last_committed());
        self.refetch_missing_bodies();
        let backlog = self.batcher.has_waiting(|header| self.holds_body(header)) && !at_epoch_end;
        let now = self.now();
        self.replica
            .handle(now, Origin::Local, ReplicaInput::Backlog(backlog));
        self.maybe_propose();
    }

    fn handle_body_stored(&mut self, block: PackedBlock) {
        let id = block.header.id();
        let hashes = block.hashes;
        for hash in &hashes {
            self.set_level(hash, FinalityLevel::Sequenced);
        }
        self.wal_packed(&block.header, &hashes);
        self.own_blocks.insert(id, hashes);
        self.own_bodies.insert(id, block.body);
        self.mesh
            .broadcast(&PeerMessage::Header(block.header.clone()).to_bytes());
        if let Err(error) = self.batcher.hear(block.header) {
            warn!(target: "sequencer", %error, "own header refused by the batcher");
        }
        self.maybe_propose();
    }

    /// As primary, proposes the next batch once every earlier proposal is decided: a batch is
    /// checked against the last committed one, so batches are not pipelined.
    ///
    /// Never while the replica's events are being handled: the replica may have committed
    /// sequences whose events are still queued, so it would count them as decided while the
    /// batcher has not seen their batches, and propose a batch with the number of one already
    /// committed (found by the whole-path world in `sim`). The proposal is made once every
    /// event is handled.
    fn maybe_propose(&mut self) {
        if self.handling_events {
            self.propose_after_events = true;
            return;
        }
        let in_flight = self.replica.next_sequence() > self.replica.last_committed() + 1;
        if in_flight || !self.replica.is_primary() {
            return;
        }
        if let Some(batch) = self.batcher.propose(|header| self.holds_body(header)) {
            let now = self.now();
            let sequence = self.replica.next_sequence();
            self.replica
                .handle(now, Origin::Local, ReplicaInput::Propose(batch));
            if self.replica.next_sequence() > sequence {
                self.proposed = Some((sequence, std::time::Instant::now()));
            }
        }
    }

    /// The chain fixed a sequencer epoch: kept until the replica needs it as its next one.
    fn handle_next_epoch(&mut self, epoch: SequencerEpoch) {
        let set = match crate::epochs::validator_set(&epoch) {
            Ok(set) => set,
            Err(error) => {
                warn!(target: "sequencer", %error, "sequencer epoch from the chain not used");
                return;
            }
        };
        if set.epoch() <= self.replica.epoch() {
            return;
        }
        info!(target: "sequencer", epoch = set.epoch(), after = set.start(), n = set.n(),
            member = set.index_of(&self.id).is_some(), "next sequencer set read from the upper chain");
        self.members
            .insert(set.epoch(), crate::epochs::members(&set));
        self.future_epochs.insert(set.epoch(), set);
        self.give_next_epoch();
    }

    /// Gives the replica the set of the epoch after its own, once known.
    fn give_next_epoch(&mut self) {
        let next = self.replica.epoch() + 1;
        self.future_epochs.retain(|epoch, _| *epoch >= next);
        if self.epoch_given == Some(next) || self.replica.is_retired() {
            return;
        }
        let Some(set) = self.future_epochs.get(&next).cloned() else {
            return;
        };
        let now = self.now();
        match self
            .replica
            .step(now, Origin::Local, ReplicaInput::NextEpoch(set))
        {
            Ok(()) => self.epoch_given = Some(next),
            Err(reason) => {
                warn!(target: "sequencer", epoch = next, ?reason, "next sequencer set refused by the replica");
            }
        }
    }

    /// The replica switched sets at an epoch boundary.
    fn handle_epoch_entered(&mut self, epoch: u64, start: u64, member: bool) {
        self.stats.replica_epoch.store(epoch, Ordering::Relaxed);
        if member {
            if let Some(members) = self.members.get(&epoch) {
                self.batcher.set_sequencers(members.iter().copied());
            }
            info!(target: "sequencer", epoch, after = start, "entered a new sequencer epoch");
        } else {
            self.stats.retired.store(true, Ordering::Relaxed);
            warn!(target: "sequencer", epoch, after = start,
                "not in the sequencer set of the new epoch: this sequencer no longer takes part in consensus");
        }
        // Evidence names offenders by index in the set of its own epoch: two epochs are enough.
        while self.members.len() > 2
            && self
                .members
                .first_key_value()
                .is_some_and(|(known, _)| *known + 1 < epoch)
        {
            self.members.pop_first();
        }
        self.give_next_epoch();
        self.maybe_propose();
    }

    fn handle_peer(&mut self, from: NodeId, bytes: &[u8]) {
        match PeerMessage::from_bytes(bytes) {
            Ok(PeerMessage::Header(header)) => {
                if header.sequencer != from {
                    warn!(target: "sequencer", %from, "peer relayed a header of another sequencer; ignored");
                    return;
                }
                match self.batcher.hear(header.clone()) {
                    Ok(()) => self.prefetch_body(header),
                    Err(error) => warn!(target: "sequencer", %from, %error, "header refused"),
                }
                self.maybe_propose();
            }
            Ok(PeerMessage::Consensus(message)) => {
                let now = self.now();
                self.replica
                    .handle(now, Origin::Peer(from), ReplicaInput::Message(message));
            }
            Err(error) => warn!(target: "sequencer", %from, %error, "undecodable peer message"),
        }
    }

    /// Drains the replica in the core's order: its records made durable first, then its
    /// transmits, then its events; again while handling events gave it more to do.
    fn drain_replica(&mut self) {
        loop {
            while !self.store_failed && self.drain_replica_once() {}
            if self.store_failed || !std::mem::take(&mut self.propose_after_events) {
                break;
            }
            self.maybe_propose();
        }
    }

    /// One pass of [`Core::drain_replica`]; whether it drained anything.
    fn drain_replica_once(&mut self) -> bool {
        let records: Vec<_> = std::iter::from_fn(|| self.replica.poll_persist()).collect();
        if !records.is_empty()
            && let Some(store) = &mut self.store
            && let Err(error) = store.append(&records)
        {
            // Its transmits promise what the records hold: none may go out.
            tracing::error!(target: "sequencer", %error, "replica log not written");
            self.store_failed = true;
            return false;
        }
        let mut drained = !records.is_empty();
        let now = self.now();
        while let Some(transmit) = self.replica.poll_transmit(now) {
            drained = true;
            let bytes = PeerMessage::Consensus(transmit.bytes).to_bytes();
            self.stats
                .consensus_messages_sent
                .fetch_add(1, Ordering::Relaxed);
            self.stats
                .consensus_bytes_sent
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.mesh.send(&transmit.to, bytes);
        }
        self.handling_events = true;
        while let Some(event) = self.replica.poll_event() {
            drained = true;
            match event {
                ReplicaEvent::Verify { sequence, value } => self.check_batch(sequence, value),
                ReplicaEvent::Committed {
                    sequence,
                    view,
                    value: Some(batch),
                    certificate,
                } => self.handle_committed(sequence, view, batch, certificate),
                ReplicaEvent::Committed { value: None, .. } => self.maybe_propose(),
                ReplicaEvent::ViewEntered { view, primary } => {
                    info!(target: "sequencer", view, %primary, "entered a new view");
                    self.maybe_propose();
                }
                ReplicaEvent::Evidence(evidence) => self.report_equivocation(&evidence),
                ReplicaEvent::EpochEntered {
                    epoch,
                    start,
                    member,
                } => self.handle_epoch_entered(epoch, start, member),
                other => debug!(target: "sequencer", ?other, "consensus event"),
            }
        }
        self.handling_events = false;
        self.stats
            .replica_view
            .store(self.replica.view(), Ordering::Relaxed);
        self.stats
            .replica_last_committed
            .store(self.replica.last_committed(), Ordering::Relaxed);
        drained
    }

    /// Records equivocation evidence on the upper chain, which expels the offender. Every correct
    /// sequencer that saw the offence reports it and only the first is recorded, so a duplicate
    /// is no cause for alarm.
    fn report_equivocation(&self, evidence: &consensus::Evidence) {
        let (offender, kind, view, sequence) = (
            evidence.offender,
            evidence.kind,
            evidence.view,
            evidence.sequence,
        );
        let members = self
            .members
            .get(&crate::epochs::epoch_of_view(view))
            .map_or(&[][..], Vec::as_slice);
        match report_equivocation(self.chain.as_ref(), members, evidence) {
            EquivocationReport::Recorded(id) => {
                warn!(target: "sequencer", offender, %id, ?kind, view, sequence,
                    "equivocation recorded on the upper chain; the offender is expelled");
            }
            EquivocationReport::AlreadyRecorded(id) => {
                debug!(target: "sequencer", offender, %id, ?kind, view, sequence,
                    "equivocation recorded already (another sequencer was first)");
            }
            EquivocationReport::UnknownIndex => {
                warn!(target: "sequencer", offender, ?kind, view, sequence,
                    "equivocation evidence names no member of the set");
            }
            EquivocationReport::Refused(id, error) => {
                warn!(target: "sequencer", offender, %id, ?kind, view, sequence, %error,
                    "equivocation evidence not recorded");
            }
        }
    }

    /// A replica prepares a batch only once the batch follows the rules and every body it names
    /// is held here or in weak DA (checked against its root).
    fn check_batch(&mut self, sequence: u64, batch: Batch) {
        if batch.number > self.batcher.last_number() + 1 {
            self.deferred.insert(sequence, batch);
            return;
        }
        let digest = consensus::Value::digest(&batch);
        if let Err(error) = self.batcher.check(&batch) {
            warn!(target: "sequencer", sequence, %error, "proposed batch refused");
            let _ = self.commands.try_send(Command::BatchChecked {
                sequence,
                digest,
                valid: false,
            });
            return;
        }
        let missing: Vec<BlockHeader> = batch
            .headers
            .iter()
            .filter(|header| {
                let id = header.id();
                !self.own_bodies.contains_key(&id)
                    && !self.fetched_bodies.contains(&(id, header.root))
            })
            .cloned()
            .collect();
        let commands = self.commands.clone();
        if missing.is_empty() {
            // Answered at once rather than through the command queue, where it would wait
            // behind every client submission queued meanwhile.
            let now = self.now();
            self.replica.handle(
                now,
                Origin::Local,
                ReplicaInput::Verified {
                    sequence,
                    digest,
                    valid: true,
                },
            );
            return;
        }
        let weak_da = self.weak_da.clone();
        let origins = self.origins.clone();
        let stats = self.stats.clone();
        self.io.spawn(async move {
            let fetches = missing
                .iter()
                .map(|header| fetch_body(origins.as_deref(), &weak_da, header, &stats));
            let valid = futures::future::join_all(fetches)
                .await
                .into_iter()
                .all(|fetched| fetched);
            let _ = commands
                .send(Command::BatchChecked {
                    sequence,
                    digest,
                    valid,
                })
                .await;
        });
    }

    /// Reads a peer's block body back from weak DA as soon as its header arrives, so that the
    /// proposal naming it finds it checked.
    fn prefetch_body(&mut self, header: BlockHeader) {
        let (id, root) = (header.id(), header.root);
        if !self.prefetching.insert((id, root)) {
            return;
        }
        let weak_da = self.weak_da.clone();
        let origins = self.origins.clone();
        let stats = self.stats.clone();
        let commands = self.commands.clone();
        self.io.spawn(async move {
            let fetched = fetch_body(origins.as_deref(), &weak_da, &header, &stats).await;
            let _ = commands
                .send(Command::BodyFetched { id, root, fetched })
                .await;
        });
    }

    /// Whether this sequencer holds the body of `header`: its own, or a peer's read back and
    /// checked. Only those go into proposals and count as backlog.
    fn holds_body(&self, header: &BlockHeader) -> bool {
        let id = header.id();
        self.own_bodies.contains_key(&id) || self.fetched_bodies.contains(&(id, header.root))
    }

    /// Fetches again, per sequencer, the body of the first waiting block not held whose
    /// earlier fetch gave up (weak DA was down, or the body was not there yet): until it is
    /// read, none of that sequencer's later blocks can be proposed.
    fn refetch_missing_bodies(&mut self) {
        let missing: Vec<BlockHeader> = self
            .batcher
            .first_not_held(|header| self.holds_body(header))
            .into_iter()
            .filter(|header| !self.prefetching.contains(&(header.id(), header.root)))
            .cloned()
            .collect();
        for header in missing {
            self.prefetch_body(header);
        }
    }

    fn handle_committed(
        &mut self,
        sequence: u64,
        view: u64,
        batch: Batch,
        certificate: primitives::bls::Certificate,
    ) {
        self.stats.batches_committed.fetch_add(1, Ordering::Relaxed);
        if certificate.signers.contains(self.replica.index()) {
            self.stats.commits_signed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((proposed, at)) = self.proposed
            && proposed == sequence
        {
            self.proposed = None;
            let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.stats
                .commit_latency_us
                .lock()
                .saturating_record(micros);
            metrics::histogram!("sequencer_batch_commit_seconds").record(micros as f64 / 1e6);
        }
        if !self.batcher.commit(&batch) {
            info!(target: "sequencer", number = batch.number, sequence,
                "committed batch beyond the batcher's last one: the batcher moves to it");
        }
        *self.stats.last_batch.lock() = (self.batcher.last_number(), self.batcher.last_hash());
        // Bodies of blocks now batched (or never to be: a sequencer that left the set, a batch
        // committed past them) are checked for good.
        let batcher = &self.batcher;
        self.fetched_bodies
            .retain(|(id, root)| batcher.is_waiting(id, root));
        if let Some(store) = &self.store
            && let Err(error) = store.save_batcher(sequence, &self.batcher.snapshot())
        {
            // The replica log keeps the decided batch: a restart replays it.
            warn!(target: "sequencer", %error, sequence, "batcher position not written");
        }
        self.deferred.retain(|deferred, _| *deferred > sequence);
        self.check_deferred();
        for header in &batch.headers {
            let id = header.id();
            if let Some(hashes) = self.own_blocks.remove(&id) {
                self.own_bodies.remove(&id);
                for hash in &hashes {
                    self.set_level(hash, FinalityLevel::Finalized);
                }
            }
        }
        let digest = consensus::Value::digest(&batch);
        self.upstream.submit(UpstreamCommit {
            number: batch.number,
            batch_hash: batch.hash(),
            commit_message: consensus::commit_message(view, sequence, &digest),
            certificate: certificate.clone(),
        });
        let finalized = FinalizedBatch {
            batch,
            sequence,
            view,
            certificate,
        };
        if self.finalized.try_send(finalized).is_err() {
            warn!(target: "sequencer", sequence, "execution queue full; batch not forwarded");
        }
        self.maybe_propose();
    }

    /// Checks the deferred proposals whose predecessor is now committed (or that can no longer
    /// follow: those are refused by the check).
    fn check_deferred(&mut self) {
        let next = self.batcher.last_number() + 1;
        let ready: Vec<u64> = self
            .deferred
            .iter()
            .filter(|(_, batch)| batch.number <= next)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in ready {
            if let Some(batch) = self.deferred.remove(&sequence) {
                self.check_batch(sequence, batch);
            }
        }
    }

    fn handle_executed(&mut self, executed: &ExecutedBatch) {
        for outcome in &executed.outcomes {
            let writes = crate::pending::executed_writes(&outcome.diff);
            let (reason, told) = crate::subscriptions::retract_executed(
                &mut self.pending,
                &mut self.subscriptions,
                &outcome.hash,
                &outcome.status,
                writes,
            );
            self.push_retractions(outcome.hash, &reason, told);
            let level = match &outcome.status {
                Ok(()) => FinalityLevel::Executed,
                Err(reason) => FinalityLevel::Failed(reason.clone()),
            };
            if self.tracked.contains_key(&outcome.hash) {
                self.stats.moves_executed.fetch_add(1, Ordering::Relaxed);
                self.set_level(&outcome.hash, level);
            } else if self.foreign.insert(outcome.hash, level).is_none() {
                self.foreign_finished.push_back(outcome.hash);
                if self.foreign_finished.len() > FOREIGN_STATUSES_MAX
                    && let Some(oldest) = self.foreign_finished.pop_front()
                {
                    self.foreign.remove(&oldest);
                }
            }
        }
    }
}

/// `moves` in their order, except that each sender's moves are put in nonce order within the
/// places its moves hold. The log keeps ack order, and a replacement takes the place of the move
/// it replaces; but if the replaced move's segment was deleted before the replacement's
/// record is read, the replacement comes back after the sender's later nonces. Packing them in
/// that order would fail the later ones, so the order is restored here.
fn in_nonce_order(moves: Vec<VerifiedTransaction>) -> Vec<VerifiedTransaction> {
    let mut places: HashMap<primitives::Address, Vec<usize>> = HashMap::new();
    for (index, verified) in moves.iter().enumerate() {
        places.entry(verified.sender).or_default().push(index);
    }
    let mut slots: Vec<Option<VerifiedTransaction>> = moves.into_iter().map(Some).collect();
    let mut ordered: Vec<Option<VerifiedTransaction>> = (0..slots.len()).map(|_| None).collect();
    for indices in places.values() {
        let mut senders_moves: Vec<VerifiedTransaction> = indices
            .iter()
            .map(|index| slots[*index].take().expect("each place is taken once"))
            .collect();
        senders_moves.sort_by_key(|verified| verified.tx().nonce);
        for (index, verified) in indices.iter().zip(senders_moves) {
            ordered[*index] = Some(verified);
        }
    }
    ordered
        .into_iter()
        .map(|verified| verified.expect("every place is filled"))
        .collect()
}

/// Settles the blocks the write-ahead log left in doubt: the ones whose body is in weak DA are
/// confirmed in the log and returned (to be announced); from the first one missing on, their
/// moves are packed again. A weak DA that cannot be read counts as missing: a move may then be
/// in two bodies, but none is lost.
async fn settle_in_doubt(
    recovered: &mut crate::wal::Recovered,
    weak_da: &WeakDa,
    wal: &crate::wal::Wal,
    id: NodeId,
) -> Vec<crate::wal::InDoubtBlock> {
    let mut stored = std::collections::HashSet::new();
    for block in &recovered.in_doubt {
        let height = block.header.height;
        // Every body stored at that height (an earlier restart may have left another).
        match weak_da.list_blocks(&id, height, 16).await {
            Ok(found) => {
                if found
                    .iter()
                    .any(|found| found.height == height && found.root == block.header.root)
                {
                    stored.insert(height);
                }
            }
            Err(error) => {
                warn!(target: "sequencer::wal", height, %error, "weak DA unreadable; the in-doubt block's moves are packed again");
            }
        }
    }
    let confirmed = recovered.settle(|header| stored.contains(&header.height));
    for block in &confirmed {
        if let Err(error) = wal.packed(
            block.header.height,
            block.header.hash(),
            block.moves.clone(),
        ) {
            tracing::error!(target: "sequencer::wal", %error, "confirmed block not logged");
        }
    }
    info!(target: "sequencer::wal", confirmed = confirmed.len(), "in-doubt blocks settled against weak DA");
    confirmed
}

/// The write-ahead log's points in the core: the ack of an admitted move, the moves leaving the
/// live set, and the replay at start.
impl Core {
    /// Before its body goes to weak DA, a block's intent goes to the write-ahead log, so that a
    /// restart neither skips its height nor packs its moves twice.
    fn wal_packing(&self, block: &PackedBlock) {
        if let Some(wal) = &self.wal
            && let Err(error) = wal.packing(block.header.clone(), block.hashes.clone())
        {
            tracing::error!(target: "sequencer::wal", height = block.header.height, %error, "block intent not logged");
        }
    }

    /// The moves of a block whose body is in weak DA leave the write-ahead log's live set.
    fn wal_packed(&self, header: &BlockHeader, hashes: &[TxHash]) {
        if let Some(wal) = &self.wal
            && let Err(error) = wal.packed(header.height, header.hash(), hashes.to_vec())
        {
            tracing::error!(target: "sequencer::wal", height = header.height, %error, "packed moves not logged");
        }
    }

    /// Puts the moves the write-ahead log kept back into pending state and the mempool, in ack
    /// order and without the admission checks (they were acked already), and the packer where
    /// it stood. They are verified again, as at ingress; one that no longer verifies (another
    /// chain id, another build) is dropped from the log with a warning.
    fn replay(
        &mut self,
        recovered: crate::wal::Recovered,
        confirmed: Vec<crate::wal::InDoubtBlock>,
    ) {
        if let Some(position) = recovered.position {
            self.packer.resume(position.next_height, position.parent);
        }
        // Blocks stored before the crash but never announced: announced now, as once stored.
        for block in confirmed {
            self.own_blocks.insert(block.header.id(), block.moves);
            self.mesh
                .broadcast(&PeerMessage::Header(block.header.clone()).to_bytes());
            if let Err(error) = self.batcher.hear(block.header) {
                warn!(target: "sequencer::wal", %error, "own recovered header refused by the batcher");
            }
        }
        if recovered.moves.len() > crate::constants::MEMPOOL_MOVES_MAX {
            self.mempool = Mempool::with_capacity(recovered.moves.len());
        }
        let mut replayed = 0usize;
        let mut unusable = Vec::new();
        let mut usable = Vec::with_capacity(recovered.moves.len());
        let session_keys = SessionKeyCache::new(SESSION_KEYS_CACHED_MAX);
        for chunk in recovered.moves.chunks(INGRESS_BURST_MAX) {
            let requests: Vec<Vec<u8>> = chunk
                .iter()
                .map(
                    |(_, bytes)| match primitives::SignedTransaction::from_bytes(bytes) {
                        Ok(signed) => ClientRequest::Submit(signed).to_bytes(),
                        Err(_) => Vec::new(),
                    },
                )
                .collect();
            let checked = crate::ingress::check_requests(
                requests,
                self.config.chain_id,
                usize::MAX,
                &session_keys,
            );
            for ((logged_hash, _), checked) in chunk.iter().zip(checked) {
                match checked {
                    crate::ingress::Checked::Move(verified) if verified.hash == *logged_hash => {
                        usable.push(*verified);
                    }
                    _ => unusable.push(*logged_hash),
                }
            }
        }
        for verified in in_nonce_order(usable) {
            let hash = verified.hash;
            // One move per sender and nonce: a second one (a replacement whose record the log
            // lost could leave two) is never packed beside the first.
            if self.tracked.contains_key(&hash)
                || self
                    .mempool
                    .get(&verified.sender, verified.tx().nonce)
                    .is_some()
            {
                unusable.push(hash);
                continue;
            }
            self.pending.admit(&verified);
            self.mempool.push(verified);
            self.tracked.insert(
                hash,
                Tracked {
                    // No client: the session that sent it ended with the process.
                    client: 0,
                    level: FinalityLevel::Pending,
                    acked: true,
                    tick: self.tick_number + 1,
                    // Its promise went with the ack, before the restart.
                    preconfirmation: None,
                    copies_from: Vec::new(),
                    replaces: None,
                },
            );
            replayed += 1;
        }
        if !unusable.is_empty() {
            warn!(target: "sequencer::wal", count = unusable.len(), "logged moves that no longer verify were dropped");
            if let Some(wal) = &self.wal
                && let Err(error) = wal.dropped(unusable)
            {
                tracing::error!(target: "sequencer::wal", %error, "dropped moves not logged");
            }
        }
        info!(target: "sequencer::wal", replayed, next_height = self.packer.next_height(),
            "acked moves from the write-ahead log are back in the mempool");
    }
}

#[cfg(test)]
mod tests {
    use consensus::{Evidence, EvidenceKind, PbftSignature, Signed};

    #[test]
    fn replayed_moves_keep_their_places_but_each_senders_nonces_in_order() {
        use crate::mempool::tests::verified_by;
        let (alice, bob) = (AccountKey::from_seed(1), AccountKey::from_seed(2));
        let logged = vec![
            verified_by(&alice, 1),
            verified_by(&bob, 0),
            verified_by(&alice, 2),
            verified_by(&bob, 1),
            verified_by(&alice, 0),
        ];
        let order: Vec<(primitives::Address, u64)> = in_nonce_order(logged)
            .iter()
            .map(|verified| (verified.sender, verified.tx().nonce))
            .collect();
        let (a, b) = (alice.address(), bob.address());
        assert_eq!(order, [(a, 0), (b, 0), (a, 1), (b, 1), (a, 2)]);
    }
    use primitives::B256;
    use primitives::pbft::prepare_prehash;
    use upper_chain::{EmbeddedChain, SequencerRecord};

    use super::*;

    #[test]
    fn equivocation_is_reported_once_and_the_offender_expelled() {
        let secrets: Vec<BlsSecretKey> = (1..=4u8)
            .map(|seed| BlsSecretKey::from_seed(&[seed; 32]))
            .collect();
        let records: Vec<SequencerRecord> = secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| SequencerRecord {
                id: NodeId(AccountKey::from_seed(index as u64 + 1).address()),
                bls_key: secret.public_key(),
            })
            .collect();
        let sequencers: Vec<NodeId> = records.iter().map(|record| record.id).collect();
        let chain = EmbeddedChain::new(records);
        let operator = AccountKey::from_seed(3);
        let prepare = |digest: B256| Signed {
            digest,
            signature: PbftSignature::Operator(
                operator.sign_prehash(&prepare_prehash(0, 1, &digest)),
            ),
        };
        let evidence = Evidence::new(
            EvidenceKind::Prepare,
            2,
            0,
            1,
            prepare(B256::repeat_byte(1)),
            prepare(B256::repeat_byte(2)),
        );
        assert_eq!(
            report_equivocation(&chain, &sequencers, &evidence),
            EquivocationReport::Recorded(sequencers[2])
        );
        // Another sequencer reporting the same offence is told it is recorded already.
        assert_eq!(
            report_equivocation(&chain, &sequencers, &evidence),
            EquivocationReport::AlreadyRecorded(sequencers[2])
        );
        assert!(
            chain
                .sequencer_candidates()
                .expect("the embedded chain reads from memory")
                .iter()
                .all(|candidate| candidate.record.id != sequencers[2])
        );
        // Evidence pinned on the wrong index does not verify; an index outside the set is
        // caught before the chain.
        let misnamed = Evidence {
            offender: 1,
            ..evidence.clone()
        };
        assert!(matches!(
            report_equivocation(&chain, &sequencers, &misnamed),
            EquivocationReport::Refused(id, ChainError::InvalidEvidence(_)) if id == sequencers[1]
        ));
        let outside = Evidence {
            offender: 9,
            ..evidence
        };
        assert_eq!(
            report_equivocation(&chain, &sequencers, &outside),
            EquivocationReport::UnknownIndex
        );
    }
}
