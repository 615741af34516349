//! The upper chain: the EVM chain Tickrate settles to, as the rest of the network sees it.
//!
//! It holds the node registry (node ID = the signer of the registration), the sequencer set, the
//! commitments of finalized batches and of group state roots, each checked against a BLS
//! certificate of the right validator set. [`UpperChain`] is the interface; [`EmbeddedChain`]
//! is the in-process chain the devnet starts, making the same checks the contract makes.
//! (Persistence in RocksDB, network access and the Solidity contract on a real EVM chain come
//! with the [upper-chain] work.)

use std::collections::BTreeMap;

use parking_lot::Mutex;
use primitives::{
    Address, B256, NodeId, Signature, SignatureError,
    bls::{BlsError, BlsPublicKey, BlsSignature, Certificate},
    codec::{Encode, put_bytes, put_list},
    constants::GROUP_SIZE,
    k_nearest, keccak256,
};

/// Why the chain refused a call. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The registration's signature does not recover.
    #[error("bad registration signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The node ID is registered already.
    #[error("node {0} is already registered")]
    AlreadyRegistered(NodeId),
    /// The BLS key's proof of possession does not verify.
    #[error("BLS proof of possession does not verify")]
    BadPossession,
    /// A certificate does not verify against the validator set.
    #[error("certificate refused: {0}")]
    BadCertificate(#[from] BlsError),
    /// A batch commitment out of order.
    #[error("batch {got} committed out of order, expected {expected}")]
    BatchOutOfOrder {
        /// The next batch number.
        expected: u64,
        /// The number committed.
        got: u64,
    },
    /// A group named by members that are not the group of any address under this snapshot.
    #[error("unknown group member {0}")]
    UnknownMember(NodeId),
}

/// What an operator registers for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Where the node listens.
    pub endpoint: String,
    /// Where its rewards go.
    pub reward_wallet: Address,
    /// Payout features of that wallet (comma-separated on the command line; unknown ones kept).
    pub wallet_features: Vec<String>,
    /// The node's BLS key for group certificates.
    pub bls_key: BlsPublicKey,
    /// Proof that the operator holds the BLS secret.
    pub bls_possession: BlsSignature,
}

impl Registration {
    /// The hash the node key signs.
    pub fn signing_hash(&self) -> B256 {
        let mut out = b"tickrate:register".to_vec();
        put_bytes(&mut out, self.endpoint.as_bytes());
        self.reward_wallet.encode(&mut out);
        let features: Vec<Vec<u8>> = self
            .wallet_features
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect();
        out.extend_from_slice(&(features.len() as u32).to_be_bytes());
        for feature in &features {
            put_bytes(&mut out, feature);
        }
        self.bls_key.encode(&mut out);
        self.bls_possession.encode(&mut out);
        keccak256(&out)
    }
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node ID (its operator key's address).
    pub id: NodeId,
    /// What it registered.
    pub registration: Registration,
    /// The first epoch whose groups include it.
    pub active_from_epoch: u64,
}

/// The registry as of one epoch: every node active then, sorted by ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrySnapshot {
    /// The epoch.
    pub epoch: u64,
    /// Active nodes, sorted by ID.
    pub nodes: Vec<NodeRecord>,
}

impl RegistrySnapshot {
    /// Node IDs, sorted.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// The address state group of `address`: the nearest nodes by XOR distance, nearest first.
    pub fn group_of(&self, address: &Address) -> Vec<NodeId> {
        k_nearest(address, &self.ids(), GROUP_SIZE)
    }

    /// The record of a node.
    pub fn node(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes
            .binary_search_by(|node| node.id.cmp(id))
            .ok()
            .map(|index| &self.nodes[index])
    }
}

/// Identifies a group by its sorted members.
pub fn group_id(members: &[NodeId]) -> B256 {
    let mut sorted = members.to_vec();
    sorted.sort();
    let mut out = Vec::new();
    put_list(&mut out, &sorted);
    B256::from(*blake3::hash(&out).as_bytes())
}

/// A sequencer in the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerRecord {
    /// Its operator ID.
    pub id: NodeId,
    /// Its BLS key for batch certificates.
    pub bls_key: BlsPublicKey,
}

/// A committed group state root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRootCommitment {
    /// Epoch of the registry the group was formed from.
    pub epoch: u64,
    /// The group.
    pub group: B256,
    /// The batch after which the root holds.
    pub batch: u64,
    /// The root over the group's addresses.
    pub root: B256,
}

