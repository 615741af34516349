//! The devnet: the whole network in one process.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use da_weak::{WeakDa, WeakDaError};
use execution::AccountState;
use netstack::{kcp::KcpConfig, secure::NodeIdentity};
use primitives::{
    AccountKey, Address, NodeId, U256,
    bls::{BlsPublicKey, BlsSecretKey},
};
use sequencer::{
    bodies::{BodyCache, BodyServer, Origins},
    constants::PEER_QUEUE_MAX,
    mesh::{InProcessMesh, PeerDelivery, PeerLinks, kcp::KcpMeshListener},
    node::{Bodies, SequencerConfig, SequencerHandle, SequencerWiring},
    rpc::{RpcConfig, RpcHandle},
    wal::{FsyncPolicy, Recovered, Wal, WalConfig, WalError},
};
use shard_node::{
    ShardError, ShardNetwork, ShardNode,
    driver::{SequencerKeys, ShardHandle},
    estimator::EstimatorServer,
};
use tokio::sync::mpsc;
use upper_chain::{ChainError, EmbeddedChain, Genesis, SequencerRecord, UpperChain};

use crate::{
    game::{GAME_ADDRESS, game_code},
    operators::{Operators, serve_metrics},
};

/// How the devnet is laid out.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// The network's chain id.
    pub chain_id: u64,
    /// Sequencers running PBFT (n = 3f + 1 is best: 4 tolerates one fault).
    pub sequencers: usize,
    /// Sequencers that run from the start but are only whitelisted on the upper chain (the set
    /// size raised to take them): with sequencer epochs they join at the first boundary. They
    /// come after the others in [`Devnet::sequencers`].
    pub standby_sequencers: usize,
    /// PBFT sequences in a sequencer epoch of the upper chain; `None`: one set for the whole
    /// run.
    pub sequencer_epoch_length: Option<u64>,
    /// Shard nodes registered on the upper chain (at least 8, one group).
    pub shard_nodes: usize,
    /// Whether the shard nodes execute the finalized batches. Without it the sequencers'
    /// finalized batches are taken and dropped, no move gets past `Finalized`, and the process
    /// runs the sequencers alone: what a benchmark of their consensus measures, as each would
    /// have its machine to itself.
    pub execution: bool,
    /// Time between blocks.
    pub tick: Duration,
    /// Where weak DA keeps block bodies; a fresh temporary directory if `None`.
    pub data_dir: Option<PathBuf>,
    /// Batches between two commitments of group roots to the upper chain.
    pub root_commit_interval_batches: u64,
    /// How the sequencers reach each other.
    pub mesh: MeshKind,
    /// What the sequencers' ingress allows (rates, move size, sponsorship policies).
    pub ingress: sequencer::node::IngressConfig,
    /// Gives each sequencer a write-ahead log and a replica log in the data directory (acks
    /// then wait for the write-ahead log's fsync, votes for the replica log's), so that
    /// [`Devnet::crash_sequencer`] loses no acked move and [`Devnet::restart_sequencer`] brings
    /// them back, with the replica in the view and at the sequence it left.
    pub wal: bool,
    /// Where the Web3-compatible JSON-RPC of the first sequencer listens, if anywhere.
    pub rpc_listen: Option<SocketAddr>,
    /// Accounts given a balance at genesis (for Ethereum clients, which pay their own way).
    pub funded: Vec<(Address, U256)>,
    /// Batches in an accounting epoch: each shard node signs its usage once per epoch.
    pub usage_epoch_batches: u64,
    /// What the shard nodes' epochs earn (each node's `tickrate_epoch_owed`).
    pub rates: accounting::Rates,
    /// Where the shard nodes serve their operator metrics (`/metrics`): node `i` at this
    /// address's port + `i`, or each at a free port if the port is 0.
    pub metrics_listen: Option<SocketAddr>,
    /// Strong-DA nodes started in process (QUIC on loopback, RocksDB in the data directory);
    /// every finalized batch, every batch's execution record and the genesis are erasure-coded
    /// across them ([`strong_da_params`]) and their commitments recorded on the upper chain.
    /// 0: no strong DA. At least 4 tolerate one node down.
    pub da_nodes: usize,
}

