//! How group messages travel between the members of address state groups.
//!
//! The group BFT cores ([`crate::bft::GroupBft`]) only produce and consume bytes addressed to a
//! member; a [`GroupTransport`] carries them. [`crate::ShardNetwork`] drains every core's
//! transmits into its transport and feeds every member's core what the transport delivers, so
//! the same rounds run over:
//!
//! - [`InMemoryTransport`]: one FIFO queue in the process. Delivery order is the order of
//!   sending, so a run is a function of its inputs (the `sim` and the unit tests rely on this).
//! - [`netstack::NetstackTransport`]: each member has its own UDP socket and node key, and a
//!   message is carried over a Noise-authenticated KCP session between the two members' sockets.
//!   A member's socket admits only the nodes that share a group with it; a handshake by any
//!   other key is refused and counted ([`TransportStats::peers_refused`]).
//!
//! A delivery names its sender as the transport knows it (for netstack, the node the secure
//! handshake proved), never as the bytes claim; which group a message is for is read from its
//! [`crate::bft::GroupMessage`] envelope by the receiver, and everything else is checked by the
//! receiving core.
//!
//! Slice shipments are not carried here: a batch's execution still reads the holders' stores
//! in-process ([`crate::network`]), so only the group rounds cross the network for now.

pub mod netstack;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt,
    sync::Arc,
};

use primitives::{NodeId, constants::GROUP_SIZE};
use tokio::sync::Notify;

use crate::groups::GroupMap;

/// One group message: `from` sent `bytes` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDelivery {
    /// The sender, as the transport authenticated it.
    pub from: NodeId,
    /// The member it is for.
    pub to: NodeId,
    /// An encoded [`crate::bft::GroupMessage`] (untrusted until its core checks it).
    pub bytes: Vec<u8>,
}

/// What a transport has carried and dropped since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages handed to the wire (or queue) whole.
    pub messages_sent: u64,
    /// Their bytes, before transport framing.
    pub bytes_sent: u64,
    /// Messages received whole and handed to the network.
    pub messages_received: u64,
    /// Messages dropped on the way: a stopped sender, a destination that is not a peer of the
    /// sender or has no known address, a full link queue, a session that died mid-message.
    pub messages_dropped: u64,
    /// Sessions refused because the peer proved a key outside the member's peers, or malformed
    /// framing on an authenticated session.
    pub peers_refused: u64,
}

/// Carries group messages between members (see the module documentation). Sending never
/// waits: what cannot go now is dropped and counted, as a lossy network would lose it; the
/// group rounds retransmit what matters (view changes, state transfer).
pub trait GroupTransport: Send + fmt::Debug {
    /// Sends `bytes` from member `from` to member `to`.
    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>);

    /// The next message that has arrived for any member, if one has.
    fn try_recv(&mut self) -> Option<GroupDelivery>;

    /// Takes member `node` off the network, as a crash would: it neither sends nor receives
    /// until [`GroupTransport::resume`].
    fn stop(&mut self, node: &NodeId) {
        let _ = node;
    }

    /// Brings a stopped member back.
    fn resume(&mut self, node: &NodeId) {
        let _ = node;
    }

    /// What the transport has carried.
    fn stats(&self) -> TransportStats;

    /// Notified whenever a message arrives, for a driver that waits for the network; `None`
    /// for a transport whose deliveries all happen inside [`GroupTransport::try_recv`].
    fn arrivals(&self) -> Option<Arc<Notify>> {
        None
    }

    /// The groups changed to those of `snapshot` (a new registry epoch): peers and addresses
    /// follow. Nothing to do for a transport that reaches every member.
    fn regroup(&mut self, snapshot: &upper_chain::RegistrySnapshot) {
        let _ = snapshot;
    }
}

/// Group messages queued at most in the in-memory transport: far above what the rounds of all
/// touched groups send before the network delivers them (a round is about 8 × 24 messages).
pub const IN_MEMORY_QUEUE_MAX: usize = 1 << 20;

/// Every member in one process, one FIFO queue: deterministic delivery in sending order.
#[derive(Debug, Default)]
pub struct InMemoryTransport {
    queue: VecDeque<GroupDelivery>,
    stats: TransportStats,
}

impl InMemoryTransport {
    /// An empty queue.
    pub fn new() -> InMemoryTransport {
        InMemoryTransport::default()
    }
}

impl GroupTransport for InMemoryTransport {
    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        if self.queue.len() >= IN_MEMORY_QUEUE_MAX {
            self.stats.messages_dropped += 1;
            return;
        }
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.queue.push_back(GroupDelivery { from, to, bytes });
    }

    fn try_recv(&mut self) -> Option<GroupDelivery> {
        let delivery = self.queue.pop_front()?;
        self.stats.messages_received += 1;
        Some(delivery)
    }

    fn stats(&self) -> TransportStats {
        self.stats
    }
}

/// For every node of `ids`, the other nodes it shares at least one address state group with
/// (groups of [`GROUP_SIZE`] by XOR distance, as [`GroupMap`] forms them): the only nodes its
/// group traffic goes to or comes from.
pub fn group_peers(ids: &[NodeId]) -> BTreeMap<NodeId, BTreeSet<NodeId>> {
    let mut peers: BTreeMap<NodeId, BTreeSet<NodeId>> =
        ids.iter().map(|id| (*id, BTreeSet::new())).collect();
    let mut groups = GroupMap::new(ids, GROUP_SIZE);
    for group in groups.all_groups() {
        for member in group.members.iter() {
            let others = group.members.iter().filter(|other| *other != member);
            peers.entry(*member).or_default().extend(others);
        }
    }
    peers
}

#[cfg(test)]
mod tests {
    use primitives::Address;

    use super::*;

    fn node(byte: u8) -> NodeId {
        NodeId(Address::repeat_byte(byte))
    }

    #[test]
    fn the_in_memory_transport_delivers_in_sending_order_and_counts() {
        let (a, b) = (node(1), node(2));
        let mut transport = InMemoryTransport::new();
        transport.send(a, b, vec![1]);
        transport.send(b, a, vec![2, 2]);
        assert_eq!(
            transport.try_recv(),
            Some(GroupDelivery {
                from: a,
                to: b,
                bytes: vec![1]
            })
        );
        assert_eq!(
            transport.try_recv().map(|delivery| delivery.bytes),
            Some(vec![2, 2])
        );
        assert_eq!(transport.try_recv(), None);
        let stats = transport.stats();
        assert_eq!(
            (
                stats.messages_sent,
                stats.bytes_sent,
                stats.messages_received
            ),
            (2, 3, 2)
        );
    }

    #[test]
    fn peers_are_exactly_the_nodes_sharing_a_group() {
        let ids: Vec<NodeId> = (1..=24u8).map(node).collect();
        let peers = group_peers(&ids);
        let mut groups = GroupMap::new(&ids, GROUP_SIZE);
        let all = groups.all_groups();
        for id in &ids {
            let expected: BTreeSet<NodeId> = all
                .iter()
                .filter(|group| group.members.contains(id))
                .flat_map(|group| group.members.iter().copied())
                .filter(|member| member != id)
                .collect();
            assert!(expected.len() >= GROUP_SIZE - 1);
            assert_eq!(peers[id], expected);
            assert!(!peers[id].contains(id));
        }
    }
}