impl GroupRootCommitment {
    /// The message group members sign.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = b"tickrate:group-root".to_vec();
        self.epoch.encode(&mut out);
        self.group.encode(&mut out);
        self.batch.encode(&mut out);
        self.root.encode(&mut out);
        out
    }
}

/// Quorum of a validator set of `n`: all but the `(n - 1) / 3` that may be faulty.
pub fn quorum(n: usize) -> usize {
    n - n.saturating_sub(1) / 3
}

/// What Tickrate reads from and writes to the chain it settles on.
pub trait UpperChain: Send + Sync {
    /// Registers the node whose key signed `registration`; returns its node ID.
    fn register_node(
        &self,
        registration: Registration,
        signature: &Signature,
    ) -> Result<NodeId, ChainError>;
    /// The registry as of `epoch`.
    fn registry_snapshot(&self, epoch: u64) -> RegistrySnapshot;
    /// The current epoch.
    fn epoch(&self) -> u64;
    /// The sequencer set.
    fn sequencer_set(&self) -> Vec<SequencerRecord>;
    /// Commits a finalized batch; the certificate must carry a quorum of the sequencer set.
    fn commit_batch(
        &self,
        number: u64,
        batch_hash: B256,
        commit_message: &[u8],
        certificate: &Certificate,
    ) -> Result<(), ChainError>;
    /// Commits a group's state root; the certificate must carry a quorum of the group.
    fn commit_group_root(
        &self,
        commitment: GroupRootCommitment,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError>;
    /// The last committed batch number (0 before any).
    fn last_batch(&self) -> u64;
    /// The latest committed root of a group.
    fn group_root(&self, group: &B256) -> Option<GroupRootCommitment>;
}

#[derive(Debug, Default)]
struct ChainState {
    epoch: u64,
    nodes: BTreeMap<NodeId, NodeRecord>,
    sequencers: Vec<SequencerRecord>,
    batches: Vec<B256>,
    group_roots: BTreeMap<B256, GroupRootCommitment>,
}

/// The in-process upper chain of the devnet.
#[derive(Debug, Default)]
pub struct EmbeddedChain {
    state: Mutex<ChainState>,
}

impl EmbeddedChain {
    /// A chain whose sequencer set is `sequencers` (the admin whitelist at genesis).
    pub fn new(sequencers: Vec<SequencerRecord>) -> Self {
        EmbeddedChain {
            state: Mutex::new(ChainState {
                sequencers,
                ..ChainState::default()
            }),
        }
    }

    /// Moves to the next epoch: nodes registered so far join the groups.
    pub fn advance_epoch(&self) -> u64 {
        let mut state = self.state.lock();
        state.epoch += 1;
        state.epoch
    }
}

impl UpperChain for EmbeddedChain {
    fn register_node(
        &self,
        registration: Registration,
        signature: &Signature,
    ) -> Result<NodeId, ChainError> {
        let id = NodeId(signature.recover_address(&registration.signing_hash())?);
        registration
            .bls_key
            .verify_possession(&registration.bls_possession)
            .map_err(|_| ChainError::BadPossession)?;
        let mut state = self.state.lock();
        if state.nodes.contains_key(&id) {
            return Err(ChainError::AlreadyRegistered(id));
        }
        let active_from_epoch = state.epoch + 1;
        state.nodes.insert(
            id,
            NodeRecord {
                id,
                registration,
                active_from_epoch,
            },
        );
        Ok(id)
    }

    fn registry_snapshot(&self, epoch: u64) -> RegistrySnapshot {
        let state = self.state.lock();
        let nodes = state
            .nodes
            .values()
            .filter(|node| node.active_from_epoch <= epoch)
            .cloned()
            .collect();
        RegistrySnapshot { epoch, nodes }
    }

    fn epoch(&self) -> u64 {
        self.state.lock().epoch
    }

    fn sequencer_set(&self) -> Vec<SequencerRecord> {
        self.state.lock().sequencers.clone()
    }

    fn commit_batch(
        &self,
        number: u64,
        batch_hash: B256,
        commit_message: &[u8],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        let mut state = self.state.lock();
        let expected = state.batches.len() as u64 + 1;
        if number != expected {
            return Err(ChainError::BatchOutOfOrder {
                expected,
                got: number,
            });
        }
        let keys: Vec<BlsPublicKey> = state.sequencers.iter().map(|s| s.bls_key).collect();
        certificate.verify(commit_message, &keys, quorum(keys.len()))?;
        state.batches.push(batch_hash);
        Ok(())
    }