/// The erasure code of a strong-DA committee of `nodes`: it tolerates f = ⌊(n − 1) / 3⌋ faulty
/// nodes and any k = n − 2f chunks rebuild a payload, so a certificate (n − f attestations)
/// still forms, and payloads still rebuild, with f nodes down.
pub fn strong_da_params(nodes: usize) -> Result<da_strong::ErasureParams, da_strong::DaError> {
    let total = u16::try_from(nodes).unwrap_or(u16::MAX);
    let faults = total.saturating_sub(1) / 3;
    let data = total.saturating_sub(2 * faults);
    // With no fault tolerated (n < 4) one chunk is still spare.
    let data = if data >= total {
        total.saturating_sub(1)
    } else {
        data
    };
    da_strong::ErasureParams::new(data, total)
}

/// The BLS key of devnet DA node `index` (a public seed: development only).
fn da_node_key(index: usize) -> BlsSecretKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(index as u64).to_be_bytes());
    seed[8..15].copy_from_slice(b"da-node");
    BlsSecretKey::from_seed(&seed)
}

/// The devnet's strong-DA nodes: each one's server (`None` once stopped) and how to reach it.
struct StrongDa {
    servers: Vec<Option<da_strong::DaServer<da_strong::DaNode>>>,
    nodes: Vec<da_strong::DaNodeAddress>,
    params: da_strong::ErasureParams,
}

/// Starts `count` DA nodes on loopback with their stores under `dir`, and writes
/// `dir/nodes`: one `ADDR=CERT_FILE` line per node, in committee order (what
/// `shard-node verify --da` takes).
fn start_strong_da(
    dir: &std::path::Path,
    keys: &[BlsSecretKey],
    params: da_strong::ErasureParams,
) -> Result<StrongDa, DevnetError> {
    let mut servers = Vec::with_capacity(keys.len());
    let mut nodes = Vec::with_capacity(keys.len());
    let mut listing = String::new();
    for (index, key) in keys.iter().enumerate() {
        let node_dir = dir.join(format!("node-{index}"));
        let identity = da_strong::server::load_or_create_identity(&node_dir)?;
        let position = u16::try_from(index).unwrap_or(u16::MAX);
        let node = da_strong::DaNode::open(&node_dir.join("chunks"), position, key.clone())?;
        let server = da_strong::DaServer::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &identity,
            Arc::new(node),
        )?;
        listing.push_str(&format!(
            "{}={}\n",
            server.local_addr(),
            node_dir.join("quic-certificate.der").display()
        ));
        nodes.push(da_strong::DaNodeAddress {
            address: server.local_addr(),
            public_key: key.public_key(),
            certificate: identity.certificate.clone(),
        });
        servers.push(Some(server));
    }
    std::fs::write(dir.join("nodes"), listing)?;
    Ok(StrongDa {
        servers,
        nodes,
        params,
    })
}

/// How the devnet's sequencers reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeshKind {
    /// KCP sessions over UDP on loopback, as separate nodes would.
    Kcp,
    /// Bounded in-process queues (no sockets).
    InProcess,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            chain_id: 4242,
            sequencers: 4,
            standby_sequencers: 0,
            sequencer_epoch_length: None,
            shard_nodes: 16,
            execution: true,
            tick: Duration::from_millis(10),
            data_dir: None,
            root_commit_interval_batches: shard_node::network::ROOT_COMMIT_INTERVAL_BATCHES,
            mesh: MeshKind::Kcp,
            ingress: sequencer::node::IngressConfig::default(),
            wal: false,
            rpc_listen: None,
            funded: Vec::new(),
            usage_epoch_batches: shard_node::network::service::USAGE_EPOCH_BATCHES,
            rates: accounting::Rates::example(),
            metrics_listen: None,
            da_nodes: 4,
        }
    }
}

