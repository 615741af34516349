//! The devnet: the whole network in one process.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use da_weak::{WeakDa, WeakDaError};
use execution::AccountState;
use netstack::{kcp::KcpConfig, secure::NodeIdentity};
use primitives::{AccountKey, NodeId, bls::BlsSecretKey};
use sequencer::{
    mesh::{InProcessMesh, PeerLinks, kcp::KcpMeshListener},
    node::{SequencerConfig, SequencerHandle, SequencerWiring},
};
use shard_node::{ShardError, ShardNetwork, ShardNode, driver::ShardHandle};
use upper_chain::{ChainError, EmbeddedChain, SequencerRecord, UpperChain};

use crate::game::{GAME_ADDRESS, game_code};

/// How the devnet is laid out.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// The network's chain id.
    pub chain_id: u64,
    /// Sequencers running PBFT (n = 3f + 1 is best: 4 tolerates one fault).
    pub sequencers: usize,
    /// Shard nodes registered on the upper chain (at least 8, one group).
    pub shard_nodes: usize,
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
            shard_nodes: 16,
            tick: Duration::from_millis(10),
            data_dir: None,
            root_commit_interval_batches: shard_node::network::ROOT_COMMIT_INTERVAL_BATCHES,
            mesh: MeshKind::Kcp,
            ingress: sequencer::node::IngressConfig::default(),
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
                    KcpMeshListener::bind(identity, loopback, KcpConfig::default(), &ids).await?,
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
    _data_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("sequencers", &self.sequencers)
            .finish_non_exhaustive()
    }
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
        let identities: Vec<(AccountKey, BlsSecretKey)> =
            (0..config.sequencers).map(sequencer_identity).collect();
        let sequencer_set: Vec<(NodeId, _)> = identities
            .iter()
            .map(|(key, bls)| (NodeId(key.address()), bls.public_key()))
            .collect();
        let chain = Arc::new(EmbeddedChain::new(
            sequencer_set
                .iter()
                .map(|(id, key)| SequencerRecord {
                    id: *id,
                    bls_key: *key,
                })
                .collect(),
        ));

        let mut nodes = Vec::with_capacity(config.shard_nodes);
        for index in 0..config.shard_nodes {
            let node = ShardNode::from_seed(2_000 + index as u64);
            let (registration, signature) = node.registration(
                format!("in-process://shard/{index}"),
                node.id().0,
                vec!["erc20".to_string()],
            );
            chain.register_node(registration, &signature)?;
            nodes.push(node);
        }
        chain.advance_epoch();
        let mut network = ShardNetwork::new(
            chain.clone(),
            config.chain_id,
            nodes,
            &data_dir.join("shards"),
        )?;
        network.set_root_commit_interval(config.root_commit_interval_batches);
        network.insert_genesis(
            GAME_ADDRESS,
            AccountState {
                code: game_code(),
                ..AccountState::default()
            },
        )?;

        let weak_da = WeakDa::local(&data_dir.join("weak-da"))?;
        let shards = shard_node::driver::spawn(
            network,
            weak_da.clone(),
            sequencer_set.iter().map(|(_, key)| *key).collect(),
        );

        let keys: Vec<AccountKey> = identities.iter().map(|(key, _)| key.clone()).collect();
        let meshes = connect_mesh(config.mesh, &keys).await?;
        let mut sequencers = Vec::with_capacity(config.sequencers);
        for ((key, bls), (mesh, inbound)) in identities.into_iter().zip(meshes) {
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
                wal: None,
            };
            sequencers.push(sequencer::node::spawn(sequencer_config, wiring).await?);
        }
        Ok(Devnet {
            chain_id: config.chain_id,
            chain,
            sequencers,
            shards,
            _data_dir: temporary,
        })
    }

    /// Where clients of sequencer `index` connect.
    pub fn sequencer_addr(&self, index: usize) -> SocketAddr {
        self.sequencers[index % self.sequencers.len()].client_addr
    }
}