    fn commit_group_root(
        &self,
        commitment: GroupRootCommitment,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        let mut state = self.state.lock();
        let mut keys = Vec::with_capacity(members.len());
        for member in members {
            let node = state
                .nodes
                .get(member)
                .ok_or(ChainError::UnknownMember(*member))?;
            keys.push(node.registration.bls_key);
        }
        if group_id(members) != commitment.group {
            return Err(ChainError::UnknownMember(
                members.first().copied().unwrap_or_default(),
            ));
        }
        certificate.verify(&commitment.signing_bytes(), &keys, quorum(keys.len()))?;
        let newer = state
            .group_roots
            .get(&commitment.group)
            .is_none_or(|existing| existing.batch < commitment.batch);
        if newer {
            state.group_roots.insert(commitment.group, commitment);
        }
        Ok(())
    }

    fn last_batch(&self) -> u64 {
        self.state.lock().batches.len() as u64
    }

    fn group_root(&self, group: &B256) -> Option<GroupRootCommitment> {
        self.state.lock().group_roots.get(group).cloned()
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountKey, bls::BlsSecretKey};

    use super::*;

    fn registration(seed: u8) -> Registration {
        let bls = BlsSecretKey::from_seed(&[seed; 32]);
        Registration {
            endpoint: format!("127.0.0.1:{}", 9000 + u16::from(seed)),
            reward_wallet: Address::repeat_byte(seed),
            wallet_features: vec!["erc20".into(), "zksync".into()],
            bls_key: bls.public_key(),
            bls_possession: bls.proof_of_possession(),
        }
    }

    #[test]
    fn registers_by_signer_once() {
        let chain = EmbeddedChain::new(Vec::new());
        let key = AccountKey::from_seed(5);
        let first = registration(1);
        let signature = key.sign_prehash(&first.signing_hash());
        let id = chain
            .register_node(first.clone(), &signature)
            .expect("registers");
        assert_eq!(id, NodeId(key.address()));
        assert_eq!(
            chain.register_node(first.clone(), &signature),
            Err(ChainError::AlreadyRegistered(id))
        );

        // Someone else's BLS key without its proof of possession is refused.
        let mut stolen = registration(2);
        stolen.bls_possession = first.bls_possession;
        let signature = AccountKey::from_seed(6).sign_prehash(&stolen.signing_hash());
        assert_eq!(
            chain.register_node(stolen, &signature),
            Err(ChainError::BadPossession)
        );

        assert!(chain.registry_snapshot(0).nodes.is_empty());
        chain.advance_epoch();
        assert_eq!(chain.registry_snapshot(1).ids(), vec![id]);
    }

    #[test]
    fn group_root_needs_a_quorum_of_the_group() {
        let chain = EmbeddedChain::new(Vec::new());
        let mut members = Vec::new();
        let mut secrets = Vec::new();
        for seed in 1..=8u8 {
            let bls = BlsSecretKey::from_seed(&[seed; 32]);
            let registration_for_seed = registration(seed);
            let key = AccountKey::from_seed(u64::from(seed));
            let id = chain
                .register_node(
                    registration_for_seed.clone(),
                    &key.sign_prehash(&registration_for_seed.signing_hash()),
                )
                .expect("registers");
            members.push(id);
            secrets.push(bls);
        }
        let commitment = GroupRootCommitment {
            epoch: 1,
            group: group_id(&members),
            batch: 1,
            root: B256::repeat_byte(4),
        };
        let message = commitment.signing_bytes();
        let votes = |count: usize| -> Certificate {
            let votes: Vec<(usize, BlsSignature)> = (0..count)
                .map(|index| (index, secrets[index].sign(&message)))
                .collect();
            Certificate::aggregate(&votes).expect("aggregate")
        };
        assert_eq!(quorum(8), 6);
        assert!(matches!(
            chain.commit_group_root(commitment.clone(), &members, &votes(5)),
            Err(ChainError::BadCertificate(BlsError::TooFewSigners {
                signers: 5,
                quorum: 6
            }))
        ));
        assert_eq!(chain.group_root(&commitment.group), None);
        chain
            .commit_group_root(commitment.clone(), &members, &votes(6))
            .expect("quorum");
        assert_eq!(chain.group_root(&commitment.group), Some(commitment));
    }
}
