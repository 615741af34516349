//! Authenticated, encrypted datagrams bound to node keys, sans-IO: Noise_XX with static
//! x25519 keys (the `snow` crate), each static key bound to a node ID by a secp256k1 signature
//! of the node's [`AccountKey`] over it.
//!
//! The layer is opt-in and sits under KCP: the owner runs a [`SecureHandshake`], then passes
//! every KCP datagram through [`SecureSession::seal`] before sending and
//! [`SecureSession::open`] after receiving. Clients of a sequencer are anonymous players and
//! keep the plain KCP driver; node-to-node links use this layer.
//!
//! # Wire
//! - Handshake: `[HANDSHAKE_TAG, step, noise message..]`; the payload of XX's second and third
//!   messages is the sender's 65-byte binding signature.
//! - Transport: `[TRANSPORT_TAG, nonce (u64, big-endian), ciphertext and 16-byte tag..]`.
//!   Nonces are explicit because UDP reorders; a sliding window of
//!   [`SECURE_REPLAY_WINDOW`] nonces refuses replays and the too-old.
//!
//! # Why the binding
//! Noise proves possession of an x25519 static key; Tickrate names nodes by the address of a
//! secp256k1 key. The signature `sign(keccak256(BINDING_DOMAIN || static_public))` ties one to
//! the other, so a peer presenting someone else's binding with its own static key fails.

mod handshake;
mod session;
#[cfg(test)]
mod tests;

use alloy_primitives::{B256, keccak256};
use primitives::{id::NodeId, keys::AccountKey};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::{
    params::DHChoice,
    resolvers::{CryptoResolver, DefaultResolver, FallbackResolver},
    types::{Cipher, Dh, Hash, Random},
};

pub use handshake::{AllowList, PeerPolicy, SecureHandshake};
pub use session::{SecureSession, SecureStats};

/// The Noise protocol of every node-to-node handshake.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// First byte of a handshake datagram.
pub const HANDSHAKE_TAG: u8 = 0xA1;
/// First byte of a transport datagram.
pub const TRANSPORT_TAG: u8 = 0xA2;
/// Nonces behind the highest seen that a session still accepts (once each).
pub const SECURE_REPLAY_WINDOW: u64 = 128;
/// Bytes of the AEAD tag a transport datagram carries.
pub const SECURE_TAG_BYTES: usize = 16;
/// Bytes a transport datagram adds to its plaintext: tag byte, nonce, AEAD tag.
pub const SECURE_OVERHEAD_BYTES: usize = 1 + 8 + SECURE_TAG_BYTES;
/// Largest handshake or transport datagram (Noise's message limit).
pub const SECURE_DATAGRAM_BYTES_MAX: usize = 65_535;
/// Domain of the binding signature.
const BINDING_DOMAIN: &[u8] = b"tickrate/netstack/noise-static/v1";
/// Bytes of an x25519 key.
const STATIC_KEY_BYTES: usize = 32;

/// A node's identity on the wire: its account key, its Noise static key and the signature that
/// binds the two.
#[derive(Clone)]
pub struct NodeIdentity {
    account: AccountKey,
    static_secret: [u8; STATIC_KEY_BYTES],
    static_public: [u8; STATIC_KEY_BYTES],
    binding: primitives::keys::Signature,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeIdentity({})", self.node_id())
    }
}

impl NodeIdentity {
    /// The identity of `account`, with a Noise static key derived from the account's secret (so
    /// a node keeps one static key across restarts).
    pub fn new(account: AccountKey) -> Self {
        let mut material = b"tickrate/netstack/noise-secret/v1".to_vec();
        material.extend_from_slice(&account.secret_bytes());
        let static_secret = keccak256(&material).0;
        Self::with_static_secret(account, static_secret)
    }

    /// The identity of `account` with the given Noise static secret.
    pub fn with_static_secret(account: AccountKey, static_secret: [u8; 32]) -> Self {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .expect("snow's default resolver has x25519");
        dh.set(&static_secret);
        let static_public: [u8; STATIC_KEY_BYTES] = dh
            .pubkey()
            .try_into()
            .expect("an x25519 public key is 32 bytes");
        let binding = account.sign_prehash(&binding_prehash(&static_public));
        NodeIdentity {
            account,
            static_secret,
            static_public,
            binding,
        }
    }

    /// The node ID this identity proves.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.account.address())
    }

    /// The Noise static public key.
    pub fn static_public(&self) -> [u8; 32] {
        self.static_public
    }

    /// Signs `prehash` with the node's account key (relay registrations prove the node this
    /// way).
    pub(crate) fn sign_prehash(&self, prehash: &B256) -> primitives::keys::Signature {
        self.account.sign_prehash(prehash)
    }

    /// Test support: this identity presenting `other`'s binding signature, as an impostor that
    /// copied it off the wire would.
    #[doc(hidden)]
    pub fn with_stolen_binding(mut self, other: &NodeIdentity) -> Self {
        self.binding = other.binding;
        self
    }
}

fn binding_prehash(static_public: &[u8]) -> B256 {
    let mut material = BINDING_DOMAIN.to_vec();
    material.extend_from_slice(static_public);
    keccak256(&material)
}

/// The node ID a binding signature proves for `static_public`, if it recovers.
fn bound_node(static_public: &[u8], binding: &[u8]) -> Option<NodeId> {
    let signature = primitives::keys::Signature(binding.try_into().ok()?);
    let address = signature
        .recover_address(&binding_prehash(static_public))
        .ok()?;
    Some(NodeId(address))
}

/// Noise randomness (ephemeral keys) from a seed, so a run replays.
struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

/// Resolves only the random source; everything else falls back to snow's default resolver.
struct SeededResolver(u64);

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(ChaCha20Rng::seed_from_u64(self.0))))
    }
    fn resolve_dh(&self, _: &DHChoice) -> Option<Box<dyn Dh>> {
        None
    }
    fn resolve_hash(&self, _: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

fn builder<'key>(seed: u64) -> snow::Builder<'key> {
    let params = NOISE_PARAMS
        .parse()
        .expect("NOISE_PARAMS is a valid Noise name");
    snow::Builder::with_resolver(
        params,
        Box::new(FallbackResolver::new(
            Box::new(SeededResolver(seed)),
            Box::new(DefaultResolver),
        )),
    )
}
