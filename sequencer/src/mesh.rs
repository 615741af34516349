//! Links between sequencers: headers and consensus messages, as encoded bytes.
//!
//! Peer messages are decoded with bounds like any untrusted input. The devnet joins its
//! sequencers with [`InProcessMesh`], bounded in-process queues; the [netstack] work puts the
//! same bytes on authenticated KCP/QUIC sessions.

use std::collections::HashMap;

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

/// Bytes from a peer, with the peer's authenticated ID.
pub type PeerDelivery = (NodeId, Vec<u8>);

/// In-process links among a set of sequencers.
#[derive(Clone, Debug)]
pub struct InProcessMesh {
    me: NodeId,
    peers: HashMap<NodeId, mpsc::Sender<PeerDelivery>>,
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
                (InProcessMesh { me: *id, peers }, receiver)
            })
            .collect()
    }

    /// Sends to one peer; a full or closed queue drops the message, as a lossy network would
    /// (the protocols above retransmit what matters).
    pub fn send(&self, to: &NodeId, bytes: Vec<u8>) {
        if let Some(sender) = self.peers.get(to)
            && sender.try_send((self.me, bytes)).is_err()
        {
            tracing::warn!(target: "sequencer::mesh", %to, "peer queue full or closed; message dropped");
        }
    }

    /// Sends to every peer.
    pub fn broadcast(&self, bytes: &[u8]) {
        for peer in self.peers.keys() {
            self.send(peer, bytes.to_vec());
        }
    }
}
