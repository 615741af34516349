//! Links between sequencers over netstack's KCP sessions on UDP, authenticated and encrypted
//! by its secure layer (Noise_XX with static keys bound to node IDs).
//!
//! Each sequencer listens on one UDP socket ([`KcpMeshListener::bind`]) that accepts only the
//! nodes its [`AllowList`] holds (the set and the whitelist, which the owner refreshes from the
//! upper chain while the mesh runs), and opens one outgoing session to every peer
//! ([`KcpMeshListener::connect`]), which refuses any node but the one it dials. A link carries
//! messages one way, so the two directions of a pair never contend for one session's window,
//! and the sender of every message is the node the handshake authenticated.
//!
//! # Wire
//! Each peer message travels as one or more fragments ([`netstack::frame::split`]): KCP
//! delivers a session's messages reliably and in order, so a message larger than one KCP
//! message is the concatenation of consecutive fragments, bounded by
//! [`PEER_MESSAGE_BYTES_MAX`].
//!
//! A link whose session dies (dead peer, idle timeout) reconnects with back-off; what was in
//! flight is lost, as on any lossy network: PBFT retransmits what matters.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use netstack::{
    driver::{KcpClient, KcpConnection, KcpServer},
    kcp::KcpConfig,
    secure::{AllowList, NodeIdentity, PeerPolicy},
};
use parking_lot::RwLock;
use primitives::NodeId;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{MeshStats, PeerDelivery, PeerLinks};
use crate::constants::{PEER_LINK_BACKOFF_MAX, PEER_MESSAGE_BYTES_MAX, PEER_QUEUE_MAX};

#[derive(Debug, Default)]
struct Counters {
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    messages_dropped: AtomicU64,
}

/// A bound mesh socket, not yet linked to its peers.
#[derive(Debug)]
pub struct KcpMeshListener {
    identity: NodeIdentity,
    config: KcpConfig,
    server: KcpServer,
    accepted: mpsc::Receiver<KcpConnection>,
}

impl KcpMeshListener {
    /// Binds the mesh socket of the node `identity` names at `addr` (port 0 picks one),
    /// accepting sessions from the nodes `admitted` holds when each one shakes hands.
    pub async fn bind(
        identity: NodeIdentity,
        addr: SocketAddr,
        config: KcpConfig,
        admitted: AllowList,
    ) -> std::io::Result<KcpMeshListener> {
        let policy = PeerPolicy::Listed(admitted);
        let (server, accepted) =
            KcpServer::bind_secure(addr, config.clone(), identity.clone(), policy).await?;
        Ok(KcpMeshListener {
            identity,
            config,
            server,
            accepted,
        })
    }

    /// Where peers reach this node.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Starts the links to `peers` (every other member, with its mesh address) and the reader
    /// of incoming sessions; returns the mesh and the queue of what peers send.
    pub fn connect(
        self,
        peers: &[(NodeId, SocketAddr)],
    ) -> (KcpMesh, mpsc::Receiver<PeerDelivery>) {
        let counters = Arc::new(Counters::default());
        let (inbound, delivered) = mpsc::channel(PEER_QUEUE_MAX);
        let me = self.identity.node_id();
        tokio::spawn(accept(self.accepted, inbound, counters.clone()));
        let local = self.server.local_addr();
        let mesh = KcpMesh {
            me,
            identity: self.identity,
            config: self.config,
            links: Arc::new(RwLock::new(HashMap::new())),
            counters,
            _server: Arc::new(self.server),
        };
        for (peer, addr) in peers {
            mesh.link(*peer, *addr);
        }
        info!(target: "sequencer::mesh", %me, %local, peers = mesh.links.read().len(),
            "KCP mesh up");
        (mesh, delivered)
    }
}

/// Links from one sequencer to the others over KCP. Cloning shares the links.
#[derive(Clone, Debug)]
pub struct KcpMesh {
    me: NodeId,
    identity: NodeIdentity,
    config: KcpConfig,
    links: Arc<RwLock<HashMap<NodeId, mpsc::Sender<Vec<u8>>>>>,
    counters: Arc<Counters>,
    _server: Arc<KcpServer>,
}

impl KcpMesh {
    /// Starts a link to `peer` at `addr`, unless there is one (or `peer` is this node); returns
    /// whether it started one. A peer admitted after the mesh started (newly whitelisted) is
    /// linked this way.
    pub fn link(&self, peer: NodeId, addr: SocketAddr) -> bool {
        if peer == self.me {
            return false;
        }
        let mut links = self.links.write();
        if links.contains_key(&peer) {
            return false;
        }
        let (queue, outgoing) = mpsc::channel(PEER_QUEUE_MAX);
        tokio::spawn(run_link(
            self.identity.clone(),
            peer,
            addr,
            self.config.clone(),
            outgoing,
            self.counters.clone(),
        ));
        links.insert(peer, queue);
        true
    }

    /// The peers this mesh has links to.
    pub fn peers(&self) -> Vec<NodeId> {
        self.links.read().keys().copied().collect()
    }
}

