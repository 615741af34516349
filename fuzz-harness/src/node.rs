//! Decoders of crates built on RocksDB, replayed by the stable test only: the envelope of group
//! messages between the members of an address state group (`shard-node`) with the consensus
//! message over group roots inside, and the sequencer mesh's peer messages (`sequencer`).

use consensus::{Message, Vote};
use primitives::{B256, Decode, Encode};
use sequencer::mesh::PeerMessage;
use shard_node::bft::{EvictionVote, GroupMessage, GroupPayload, GroupRoot};
use upper_chain::GroupRootCommitment;

use crate::{
    Harness,
    codec::{assert_canonical, canonical},
    pbft,
};

/// The stable harness of a corpus directory whose bytes also reach these decoders.
pub fn stable_harness(target: &str) -> Option<Harness> {
    match target {
        "group" => Some(group),
        "pbft" => Some(pbft_and_mesh),
        _ => None,
    }
}

/// The bytes as a group message: the envelope (bounded, decoded before anything else), the
/// consensus message over group roots or the eviction vote it carries, and a group root alone.
pub fn group(data: &[u8]) {
    if let Ok(envelope) = GroupMessage::from_wire(data) {
        assert_eq!(
            envelope.to_bytes(),
            data,
            "a group envelope has one encoding"
        );
        match envelope.kind {
            GroupPayload::Consensus => {
                if let Ok(message) = Message::<GroupRoot>::from_wire(&envelope.payload) {
                    assert_canonical(&message, &envelope.payload);
                }
            }
            GroupPayload::EvictionVote => {
                canonical::<EvictionVote>(&envelope.payload);
            }
        }
    }
    canonical::<GroupRoot>(data);
}

/// The PBFT corpus through the sequencer mesh too: as a peer message, and as the consensus
/// bytes a peer message carries.
fn pbft_and_mesh(data: &[u8]) {
    pbft::fuzz(data);
    if let Some(PeerMessage::Consensus(bytes)) = canonical::<PeerMessage>(data) {
        pbft::check_message(&bytes);
    }
    let wrapped = PeerMessage::Consensus(data.to_vec()).to_bytes();
    if let Ok(PeerMessage::Consensus(bytes)) = PeerMessage::from_bytes(&wrapped) {
        assert_eq!(bytes, data);
    }
}

/// Group messages for the `group` corpus.
pub fn seeds() -> Vec<Vec<u8>> {
    let root = GroupRoot(GroupRootCommitment {
        epoch: 3,
        group: B256::repeat_byte(4),
        batch: 10,
        root: B256::repeat_byte(5),
    });
    let messages: Vec<Message<GroupRoot>> = vec![
        Message::PrePrepare(consensus::PrePrepare::new(
            &primitives::AccountKey::from_seed(1),
            0,
            1,
            root.clone(),
        )),
        Message::Prepare(Vote::prepare(
            &primitives::AccountKey::from_seed(2),
            0,
            1,
            consensus::Value::digest(&root),
            2,
        )),
        Message::Fetch { from: 1 },
    ];
    let mut seeds: Vec<Vec<u8>> = messages
        .iter()
        .map(|message| {
            GroupMessage {
                epoch: 3,
                group: B256::repeat_byte(4),
                kind: GroupPayload::Consensus,
                payload: message.to_bytes(),
            }
            .to_bytes()
        })
        .collect();
    let vote = EvictionVote {
        offender: 2,
        signature: primitives::bls::BlsSecretKey::from_seed(&[1; 32]).sign(b"departure"),
    };
    seeds.push(
        GroupMessage {
            epoch: 3,
            group: B256::repeat_byte(4),
            kind: GroupPayload::EvictionVote,
            payload: vote.to_bytes(),
        }
        .to_bytes(),
    );
    seeds.push(root.to_bytes());
    seeds
}
