//! Group messages over netstack: Noise-authenticated KCP sessions on UDP, one socket and one
//! node key per member.
//!
//! Each member binds a [`GroupEndpoint`]: a secure KCP server ([`KcpServer::bind_secure`]) that
//! admits only the nodes sharing a group with it ([`super::group_peers`]); a handshake proving
//! any other key is refused by the secure layer and counted
//! ([`super::TransportStats::peers_refused`]). Messages from a member to a peer go over one
//! outgoing session per (member, peer) pair, opened on first use with
//! [`KcpClient::connect_secure`], which refuses any node but the one dialled, so the sender of
//! every delivery is the node the handshake proved. A link carries messages one way, as the
//! sequencers' mesh does (`sequencer::mesh::kcp`), so the two directions of a pair never contend
//! for one session's window.
//!
//! [`NetstackTransport`] holds the endpoints of the members run by one process (one in a node
//! process, all 24 in the one-process network test) and the directory of where every node is
//! reached: the endpoints registered on the upper chain. Its [`GroupTransport`] methods never
//! wait, so the synchronous [`crate::ShardNetwork`] can call them from any thread; the sockets
//! and links run as tasks on the tokio runtime it was given.
//!
//! # Wire
//! A group message travels as one or more fragments ([`netstack::frame::split`]). KCP
//! delivers a session's messages reliably and in order, so a group message is the
//! concatenation of consecutive fragments, bounded by [`GROUP_MESSAGE_BYTES_MAX`]; a frame
//! that breaks this ends the session.
//!
//! A link whose session dies (a stopped peer, idle timeout) reconnects with back-off; what was
//! in flight is lost, as on any lossy network, and the group rounds recover it by view change
//! and state transfer.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io,
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
use parking_lot::Mutex;
use primitives::NodeId;
use tokio::{
    runtime::Handle,
    sync::{Notify, mpsc},
};
use tracing::{debug, info, warn};

use super::{GroupDelivery, GroupTransport, TransportStats};
use crate::bft::GROUP_MESSAGE_BYTES_MAX;

/// Messages queued on one link (member → peer) before sending drops them.
pub const LINK_QUEUE_MAX: usize = 1_024;
/// Messages received by every endpoint of a transport and not yet taken by the network; past
/// it the sessions' readers wait, KCP's receive windows close and the senders slow down.
pub const INBOUND_QUEUE_MAX: usize = 16_384;
/// Longest wait between two attempts of a link to reach a peer that does not answer.
pub const LINK_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// First wait after a failed attempt; doubled up to [`LINK_BACKOFF_MAX`].
const LINK_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Attempts to bind a stopped member's address again before giving up (the port may linger).
const REBIND_ATTEMPTS_MAX: u32 = 100;
/// Wait between two attempts to bind again.
const REBIND_RETRY: Duration = Duration::from_millis(20);

/// The KCP settings group links use by default: netstack's defaults with a short idle timeout,
/// so a session to a member that stopped is given up (and dialled again) within seconds, not
/// after netstack's default idle timeout.
pub fn link_config() -> KcpConfig {
    KcpConfig {
        idle_timeout: Duration::from_secs(2),
        keepalive_interval: Duration::from_millis(250),
        ..KcpConfig::default()
    }
}

/// Live counters shared by a transport's tasks.
#[derive(Debug, Default)]
struct Counters {
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    messages_dropped: AtomicU64,
    frames_refused: AtomicU64,
}