/// Why the devnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A socket or directory could not be opened.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Weak DA could not be opened.
    #[error("weak DA: {0}")]
    WeakDa(#[from] WeakDaError),
    /// The upper chain refused a registration.
    #[error("upper chain: {0}")]
    Chain(#[from] ChainError),
    /// The shard network could not form.
    #[error("shard network: {0}")]
    Shard(#[from] ShardError),
    /// A sequencer's write-ahead log could not be opened.
    #[error("write-ahead log: {0}")]
    Wal(#[from] WalError),
    /// Only a devnet started with a write-ahead log crashes and restarts sequencers.
    #[error("sequencer {0} cannot crash or restart: the devnet runs without write-ahead logs")]
    NotRestartable(usize),
    /// The JSON-RPC gateway could not start.
    #[error("JSON-RPC: {0}")]
    Rpc(#[from] sequencer::rpc::RpcError),
    /// A shard node's accounting files could not be written.
    #[error("accounting: {0}")]
    Accounting(#[from] accounting::meter::UsageFileError),
    /// The execution record log could not be opened.
    #[error("execution records: {0}")]
    Records(#[from] shard_node::record::RecordLogError),
    /// The strong-DA nodes or their client could not start.
    #[error("strong DA: {0}")]
    StrongDa(#[from] da_strong::DaError),
    /// There is no strong-DA node of that index running.
    #[error("no running strong-DA node {0}")]
    NoDaNode(usize),
}

type MeshEnd = (
    Arc<dyn PeerLinks>,
    tokio::sync::mpsc::Receiver<sequencer::mesh::PeerDelivery>,
);

/// Links the sequencers of `keys` with a mesh of `kind`; returns each one's end, in order.
async fn connect_mesh(kind: MeshKind, keys: &[AccountKey]) -> std::io::Result<Vec<MeshEnd>> {
    let ids: Vec<NodeId> = keys.iter().map(|key| NodeId(key.address())).collect();
    match kind {
        MeshKind::InProcess => Ok(InProcessMesh::connect(&ids)
            .into_iter()
            .map(|(mesh, inbound)| (Arc::new(mesh) as Arc<dyn PeerLinks>, inbound))
            .collect()),
        MeshKind::Kcp => {
            let mut listeners = Vec::with_capacity(keys.len());
            for key in keys {
                let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                let identity = NodeIdentity::new(key.clone());
                listeners.push(
                    KcpMeshListener::bind(
                        identity,
                        loopback,
                        KcpConfig::default(),
                        netstack::secure::AllowList::new(ids.iter().copied()),
                    )
                    .await?,
                );
            }
            let addresses: Vec<(NodeId, SocketAddr)> = ids
                .iter()
                .zip(&listeners)
                .map(|(id, listener)| (*id, listener.local_addr()))
                .collect();
            Ok(listeners
                .into_iter()
                .map(|listener| {
                    let (mesh, inbound) = listener.connect(&addresses);
                    (Arc::new(mesh) as Arc<dyn PeerLinks>, inbound)
                })
                .collect())
        }
    }
}

/// A running devnet.
pub struct Devnet {
    /// The chain id.
    pub chain_id: u64,
    /// The embedded upper chain.
    pub chain: Arc<EmbeddedChain>,
    /// The sequencers.
    pub sequencers: Vec<SequencerHandle>,
    /// The shard network.
    pub shards: ShardHandle,
    /// The first sequencer's JSON-RPC gateway, if `rpc_listen` was given.
    pub rpc: Option<RpcHandle>,
    /// Where clients ask the shard nodes for a move's Space Access List.
    pub estimator: EstimatorServer,
    /// The shard nodes' accounting.
    pub operators: Arc<parking_lot::Mutex<Operators>>,
    /// Where each shard node serves its operator metrics, if `metrics_listen` was given.
    pub metrics: Vec<(NodeId, SocketAddr)>,
    /// What restarting each sequencer takes (with write-ahead logs only).
    restartable: Vec<Restartable>,
    /// Each sequencer's end of the mesh and its operator key, in order.
    links: Vec<(Arc<dyn PeerLinks>, AccountKey)>,
    sequencer_set: Vec<(NodeId, BlsPublicKey)>,
    weak_da: WeakDa,
    strong_da: Option<StrongDa>,
    config: DevnetConfig,
    _data_dir: Option<tempfile::TempDir>,
}

/// Where a relay delivers a sequencer's inbound peer messages: its core's queue, or nowhere
/// while it is crashed.
type InboundSlot = Arc<parking_lot::Mutex<Option<mpsc::Sender<PeerDelivery>>>>;

/// A sequencer that can be crashed and restarted: its identity, its end of the mesh, its log,
/// and the relay its inbound peer messages pass through. The core stops when its inbound queue
/// closes, so cutting the relay is a crash; a restart opens a new queue behind the same relay.
struct Restartable {
    key: AccountKey,
    bls: BlsSecretKey,
    mesh: Arc<dyn PeerLinks>,
    relay: InboundSlot,
    wal_dir: PathBuf,
    consensus_dir: PathBuf,
    /// Where its body server listened; a restart binds it again, so peers find it there.
    body_addr: SocketAddr,
    /// The sequencers' body endpoints.
    body_directory: HashMap<NodeId, SocketAddr>,
}

/// A sequencer's body server on loopback, bound to its key (`addr`: port 0 for any).
fn bind_bodies(
    key: &AccountKey,
    addr: SocketAddr,
) -> Result<(Arc<BodyCache>, BodyServer), DevnetError> {
    let cache = Arc::new(BodyCache::default());
    let server = BodyServer::bind(addr, key, cache.clone()).map_err(std::io::Error::other)?;
    Ok((cache, server))
}

/// The pulls of one sequencer from the others' body servers.
fn origins(directory: &HashMap<NodeId, SocketAddr>) -> Result<Arc<Origins>, DevnetError> {
    let origins = Origins::new(SocketAddr::from(([127, 0, 0, 1], 0)), directory.clone())
        .map_err(std::io::Error::other)?;
    Ok(Arc::new(origins))
}

fn open_wal(dir: &std::path::Path) -> Result<(Wal, Recovered), WalError> {
    Wal::open(&WalConfig::new(
        dir,
        FsyncPolicy::Group {
            window: Duration::ZERO,
        },
    ))
}

/// A shard network that executes nothing: finalized batches are taken and dropped, and no
/// executed batch is ever announced.
fn idle_shards(network: ShardNetwork) -> ShardHandle {
    let (finalized, mut inbound) = mpsc::channel(PEER_QUEUE_MAX);
    tokio::spawn(async move { while inbound.recv().await.is_some() {} });
    ShardHandle {
        finalized,
        executed: tokio::sync::broadcast::channel(1).0,
        network: Arc::new(parking_lot::Mutex::new(network)),
    }
}

/// Puts a relay between a sequencer's inbound peer messages and its core.
fn relay(mut inbound: mpsc::Receiver<PeerDelivery>) -> (InboundSlot, mpsc::Receiver<PeerDelivery>) {
    let (sender, receiver) = mpsc::channel(PEER_QUEUE_MAX);
    let slot = Arc::new(parking_lot::Mutex::new(Some(sender)));
    let target = slot.clone();
    tokio::spawn(async move {
        while let Some(delivery) = inbound.recv().await {
            let current = target.lock().clone();
            // A crashed sequencer hears nothing, as a dead process would not.
            if let Some(current) = current {
                let _ = current.send(delivery).await;
            }
        }
    });
    (slot, receiver)
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("sequencers", &self.sequencers)
            .finish_non_exhaustive()
    }
}

/// The devnet chain's admin key (a public seed: development only).
pub fn devnet_admin() -> AccountKey {
    AccountKey::from_seed(999)
}

/// Whitelists the standby sequencers on the chain and raises the set size to `size`, signed by
/// the devnet's admin: they join the set at the next sequencer epoch boundary.
fn whitelist_standby(
    chain: &dyn UpperChain,
    standby: &[(AccountKey, BlsSecretKey)],
    size: usize,
) -> Result<(), ChainError> {
    let admin = |op: upper_chain::AdminOp| {
        let nonce = chain.admin_nonce()?;
        let signature = devnet_admin().sign_prehash(&op.signing_hash(nonce));
        chain.admin(op, &signature)
    };
    for (key, bls) in standby {
        admin(upper_chain::AdminOp::Whitelist {
            record: SequencerRecord {
                id: NodeId(key.address()),
                bls_key: bls.public_key(),
            },
            possession: bls.proof_of_possession(),
            stake: 0,
        })?;
    }
    admin(upper_chain::AdminOp::Rotate {
        size: u32::try_from(size).unwrap_or(u32::MAX),
    })
}

fn sequencer_identity(index: usize) -> (AccountKey, BlsSecretKey) {
    let key = AccountKey::from_seed(1_000 + index as u64);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(index as u64).to_be_bytes());
    seed[8..17].copy_from_slice(b"sequencer");
    (key, BlsSecretKey::from_seed(&seed))
}

impl Devnet {
    /// Starts every part and returns once all are listening.
    pub async fn start(config: DevnetConfig) -> Result<Devnet, DevnetError> {
        let (data_dir, temporary) = match &config.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temporary = tempfile::tempdir()?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        let identities: Vec<(AccountKey, BlsSecretKey)> = (0..config.sequencers
            + config.standby_sequencers)
            .map(sequencer_identity)
            .collect();
        let sequencer_set: Vec<(NodeId, _)> = identities[..config.sequencers]
            .iter()
            .map(|(key, bls)| (NodeId(key.address()), bls.public_key()))
            .collect();
        let genesis_chain = Genesis {
            admin: devnet_admin().address(),
            sequencers: sequencer_set
                .iter()
                .map(|(id, key)| SequencerRecord {
                    id: *id,
                    bls_key: *key,
                })
                .collect(),
            sequencer_epoch_length: config.sequencer_epoch_length,
            ..Genesis::default()
        };
        let da_keys: Vec<BlsSecretKey> = (0..config.da_nodes).map(da_node_key).collect();
        let da_params = match config.da_nodes {
            0 => None,
            nodes => Some(strong_da_params(nodes)?),
        };
        let genesis_chain = Genesis {
            da_committee: da_params.map(|params| upper_chain::DaCommittee {
                keys: da_keys.iter().map(BlsSecretKey::public_key).collect(),
                data_chunks: params.data_chunks,
                quorum: u32::try_from(params.quorum()).unwrap_or(u32::MAX),
            }),
            ..genesis_chain
        };
        // A devnet given a data directory keeps its upper chain there, so that the registry is
        // still readable after the run (`tickrate-accounting report --chain DIR/upper-chain`).
        let chain = Arc::new(match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                EmbeddedChain::open(dir.join("upper-chain"), &genesis_chain)?
            }
            None => EmbeddedChain::with_genesis(&genesis_chain),
        });

        let mut nodes = Vec::with_capacity(config.shard_nodes);
        let mut node_keys = Vec::with_capacity(config.shard_nodes);
        for index in 0..config.shard_nodes {
            let seed = 2_000 + index as u64;
            let node = ShardNode::from_seed(seed);
            let (wallet, features) = operator_wallet(index);
            let (registration, signature) =
                node.registration(format!("in-process://shard/{index}"), wallet, features);
            chain.register_node(registration, &signature)?;
            nodes.push(node);
            node_keys.push(AccountKey::from_seed(seed));
        }
        chain.advance_epoch();
        if config.standby_sequencers > 0 {
            whitelist_standby(
                chain.as_ref(),
                &identities[config.sequencers..],
                identities.len(),
            )?;
        }
        let mut network = ShardNetwork::new(
            chain.clone(),
            config.chain_id,
            nodes,
            &data_dir.join("shards"),
        )?;
        network.set_root_commit_interval(config.root_commit_interval_batches);
        network.set_usage_epoch_batches(config.usage_epoch_batches);
        network.set_record_log(shard_node::record::RecordLog::open(
            &data_dir.join("records"),
        )?);
        let strong_da = match da_params {
            Some(params) => {
                let strong_da = start_strong_da(&data_dir.join("strong-da"), &da_keys, params)?;
                let client = da_strong::DaClient::new(params, strong_da.nodes.clone())?;
                network.set_strong_da(shard_node::strong_da::StrongDaPublisher::spawn(
                    Arc::new(client),
                    chain.clone(),
                ));
                Some(strong_da)
            }
            None => None,
        };
        let operators = Arc::new(parking_lot::Mutex::new(Operators::open(
            &node_keys,
            config.rates,
            accounting::LedgerConfig::default(),
            &data_dir.join("shards"),
            &data_dir.join("accounting"),
        )?));
        let mut genesis = vec![(
            GAME_ADDRESS,
            AccountState {
                code: game_code(),
                ..AccountState::default()
            },
        )];
        genesis.extend(config.funded.iter().map(|(address, balance)| {
            (
                *address,
                AccountState {
                    balance: *balance,
                    ..AccountState::default()
                },
            )
        }));
        for (address, account) in &genesis {
            network.insert_genesis(*address, account.clone())?;
        }

        let weak_da = WeakDa::local(&data_dir.join("weak-da"))?;
        let sequencer_keys = match config.sequencer_epoch_length {
            Some(_) => SequencerKeys::PerEpoch(chain.clone()),
            None => SequencerKeys::Fixed(sequencer_set.iter().map(|(_, key)| *key).collect()),
        };
        let shards = if config.execution {
            shard_node::driver::spawn(network, weak_da.clone(), sequencer_keys)
        } else {
            idle_shards(network)
        };
        let metrics = match config.metrics_listen {
            Some(listen) => {
                let mut bound = Vec::with_capacity(node_keys.len());
                for (index, key) in node_keys.iter().enumerate() {
                    let id = NodeId(key.address());
                    let mut address = listen;
                    if listen.port() != 0 {
                        address.set_port(listen.port().saturating_add(index as u16));
                    }
                    let handle = operators.lock().metrics_handle(&id).expect("opened above");
                    bound.push((id, serve_metrics(address, handle).await?));
                }
                bound
            }
            None => Vec::new(),
        };
        spawn_epoch_closer(operators.clone(), shards.network.clone());
        let estimator = EstimatorServer::serve(
            shards.network.clone(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await?;

        // Subscribed before any sequencer runs, so that the gateway sees every batch.
        let rpc_executed = config.rpc_listen.map(|_| shards.executed.subscribe());
        let keys: Vec<AccountKey> = identities.iter().map(|(key, _)| key.clone()).collect();
        let meshes = connect_mesh(config.mesh, &keys).await?;
        // Every body server is bound first, so that each sequencer knows where the others are.
        let mut body_servers = Vec::with_capacity(keys.len());
        for key in &keys {
            body_servers.push(bind_bodies(key, SocketAddr::from(([127, 0, 0, 1], 0)))?);
        }
        let body_directory: HashMap<NodeId, SocketAddr> = keys
            .iter()
            .zip(&body_servers)
            .map(|(key, (_, server))| (NodeId(key.address()), server.local_addr()))
            .collect();
        let mut body_servers = body_servers.into_iter();
        let mut sequencers = Vec::with_capacity(identities.len());
        let mut restartable = Vec::new();
        let mut links = Vec::with_capacity(identities.len());
        for (index, ((key, bls), (mesh, inbound))) in identities.into_iter().zip(meshes).enumerate()
        {
            links.push((mesh.clone(), key.clone()));
            let (body_cache, body_server) = body_servers
                .next()
                .ok_or_else(|| std::io::Error::other("a body server per sequencer"))?;
            let body_addr = body_server.local_addr();
            let (inbound, wal, consensus_dir) = if config.wal {
                let wal_dir = data_dir.join(format!("sequencer-{index}")).join("wal");
                let consensus_dir = data_dir
                    .join(format!("sequencer-{index}"))
                    .join("consensus");
                let wal = open_wal(&wal_dir)?;
                let (slot, inbound) = relay(inbound);
                restartable.push(Restartable {
                    key: key.clone(),
                    bls: bls.clone(),
                    mesh: mesh.clone(),
                    relay: slot,
                    wal_dir,
                    consensus_dir: consensus_dir.clone(),
                    body_addr,
                    body_directory: body_directory.clone(),
                });
                (inbound, Some(wal), Some(consensus_dir))
            } else {
                (inbound, None, None)
            };
            let sequencer_config = SequencerConfig {
                chain_id: config.chain_id,
                tick: config.tick,
                client_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ingress: config.ingress.clone(),
            };
            let wiring = SequencerWiring {
                key,
                bls,
                sequencers: sequencer_set.clone(),
                mesh,
                inbound,
                weak_da: weak_da.clone(),
                chain: chain.clone(),
                finalized: shards.finalized.clone(),
                executed: shards.executed.subscribe(),
                wal,
                consensus_dir,
                bodies: Some(Bodies {
                    cache: body_cache,
                    server: body_server,
                    origins: origins(&body_directory)?,
                }),
            };
            sequencers.push(sequencer::node::spawn(sequencer_config, wiring).await?);
        }
        let rpc = match (config.rpc_listen, rpc_executed) {
            (Some(listen), Some(executed)) => Some(
                sequencer::rpc::serve(
                    RpcConfig {
                        listen,
                        chain_id: config.chain_id,
                        genesis,
                    },
                    sequencers[0].gateway.clone(),
                    executed,
                )
                .await?,
            ),
            _ => None,
        };
        Ok(Devnet {
            chain_id: config.chain_id,
            chain,
            sequencers,
            shards,
            rpc,
            estimator,
            operators,
            metrics,
            restartable,
            links,
            sequencer_set,
            weak_da,
            strong_da,
            config,
            _data_dir: temporary,
        })
    }

    /// The strong-DA nodes, in committee order (empty without strong DA).
    pub fn strong_da_nodes(&self) -> Vec<da_strong::DaNodeAddress> {
        self.strong_da
            .as_ref()
            .map(|strong_da| strong_da.nodes.clone())
            .unwrap_or_default()
    }

    /// The strong-DA erasure code, if the devnet runs strong DA.
    pub fn strong_da_params(&self) -> Option<da_strong::ErasureParams> {
        self.strong_da.as_ref().map(|strong_da| strong_da.params)
    }

    /// Stops strong-DA node `index` (its chunks stay on disk): clients then find it down.
    pub async fn stop_da_node(&mut self, index: usize) -> Result<(), DevnetError> {
        let server = self
            .strong_da
            .as_mut()
            .and_then(|strong_da| strong_da.servers.get_mut(index))
            .and_then(Option::take)
            .ok_or(DevnetError::NoDaNode(index))?;
        server.shutdown().await;
        Ok(())
    }

    /// Crashes sequencer `index`: it stops at once, hears nothing more, and its client sessions
    /// die (their clients find out by their idle timeout). What it acked is in its write-ahead
    /// log. Returns once its core is gone and the log closed.
    pub async fn crash_sequencer(&mut self, index: usize) -> Result<(), DevnetError> {
        let restartable = self
            .restartable
            .get(index)
            .ok_or(DevnetError::NotRestartable(index))?;
        let listening = self.shards.executed.receiver_count();
        restartable.relay.lock().take();
        // The core drops its log (joining the log's writer) before its receiver of execution
        // results: once that receiver is gone, a restart may open the log again.
        while self.shards.executed.receiver_count() >= listening {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Restarts sequencer `index` after a crash, on the same client address, from its
    /// write-ahead log: the moves it acked go back into its mempool and are packed. The first
    /// sequencer's JSON-RPC gateway, if any, is pointed at the restarted core.
    pub async fn restart_sequencer(&mut self, index: usize) -> Result<(), DevnetError> {
        let restartable = self
            .restartable
            .get(index)
            .ok_or(DevnetError::NotRestartable(index))?;
        let client_listen = self.sequencers[index].client_addr;
        let (sender, inbound) = mpsc::channel(PEER_QUEUE_MAX);
        *restartable.relay.lock() = Some(sender);
        let wiring = SequencerWiring {
            key: restartable.key.clone(),
            bls: restartable.bls.clone(),
            sequencers: self.sequencer_set.clone(),
            mesh: restartable.mesh.clone(),
            inbound,
            weak_da: self.weak_da.clone(),
            chain: self.chain.clone(),
            finalized: self.shards.finalized.clone(),
            executed: self.shards.executed.subscribe(),
            wal: Some(open_wal(&restartable.wal_dir)?),
            consensus_dir: Some(restartable.consensus_dir.clone()),
            bodies: match bind_bodies(&restartable.key, restartable.body_addr) {
                Ok((cache, server)) => Some(Bodies {
                    cache,
                    server,
                    origins: origins(&restartable.body_directory)?,
                }),
                // Its old server's port is taken: it reads peers' bodies from weak DA only.
                Err(error) => {
                    tracing::warn!(target: "sim", %error, "body server not rebound");
                    None
                }
            },
        };
        let sequencer_config = SequencerConfig {
            chain_id: self.config.chain_id,
            tick: self.config.tick,
            client_listen,
            ingress: self.config.ingress.clone(),
        };
        self.sequencers[index] = sequencer::node::spawn(sequencer_config, wiring).await?;
        if index == 0
            && let Some(rpc) = &self.rpc
        {
            // The gateway follows its sequencer: its session moves to the restarted core.
            rpc.repoint(self.sequencers[0].gateway.clone()).await?;
        }
        Ok(())
    }

    /// Closes the shard nodes' open accounting epoch as it stands and stops their accounting:
    /// every node's usage up to now is signed and written, for a report over the whole run.
    pub async fn close_accounting(&self) -> Result<Vec<accounting::SignedUsage>, DevnetError> {
        let operators = self.operators.clone();
        let network = self.shards.network.clone();
        tokio::task::spawn_blocking(move || operators.lock().close(&network, true))
            .await
            .map_err(|join| DevnetError::Io(std::io::Error::other(join)))?
            .map_err(DevnetError::from)
    }

    /// The directory of the shard nodes' accounting directories (one per node, by node ID).
    pub fn accounting_dir(&self) -> PathBuf {
        self.operators.lock().accounting_dir().to_path_buf()
    }

    /// Sequencer `index`'s own end of the mesh: what it sends its peers goes through it, as from
    /// that sequencer (a test makes a sequencer misbehave with it).
    pub fn peer_links(&self, index: usize) -> Arc<dyn PeerLinks> {
        self.links[index].0.clone()
    }

    /// Sequencer `index`'s operator key (its node ID is the key's address; its block headers
    /// and pre-prepares are signed with it).
    pub fn sequencer_key(&self, index: usize) -> AccountKey {
        self.links[index].1.clone()
    }

    /// Where clients of sequencer `index` connect.
    pub fn sequencer_addr(&self, index: usize) -> SocketAddr {
        self.sequencers[index % self.sequencers.len()].client_addr
    }
}

/// Batches between two looks of the epoch closer at the shard network, at most: an epoch closes
/// within this long of its last batch.
const EPOCH_CLOSER_INTERVAL: Duration = Duration::from_millis(200);

/// Closes each accounting epoch once the shard network has run its last batch, until the
/// devnet's last close or the devnet is dropped.
fn spawn_epoch_closer(
    operators: Arc<parking_lot::Mutex<Operators>>,
    network: Arc<parking_lot::Mutex<ShardNetwork>>,
) {
    let operators = Arc::downgrade(&operators);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(EPOCH_CLOSER_INTERVAL);
        loop {
            ticker.tick().await;
            let Some(operators) = operators.upgrade() else {
                return;
            };
            if operators.lock().finished() {
                return;
            }
            let network = network.clone();
            let closed =
                tokio::task::spawn_blocking(move || operators.lock().close(&network, false));
            match closed.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::error!(target: "sim::operators", %error, "an epoch's usage could not be written");
                }
                Err(_) => return,
            }
        }
    });
}

/// The reward wallet and payout features of devnet shard node `index`: four operators' wallets
/// in turn, and three kinds of wallet (no feature, `assets`, `assets` and one this build does not
/// know), so a report over a devnet run shows every payout method.
pub fn operator_wallet(index: usize) -> (Address, Vec<String>) {
    let wallet = AccountKey::from_seed(3_000 + (index % 4) as u64).address();
    let features = match index % 3 {
        0 => Vec::new(),
        1 => vec!["assets".to_string()],
        _ => vec!["assets".to_string(), "erc20".to_string()],
    };
    (wallet, features)
}
