//! One execution node's identity and registration. The state it holds is a
//! [`crate::state::NodeState`], which the network opens for it in a directory of its own.

use primitives::{AccountKey, Address, NodeId, Signature, bls::BlsSecretKey};
use upper_chain::Registration;

/// An execution node.
#[derive(Debug)]
pub struct ShardNode {
    /// Operator key; the node ID is its address.
    key: AccountKey,
    /// Key for group certificates.
    bls: BlsSecretKey,
}

impl ShardNode {
    /// A node with these keys.
    pub fn new(key: AccountKey, bls: BlsSecretKey) -> Self {
        ShardNode { key, bls }
    }

    /// A node with a deterministic identity from `seed` (devnet and tests).
    pub fn from_seed(seed: u64) -> Self {
        let key = AccountKey::from_seed(seed);
        let mut bls_seed = [0u8; 32];
        bls_seed[..8].copy_from_slice(&seed.to_be_bytes());
        bls_seed[8..16].copy_from_slice(b"shardbls");
        ShardNode {
            key,
            bls: BlsSecretKey::from_seed(&bls_seed),
        }
    }

    /// The node ID.
    pub fn id(&self) -> NodeId {
        NodeId(self.key.address())
    }

    /// The node's identity on netstack's secure sessions: its operator key, with the Noise
    /// static key derived from it.
    pub fn network_identity(&self) -> netstack::secure::NodeIdentity {
        netstack::secure::NodeIdentity::new(self.key.clone())
    }

    /// The BLS key for group certificates.
    pub fn bls(&self) -> &BlsSecretKey {
        &self.bls
    }

    /// What its group replicas sign with: the operator key (pre-prepares) and the BLS key.
    pub fn replica_keys(&self) -> consensus::ReplicaKeys {
        consensus::ReplicaKeys {
            operator: self.key.clone(),
            bls: self.bls.clone(),
        }
    }

    /// The report that this node holds `group`'s state after `batch`, signed by its operator
    /// key, for [`upper_chain::UpperChain::record_synced_root`].
    pub fn synced_root(
        &self,
        epoch: u64,
        group: primitives::B256,
        batch: u64,
        root: primitives::B256,
    ) -> (upper_chain::SyncedRoot, Signature) {
        let synced = upper_chain::SyncedRoot {
            node: self.id(),
            epoch,
            group,
            batch,
            root,
        };
        let signature = self.key.sign_prehash(&synced.signing_hash());
        (synced, signature)
    }

    /// The registration this node files, signed by its operator key.
    pub fn registration(
        &self,
        endpoint: String,
        reward_wallet: Address,
        wallet_features: Vec<String>,
    ) -> (Registration, Signature) {
        let registration = Registration {
            endpoint,
            reward_wallet,
            wallet_features,
            bls_key: self.bls.public_key(),
            bls_possession: self.bls.proof_of_possession(),
        };
        let signature = self.key.sign_prehash(&registration.signing_hash());
        (registration, signature)
    }
}