impl Counters {
    fn dropped(&self) {
        self.messages_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The server of a running endpoint, or none while its member is stopped. The generation
/// changes at every stop and resume, so a rebind that finishes after a later stop is dropped.
#[derive(Debug, Default)]
struct Slot {
    generation: u64,
    server: Option<KcpServer>,
    /// Handshakes refused by the servers this endpoint had before the current one.
    refused_before: u64,
}

/// One member's socket for group traffic (see the module documentation).
#[derive(Debug)]
pub struct GroupEndpoint {
    identity: NodeIdentity,
    local_addr: SocketAddr,
    peers: BTreeSet<NodeId>,
    /// Whom its socket admits: its peers, replaced when the groups change.
    allowed: AllowList,
    config: KcpConfig,
    slot: Arc<Mutex<Slot>>,
    /// Sessions accepted before the endpoint joined a transport.
    accepted: Option<mpsc::Receiver<KcpConnection>>,
    /// Outgoing links by peer, opened on first use.
    links: HashMap<NodeId, mpsc::Sender<Vec<u8>>>,
    up: bool,
}

impl GroupEndpoint {
    /// Binds the group socket of the member `identity` names at `addr` (port 0 picks one),
    /// admitting sessions from `peers` only.
    pub async fn bind(
        identity: NodeIdentity,
        addr: SocketAddr,
        config: KcpConfig,
        peers: BTreeSet<NodeId>,
    ) -> io::Result<GroupEndpoint> {
        let allowed = AllowList::new(peers.iter().copied());
        let policy = PeerPolicy::Listed(allowed.clone());
        let (server, accepted) =
            KcpServer::bind_secure(addr, config.clone(), identity.clone(), policy).await?;
        let local_addr = server.local_addr();
        let slot = Slot {
            generation: 0,
            server: Some(server),
            refused_before: 0,
        };
        Ok(GroupEndpoint {
            identity,
            local_addr,
            peers,
            allowed,
            config,
            slot: Arc::new(Mutex::new(slot)),
            accepted: Some(accepted),
            links: HashMap::new(),
            up: true,
        })
    }

    /// The member's node ID.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// Where the member is reached (what it registers as its endpoint).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Handshakes its sockets refused so far: keys outside its peers.
    pub fn peers_refused(&self) -> u64 {
        let slot = self.slot.lock();
        slot.refused_before
            + slot
                .server
                .as_ref()
                .and_then(KcpServer::secure_stats)
                .map_or(0, |stats| stats.handshakes_refused)
    }
}

/// Group links of the members one process runs (see the module documentation).
pub struct NetstackTransport {
    runtime: Handle,
    endpoints: BTreeMap<NodeId, GroupEndpoint>,
    /// Where every node of the registry is reached.
    directory: BTreeMap<NodeId, SocketAddr>,
    inbound_sender: mpsc::Sender<GroupDelivery>,
    inbound: mpsc::Receiver<GroupDelivery>,
    arrivals: Arc<Notify>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for NetstackTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetstackTransport")
            .field("endpoints", &self.endpoints.len())
            .field("directory", &self.directory.len())
            .finish_non_exhaustive()
    }
}

impl NetstackTransport {
    /// The transport of the members whose `endpoints` are given, reaching every node at its
    /// address in `directory`; its tasks run on `runtime`.
    pub fn new(
        runtime: Handle,
        endpoints: Vec<GroupEndpoint>,
        directory: BTreeMap<NodeId, SocketAddr>,
    ) -> NetstackTransport {
        let (inbound_sender, inbound) = mpsc::channel(INBOUND_QUEUE_MAX);
        let arrivals = Arc::new(Notify::new());
        let counters = Arc::new(Counters::default());
        let mut by_id = BTreeMap::new();
        for mut endpoint in endpoints {
            let me = endpoint.node_id();
            if let Some(accepted) = endpoint.accepted.take() {
                runtime.spawn(accept(
                    me,
                    accepted,
                    inbound_sender.clone(),
                    arrivals.clone(),
                    counters.clone(),
                ));
            }
            info!(target: "shard_node::transport", node = %me, local = %endpoint.local_addr,
                peers = endpoint.peers.len(), "group endpoint up");
            by_id.insert(me, endpoint);
        }
        NetstackTransport {
            runtime,
            endpoints: by_id,
            directory,
            inbound_sender,
            inbound,
            arrivals,
            counters,
        }
    }

    /// The directory of a registry snapshot: each node's registered endpoint, for those whose
    /// endpoint is a socket address (the others cannot be reached and are logged).
    pub fn directory_of(snapshot: &upper_chain::RegistrySnapshot) -> BTreeMap<NodeId, SocketAddr> {
        let mut directory = BTreeMap::new();
        for id in snapshot.ids() {
            let Some(record) = snapshot.node(&id) else {
                continue;
            };
            match record.registration.endpoint.parse::<SocketAddr>() {
                Ok(addr) => {
                    directory.insert(id, addr);
                }
                Err(error) => {
                    warn!(target: "shard_node::transport", node = %id,
                        endpoint = %record.registration.endpoint, %error,
                        "registered endpoint is not a socket address; node unreachable");
                }
            }
        }
        directory
    }

    /// The endpoint of a member this transport runs.
    pub fn endpoint(&self, node: &NodeId) -> Option<&GroupEndpoint> {
        self.endpoints.get(node)
    }

