//! Links between sequencers: headers and consensus messages, as encoded bytes.
//!
//! Peer messages are decoded with bounds like any untrusted input. A sequencer sends through
//! [`PeerLinks`]: [`kcp::KcpMesh`] over netstack's KCP sessions (what nodes and the `finality`
//! benchmark run), or [`InProcessMesh`], bounded in-process queues, for tests that need no
//! sockets.

pub mod kcp;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use primitives::{
    BlockHeader, NodeId,
    codec::{Decode, DecodeError, Decoder, Encode, put_bytes},
};
use tokio::sync::mpsc;

use crate::constants::PEER_QUEUE_MAX;

const PEER_VERSION: u8 = 1;
/// Largest consensus message carried between sequencers.
pub const CONSENSUS_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// What one sequencer sends another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// A freshly packed block's header (its body is already in weak DA).
    Header(BlockHeader),
    /// A PBFT message, encoded by the consensus core.
    Consensus(Vec<u8>),
}

impl Encode for PeerMessage {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(PEER_VERSION);
        match self {
            PeerMessage::Header(header) => {
                out.push(0);
                header.encode(out);
            }
            PeerMessage::Consensus(bytes) => {
                out.push(1);
                put_bytes(out, bytes);
            }
        }
    }
}

impl Decode for PeerMessage {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("peer message", &[PEER_VERSION])?;
        Ok(match decoder.u8()? {
            0 => PeerMessage::Header(BlockHeader::decode(decoder)?),
            1 => PeerMessage::Consensus(
                decoder
                    .bytes("consensus message", CONSENSUS_MESSAGE_BYTES_MAX)?
                    .to_vec(),
            ),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "peer message",
                    tag,
                });
            }
        })
    }
}

/// Bytes from a peer, with the peer's ID.
pub type PeerDelivery = (NodeId, Vec<u8>);

/// What a mesh has carried since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Messages handed to peers' links and sent whole.
    pub messages_sent: u64,
    /// Their bytes (peer messages, before transport framing).
    pub bytes_sent: u64,
    /// Messages received whole from peers.
    pub messages_received: u64,
    /// Messages dropped: a full link queue, a session that died, over the bound.
    pub messages_dropped: u64,
}

/// Where a sequencer's messages to its peers go. Sending never waits: a full link drops the
/// message, as a lossy network would (the protocols above retransmit what matters).
pub trait PeerLinks: Send + Sync + fmt::Debug {
    /// Sends to one peer.
    fn send(&self, to: &NodeId, bytes: Vec<u8>);
    /// Sends to every peer.
    fn broadcast(&self, bytes: &[u8]);
    /// What the mesh has carried.
    fn stats(&self) -> MeshStats;
}

/// In-process links among a set of sequencers.
#[derive(Clone, Debug)]
pub struct InProcessMesh {
    me: NodeId,
    peers: HashMap<NodeId, mpsc::Sender<PeerDelivery>>,
    counters: Arc<[AtomicU64; 3]>,
}

impl InProcessMesh {
    /// Builds the links among `ids`; returns each one's mesh and inbound queue, in order.
    pub fn connect(ids: &[NodeId]) -> Vec<(InProcessMesh, mpsc::Receiver<PeerDelivery>)> {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            ids.iter().map(|_| mpsc::channel(PEER_QUEUE_MAX)).unzip();
        let all: HashMap<NodeId, mpsc::Sender<PeerDelivery>> =
            ids.iter().copied().zip(senders).collect();
        ids.iter()
            .zip(receivers)
            .map(|(id, receiver)| {
                let peers = all
                    .iter()
                    .filter(|(peer, _)| *peer != id)
                    .map(|(peer, sender)| (*peer, sender.clone()))
                    .collect();
                let mesh = InProcessMesh {
                    me: *id,
                    peers,
                    counters: Arc::default(),
                };
                (mesh, receiver)
            })
            .collect()
    }
}

impl PeerLinks for InProcessMesh {
    fn send(&self, to: &NodeId, bytes: Vec<u8>) {
        let Some(sender) = self.peers.get(to) else {
            return;
        };
        let len = bytes.len() as u64;
        if sender.try_send((self.me, bytes)).is_err() {
            self.counters[2].fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "sequencer::mesh", %to, "peer queue full or closed; message dropped");
        } else {
            self.counters[0].fetch_add(1, Ordering::Relaxed);
            self.counters[1].fetch_add(len, Ordering::Relaxed);
        }
    }

    fn broadcast(&self, bytes: &[u8]) {
        for peer in self.peers.keys() {
            self.send(peer, bytes.to_vec());
        }
    }

    fn stats(&self) -> MeshStats {
        let sent = self.counters[0].load(Ordering::Relaxed);
        MeshStats {
            messages_sent: sent,
            bytes_sent: self.counters[1].load(Ordering::Relaxed),
            // Every message sent is in the receiver's queue: in-process links lose nothing after.
            messages_received: sent,
            messages_dropped: self.counters[2].load(Ordering::Relaxed),
        }
    }
}
