//! One execution node: identity, registration and the state it holds.

use execution::InMemoryState;
use primitives::{AccountKey, Address, NodeId, Signature, bls::BlsSecretKey};
use upper_chain::Registration;

/// An execution node.
#[derive(Debug)]
pub struct ShardNode {
    /// Operator key; the node ID is its address.
    key: AccountKey,
    /// Key for group certificates.
    bls: BlsSecretKey,
    /// State of every address whose group includes this node.
    pub state: InMemoryState,
}

impl ShardNode {
    /// A node with these keys and no state yet.
    pub fn new(key: AccountKey, bls: BlsSecretKey) -> Self {
        ShardNode {
            key,
            bls,
            state: InMemoryState::new(),
        }
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
            state: InMemoryState::new(),
        }
    }

    /// The node ID.
    pub fn id(&self) -> NodeId {
        NodeId(self.key.address())
    }

    /// The BLS key for group certificates.
    pub fn bls(&self) -> &BlsSecretKey {
        &self.bls
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