    /// Spawns the link from `from` to `to` and returns its queue.
    fn link(&mut self, from: &NodeId, to: &NodeId) -> Option<&mpsc::Sender<Vec<u8>>> {
        let endpoint = self.endpoints.get_mut(from)?;
        if !endpoint.up || !endpoint.peers.contains(to) {
            return None;
        }
        let addr = *self.directory.get(to)?;
        let runtime = &self.runtime;
        let counters = &self.counters;
        Some(endpoint.links.entry(*to).or_insert_with(|| {
            let (queue, outgoing) = mpsc::channel(LINK_QUEUE_MAX);
            runtime.spawn(run_link(
                endpoint.identity.clone(),
                *to,
                addr,
                endpoint.config.clone(),
                outgoing,
                counters.clone(),
            ));
            queue
        }))
    }
}

impl GroupTransport for NetstackTransport {
    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let counters = self.counters.clone();
        let Some(link) = self.link(&from, &to) else {
            counters.dropped();
            debug!(target: "shard_node::transport", %from, %to, "no link: sender stopped or not run here, or destination not a reachable peer; dropped");
            return;
        };
        if link.try_send(bytes).is_err() {
            counters.dropped();
            warn!(target: "shard_node::transport", %from, %to, "link queue full; group message dropped");
        }
    }

    fn try_recv(&mut self) -> Option<GroupDelivery> {
        self.inbound.try_recv().ok()
    }

    fn stop(&mut self, node: &NodeId) {
        let Some(endpoint) = self.endpoints.get_mut(node) else {
            return;
        };
        endpoint.up = false;
        // Dropping the queues ends the link tasks, and with them the outgoing sessions.
        endpoint.links.clear();
        let mut slot = endpoint.slot.lock();
        slot.generation += 1;
        if let Some(server) = slot.server.take() {
            slot.refused_before += server
                .secure_stats()
                .map_or(0, |stats| stats.handshakes_refused);
            // Dropping the server closes the socket and ends every incoming session.
            drop(server);
        }
        debug!(target: "shard_node::transport", %node, "group endpoint stopped");
    }

    fn resume(&mut self, node: &NodeId) {
        let Some(endpoint) = self.endpoints.get_mut(node) else {
            return;
        };
        if endpoint.up {
            return;
        }
        endpoint.up = true;
        let generation = {
            let mut slot = endpoint.slot.lock();
            slot.generation += 1;
            slot.generation
        };
        self.runtime.spawn(rebind(
            endpoint.identity.clone(),
            endpoint.local_addr,
            endpoint.config.clone(),
            PeerPolicy::Listed(endpoint.allowed.clone()),
            endpoint.slot.clone(),
            generation,
            self.inbound_sender.clone(),
            self.arrivals.clone(),
            self.counters.clone(),
        ));
    }

    fn stats(&self) -> TransportStats {
        let counters = &self.counters;
        TransportStats {
            messages_sent: counters.messages_sent.load(Ordering::Relaxed),
            bytes_sent: counters.bytes_sent.load(Ordering::Relaxed),
            messages_received: counters.messages_received.load(Ordering::Relaxed),
            messages_dropped: counters.messages_dropped.load(Ordering::Relaxed),
            peers_refused: counters.frames_refused.load(Ordering::Relaxed)
                + self
                    .endpoints
                    .values()
                    .map(GroupEndpoint::peers_refused)
                    .sum::<u64>(),
        }
    }

    fn arrivals(&self) -> Option<Arc<Notify>> {
        Some(self.arrivals.clone())
    }

    fn regroup(&mut self, snapshot: &upper_chain::RegistrySnapshot) {
        let peers = super::group_peers(&snapshot.ids());
        self.directory = Self::directory_of(snapshot);
        for (node, endpoint) in &mut self.endpoints {
            let next = peers.get(node).cloned().unwrap_or_default();
            // Sessions already open stay; what they carry from a node outside the groups is
            // refused by the cores.
            endpoint.allowed.replace(next.iter().copied());
            endpoint.links.retain(|to, _| next.contains(to));
            endpoint.peers = next;
        }
        debug!(target: "shard_node::transport", epoch = snapshot.epoch, "group peers replaced");
    }
}