impl PeerLinks for KcpMesh {
    fn send(&self, to: &NodeId, bytes: Vec<u8>) {
        let links = self.links.read();
        let Some(link) = links.get(to) else {
            return;
        };
        if link.try_send(bytes).is_err() {
            self.counters
                .messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            warn!(target: "sequencer::mesh", me = %self.me, %to, "link queue full; message dropped");
        }
    }

    fn broadcast(&self, bytes: &[u8]) {
        for peer in self.peers() {
            self.send(&peer, bytes.to_vec());
        }
    }

    fn stats(&self) -> MeshStats {
        MeshStats {
            messages_sent: self.counters.messages_sent.load(Ordering::Relaxed),
            bytes_sent: self.counters.bytes_sent.load(Ordering::Relaxed),
            messages_received: self.counters.messages_received.load(Ordering::Relaxed),
            messages_dropped: self.counters.messages_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Sends what is queued for `peer`, (re)connecting as needed.
async fn run_link(
    identity: NodeIdentity,
    peer: NodeId,
    addr: SocketAddr,
    config: KcpConfig,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    counters: Arc<Counters>,
) {
    let fragment_max = config.message_bytes_max;
    let mut backoff = Duration::from_millis(10);
    let mut connection: Option<KcpConnection> = None;
    while let Some(message) = outgoing.recv().await {
        if message.len() > PEER_MESSAGE_BYTES_MAX {
            counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
            warn!(target: "sequencer::mesh", %peer, len = message.len(), "peer message over the bound; dropped");
            continue;
        }
        loop {
            let open = match connection.take() {
                Some(open) if !open.sender().is_closed() => open,
                _ => match KcpClient::connect_secure(addr, config.clone(), identity.clone(), peer)
                    .await
                {
                    Ok(open) => {
                        debug!(target: "sequencer::mesh", %peer, %addr, "link opened");
                        backoff = Duration::from_millis(10);
                        open
                    }
                    Err(error) => {
                        warn!(target: "sequencer::mesh", %peer, %addr, %error, ?backoff, "link failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(PEER_LINK_BACKOFF_MAX);
                        continue;
                    }
                },
            };
            let mut sent = true;
            for fragment in netstack::frame::split(&message, fragment_max) {
                if open.send(fragment).await.is_err() {
                    sent = false;
                    break;
                }
            }
            if sent {
                counters.messages_sent.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_sent
                    .fetch_add(message.len() as u64, Ordering::Relaxed);
                connection = Some(open);
            } else {
                // The session died mid-message: the message is lost with it (the receiver drops
                // the partial one when the session ends); the next one reconnects.
                counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
            }
            break;
        }
    }
}

/// Reads every incoming session.
async fn accept(
    mut accepted: mpsc::Receiver<KcpConnection>,
    inbound: mpsc::Sender<PeerDelivery>,
    counters: Arc<Counters>,
) {
    while let Some(connection) = accepted.recv().await {
        tokio::spawn(read_session(connection, inbound.clone(), counters.clone()));
    }
}

async fn read_session(
    mut connection: KcpConnection,
    inbound: mpsc::Sender<PeerDelivery>,
    counters: Arc<Counters>,
) {
    // The server is secure and admits members only, so every session names one.
    let Some(from) = connection.peer_id() else {
        warn!(target: "sequencer::mesh", peer = %connection.peer_addr(), "unauthenticated session; dropped");
        return;
    };
    let mut assembly = netstack::frame::Reassembly::new(PEER_MESSAGE_BYTES_MAX);
    while let Some(frame) = connection.recv().await {
        match assembly.push(&frame) {
            Ok(Some(message)) => {
                counters.messages_received.fetch_add(1, Ordering::Relaxed);
                if inbound.send((from, message)).await.is_err() {
                    return; // The sequencer stopped.
                }
            }
            Ok(None) => {}
            Err(error) => {
                warn!(target: "sequencer::mesh", %from, %error, "bad frame; session dropped");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use primitives::AccountKey;

    use super::*;

    async fn listeners(keys: &[AccountKey], members: &[NodeId]) -> Vec<KcpMeshListener> {
        let mut listeners = Vec::new();
        for key in keys {
            let listener = KcpMeshListener::bind(
                NodeIdentity::new(key.clone()),
                SocketAddr::from(([127, 0, 0, 1], 0)),
                KcpConfig::default(),
                AllowList::new(members.iter().copied()),
            )
            .await
            .expect("bind");
            listeners.push(listener);
        }
        listeners
    }

    /// Four meshes on loopback: every node's broadcast of a small and of a multi-fragment
    /// message reaches every other node, whole and attributed to its sender.
    #[tokio::test]
    async fn meshes_deliver_messages_of_any_size_between_every_pair() {
        let keys: Vec<AccountKey> = (1..=4).map(AccountKey::from_seed).collect();
        let ids: Vec<NodeId> = keys.iter().map(|key| NodeId(key.address())).collect();
        let listeners = listeners(&keys, &ids).await;
        let addresses: Vec<(NodeId, SocketAddr)> = ids
            .iter()
            .zip(&listeners)
            .map(|(id, listener)| (*id, listener.local_addr()))
            .collect();
        let mut meshes = Vec::new();
        for listener in listeners {
            meshes.push(listener.connect(&addresses));
        }
        let big: Vec<u8> = (0..600_000u32).map(|index| (index % 251) as u8).collect();
        for (index, (mesh, _)) in meshes.iter().enumerate() {
            mesh.broadcast(&[index as u8; 10]);
            let mut tagged = big.clone();
            tagged[0] = index as u8;
            mesh.broadcast(&tagged);
        }
        for (index, (mesh, inbound)) in meshes.iter_mut().enumerate() {
            let mut small = Vec::new();
            let mut large = Vec::new();
            while small.len() + large.len() < 2 * (ids.len() - 1) {
                let (from, bytes) = inbound.recv().await.expect("mesh open");
                let sender = ids.iter().position(|id| *id == from).expect("a member");
                assert_ne!(sender, index);
                if bytes.len() == 10 {
                    assert_eq!(bytes, vec![sender as u8; 10]);
                    small.push(sender);
                } else {
                    assert_eq!(bytes.len(), big.len());
                    assert_eq!(bytes[0], sender as u8);
                    assert_eq!(bytes[1..], big[1..]);
                    large.push(sender);
                }
            }
            small.sort_unstable();
            large.sort_unstable();
            let others: Vec<usize> = (0..ids.len()).filter(|other| *other != index).collect();
            assert_eq!((small, large), (others.clone(), others));
            let stats = mesh.stats();
            assert_eq!(stats.messages_received, 2 * (ids.len() as u64 - 1));
        }
    }

    /// A node outside the set cannot open a link: its messages never arrive, while a member's
    /// do.
    #[tokio::test]
    async fn a_node_outside_the_set_is_not_heard() {
        let keys: Vec<AccountKey> = (1..=3).map(AccountKey::from_seed).collect();
        let ids: Vec<NodeId> = keys.iter().map(|key| NodeId(key.address())).collect();
        let mut members = listeners(&keys[..2], &ids[..2]).await;
        let outsider = listeners(&keys[2..], &ids).await.remove(0);
        let member = members.remove(1);
        let target = members.remove(0);
        let target_addr = target.local_addr();
        let (_target_mesh, mut inbound) =
            target.connect(&[(ids[0], target_addr), (ids[1], member.local_addr())]);
        let (outsider_mesh, _) = outsider.connect(&[(ids[0], target_addr)]);
        let (member_mesh, _) = member.connect(&[(ids[0], target_addr)]);
        outsider_mesh.broadcast(b"from outside");
        member_mesh.broadcast(b"from a member");
        let (from, bytes) = inbound.recv().await.expect("mesh open");
        assert_eq!((from, bytes.as_slice()), (ids[1], &b"from a member"[..]));
        assert!(inbound.try_recv().is_err());
    }

    /// A node the allow list did not hold when the mesh started (a sequencer whitelisted
    /// later) is heard once the owner adds it, and the owner links back to it.
    #[tokio::test]
    async fn a_node_admitted_later_is_heard_and_linked() {
        let keys: Vec<AccountKey> = (1..=2).map(AccountKey::from_seed).collect();
        let ids: Vec<NodeId> = keys.iter().map(|key| NodeId(key.address())).collect();
        let admitted = AllowList::new([ids[0]]);
        let target = KcpMeshListener::bind(
            NodeIdentity::new(keys[0].clone()),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            KcpConfig::default(),
            admitted.clone(),
        )
        .await
        .expect("bind");
        let newcomer = listeners(&keys[1..], &ids).await.remove(0);
        let (target_addr, newcomer_addr) = (target.local_addr(), newcomer.local_addr());
        let (target_mesh, mut at_target) = target.connect(&[]);
        let (newcomer_mesh, mut at_newcomer) = newcomer.connect(&[(ids[0], target_addr)]);
        newcomer_mesh.broadcast(b"let me in");
        // Refused while the list leaves it out (its link keeps retrying).
        let early = tokio::time::timeout(Duration::from_millis(300), at_target.recv()).await;
        assert!(early.is_err(), "heard before admission: {early:?}");
        assert!(admitted.replace([ids[0], ids[1]]));
        let (from, bytes) = tokio::time::timeout(Duration::from_secs(60), at_target.recv())
            .await
            .expect("the retried link is admitted")
            .expect("mesh open");
        assert_eq!((from, bytes.as_slice()), (ids[1], &b"let me in"[..]));
        // The target links back to the newcomer, once.
        assert!(target_mesh.link(ids[1], newcomer_addr));
        assert!(!target_mesh.link(ids[1], newcomer_addr));
        assert_eq!(target_mesh.peers(), vec![ids[1]]);
        target_mesh.broadcast(b"welcome");
        let (from, bytes) = tokio::time::timeout(Duration::from_secs(60), at_newcomer.recv())
            .await
            .expect("the new link delivers")
            .expect("mesh open");
        assert_eq!((from, bytes.as_slice()), (ids[0], &b"welcome"[..]));
    }
}