/// Binds a resumed member's address again (retrying while the port is still held) and serves
/// it, unless the member was stopped again meanwhile.
#[allow(clippy::too_many_arguments, reason = "one task's captured state")]
async fn rebind(
    identity: NodeIdentity,
    addr: SocketAddr,
    config: KcpConfig,
    policy: PeerPolicy,
    slot: Arc<Mutex<Slot>>,
    generation: u64,
    inbound: mpsc::Sender<GroupDelivery>,
    arrivals: Arc<Notify>,
    counters: Arc<Counters>,
) {
    let me = identity.node_id();
    let mut attempts = 0u32;
    let (server, accepted) = loop {
        match KcpServer::bind_secure(addr, config.clone(), identity.clone(), policy.clone()).await {
            Ok(bound) => break bound,
            Err(error) if attempts < REBIND_ATTEMPTS_MAX => {
                attempts += 1;
                debug!(target: "shard_node::transport", node = %me, %addr, %error, attempts, "rebind failed; retrying");
                tokio::time::sleep(REBIND_RETRY).await;
            }
            Err(error) => {
                warn!(target: "shard_node::transport", node = %me, %addr, %error, "group endpoint could not bind again");
                return;
            }
        }
    };
    {
        let mut slot = slot.lock();
        if slot.generation != generation {
            return; // Stopped again while binding: the server is dropped here.
        }
        slot.server = Some(server);
    }
    debug!(target: "shard_node::transport", node = %me, %addr, "group endpoint back up");
    accept(me, accepted, inbound, arrivals, counters).await;
}

/// Sends what is queued for `peer`, (re)connecting as needed, until the queue's sender is
/// dropped (the member stopped, or the transport went away).
async fn run_link(
    identity: NodeIdentity,
    peer: NodeId,
    addr: SocketAddr,
    config: KcpConfig,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    counters: Arc<Counters>,
) {
    let me = identity.node_id();
    let fragment_max = config.message_bytes_max;
    let mut backoff = LINK_BACKOFF_MIN;
    let mut connection: Option<KcpConnection> = None;
    while let Some(message) = outgoing.recv().await {
        if message.len() > GROUP_MESSAGE_BYTES_MAX {
            counters.dropped();
            warn!(target: "shard_node::transport", %me, %peer, len = message.len(), "group message over the bound; dropped");
            continue;
        }
        let open = match connection.take() {
            Some(open) if !open.sender().is_closed() => open,
            _ => {
                match KcpClient::connect_secure(addr, config.clone(), identity.clone(), peer).await
                {
                    Ok(open) => {
                        debug!(target: "shard_node::transport", %me, %peer, %addr, "link opened");
                        backoff = LINK_BACKOFF_MIN;
                        open
                    }
                    Err(error) => {
                        // The message is lost, as it would be on a dead network; the rounds
                        // resend what they still need.
                        counters.dropped();
                        debug!(target: "shard_node::transport", %me, %peer, %addr, %error, ?backoff, "link failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(LINK_BACKOFF_MAX);
                        continue;
                    }
                }
            }
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
            // The session died mid-message: the receiver drops the partial one with it.
            counters.dropped();
        }
    }
}

/// Reads every session a member's socket accepts.
async fn accept(
    me: NodeId,
    mut accepted: mpsc::Receiver<KcpConnection>,
    inbound: mpsc::Sender<GroupDelivery>,
    arrivals: Arc<Notify>,
    counters: Arc<Counters>,
) {
    while let Some(connection) = accepted.recv().await {
        tokio::spawn(read_session(
            me,
            connection,
            inbound.clone(),
            arrivals.clone(),
            counters.clone(),
        ));
    }
}

async fn read_session(
    me: NodeId,
    mut connection: KcpConnection,
    inbound: mpsc::Sender<GroupDelivery>,
    arrivals: Arc<Notify>,
    counters: Arc<Counters>,
) {
    // The socket is secure and admits the member's peers only, so every session names one.
    let Some(from) = connection.peer_id() else {
        counters.frames_refused.fetch_add(1, Ordering::Relaxed);
        warn!(target: "shard_node::transport", %me, peer = %connection.peer_addr(), "unauthenticated session; dropped");
        return;
    };
    let mut assembly = netstack::frame::Reassembly::new(GROUP_MESSAGE_BYTES_MAX);
    while let Some(frame) = connection.recv().await {
        match assembly.push(&frame) {
            Ok(Some(bytes)) => {
                counters.messages_received.fetch_add(1, Ordering::Relaxed);
                let delivery = GroupDelivery {
                    from,
                    to: me,
                    bytes,
                };
                if inbound.send(delivery).await.is_err() {
                    return; // The transport is gone.
                }
                arrivals.notify_one();
            }
            Ok(None) => {}
            Err(error) => {
                counters.frames_refused.fetch_add(1, Ordering::Relaxed);
                warn!(target: "shard_node::transport", %me, %from, %error, "bad frame; session dropped");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
